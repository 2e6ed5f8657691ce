//! A device port's wire: the bridge between the unix socket a device
//! port's NIC connects to (QEMU's `-netdev stream`: each Ethernet frame
//! after its length as a 4-byte big-endian number) and a Linux network
//! interface, through an `AF_PACKET` socket bound to it ([`packet`]).
//!
//! Why a packet socket and not a TAP device: it bridges with any existing
//! interface (a physical NIC, a veth, a VLAN or bridge device) as it is,
//! as EVE bridges a switch instance with a physical port, and nothing on
//! the host has to be created or torn down; the interface is made
//! promiscuous only while the socket is open. A TAP device would be one
//! more interface the operator must bridge with the LAN themselves.
//! What the host's own stack sends on the interface is not passed to the
//! port (`PACKET_IGNORE_OUTGOING`), as frames the port sends never reach
//! the host's stack: the port sits on the wire, beside the host.
//!
//! One thread per bridge, asleep in `epoll` until a frame or a connection
//! comes. One connection at a time: a newer one (a restarted VM) replaces
//! the older. Nothing ends the bridge but its interface going away (it
//! then logs why, removes its socket and stops) or [`Bridge`] being
//! dropped: a peer that closes or sends a broken stream is dropped and
//! the next one accepted; frames the interface cannot carry (longer than
//! its MTU), frames from the wire longer than its MTU (merged by the
//! NIC's receive offloads), frames while the port is not connected or its
//! queue is full are dropped, counted ([`Stats`]) and logged (the first,
//! tenth, hundredth... of each kind).
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod packet;

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use portswitch::frame::{Deframer, MAX_FRAME, MIN_FRAME, framed};

pub use packet::{OpenError, PacketSocket, Presence, Received};

/// The longest path a unix socket can have (`sun_path` less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// Frames waiting for the port's NIC, beyond which frames to it are
/// dropped.
pub const PORT_QUEUE: usize = 256;
/// An Ethernet header and one VLAN tag: what a frame carries beyond the
/// interface's MTU.
const FRAME_OVERHEAD: usize = 14 + 4;

const LISTENER: Token = Token(0);
const PEER: Token = Token(1);
const WIRE: Token = Token(2);
const WAKER: Token = Token(3);

/// What went through a bridge, and what it dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Whether a NIC is connected to the port's socket now.
    pub connected: bool,
    /// Connections accepted (a VM that restarts connects again).
    pub connections: u64,
    /// Frames from the port sent out of the interface.
    pub to_wire: u64,
    /// Frames from the interface passed to the port.
    pub from_wire: u64,
    /// Frames from the port longer than the interface carries.
    pub too_big_for_wire: u64,
    /// Frames from the interface longer than its MTU allows.
    pub too_big_from_wire: u64,
    /// Frames from the port the interface refused (down, queue full).
    pub refused_by_wire: u64,
    /// Frames from the interface while no NIC was connected.
    pub dropped_not_connected: u64,
    /// Frames from the interface while the port's queue was full.
    pub dropped_queue_full: u64,
    /// Frames from the port shorter than an Ethernet header.
    pub bad_frames: u64,
    /// Connections dropped for a length no frame can have.
    pub broken_streams: u64,
}

/// Why a bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("socket path {0} is longer than {MAX_SOCKET_PATH} bytes")]
    PathTooLong(PathBuf),
    #[error("{path} exists and is not a socket")]
    NotASocket { path: PathBuf },
    #[error("listening on {path}: {source}")]
    Listen { path: PathBuf, source: io::Error },
    #[error("setting up the bridge's poll: {0}")]
    Poll(io::Error),
    #[error("starting the bridge's thread: {0}")]
    Thread(io::Error),
}

/// What the bridge's thread shares with its handle.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    stats: Mutex<Stats>,
    ended: Mutex<Option<String>>,
}

/// A running bridge between a device port's socket and an interface; it
/// stops when dropped.
pub struct Bridge {
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    socket: PathBuf,
}

