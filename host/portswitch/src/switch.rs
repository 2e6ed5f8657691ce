//! The switch's event loop (one thread, mio): accept connections, read
//! ports in turn into the trunk's queue, read the trunk into the ports'
//! queues, write what the sockets take.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};

use crate::frame::{self, Deframer, MIN_FRAME, Tag};
use crate::{Command, Config, PortStats, Stats, TrunkStats};

const TRUNK_LISTENER: Token = Token(0);
const TRUNK: Token = Token(1);
pub(crate) const WAKER: Token = Token(2);
const PORT_LISTENER: usize = 0x1_0000;
const PORT: usize = 0x2_0000;
/// Frames read from the trunk in one turn.
const TRUNK_BUDGET: usize = 256;

/// One end of a stream: frames read, frames to write.
struct Conn {
    stream: UnixStream,
    deframer: Deframer,
    out: VecDeque<Vec<u8>>,
    /// Bytes of the front of `out` already written.
    sent: usize,
}

/// What reading a connection came to.
enum Progress {
    /// The budget ran out; there may be more.
    More,
    /// Nothing more for now.
    Drained,
    /// The peer is gone or broke the framing.
    Closed { broken: bool },
}

impl Conn {
    fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            deframer: Deframer::default(),
            out: VecDeque::new(),
            sent: 0,
        }
    }

    /// Reads up to `budget` frames, handing each to `take`.
    fn read_frames(&mut self, budget: usize, mut take: impl FnMut(&[u8])) -> Progress {
        let mut frames = 0;
        loop {
            match self.deframer.next_frame() {
                Err(_) => return Progress::Closed { broken: true },
                Ok(Some(frame)) => {
                    take(frame);
                    frames += 1;
                    if frames >= budget {
                        return Progress::More;
                    }
                    continue;
                }
                Ok(None) => {}
            }
            match self.stream.read(self.deframer.spare()) {
                Ok(0) => return Progress::Closed { broken: false },
                Ok(n) => self.deframer.filled(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Closed { broken: false },
            }
        }
    }

    /// Writes what the socket takes; false if the peer is gone.
    fn flush(&mut self) -> bool {
        while let Some(front) = self.out.front() {
            match self.stream.write(&front[self.sent..]) {
                Ok(0) => return false,
                Ok(n) => {
                    self.sent += n;
                    if self.sent == front.len() {
                        self.out.pop_front();
                        self.sent = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

struct Port {
    listener: UnixListener,
    path: PathBuf,
    conn: Option<Conn>,
    stats: PortStats,
    /// Queued in `Switch::ready`.
    ready: bool,
}

pub(crate) struct Switch {
    poll: Poll,
    trunk_listener: UnixListener,
    trunk_path: PathBuf,
    trunk: Option<Conn>,
    trunk_ready: bool,
    trunk_stats: TrunkStats,
    ports: BTreeMap<Tag, Port>,
    /// Ports that may have frames to read, in turn order.
    ready: VecDeque<Tag>,
    commands: Receiver<Command>,
    config: Config,
}

fn token_tag(token: Token, base: usize) -> Option<Tag> {
    let value = token.0.checked_sub(base)?;
    u16::try_from(value).ok().and_then(Tag::new)
}

impl Switch {
    pub fn new(
        poll: Poll,
        mut trunk_listener: UnixListener,
        config: Config,
        commands: Receiver<Command>,
    ) -> io::Result<Switch> {
        poll.registry()
            .register(&mut trunk_listener, TRUNK_LISTENER, Interest::READABLE)?;
        Ok(Switch {
            poll,
            trunk_listener,
            trunk_path: config.trunk.clone(),
            trunk: None,
            trunk_ready: false,
            trunk_stats: TrunkStats::default(),
            ports: BTreeMap::new(),
            ready: VecDeque::new(),
            commands,
            config,
        })
    }

    pub fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.has_work().then_some(std::time::Duration::ZERO);
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("portswitch: poll failed, stopping: {e}");
                break;
            }
            for event in events.iter() {
                let token = event.token();
                if token == WAKER {
                    continue;
                } else if token == TRUNK_LISTENER {
                    self.accept_trunk();
                } else if token == TRUNK {
                    self.trunk_ready = true;
                    if event.is_writable() {
                        self.flush_trunk();
                    }
                } else if let Some(tag) = token_tag(token, PORT) {
                    self.mark_ready(tag);
                    if event.is_writable() {
                        self.flush_port(tag);
                    }
                } else if let Some(tag) = token_tag(token, PORT_LISTENER) {
                    self.accept_port(tag);
                }
            }
            if !self.handle_commands() {
                break;
            }
            self.pump_ports();
            self.pump_trunk();
        }
        self.shut_down();
    }

    /// Whether a turn can make progress without waiting: a port has
    /// frames and the trunk has room (or no trunk: they are dropped), or
    /// the trunk has frames.
    fn has_work(&self) -> bool {
        let trunk_room = self
            .trunk
            .as_ref()
            .is_none_or(|t| t.out.len() < self.config.trunk_queue);
        (trunk_room && !self.ready.is_empty()) || self.trunk_ready
    }

    fn mark_ready(&mut self, tag: Tag) {
        if let Some(port) = self.ports.get_mut(&tag)
            && port.conn.is_some()
            && !port.ready
        {
            port.ready = true;
            self.ready.push_back(tag);
        }
    }

    fn accept_trunk(&mut self) {
        loop {
            match self.trunk_listener.accept() {
                Ok((mut stream, _)) => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, TRUNK, interest)
                        .is_err()
                    {
                        continue;
                    }
                    if let Some(mut old) = self.trunk.take() {
                        let _ = self.poll.registry().deregister(&mut old.stream);
                        log::info!("portswitch: a new trunk connection replaces the old one");
                    }
                    self.trunk = Some(Conn::new(stream));
                    self.trunk_stats.connected = true;
                    self.trunk_stats.connections += 1;
                    self.trunk_ready = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("portswitch: accepting on the trunk: {e}");
                    return;
                }
            }
        }
    }

    fn accept_port(&mut self, tag: Tag) {
        let Some(port) = self.ports.get_mut(&tag) else {
            return;
        };
        loop {
            match port.listener.accept() {
                Ok((mut stream, _)) => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    let token = Token(PORT + usize::from(tag.vid()));
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, interest)
                        .is_err()
                    {
                        continue;
                    }
                    if let Some(mut old) = port.conn.take() {
                        let _ = self.poll.registry().deregister(&mut old.stream);
                    }
                    port.conn = Some(Conn::new(stream));
                    port.stats.connected = true;
                    port.stats.connections += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("portswitch: accepting on port {tag}: {e}");
                    break;
                }
            }
        }
        self.mark_ready(tag);
    }

    fn close_port(&mut self, tag: Tag, broken: bool) {
        if let Some(port) = self.ports.get_mut(&tag)
            && let Some(mut conn) = port.conn.take()
        {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            port.stats.connected = false;
            if broken {
                port.stats.broken_streams += 1;
                log::warn!("portswitch: port {tag} sent a frame length no frame has; disconnected");
            }
        }
    }

    fn close_trunk(&mut self, broken: bool) {
        if let Some(mut conn) = self.trunk.take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        self.trunk_stats.connected = false;
        self.trunk_ready = false;
        if broken {
            self.trunk_stats.broken_streams += 1;
            log::warn!("portswitch: the trunk sent a frame length no frame has; disconnected");
        }
    }

    /// Each ready port in turn, `budget` frames at a time, while the
    /// trunk has room.
    fn pump_ports(&mut self) {
        let turns = self.ready.len();
        for _ in 0..turns {
            if self
                .trunk
                .as_ref()
                .is_some_and(|t| t.out.len() >= self.config.trunk_queue)
            {
                break;
            }
            let Some(tag) = self.ready.pop_front() else {
                break;
            };
            let Some(port) = self.ports.get_mut(&tag) else {
                continue;
            };
            port.ready = false;
            let Some(conn) = port.conn.as_mut() else {
                continue;
            };
            let stats = &mut port.stats;
            let trunk = &mut self.trunk;
            let outcome = conn.read_frames(self.config.budget, |frame| {
                if frame.len() < MIN_FRAME {
                    stats.bad_frames += 1;
                } else if let Some(trunk) = trunk.as_mut() {
                    trunk.out.push_back(frame::tagged(frame, tag));
                    stats.to_trunk += 1;
                } else {
                    stats.dropped_no_trunk += 1;
                }
            });
            match outcome {
                Progress::More => self.mark_ready(tag),
                Progress::Drained => {}
                Progress::Closed { broken } => self.close_port(tag, broken),
            }
        }
        self.flush_trunk();
    }

    /// Frames from the trunk to their ports.
    fn pump_trunk(&mut self) {
        if !self.trunk_ready {
            return;
        }
        let Some(trunk) = self.trunk.as_mut() else {
            self.trunk_ready = false;
            return;
        };
        let ports = &mut self.ports;
        let stats = &mut self.trunk_stats;
        let queue = self.config.port_queue;
        let mut touched = Vec::new();
        let outcome = trunk.read_frames(TRUNK_BUDGET, |frame| {
            stats.frames_in += 1;
            let Some((tag, framed)) = frame::untagged(frame) else {
                stats.untagged += 1;
                return;
            };
            let Some(port) = ports.get_mut(&tag) else {
                stats.unknown_tag += 1;
                return;
            };
            let Some(conn) = port.conn.as_mut() else {
                port.stats.dropped_not_connected += 1;
                return;
            };
            // A full queue may only be waiting for a write: try one.
            if conn.out.len() >= queue {
                conn.flush();
            }
            if conn.out.len() >= queue {
                port.stats.dropped_queue_full += 1;
                return;
            }
            conn.out.push_back(framed);
            port.stats.from_trunk += 1;
            if !touched.contains(&tag) {
                touched.push(tag);
            }
        });
        match outcome {
            Progress::More => {}
            Progress::Drained => self.trunk_ready = false,
            Progress::Closed { broken } => self.close_trunk(broken),
        }
        for tag in touched {
            self.flush_port(tag);
        }
    }

    fn flush_trunk(&mut self) {
        let Some(trunk) = self.trunk.as_mut() else {
            return;
        };
        let before = trunk.out.len();
        let alive = trunk.flush();
        self.trunk_stats.frames_out += (before - trunk.out.len()) as u64;
        if !alive {
            self.close_trunk(false);
        }
    }

    fn flush_port(&mut self, tag: Tag) {
        let alive = self
            .ports
            .get_mut(&tag)
            .and_then(|p| p.conn.as_mut())
            .is_none_or(|c| c.flush());
        if !alive {
            self.close_port(tag, false);
        }
    }

    /// Attach, detach, stats; false on stop.
    fn handle_commands(&mut self) -> bool {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Attach {
                    tag,
                    mut listener,
                    path,
                    done,
                } => {
                    if self.ports.contains_key(&tag) {
                        let _ = done.send(Err(tag));
                        continue;
                    }
                    let token = Token(PORT_LISTENER + usize::from(tag.vid()));
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut listener, token, Interest::READABLE)
                    {
                        log::error!("portswitch: watching port {tag}: {e}");
                    }
                    self.ports.insert(
                        tag,
                        Port {
                            listener,
                            path,
                            conn: None,
                            stats: PortStats::default(),
                            ready: false,
                        },
                    );
                    // A VM may have connected already.
                    self.accept_port(tag);
                    let _ = done.send(Ok(()));
                }
                Command::Detach { tag, done } => {
                    self.close_port(tag, false);
                    let found = match self.ports.remove(&tag) {
                        Some(mut port) => {
                            let _ = self.poll.registry().deregister(&mut port.listener);
                            let _ = std::fs::remove_file(&port.path);
                            self.ready.retain(|t| *t != tag);
                            true
                        }
                        None => false,
                    };
                    let _ = done.send(found);
                }
                Command::Stats(done) => {
                    let _ = done.send(Stats {
                        trunk: self.trunk_stats,
                        ports: self.ports.iter().map(|(t, p)| (*t, p.stats)).collect(),
                    });
                }
                Command::Stop => return false,
            }
        }
        true
    }

    fn shut_down(&mut self) {
        for port in self.ports.values() {
            let _ = std::fs::remove_file(&port.path);
        }
        let _ = std::fs::remove_file(&self.trunk_path);
    }
}
