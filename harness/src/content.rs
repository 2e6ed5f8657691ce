//! Content servers for tests and benchmarks, on the host's loopback (a
//! guest reaches them as [`crate::servers::GUEST_HOST_ADDR`]):
//!
//! - [`FileServer`]: a datastore over HTTP or HTTPS that honours `Range`,
//!   remembers what it sent for each request, can go slowly, and can
//!   misbehave on purpose (cut a transfer, lie about a length, never end a
//!   body, redirect in a loop). It also plays a hostile registry: any path
//!   can be given a content type and headers.
//! - [`Registry`]: Debian's `docker-registry` (the distribution server
//!   eden runs as registry:2) with a temporary config and storage, and
//!   [`OciImage`]s built here and pushed to it.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use sha2::{Digest as _, Sha256};

/// The sha256 of `data` as 64 lowercase hex digits (EVE's form).
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Bytes that differ per seed and do not compress to nothing.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What a served path does besides sending its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehave {
    /// Nothing: a well-behaved server.
    No,
    /// The first request gets this many body bytes, then the connection
    /// is cut; later ones are served normally.
    CutOnceAfter(u64),
    /// Says the body is this many bytes longer than it is, sends what it
    /// has and closes.
    LongerThanItIs(u64),
    /// A body without length that never ends.
    Endless,
    /// Redirects to itself, forever.
    RedirectLoop,
    /// The first request gets this many body bytes, then nothing more
    /// until [`FileServer::release`] (the connection then closes); later
    /// requests are served normally. A transfer caught in the middle.
    HoldAfter(u64),
}

/// One path's content.
#[derive(Clone)]
pub struct Served {
    pub data: Arc<Vec<u8>>,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub misbehave: Misbehave,
    /// Sent at most this many bytes per second, when set.
    pub rate: Option<u64>,
}

impl Served {
    /// `data` as `application/octet-stream` with a strong ETag.
    pub fn file(data: Vec<u8>) -> Served {
        let etag = format!("\"{}\"", &sha256_hex(&data)[..16]);
        Served {
            data: Arc::new(data),
            content_type: String::from("application/octet-stream"),
            headers: vec![(String::from("ETag"), etag)],
            misbehave: Misbehave::No,
            rate: None,
        }
    }
}

/// What the server did for one request.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    /// `Range: bytes=N-`'s N.
    pub range_start: Option<u64>,
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// When it arrived.
    pub at: Instant,
    /// When the answer was sent (or broke off).
    pub done: Instant,
}

#[derive(Default)]
struct Shared {
    paths: Mutex<BTreeMap<String, Served>>,
    log: Mutex<Vec<Request>>,
    cut_done: Mutex<BTreeMap<String, bool>>,
    /// `Authorization` every request must carry, when set.
    authorization: Mutex<Option<String>>,
    /// Held transfers may end.
    released: AtomicBool,
}

