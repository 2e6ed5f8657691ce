//! The host's port switch: it moves Ethernet frames between app NICs and
//! zedrouter's trunk, and does nothing else with them.
//!
//! Every app NIC is a QEMU `-netdev stream` on a unix socket the switch
//! listens on (QEMU connects with `server=off,reconnect-ms=...`, so a
//! restarted VM or switch finds its peer again); zedrouter's trunk NIC is
//! one more such socket. A frame from an app port goes to the trunk with
//! the port's tag pushed (an 802.1ad service tag, see [`frame`]); a frame
//! from the trunk goes to the port its tag names, tag removed. Nothing
//! beyond the tag is read: the host never parses what apps send, zedrouter
//! does.
//!
//! Bounded and fair: each port is read a few frames at a time in turn,
//! and when the trunk's queue is full the ports are not read at all (QEMU
//! then holds the guest's frames: backpressure, not loss, and a flooding
//! app only fills its own socket); frames to a port that does not read go
//! into that port's bounded queue and are dropped and counted when it is
//! full, so one stuck app never holds up the trunk. Ports are attached
//! and detached while frames flow.

#![forbid(unsafe_code)]

pub mod frame;
mod switch;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

pub use frame::Tag;

/// How the switch runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The socket zedrouter's trunk NIC connects to.
    pub trunk: PathBuf,
    /// Frames waiting for each app, beyond which frames to it are dropped.
    pub port_queue: usize,
    /// Frames waiting for the trunk, beyond which no port is read.
    pub trunk_queue: usize,
    /// Frames read from one port before the next port's turn.
    pub budget: usize,
}

impl Config {
    pub fn new(trunk: impl Into<PathBuf>) -> Config {
        Config {
            trunk: trunk.into(),
            port_queue: 256,
            trunk_queue: 1024,
            budget: 16,
        }
    }
}

/// What happened at one app port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortStats {
    pub connected: bool,
    /// Connections accepted (a VM that restarts connects again).
    pub connections: u64,
    pub to_trunk: u64,
    pub from_trunk: u64,
    /// Frames from the app while no trunk was connected.
    pub dropped_no_trunk: u64,
    /// Frames for the app while its queue was full.
    pub dropped_queue_full: u64,
    /// Frames for the app while it was not connected.
    pub dropped_not_connected: u64,
    /// Frames shorter than an Ethernet header.
    pub bad_frames: u64,
    /// Connections dropped for a length no frame can have.
    pub broken_streams: u64,
}

/// What happened at the trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrunkStats {
    pub connected: bool,
    pub connections: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    /// Frames from zedrouter without a valid tag.
    pub untagged: u64,
    /// Frames whose tag names no attached port.
    pub unknown_tag: u64,
    pub broken_streams: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    pub trunk: TrunkStats,
    pub ports: BTreeMap<Tag, PortStats>,
}

/// Why the switch could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{path}: not a socket, left alone")]
    NotASocket { path: PathBuf },
    #[error("listening on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("setting up the event loop: {0}")]
    Poll(io::Error),
}

/// Why a port could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("tag {0} is already attached")]
    TagInUse(Tag),
    #[error("{path}: not a socket, left alone")]
    NotASocket { path: PathBuf },
    #[error("listening on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("the switch has stopped")]
    Stopped,
}

/// Why a port could not be detached.
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    #[error("tag {0} is not attached")]
    UnknownTag(Tag),
    #[error("the switch has stopped")]
    Stopped,
}

pub(crate) enum Command {
    Attach {
        tag: Tag,
        listener: mio::net::UnixListener,
        path: PathBuf,
        done: Sender<Result<(), Tag>>,
    },
    Detach {
        tag: Tag,
        done: Sender<bool>,
    },
    Stats(Sender<Stats>),
    Stop,
}

/// Makes way for a socket at `path`: a stale socket is removed, anything
/// else is refused (`AlreadyExists`). The device-port bridge listens the
/// same way.
pub fn clear_socket(path: &Path) -> Result<(), io::Error> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(io::ErrorKind::AlreadyExists, "not a socket")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn listen(path: &Path) -> Result<mio::net::UnixListener, (bool, io::Error)> {
    clear_socket(path).map_err(|e| (e.kind() == io::ErrorKind::AlreadyExists, e))?;
    mio::net::UnixListener::bind(path).map_err(|e| (false, e))
}

/// A running switch; dropping it stops it and removes its sockets.
pub struct PortSwitch {
    commands: Sender<Command>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<()>>,
}

impl PortSwitch {
    /// Listens on the trunk socket and starts moving frames.
    pub fn start(config: Config) -> Result<PortSwitch, StartError> {
        let trunk = listen(&config.trunk).map_err(|(not_socket, source)| {
            if not_socket {
                StartError::NotASocket {
                    path: config.trunk.clone(),
                }
            } else {
                StartError::Bind {
                    path: config.trunk.clone(),
                    source,
                }
            }
        })?;
        let poll = mio::Poll::new().map_err(StartError::Poll)?;
        let waker =
            Arc::new(mio::Waker::new(poll.registry(), switch::WAKER).map_err(StartError::Poll)?);
        let (commands, receiver): (Sender<Command>, Receiver<Command>) = mpsc::channel();
        let mut core =
            switch::Switch::new(poll, trunk, config, receiver).map_err(StartError::Poll)?;
        let thread = std::thread::Builder::new()
            .name("portswitch".into())
            .spawn(move || core.run())
            .map_err(StartError::Poll)?;
        Ok(PortSwitch {
            commands,
            waker,
            thread: Some(thread),
        })
    }

    fn ask(&self, command: Command) -> bool {
        self.commands.send(command).is_ok() && self.waker.wake().is_ok()
    }

    /// Listens for an app NIC on `path` and carries its frames under `tag`.
    pub fn attach(&self, tag: Tag, path: &Path) -> Result<(), AttachError> {
        let listener = listen(path).map_err(|(not_socket, source)| {
            if not_socket {
                AttachError::NotASocket { path: path.into() }
            } else {
                AttachError::Bind {
                    path: path.into(),
                    source,
                }
            }
        })?;
        let (done, result) = mpsc::channel();
        let command = Command::Attach {
            tag,
            listener,
            path: path.into(),
            done,
        };
        if !self.ask(command) {
            return Err(AttachError::Stopped);
        }
        match result.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(tag)) => {
                // The listener we made for it was dropped; the path is ours.
                let _ = std::fs::remove_file(path);
                Err(AttachError::TagInUse(tag))
            }
            Err(_) => Err(AttachError::Stopped),
        }
    }

    /// Stops carrying `tag`: its connection and socket go, and frames
    /// for it from the trunk are counted as unknown.
    pub fn detach(&self, tag: Tag) -> Result<(), DetachError> {
        let (done, result) = mpsc::channel();
        if !self.ask(Command::Detach { tag, done }) {
            return Err(DetachError::Stopped);
        }
        match result.recv() {
            Ok(true) => Ok(()),
            Ok(false) => Err(DetachError::UnknownTag(tag)),
            Err(_) => Err(DetachError::Stopped),
        }
    }

    /// The counters of the trunk and of every attached port.
    pub fn stats(&self) -> Option<Stats> {
        let (done, result) = mpsc::channel();
        if !self.ask(Command::Stats(done)) {
            return None;
        }
        result.recv().ok()
    }
}

impl Drop for PortSwitch {
    fn drop(&mut self) {
        self.ask(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
