//! Servers on the host's loopback for guests to talk to in tests and
//! benchmarks: a small HTTP/1.1 server, the same over TLS 1.3 (rustls) with
//! whatever certificate chain a test wants, and a server that breaks off the
//! TLS handshake.
//!
//! A guest on open user-mode networking reaches `127.0.0.1:PORT` as
//! `10.0.2.2:PORT` ([`GUEST_HOST_ADDR`]); slirp forwards each connection
//! separately and passes the host's close on, which guestfwd does not.
//!
//! Routes (each connection serves one request, then closes):
//! - `GET /pattern/N`: N bytes of [`pattern`] with a Content-Length;
//! - `GET /pattern/N?chunked`: the same, chunked in uneven pieces;
//! - `POST /echo`: the request body back, chunked;
//! - `GET /api/v2/edgedevice/ping`: 200, as an EVE controller answers;
//! - anything else: 404.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::pki::Issued;

/// The host's loopback as a guest on user-mode networking sees it.
pub const GUEST_HOST_ADDR: &str = "10.0.2.2";

/// Largest request body `/echo` accepts.
const MAX_BODY: usize = 16 << 20;
/// Chunk sizes `/pattern/N?chunked` and `/echo` cycle through, uneven so
/// chunk boundaries land everywhere in the client's buffers.
const CHUNK_SIZES: [usize; 5] = [1, 100, 4096, 7001, 16384];

/// The bytes tests send and expect: position modulo 251 (a prime, so the
/// pattern does not line up with any buffer size).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// What a server does with each connection.
#[derive(Clone)]
pub enum Behaviour {
    /// Plain HTTP.
    Http,
    /// HTTP inside TLS with this configuration.
    Tls(Arc<ServerConfig>),
    /// Reads the ClientHello, sends the first bytes of a ServerHello
    /// record and closes: a handshake cut short.
    TruncatedHandshake,
}

/// A running server; stopped when dropped.
pub struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds a fresh port on 127.0.0.1 and serves until dropped.
    pub fn start(behaviour: Behaviour) -> io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let acceptor = thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let behaviour = behaviour.clone();
                thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                    if let Err(e) = serve(conn, behaviour) {
                        eprintln!("test server: {e}");
                    }
                });
            }
        });
        Ok(Server {
            port,
            stop,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A TLS 1.3-only rustls configuration presenting `chain` (leaf first).
pub fn tls_config(chain: &[&Issued]) -> Arc<ServerConfig> {
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key
    // exchange; ring keeps the build free of aws-lc's C toolchain, and the
    // peers here (EVE's API, loopback tests) use classical groups.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = chain
        .iter()
        .map(|c| CertificateDer::from(c.der()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain[0].key.serialize_der()));
    Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("the test chain's key matches its leaf"),
    )
}

fn serve(conn: TcpStream, behaviour: Behaviour) -> io::Result<()> {
    match behaviour {
        Behaviour::Http => {
            let mut conn = conn;
            handle_request(&mut conn)?;
            conn.shutdown(Shutdown::Write)
        }
        Behaviour::Tls(config) => {
            let session = ServerConnection::new(config).map_err(io::Error::other)?;
            let mut tls = StreamOwned::new(session, conn);
            handle_request(&mut tls)?;
            tls.conn.send_close_notify();
            tls.flush()?;
            tls.sock.shutdown(Shutdown::Write)
        }
        Behaviour::TruncatedHandshake => {
            let mut conn = conn;
            let mut hello = [0u8; 512];
            let _ = conn.read(&mut hello)?;
            // A handshake record announcing 122 bytes, of which 2 arrive.
            conn.write_all(&[0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00])?;
            conn.shutdown(Shutdown::Both)
        }
    }
}

/// Reads one request and answers it.
fn handle_request<S: Read + Write>(stream: &mut S) -> io::Result<()> {
    let mut reader = BufReader::new(&mut *stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = match (parts.next(), parts.next()) {
        (Some(m), Some(t)) => (m.to_owned(), t.to_owned()),
        _ => return Err(io::Error::other(format!("bad request line {line:?}"))),
    };
    let mut content_length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Err(io::Error::other("request head cut short"));
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                content_length = value.trim().parse().map_err(io::Error::other)?;
            }
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(&mut reader)?
    } else if content_length <= MAX_BODY {
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        body
    } else {
        return Err(io::Error::other("request body too large"));
    };
    drop(reader);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let pattern_len = path
        .strip_prefix("/pattern/")
        .and_then(|n| n.parse::<usize>().ok());
    match (method.as_str(), path, pattern_len) {
        ("GET", _, Some(len)) if query == "chunked" => respond_chunked(stream, &pattern(len)),
        ("GET", _, Some(len)) => respond(stream, 200, &pattern(len)),
        ("POST", "/echo", _) => respond_chunked(stream, &body),
        ("GET", "/api/v2/edgedevice/ping", _) => respond(stream, 200, b""),
        _ => respond(stream, 404, b"not found\n"),
    }
}

fn read_chunked<R: BufRead>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = size.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).map_err(io::Error::other)?;
        if body.len() + size > MAX_BODY {
            return Err(io::Error::other("chunked body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut end = String::new();
        reader.read_line(&mut end)?;
        if size == 0 {
            return Ok(body);
        }
    }
}

fn respond<S: Write>(stream: &mut S, status: u16, body: &[u8]) -> io::Result<()> {
    let reason = if status == 200 { "OK" } else { "Not Found" };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

fn respond_chunked<S: Write>(stream: &mut S, body: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(body.len() + 1024);
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    let mut rest = body;
    for size in CHUNK_SIZES.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).min(rest.len()));
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(port: u16, request: &[u8]) -> Vec<u8> {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.write_all(request).unwrap();
        let mut out = Vec::new();
        conn.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn routes_answer_as_documented() {
        let server = Server::start(Behaviour::Http).unwrap();
        let plain = get(
            server.port(),
            b"GET /pattern/300 HTTP/1.1\r\nHost: h\r\n\r\n",
        );
        assert!(plain.starts_with(b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n"));
        assert!(plain.ends_with(&pattern(300)));
        let chunked = get(
            server.port(),
            b"GET /pattern/5000?chunked HTTP/1.1\r\nHost: h\r\n\r\n",
        );
        let head_end = chunked.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut reader = BufReader::new(&chunked[head_end..]);
        assert_eq!(read_chunked(&mut reader).unwrap(), pattern(5000));
        let echo = get(
            server.port(),
            b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        let head_end = echo.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut reader = BufReader::new(&echo[head_end..]);
        assert_eq!(read_chunked(&mut reader).unwrap(), b"abc");
        let missing = get(server.port(), b"GET /nothing HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with(b"HTTP/1.1 404"));
    }
}