/// A file datastore on loopback; stopped when dropped.
pub struct FileServer {
    port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Serves plain HTTP, or HTTPS with `tls`.
    pub fn start(tls: Option<Arc<ServerConfig>>) -> io::Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (serving, stopping) = (shared.clone(), stop.clone());
        let acceptor = thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (shared, tls) = (serving.clone(), tls.clone());
                thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                    let _ = conn.set_nodelay(true);
                    let _ = match tls {
                        None => {
                            let mut conn = conn;
                            let r = answer(&mut conn, &shared);
                            let _ = conn.shutdown(Shutdown::Write);
                            r
                        }
                        Some(config) => ServerConnection::new(config)
                            .map_err(io::Error::other)
                            .and_then(|session| {
                                let mut tls = StreamOwned::new(session, conn);
                                let r = answer(&mut tls, &shared);
                                tls.conn.send_close_notify();
                                let _ = tls.flush();
                                let _ = tls.sock.shutdown(Shutdown::Write);
                                r
                            }),
                    };
                });
            }
        });
        Ok(FileServer {
            port,
            shared,
            stop,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves `content` at `path` (replacing what was there).
    pub fn put(&self, path: &str, content: Served) {
        self.shared
            .paths
            .lock()
            .unwrap()
            .insert(String::from(path), content);
    }

    /// Answers 401 to requests without these basic credentials.
    pub fn require_basic(&self, user: &str, password: &str) {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        *self.shared.authorization.lock().unwrap() = Some(format!("Basic {token}"));
    }

    /// Ends the transfers [`Misbehave::HoldAfter`] holds.
    pub fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
    }

    /// Every request for `path` so far.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads one request and answers it.
fn answer<S: Read + Write>(conn: &mut S, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(&mut *conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("/").to_owned();
    let mut range_start = None;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range_start = v
                .trim()
                .strip_suffix('-')
                .and_then(|n| n.parse::<u64>().ok());
        }
        if lower.starts_with("authorization:") {
            authorization = header.split_once(':').map(|(_, v)| v.trim().to_owned());
        }
    }
    drop(reader);
    let required = shared.authorization.lock().unwrap().clone();
    if required.is_some() && authorization != required {
        conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"files\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        shared.log.lock().unwrap().push(Request {
            path,
            range_start,
            status: 401,
            bytes: 0,
            at: Instant::now(),
            done: Instant::now(),
        });
        return Ok(());
    }
    let found = shared.paths.lock().unwrap().get(&path).cloned();
    let mut record = Request {
        path: path.clone(),
        range_start,
        status: 404,
        bytes: 0,
        at: Instant::now(),
        done: Instant::now(),
    };
    let Some(served) = found else {
        conn.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        shared.log.lock().unwrap().push(record);
        return Ok(());
    };
    let mut head = String::new();
    for (name, value) in &served.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let data = &served.data;
    let result = match served.misbehave {
        Misbehave::RedirectLoop => {
            record.status = 302;
            conn.write_all(
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
        }
        Misbehave::Endless => {
            record.status = 200;
            conn.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {}\r\n{head}Connection: close\r\n\r\n",
                    served.content_type
                )
                .as_bytes(),
            )?;
            let block = vec![0x5au8; 64 * 1024];
            loop {
                if let Err(e) = conn.write_all(&block) {
                    break Err(e);
                }
                record.bytes += block.len() as u64;
            }
        }
        _ if range_start.is_some_and(|s| s >= data.len() as u64 && s > 0) => {
            record.status = 416;
            conn.write_all(
                format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    data.len()
                )
                .as_bytes(),
            )
        }
        _ => {
            let start = range_start.filter(|&s| s > 0);
            let body = &data[start.unwrap_or(0) as usize..];
            let claimed = match served.misbehave {
                Misbehave::LongerThanItIs(extra) => body.len() as u64 + extra,
                _ => body.len() as u64,
            };
            let status_line = match start {
                Some(s) => {
                    record.status = 206;
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{}\r\n",
                        data.len() - 1,
                        data.len()
                    )
                }
                None => {
                    record.status = 200;
                    String::from("HTTP/1.1 200 OK\r\n")
                }
            };
            let send = match served.misbehave {
                Misbehave::CutOnceAfter(n) | Misbehave::HoldAfter(n) => {
                    let mut done = shared.cut_done.lock().unwrap();
                    if done.get(&path).copied().unwrap_or(false) {
                        body.len()
                    } else {
                        done.insert(path.clone(), true);
                        (n as usize).min(body.len())
                    }
                }
                _ => body.len(),
            };
            if method == "HEAD" {
                conn.write_all(
                    format!(
                        "{status_line}Content-Type: {}\r\nContent-Length: {claimed}\r\n{head}Connection: close\r\n\r\n",
                        served.content_type
                    )
                    .as_bytes(),
                )
            } else {
                conn.write_all(
                    format!(
                        "{status_line}Content-Type: {}\r\nContent-Length: {claimed}\r\nAccept-Ranges: bytes\r\n{head}Connection: close\r\n\r\n",
                        served.content_type
                    )
                    .as_bytes(),
                )?;
                let sent = send_body(conn, &body[..send], served.rate, &mut record.bytes);
                if let Misbehave::HoldAfter(_) = served.misbehave
                    && send < body.len()
                {
                    let _ = conn.flush();
                    while !shared.released.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(50));
                    }
                }
                sent
            }
        }
    };
    let result = result.and_then(|()| conn.flush());
    record.done = Instant::now();
    shared.log.lock().unwrap().push(record);
    result
}

/// Sends `body`, at most `rate` bytes per second when set.
fn send_body<S: Write>(
    conn: &mut S,
    body: &[u8],
    rate: Option<u64>,
    sent: &mut u64,
) -> io::Result<()> {
    const STEP: usize = 16 * 1024;
    let started = Instant::now();
    for piece in body.chunks(STEP) {
        conn.write_all(piece)?;
        *sent += piece.len() as u64;
        if let Some(rate) = rate.filter(|&r| r > 0) {
            let due = Duration::from_secs_f64(*sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                thread::sleep(wait);
            }
        }
    }
    Ok(())
}

/// An OCI image of one arch: its config, layers and manifest.
pub struct OciImage {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
}

/// OCI media types the images use.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

