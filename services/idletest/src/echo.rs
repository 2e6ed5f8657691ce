//! A TCP echo server driven from a poll loop: one connection at a time on
//! one socket, which listens again once a connection is over.

use net::{NetError, Stack, TcpHandle};

/// Bytes moved per turn at most, so one busy peer cannot stall the loop.
const CHUNK: usize = 4096;

pub struct EchoServer {
    stack: Stack,
    socket: TcpHandle,
    port: u16,
    connections: u32,
    bytes: u64,
    connected: bool,
}

impl EchoServer {
    pub fn new(mut stack: Stack, port: u16) -> Result<EchoServer, NetError> {
        let socket = stack.tcp_listen(port)?;
        Ok(EchoServer {
            stack,
            socket,
            port,
            connections: 0,
            bytes: 0,
            connected: false,
        })
    }

    /// Connections taken and bytes echoed so far.
    pub fn served(&self) -> (u32, u64) {
        (self.connections, self.bytes)
    }

    /// When the stack next has timed work (see `net::Stack::poll_at`).
    pub fn poll_at(&mut self) -> Option<hal::clock::Instant> {
        self.stack.poll_at()
    }

    /// Moves packets, echoes what arrived, closes finished connections and
    /// listens again; returns whether anything happened.
    pub fn poll(&mut self) -> bool {
        let mut progress = self.stack.poll();
        let port = self.port;
        let mut buf = [0u8; CHUNK];
        let (echoed, connected) = self.stack.with_tcp(self.socket, |socket| {
            if !socket.is_open() {
                // Only fails for port 0, which `port` is not.
                let _ = socket.listen(port);
                return (0, false);
            }
            let mut echoed = 0;
            if socket.can_recv() {
                let room = socket.send_capacity() - socket.send_queue();
                let n = socket.recv_slice(&mut buf[..room.min(CHUNK)]).unwrap_or(0);
                echoed = socket.send_slice(&buf[..n]).unwrap_or(0);
            }
            if !socket.may_recv() && socket.may_send() && socket.send_queue() == 0 {
                socket.close();
            }
            (echoed, socket.is_active())
        });
        if connected && !self.connected {
            self.connections += 1;
        }
        self.connected = connected;
        if echoed > 0 {
            self.bytes += echoed as u64;
            self.stack.poll();
            progress = true;
        }
        progress
    }
}
