//! Connections: TCP, TLS over it, and proxies reached with `CONNECT`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use embedded_io::{ErrorKind, ErrorType, Read, Write};
use evehttp::wire::StatusLine;
use evehttp::{HttpError, Scheme};

use crate::datastore::Credentials;

/// Largest proxy response head to a `CONNECT`.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// Why a connection could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectError {
    /// The name did not resolve.
    Resolve,
    /// TCP connect failed (refused, unreachable, timed out).
    Tcp(ErrorKind),
    /// The TLS handshake or the server's certificate failed.
    Tls,
    /// The proxy refused the tunnel with this status.
    ProxyRefused(u16),
    /// The proxy's answer was not HTTP, too long, or cut.
    ProxyProtocol,
    /// The transport cannot do this (e.g. no TLS in a test transport).
    Unsupported,
}

impl ConnectError {
    /// Network trouble is worth retrying; a refused certificate is not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Resolve | Self::Tcp(_) | Self::ProxyProtocol)
            || matches!(self, Self::ProxyRefused(s) if *s >= 500)
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve => f.write_str("name did not resolve"),
            Self::Tcp(kind) => write!(f, "tcp: {kind:?}"),
            Self::Tls => f.write_str("tls handshake or certificate failed"),
            Self::ProxyRefused(s) => write!(f, "proxy refused the tunnel ({s})"),
            Self::ProxyProtocol => f.write_str("proxy answered with something that is not HTTP"),
            Self::Unsupported => f.write_str("not supported by this transport"),
        }
    }
}

/// Where a connection goes: the target, and the proxy to tunnel through
/// when one applies to the target.
#[derive(Debug, Clone, Copy)]
pub struct Route<'r> {
    /// http (plain) or https (TLS to `host`).
    pub scheme: Scheme,
    /// The target host.
    pub host: &'r str,
    /// The target port.
    pub port: u16,
    /// The proxy to reach the target through, if any.
    pub proxy: Option<&'r Proxy>,
}

impl Route<'_> {
    /// Where the TCP connection goes: the proxy, or the target itself.
    pub fn first_hop(&self) -> (&str, u16) {
        match self.proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (self.host, self.port),
        }
    }
}

/// What the network offers: connections along a [`Route`].
///
/// A connection may borrow the transport (in a unikernel a TCP stream
/// borrows the network stack and a TLS session its record buffers), so it
/// is a generic associated type, and a transport carries one connection at
/// a time. An implementation opens TCP to [`Route::first_hop`], calls
/// [`tunnel`] when [`Route::proxy`] is set, then starts TLS checking the
/// server is [`Route::host`] when the scheme is https.
pub trait Transport {
    /// An open connection.
    type Conn<'a>: Read + Write
    where
        Self: 'a;
    /// Opens a connection along `route`.
    fn open<'a>(&'a mut self, route: &Route<'_>) -> Result<Self::Conn<'a>, ConnectError>;
}

/// An HTTP proxy (EVE's `ProxyConfig`: a server, and exceptions that are
/// reached directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Proxy host.
    pub host: String,
    /// Proxy port.
    pub port: u16,
    /// Sent as `Proxy-Authorization: Basic`.
    pub credentials: Option<Credentials>,
    /// Host names (or `.suffix` domains) reached without the proxy.
    pub exceptions: Vec<String>,
}

impl Proxy {
    /// Whether connections to `host` go through this proxy.
    pub fn applies_to(&self, host: &str) -> bool {
        !self.exceptions.iter().any(|e| {
            let e = e.trim();
            if let Some(suffix) = e.strip_prefix('.') {
                host.ends_with(e) || host == suffix
            } else {
                !e.is_empty() && host.eq_ignore_ascii_case(e)
            }
        })
    }
}

/// Opens a connection to `scheme://host:port`: directly, or through
/// `proxy` (unless the host is one of its exceptions) with a `CONNECT`
/// tunnel, for http too: one path, and the proxy never sees the request.
pub fn connect<'a, T: Transport>(
    transport: &'a mut T,
    proxy: Option<&Proxy>,
    scheme: Scheme,
    host: &str,
    port: u16,
) -> Result<T::Conn<'a>, ConnectError> {
    let route = Route {
        scheme,
        host,
        port,
        proxy: proxy.filter(|p| p.applies_to(host)),
    };
    transport.open(&route)
}

/// Asks the proxy for a tunnel to `host:port` over `tcp` (connected to
/// the proxy) and reads its answer byte by byte, so not a byte of the
/// tunnel is consumed. [`Transport`] implementations call it.
pub fn tunnel<S: Read + Write>(
    tcp: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), ConnectError> {
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    if host.is_empty() || !host.bytes().all(valid) {
        return Err(ConnectError::Unsupported);
    }
    let mut head = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    if let Some(c) = &proxy.credentials {
        head.push_str("Proxy-Authorization: ");
        head.push_str(&c.basic_header());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let io = |e: <S as ErrorType>::Error| ConnectError::Tcp(embedded_io::Error::kind(&e));
    let mut out = head.as_bytes();
    while !out.is_empty() {
        let n = tcp.write(out).map_err(io)?;
        if n == 0 {
            return Err(ConnectError::Tcp(ErrorKind::WriteZero));
        }
        out = out.get(n..).unwrap_or(&[]);
    }
    tcp.flush().map_err(io)?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_CONNECT_HEAD {
            return Err(ConnectError::ProxyProtocol);
        }
        if tcp.read(&mut byte).map_err(io)? == 0 {
            return Err(ConnectError::ProxyProtocol);
        }
        answer.push(byte[0]);
    }
    let line_end = answer
        .iter()
        .position(|&b| b == b'\r')
        .ok_or(ConnectError::ProxyProtocol)?;
    let status = StatusLine::new_checked(answer.get(..line_end).unwrap_or(&[]))
        .map_err(|_: HttpError| ConnectError::ProxyProtocol)?;
    match status.code() {
        200..=299 => Ok(()),
        code => Err(ConnectError::ProxyRefused(code)),
    }
}
