//! A blocking TCP stream: `embedded_io` Read and Write that drive the
//! interface while they wait, each call bounded by the stream's timeout.

use core::time::Duration;

use smoltcp::socket::tcp;

use crate::{NetError, Stack, TcpHandle};

pub struct TcpStream<'a> {
    stack: &'a mut Stack,
    handle: TcpHandle,
    timeout: Duration,
}

impl<'a> TcpStream<'a> {
    pub(crate) fn new(stack: &'a mut Stack, handle: TcpHandle, timeout: Duration) -> Self {
        TcpStream {
            stack,
            handle,
            timeout,
        }
    }

    /// Closes our sending side (FIN); reading may go on.
    pub fn shutdown_write(&mut self) {
        self.stack.tcp(self.handle).close();
        self.stack.poll();
    }
}

impl embedded_io::ErrorType for TcpStream<'_> {
    type Error = NetError;
}

impl embedded_io::Read for TcpStream<'_> {
    /// Reads what has arrived, waiting for at least one byte; `Ok(0)` at
    /// the end of the stream.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let handle = self.handle;
        self.stack.wait(self.timeout, |stack| {
            let socket = stack.tcp(handle);
            if socket.can_recv() {
                return socket
                    .recv_slice(buf)
                    .map(Some)
                    .map_err(|_| NetError::Closed);
            }
            match socket.state() {
                _ if !socket.may_recv() && socket.state() != tcp::State::SynSent => Ok(Some(0)),
                tcp::State::Closed => Err(NetError::Refused),
                _ => Ok(None),
            }
        })
    }
}

impl embedded_io::Write for TcpStream<'_> {
    /// Queues as much of `buf` as fits, waiting for room for at least one
    /// byte.
    fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let handle = self.handle;
        let written = self.stack.wait(self.timeout, |stack| {
            let socket = stack.tcp(handle);
            if !socket.may_send() {
                return Err(NetError::Closed);
            }
            if socket.can_send() {
                return socket
                    .send_slice(buf)
                    .map(Some)
                    .map_err(|_| NetError::Closed);
            }
            Ok(None)
        })?;
        self.stack.poll();
        Ok(written)
    }

    /// Waits until everything queued has been acknowledged.
    fn flush(&mut self) -> Result<(), NetError> {
        let handle = self.handle;
        self.stack.wait(self.timeout, |stack| {
            let socket = stack.tcp(handle);
            if socket.send_queue() == 0 {
                Ok(Some(()))
            } else if !socket.may_send() && socket.state() == tcp::State::Closed {
                Err(NetError::Closed)
            } else {
                Ok(None)
            }
        })
    }
}
