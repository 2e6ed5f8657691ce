//! Host-test helpers (feature `testing`, std): a transport over std TCP,
//! a scripted HTTP/1.1 server on loopback that can misbehave on purpose,
//! and a memory sink.

use std::borrow::ToOwned;
use std::boxed::Box;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::string::String;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::vec::Vec;
use std::{format, thread};

use embedded_io::{ErrorKind, ErrorType};

use crate::download::{BlobSink, SinkError};
use evehttp::Scheme;

use crate::transport::{ConnectError, Route, Transport, tunnel};

/// A std TCP stream as an `embedded_io` stream.
pub struct StdStream(pub TcpStream);

impl ErrorType for StdStream {
    type Error = ErrorKind;
}

fn kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::TimedOut,
        std::io::ErrorKind::ConnectionReset => ErrorKind::ConnectionReset,
        std::io::ErrorKind::ConnectionRefused => ErrorKind::ConnectionRefused,
        _ => ErrorKind::Other,
    }
}

impl embedded_io::Read for StdStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.0.read(buf).map_err(|e| kind(&e))
    }
}

impl embedded_io::Write for StdStream {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.0.write(buf).map_err(|e| kind(&e))
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        self.0.flush().map_err(|e| kind(&e))
    }
}

/// TCP over std with a read timeout. Counts connections. It has no TLS:
/// https fails with [`ConnectError::Unsupported`], unless `pretend_tls`
/// passes the TCP stream through, so https code paths (redirect rules,
/// scheme checks) can run against the plain test server.
#[derive(Default)]
pub struct StdTransport {
    /// Connections opened, as `host:port`.
    pub connections: Vec<String>,
    /// Treat plain TCP as TLS.
    pub pretend_tls: bool,
}

impl Transport for StdTransport {
    type Conn<'a> = StdStream;

    fn open(&mut self, route: &Route<'_>) -> Result<StdStream, ConnectError> {
        let (host, port) = route.first_hop();
        self.connections.push(format!("{host}:{port}"));
        let s = TcpStream::connect((host, port)).map_err(|e| ConnectError::Tcp(kind(&e)))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| ConnectError::Tcp(kind(&e)))?;
        let mut stream = StdStream(s);
        if let Some(proxy) = route.proxy {
            tunnel(&mut stream, proxy, route.host, route.port)?;
        }
        match route.scheme {
            Scheme::Https if !self.pretend_tls => Err(ConnectError::Unsupported),
            _ => Ok(stream),
        }
    }
}

/// A request as the test server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line.
    pub line: String,
    /// Header fields, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// The method and target (`GET /x`).
    pub fn target(&self) -> &str {
        self.line.rsplit_once(' ').map_or(&self.line, |(t, _)| t)
    }
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with a request.
pub enum Reply {
    /// Writes these bytes (a whole response, or a truncated one), then
    /// closes the connection.
    Raw(Vec<u8>),
    /// Writes a head, then `chunk` forever (until the client goes).
    Endless {
        /// The response head, blank line included.
        head: Vec<u8>,
        /// What repeats.
        chunk: Vec<u8>,
    },
    /// Reads the rest of a request body of this many bytes, then replies.
    ReadBody(usize, Box<Reply>),
}

impl Reply {
    /// A complete response with `Content-Length`.
    pub fn full(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let mut out =
            format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len()).into_bytes();
        for (n, v) in headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(body);
        Self::Raw(out)
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// An HTTP server on 127.0.0.1 answering every request with its handler,
/// one connection at a time, one request per connection.
pub struct TestServer {
    /// Its port.
    pub port: u16,
    /// Every request, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Body bytes written to clients.
    pub sent: Arc<Mutex<u64>>,
}

impl TestServer {
    /// Starts the server; it runs until the test process ends.
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(0u64));
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen2, sent2) = (seen.clone(), sent.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (h, seen, sent) = (handler.clone(), seen2.clone(), sent2.clone());
                thread::spawn(move || serve(stream, &*h, &seen, &sent));
            }
        });
        Self { port, seen, sent }
    }

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Seen>>, sent: &Mutex<u64>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.trim_end().split_once(':') {
            headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let req = Seen {
        line: line.trim_end().to_owned(),
        headers,
    };
    seen.lock().expect("lock").push(req.clone());
    let mut reply = handler(&req);
    let mut out = stream;
    while let Reply::ReadBody(n, next) = reply {
        let mut body = std::vec![0u8; n];
        let _ = reader.read_exact(&mut body);
        reply = *next;
    }
    match reply {
        Reply::Raw(bytes) => {
            if out.write_all(&bytes).is_ok() {
                let head_end = bytes
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(0, |i| i + 4);
                *sent.lock().expect("lock") += (bytes.len() - head_end) as u64;
            }
        }
        Reply::Endless { head, chunk } => {
            if out.write_all(&head).is_err() {
                return;
            }
            // Bounded: stops when the client hangs up, or after 1 GiB.
            for _ in 0..(1u64 << 30) / chunk.len().max(1) as u64 {
                if out.write_all(&chunk).is_err() {
                    return;
                }
                *sent.lock().expect("lock") += chunk.len() as u64;
            }
        }
        Reply::ReadBody(..) => {}
    }
    let _ = out.flush();
}

/// A sink in memory, with the blob store's rules (no gaps, rewind by
/// writing at an earlier offset) and an optional size at which it reports
/// no room.
#[derive(Debug, Default, Clone)]
pub struct MemSink {
    /// The staged bytes.
    pub data: Vec<u8>,
    /// Refuse writes past this many bytes with [`SinkError::NoRoom`].
    pub room: Option<u64>,
    /// Times the sink was rewound.
    pub rewinds: u32,
}

impl BlobSink for MemSink {
    fn staged(&mut self) -> Result<u64, SinkError> {
        Ok(self.data.len() as u64)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        let offset = usize::try_from(offset).map_err(|_| SinkError::Rejected)?;
        if offset > self.data.len() {
            return Err(SinkError::Rejected);
        }
        if offset < self.data.len() {
            self.rewinds += 1;
            self.data.truncate(offset);
        }
        if self.room.is_some_and(|r| (offset + data.len()) as u64 > r) {
            return Err(SinkError::NoRoom);
        }
        self.data.extend_from_slice(data);
        Ok(())
    }
}
