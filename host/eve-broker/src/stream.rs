//! What the broker needs from a connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;

/// A byte stream the broker can read on one thread, write on another and
/// close from a third (to drop a hostile or replaced peer, which also
/// wakes the blocked reader).
pub trait BusStream: Read + Write + Send + Sync + Sized + 'static {
    /// Another handle to the same stream.
    fn clone_stream(&self) -> io::Result<Self>;
    /// Closes both directions; errors are ignored (it may be closed).
    fn close(&self);
}

impl BusStream for UnixStream {
    fn clone_stream(&self) -> io::Result<Self> {
        self.try_clone()
    }

    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl BusStream for TcpStream {
    fn clone_stream(&self) -> io::Result<Self> {
        self.try_clone()
    }

    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}
