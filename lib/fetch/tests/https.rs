//! HTTPS with our own TLS client (evetls, the unikernels' client) against
//! a rustls server on loopback, through a transport whose TLS session
//! borrows the transport's record buffers, as it does in a unikernel:
//! whole file, resume with Range, and a server certificate for another
//! name refused.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use embedded_io::{ErrorKind, ErrorType, Read, Write};
use evehttp::{Scheme, Target};
use evetls::{ClientConfig, Clock, Csprng, RootStore, TlsBuffers, TlsStream};
use fetch::testing::{MemSink, StdStream};
use fetch::{ConnectError, Download, FetchError, Route, Transport, Validator, download, tunnel};
use harness::pki::{NOW, leaf, root};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// TCP from std, TLS from evetls with buffers the transport owns.
struct TlsTransport {
    root_der: Vec<u8>,
    rng: Csprng,
    buffers: TlsBuffers,
}

/// The TLS session is boxed: it is a kilobyte and a half of state.
enum Conn<'a> {
    Plain(StdStream),
    Tls(Box<TlsStream<'a, StdStream>>),
}

impl ErrorType for Conn<'_> {
    type Error = ErrorKind;
}

impl Read for Conn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf).map_err(|e| embedded_io::Error::kind(&e)),
        }
    }
}

impl Write for Conn<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf).map_err(|e| embedded_io::Error::kind(&e)),
        }
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush().map_err(|e| embedded_io::Error::kind(&e)),
        }
    }
}

impl Transport for TlsTransport {
    type Conn<'a> = Conn<'a>;

    fn open<'a>(&'a mut self, route: &Route<'_>) -> Result<Conn<'a>, ConnectError> {
        let (host, port) = route.first_hop();
        let tcp = TcpStream::connect((host, port))
            .map_err(|_| ConnectError::Tcp(ErrorKind::ConnectionRefused))?;
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut tcp = StdStream(tcp);
        if let Some(proxy) = route.proxy {
            tunnel(&mut tcp, proxy, route.host, route.port)?;
        }
        if route.scheme == Scheme::Http {
            return Ok(Conn::Plain(tcp));
        }
        let roots = RootStore::from_der(&[&self.root_der]).map_err(|_| ConnectError::Tls)?;
        let config = ClientConfig::new(roots, route.host, Clock::Fixed(NOW))
            .map_err(|_| ConnectError::Tls)?;
        evetls::connect(tcp, &config, &mut self.rng, &mut self.buffers)
            .map(|s| Conn::Tls(Box::new(s)))
            .map_err(|_| ConnectError::Tls)
    }
}

/// The Range starts a server saw, one per request (`None`: whole file).
type SeenRanges = Arc<Mutex<Vec<Option<String>>>>;

/// An HTTPS file server honouring Range, one request per connection.
/// Returns its port, its CA's DER and the ranges it saw.
fn https_server(sans: &[&str], data: Vec<u8>) -> (u16, Vec<u8>, SeenRanges) {
    let ca = root("test datastore CA");
    let cert = leaf(sans, &ca);
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key
    // exchange; ring keeps the build free of aws-lc's C toolchain, and the
    // peers here (EVE's API, loopback tests) use classical groups.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.serialize_der())),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, data, seen) = (config.clone(), data.clone(), seen.clone());
            thread::spawn(move || {
                tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let Ok(conn) = ServerConnection::new(config) else {
                    return;
                };
                let mut tls = StreamOwned::new(conn, tcp);
                let mut reader = BufReader::new(&mut tls);
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range = v
                            .trim()
                            .strip_suffix('-')
                            .and_then(|n| n.parse::<usize>().ok());
                    }
                }
                seen.lock().unwrap().push(range.map(|r| r.to_string()));
                let head = match range {
                    Some(start) => format!(
                        "HTTP/1.1 206 Partial\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n",
                        data.len() - start,
                        data.len() - 1,
                        data.len()
                    ),
                    None => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n",
                        data.len()
                    ),
                };
                let body = &data[range.unwrap_or(0)..];
                let _ = tls
                    .write_all(head.as_bytes())
                    .and_then(|()| tls.write_all(body))
                    .and_then(|()| tls.flush());
                tls.conn.send_close_notify();
                let _ = tls.flush();
                let mut rest = Vec::new();
                let _ = tls.sock.read_to_end(&mut rest);
            });
        }
    });
    (port, ca.der(), ranges)
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8).collect()
}

fn request(port: u16, host: &str, size: u64) -> Download {
    Download {
        url: Target::parse_url(&format!("https://{host}:{port}/images/disk.img")).unwrap(),
        authorization: None,
        expected_size: Some(size),
        max_size: 1 << 30,
        max_redirects: 3,
    }
}

#[test]
fn https_download_and_resume_with_our_tls_client() {
    let data = file(3 << 20);
    let (port, root_der, ranges) = https_server(&["127.0.0.1"], data.clone());
    let mut transport = TlsTransport {
        root_der,
        rng: Csprng::from_entropy([7; 32]),
        buffers: TlsBuffers::new(),
    };
    let mut sink = MemSink::default();
    let mut v = Validator::default();
    let out = download(
        &mut transport,
        None,
        &mut sink,
        &request(port, "127.0.0.1", data.len() as u64),
        &mut v,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!((out.fetched, sink.data == data), (data.len() as u64, true));
    assert_eq!(v.etag.as_deref(), Some("\"v1\""));

    // Resume from 1 MiB: only the rest crosses TLS.
    let mut sink = MemSink {
        data: data[..1 << 20].to_vec(),
        ..MemSink::default()
    };
    let out = download(
        &mut transport,
        None,
        &mut sink,
        &request(port, "127.0.0.1", data.len() as u64),
        &mut v,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!((out.resumed_from, out.fetched), (1 << 20, (2 << 20) as u64));
    assert_eq!(sink.data, data);
    assert_eq!(*ranges.lock().unwrap(), [None, Some((1 << 20).to_string())]);
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let (port, root_der, ranges) = https_server(&["files.example"], file(100));
    let mut transport = TlsTransport {
        root_der,
        rng: Csprng::from_entropy([8; 32]),
        buffers: TlsBuffers::new(),
    };
    let e = download(
        &mut transport,
        None,
        &mut MemSink::default(),
        &request(port, "127.0.0.1", 100),
        &mut Validator::default(),
        &mut |_, _| {},
    );
    assert_eq!(e.unwrap_err(), FetchError::Connect(ConnectError::Tls));
    assert!(ranges.lock().unwrap().is_empty(), "no request went out");
}
