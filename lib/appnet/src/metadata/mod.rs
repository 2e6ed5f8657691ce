//! The metadata server at 169.254.169.254:80 of a local instance: a
//! smoltcp interface of its own (IP medium, that one address) with a small
//! pool of listening TCP sockets, fed the IPv4 packets apps send to it.
//! Each connection carries one request; its answer comes from
//! [`content::respond`] through the engine, which knows the apps.

pub(crate) mod content;
pub(crate) mod http;
mod json;

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use content::METADATA_ADDR;
use http::{MAX_REQUEST, Parsed, Request, Response};

const PORT: u16 = 80;
const RX_BUFFER: usize = 2048;
const TX_BUFFER: usize = 8192;
/// A connection that has not sent its request by then is dropped.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Packets waiting for the interface, each way.
const QUEUE: usize = 64;

/// The interface's side of the engine: IPv4 packets both ways.
struct Pipe {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0u8; len];
        let result = f(&mut packet);
        self.0.push_back(packet);
        result
    }
}

impl phy::Device for Pipe {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((RxToken(packet), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        (self.tx.len() < QUEUE).then_some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// One socket and the exchange on it.
struct Connection {
    handle: SocketHandle,
    request: Vec<u8>,
    response: Vec<u8>,
    sent: usize,
    answered: bool,
    deadline: Option<Instant>,
}

impl Connection {
    fn reset(&mut self) {
        self.request.clear();
        self.response = Vec::new();
        self.sent = 0;
        self.answered = false;
        self.deadline = None;
    }
}

pub(crate) struct MetadataServer {
    iface: Interface,
    sockets: SocketSet<'static>,
    connections: Vec<Connection>,
    pipe: Pipe,
}

impl MetadataServer {
    pub fn new(now: Instant, seed: u64, mtu: u16, connections: usize) -> MetadataServer {
        let mut pipe = Pipe {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu: usize::from(mtu),
        };
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut pipe, now);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(METADATA_ADDR), 32));
        });
        // Every answer goes back out through the pipe; the gateway named
        // here is never looked up on an IP medium.
        let _ = iface.routes_mut().add_default_ipv4_route(METADATA_ADDR);
        let mut sockets = SocketSet::new(Vec::new());
        let connections = (0..connections.max(1))
            .map(|_| {
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
                    tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
                );
                let _ = socket.listen(PORT);
                Connection {
                    handle: sockets.add(socket),
                    request: Vec::new(),
                    response: Vec::new(),
                    sent: 0,
                    answered: false,
                    deadline: None,
                }
            })
            .collect();
        MetadataServer {
            iface,
            sockets,
            connections,
            pipe,
        }
    }

    /// Hands the server an IPv4 packet an app sent to it; false when its
    /// queue is full (the packet is dropped, TCP will resend it).
    pub fn deliver(&mut self, packet: &[u8]) -> bool {
        if self.pipe.rx.len() >= QUEUE {
            return false;
        }
        self.pipe.rx.push_back(packet.to_vec());
        true
    }

    /// The next IPv4 packet for an app.
    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        self.pipe.tx.pop_front()
    }

    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let deadline = self.connections.iter().filter_map(|c| c.deadline).min();
        let iface = self.iface.poll_at(now, &self.sockets);
        match (deadline, iface) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs TCP and answers complete requests with `answer(remote, request)`.
    pub fn poll(
        &mut self,
        now: Instant,
        answer: &mut dyn FnMut((Ipv4Addr, u16), &Request) -> Response,
    ) {
        self.iface.poll(now, &mut self.pipe, &mut self.sockets);
        for conn in &mut self.connections {
            let socket = self.sockets.get_mut::<tcp::Socket>(conn.handle);
            serve(conn, socket, now, answer);
        }
        self.iface.poll(now, &mut self.pipe, &mut self.sockets);
    }
}

fn serve(
    conn: &mut Connection,
    socket: &mut tcp::Socket<'static>,
    now: Instant,
    answer: &mut dyn FnMut((Ipv4Addr, u16), &Request) -> Response,
) {
    match socket.state() {
        tcp::State::Closed => {
            conn.reset();
            let _ = socket.listen(PORT);
            return;
        }
        // The server closes first; its TIME-WAIT would hold the socket
        // for smoltcp's 10 s, so it is let go at once.
        tcp::State::TimeWait => {
            socket.abort();
            conn.reset();
            return;
        }
        tcp::State::Listen | tcp::State::SynReceived => return,
        _ => {}
    }
    let deadline = *conn.deadline.get_or_insert(now + REQUEST_DEADLINE);
    if !conn.answered && now >= deadline {
        socket.abort();
        conn.reset();
        return;
    }
    if !conn.answered && socket.can_recv() {
        let room = MAX_REQUEST - conn.request.len().min(MAX_REQUEST);
        let mut buf = [0u8; 512];
        let want = room.min(buf.len());
        if let Ok(n) = socket.recv_slice(&mut buf[..want]) {
            conn.request.extend_from_slice(&buf[..n]);
        }
    }
    if !conn.answered {
        let remote = match socket.remote_endpoint() {
            Some(ep) => match core::net::IpAddr::from(ep.addr) {
                core::net::IpAddr::V4(addr) => (addr, ep.port),
                core::net::IpAddr::V6(_) => return,
            },
            None => return,
        };
        let response = match http::parse(&conn.request) {
            Parsed::Incomplete if socket.may_recv() => return,
            Parsed::Incomplete | Parsed::Bad => Response::error(400, "bad request").to_bytes(false),
            Parsed::Done(request) => {
                let head_only = request.method == http::Method::Head;
                answer(remote, &request).to_bytes(head_only)
            }
        };
        conn.response = response;
        conn.answered = true;
    }
    if conn.sent < conn.response.len()
        && socket.can_send()
        && let Ok(n) = socket.send_slice(&conn.response[conn.sent..])
    {
        conn.sent += n;
    }
    if conn.sent >= conn.response.len() {
        socket.close();
    }
}