fn descriptor(media_type: &str, data: &[u8], platform: Option<&str>) -> String {
    let platform = platform.map_or(String::new(), |arch| {
        let variant = if arch == "arm64" {
            r#","variant":"v8""#
        } else {
            ""
        };
        format!(r#","platform":{{"architecture":"{arch}","os":"linux"{variant}}}"#)
    });
    format!(
        r#"{{"mediaType":"{media_type}","digest":"sha256:{}","size":{}{platform}}}"#,
        sha256_hex(data),
        data.len()
    )
}

impl OciImage {
    /// An image for `arch` (OCI names: amd64, arm64) with layers of the
    /// given sizes.
    pub fn new(arch: &str, layer_sizes: &[usize], seed: u64) -> OciImage {
        let layers = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| noise(n, seed + i as u64))
            .collect();
        OciImage::with_layers(arch, layers)
    }

    /// An image for `arch` with these layers, bottom first.
    pub fn with_layers(arch: &str, layers: Vec<Vec<u8>>) -> OciImage {
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{"Cmd":["/bin/true"]}}}}"#,
            layers
                .iter()
                .map(|l| format!("\"sha256:{}\"", sha256_hex(l)))
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
            descriptor(OCI_CONFIG, &config, None),
            layers
                .iter()
                .map(|l| descriptor(OCI_LAYER, l, None))
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes();
        OciImage {
            config,
            layers,
            manifest,
        }
    }

    /// Every digest of the image: manifest, config, layers.
    pub fn digests(&self) -> Vec<String> {
        let mut all = vec![sha256_hex(&self.manifest), sha256_hex(&self.config)];
        all.extend(self.layers.iter().map(|l| sha256_hex(l)));
        all
    }
}

/// An OCI index of images by OCI arch name.
pub fn oci_index(images: &[(&str, &OciImage)]) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        images
            .iter()
            .map(|(arch, img)| descriptor(OCI_MANIFEST, &img.manifest, Some(arch)))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes()
}

/// Debian's `docker-registry` on a loopback port; stopped when dropped.
pub struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request to the registry: the status and the `Location` header.
fn registry_request(
    port: u16,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> io::Result<(u16, Option<String>)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    let mut answer = String::new();
    BufReader::new(conn).read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = answer.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("location")
            .then(|| value.trim().to_owned())
    });
    Ok((status, location))
}

impl Registry {
    /// Starts `docker-registry` on a free loopback port with its storage
    /// under a temporary directory and waits (bounded) for it to answer.
    pub fn start() -> io::Result<Registry> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Registry::start_on(port)
    }

    /// The same on 127.0.0.1:`port`: a registry a user names in commands
    /// (`cargo xtask registry`).
    pub fn start_on(port: u16) -> io::Result<Registry> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("starting docker-registry (cargo xtask deps installs it): {e}"),
                )
            })?;
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..400 {
            if let Ok((200, _)) = registry_request(port, "GET", "/v2/", None, b"") {
                return Ok(registry);
            }
            thread::sleep(Duration::from_millis(25));
        }
        Err(io::Error::other(format!(
            "docker-registry did not answer on 127.0.0.1:{port}"
        )))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Uploads a blob (the registry checks its digest).
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> io::Result<()> {
        let (status, location) = registry_request(
            self.port,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            None,
            b"",
        )?;
        let location = location
            .filter(|_| status == 202)
            .ok_or_else(|| io::Error::other(format!("starting an upload to {repo}: {status}")))?;
        let path = location
            .find("/v2/")
            .map(|i| location[i..].to_owned())
            .ok_or_else(|| io::Error::other(format!("upload location {location}")))?;
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = format!("{path}{sep}digest=sha256%3A{}", sha256_hex(data));
        match registry_request(
            self.port,
            "PUT",
            &put,
            Some("application/octet-stream"),
            data,
        )? {
            (201, _) => Ok(()),
            (status, _) => Err(io::Error::other(format!(
                "finishing an upload to {repo}: {status}"
            ))),
        }
    }

    /// Puts a manifest or index under `reference` (a tag or a digest).
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        data: &[u8],
    ) -> io::Result<()> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        match registry_request(self.port, "PUT", &path, Some(media_type), data)? {
            (201, _) => Ok(()),
            (status, _) => Err(io::Error::other(format!(
                "pushing {repo}:{reference}: {status}"
            ))),
        }
    }

    /// Pushes an image's blobs and manifest (by digest).
    pub fn push_image(&self, repo: &str, image: &OciImage) -> io::Result<()> {
        self.push_blob(repo, &image.config)?;
        for layer in &image.layers {
            self.push_blob(repo, layer)?;
        }
        self.push_manifest(
            repo,
            &format!("sha256:{}", sha256_hex(&image.manifest)),
            OCI_MANIFEST,
            &image.manifest,
        )
    }
}