impl Bridge {
    /// Opens a packet socket on `interface`, listens on `socket` (a stale
    /// socket file there is replaced) and bridges the two on a thread of
    /// its own; `name` says which port it is in the log.
    pub fn start(name: &str, socket: &Path, interface: &str) -> Result<Bridge, StartError> {
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(StartError::PathTooLong(socket.to_path_buf()));
        }
        let wire = PacketSocket::open(interface)?;
        portswitch::clear_socket(socket).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                StartError::NotASocket {
                    path: socket.to_path_buf(),
                }
            } else {
                StartError::Listen {
                    path: socket.to_path_buf(),
                    source,
                }
            }
        })?;
        let mut listener = UnixListener::bind(socket).map_err(|source| StartError::Listen {
            path: socket.to_path_buf(),
            source,
        })?;
        let poll = Poll::new().map_err(StartError::Poll)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(StartError::Poll)?;
        poll.registry()
            .register(&mut SourceFd(&wire.as_raw_fd()), WIRE, Interest::READABLE)
            .map_err(StartError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(StartError::Poll)?);
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            name: name.to_string(),
            socket: socket.to_path_buf(),
            poll,
            listener,
            wire,
            peer: None,
            shared: shared.clone(),
            stats: Stats::default(),
            wire_buf: vec![0; MAX_FRAME],
            notes: Notes::default(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("portbridge-{name}"))
            .spawn(move || worker.run())
            .map_err(StartError::Thread)?;
        Ok(Bridge {
            shared,
            waker,
            thread: Some(thread),
            socket: socket.to_path_buf(),
        })
    }

    /// What went through so far.
    pub fn stats(&self) -> Stats {
        *self
            .shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the bridge stopped by itself, if it did.
    pub fn ended(&self) -> Option<String> {
        self.shared
            .ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if self.waker.wake().is_err() {
            log::warn!(
                "waking the bridge of {} to stop it failed",
                self.socket.display()
            );
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Counts of one kind of trouble, logged at the 1st, 10th, 100th...
#[derive(Debug, Default)]
struct Occurrences(u64);

impl Occurrences {
    /// Counts one more; whether this one is to be logged.
    fn note(&mut self) -> bool {
        self.0 += 1;
        let mut n = self.0;
        while n.is_multiple_of(10) {
            n /= 10;
        }
        n == 1
    }
}

/// The troubles the bridge logs, each kind counted on its own.
#[derive(Debug, Default)]
struct Notes {
    too_big_for_wire: Occurrences,
    too_big_from_wire: Occurrences,
    refused_by_wire: Occurrences,
    wire_errors: Occurrences,
    queue_full: Occurrences,
}

/// The connected NIC: its stream, what it sent that is not a whole frame
/// yet, and the frames waiting for it (the first partly written).
struct Peer {
    stream: UnixStream,
    deframer: Deframer,
    out: VecDeque<Vec<u8>>,
    written: usize,
}

struct Worker {
    name: String,
    socket: PathBuf,
    poll: Poll,
    listener: UnixListener,
    wire: PacketSocket,
    peer: Option<Peer>,
    shared: Arc<Shared>,
    stats: Stats,
    wire_buf: Vec<u8>,
    notes: Notes,
}

/// What the thread does after handling an event.
enum Next {
    Continue,
    End(String),
}

impl Worker {
    fn run(mut self) {
        log::info!(
            "device port {}: bridged with {} (MTU {})",
            self.name,
            self.wire.interface(),
            self.wire.mtu()
        );
        let mut events = Events::with_capacity(16);
        let reason = loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                break format!("waiting for frames: {e}");
            }
            if self.shared.stop.load(Ordering::Acquire) {
                return;
            }
            let mut next = Next::Continue;
            for event in events.iter() {
                next = match event.token() {
                    LISTENER => {
                        self.accept();
                        Next::Continue
                    }
                    PEER => {
                        if event.is_writable() {
                            self.flush();
                        }
                        if event.is_readable() || event.is_read_closed() {
                            self.carry_from_peer()
                        } else {
                            Next::Continue
                        }
                    }
                    WIRE => self.carry_from_wire(),
                    _ => Next::Continue,
                };
                if matches!(next, Next::End(_)) {
                    break;
                }
            }
            self.publish();
            if let Next::End(reason) = next {
                break reason;
            }
        };
        log::error!(
            "device port {}: the bridge with {} stops: {reason}",
            self.name,
            self.wire.interface()
        );
        *self
            .shared
            .ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason);
        self.drop_peer(None);
        self.publish();
        let _ = std::fs::remove_file(&self.socket);
    }

    fn publish(&mut self) {
        self.stats.connected = self.peer.is_some();
        *self
            .shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.stats;
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        PEER,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("device port {}: a connection refused: {e}", self.name);
                        continue;
                    }
                    if self.peer.is_some() {
                        self.drop_peer(Some("a new connection replaces it"));
                    }
                    self.stats.connections += 1;
                    log::info!("device port {}: its NIC connected", self.name);
                    self.peer = Some(Peer {
                        stream,
                        deframer: Deframer::default(),
                        out: VecDeque::new(),
                        written: 0,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("device port {}: accepting: {e}", self.name);
                    return;
                }
            }
        }
    }

    /// Forgets the connected NIC, saying why when `why` is given.
    fn drop_peer(&mut self, why: Option<&str>) {
        if let Some(mut peer) = self.peer.take() {
            let _ = self.poll.registry().deregister(&mut peer.stream);
            if let Some(why) = why {
                log::info!(
                    "device port {}: its NIC's connection ends: {why}",
                    self.name
                );
            }
        }
    }

    /// Reads what the NIC sent and sends each whole frame out.
    fn carry_from_peer(&mut self) -> Next {
        loop {
            let Some(peer) = self.peer.as_mut() else {
                return Next::Continue;
            };
            match peer.stream.read(peer.deframer.spare()) {
                Ok(0) => {
                    self.drop_peer(Some("it closed"));
                    return Next::Continue;
                }
                Ok(n) => peer.deframer.filled(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.drop_peer(Some(&format!("reading: {e}")));
                    return Next::Continue;
                }
            }
            loop {
                let Some(peer) = self.peer.as_mut() else {
                    return Next::Continue;
                };
                match peer.deframer.next_frame() {
                    Ok(Some(frame)) => {
                        let outcome = send_to_wire(
                            &self.name,
                            &self.wire,
                            frame,
                            &mut self.stats,
                            &mut self.notes,
                        );
                        if let Next::End(reason) = outcome {
                            return Next::End(reason);
                        }
                    }
                    Ok(None) => break,
                    Err(bad) => {
                        self.stats.broken_streams += 1;
                        self.drop_peer(Some(&format!(
                            "it sent a frame length of {} bytes (at most {MAX_FRAME})",
                            bad.0
                        )));
                        return Next::Continue;
                    }
                }
            }
        }
    }

    /// Reads every frame the interface has and queues each for the NIC.
    fn carry_from_wire(&mut self) -> Next {
        let longest = self.wire.mtu() + FRAME_OVERHEAD;
        let mut errors = 0;
        loop {
            let frame_len = match self.wire.receive(&mut self.wire_buf) {
                Ok(Received::Frame(len)) if len < MIN_FRAME => continue,
                Ok(Received::Frame(len)) if len <= longest => len,
                Ok(Received::Frame(len) | Received::Truncated(len)) => {
                    self.stats.too_big_from_wire += 1;
                    if self.notes.too_big_from_wire.note() {
                        log::warn!(
                            "device port {}: a {len}-byte frame from {} is longer than its \
                             MTU {} allows: dropped ({} so far; the NIC's receive offloads \
                             merge frames: `ethtool -K {} gro off lro off`)",
                            self.name,
                            self.wire.interface(),
                            self.wire.mtu(),
                            self.stats.too_big_from_wire,
                            self.wire.interface()
                        );
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    if let Next::End(reason) = self.wire_trouble("reading", &e) {
                        return Next::End(reason);
                    }
                    errors += 1;
                    // A pending error is reported once; more in a row
                    // would be a socket that only fails: wait for the
                    // next event rather than spin.
                    if errors > 16 {
                        break;
                    }
                    continue;
                }
            };
            let Some(peer) = self.peer.as_mut() else {
                self.stats.dropped_not_connected += 1;
                continue;
            };
            if peer.out.len() >= PORT_QUEUE {
                self.stats.dropped_queue_full += 1;
                if self.notes.queue_full.note() {
                    log::warn!(
                        "device port {}: its NIC does not read: a frame from {} dropped \
                         ({} so far)",
                        self.name,
                        self.wire.interface(),
                        self.stats.dropped_queue_full
                    );
                }
                continue;
            }
            peer.out.push_back(framed(&self.wire_buf[..frame_len]));
            self.stats.from_wire += 1;
        }
        self.flush();
        Next::Continue
    }

    /// Writes what waits for the NIC, as far as it takes it.
    fn flush(&mut self) {
        let Some(peer) = self.peer.as_mut() else {
            return;
        };
        while let Some(front) = peer.out.front() {
            match peer.stream.write(&front[peer.written..]) {
                Ok(n) => {
                    peer.written += n;
                    if peer.written == front.len() {
                        peer.out.pop_front();
                        peer.written = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.drop_peer(Some(&format!("writing: {e}")));
                    return;
                }
            }
        }
    }

    /// An error of the interface's socket: the end if the interface is
    /// gone, else logged and borne.
    fn wire_trouble(&mut self, doing: &str, error: &io::Error) -> Next {
        wire_trouble(&self.name, &self.wire, doing, error, &mut self.notes)
    }
}

/// Sends one frame from the port out of the interface, counting what the
/// interface refuses.
fn send_to_wire(
    name: &str,
    wire: &PacketSocket,
    frame: &[u8],
    stats: &mut Stats,
    notes: &mut Notes,
) -> Next {
    if frame.len() < MIN_FRAME {
        stats.bad_frames += 1;
        return Next::Continue;
    }
    let error = match wire.send(frame) {
        Ok(()) => {
            stats.to_wire += 1;
            return Next::Continue;
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => match wire.send(frame) {
            Ok(()) => {
                stats.to_wire += 1;
                return Next::Continue;
            }
            Err(e) => e,
        },
        Err(e) => e,
    };
    if error.raw_os_error() == Some(libc::EMSGSIZE) {
        stats.too_big_for_wire += 1;
        if notes.too_big_for_wire.note() {
            log::warn!(
                "device port {name}: a {}-byte frame is longer than {} carries (MTU {}): \
                 dropped ({} so far)",
                frame.len(),
                wire.interface(),
                wire.mtu(),
                stats.too_big_for_wire
            );
        }
        return Next::Continue;
    }
    stats.refused_by_wire += 1;
    if let Next::End(reason) = wire_trouble(name, wire, "sending", &error, notes) {
        return Next::End(reason);
    }
    if notes.refused_by_wire.note() {
        log::warn!(
            "device port {name}: {} refused a frame: {error} ({} so far)",
            wire.interface(),
            stats.refused_by_wire
        );
    }
    Next::Continue
}

/// An error of the interface's socket: the end if the interface is gone
/// (the socket will never carry a frame again), else logged and borne
/// (a link that is down comes up again).
fn wire_trouble(
    name: &str,
    wire: &PacketSocket,
    doing: &str,
    error: &io::Error,
    notes: &mut Notes,
) -> Next {
    if wire.presence() == Presence::Gone {
        return Next::End(format!(
            "{} went away ({doing}: {error}); restart the host to bridge a new one",
            wire.interface()
        ));
    }
    if notes.wire_errors.note() {
        log::warn!(
            "device port {name}: {doing} on {}: {error} ({} so far)",
            wire.interface(),
            notes.wire_errors.0
        );
    }
    Next::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn troubles_are_logged_at_each_power_of_ten() {
        let mut seen = Occurrences::default();
        let logged: Vec<u64> = (1..=1000u64).filter(|_| seen.note()).collect();
        assert_eq!(logged, [1, 10, 100, 1000]);
    }
}
