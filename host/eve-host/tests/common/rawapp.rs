//! An app that is this process: it holds the app's port socket (where the
//! app VM's NIC would be) and sends and receives whole Ethernet frames in
//! QEMU's stream framing, so a scenario can send what no well-behaved
//! stack would (spoofed sources, fuzzed headers, floods, non-IP frames).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use portswitch::frame::framed;

use super::rig::PATIENCE;

pub struct RawApp {
    stream: UnixStream,
    /// Bytes read and not yet a whole frame.
    pending: Vec<u8>,
}

impl RawApp {
    /// Connects once zedrouter has attached the port (its socket exists).
    pub fn connect(socket: &Path) -> RawApp {
        let until = Instant::now() + PATIENCE;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() > until => panic!("{}: {e}", socket.display()),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        };
        RawApp {
            stream,
            pending: Vec::new(),
        }
    }

    /// Takes the first connection to `listener` (a device port's outside
    /// end, which zedrouter's VM connects to).
    pub fn accept(listener: &UnixListener) -> RawApp {
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + PATIENCE;
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < until => {
                    thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("nothing connected to the device port: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        Self::from_stream(stream)
    }

    /// A peer already connected (a raw uplink zedrouter connected to).
    pub fn from_stream(stream: UnixStream) -> RawApp {
        RawApp {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, frame: &[u8]) {
        self.stream.write_all(&framed(frame)).unwrap();
    }

    /// The frames that arrive within `wait`.
    pub fn receive(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        let until = Instant::now() + wait;
        let mut frames = Vec::new();
        let mut buf = [0u8; 64 << 10];
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => panic!("raw app read: {e}"),
            }
            while self.pending.len() >= 4 {
                let len = u32::from_be_bytes(self.pending[..4].try_into().unwrap()) as usize;
                if self.pending.len() < 4 + len {
                    break;
                }
                frames.push(self.pending[4..4 + len].to_vec());
                self.pending.drain(..4 + len);
            }
        }
        frames
    }
}
