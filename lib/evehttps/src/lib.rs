//! One HTTP or HTTPS request from a unikernel, from a URL to a streamed
//! response body, over our smoltcp stack, `evetls` and `evehttp`.
//!
//! Every service that talks to the controller or a datastore does the same
//! five things: resolve the host, connect TCP, run the TLS handshake, send
//! the request and stream the body somewhere. They live here once, each
//! step timed, so `diag` can print where the time went and where it failed,
//! and so a 1 MiB download never has to fit in memory.
//!
//! A connection serves one request and is then closed: a `TcpStream`
//! borrows the stack, so a kept-alive TLS session would have to borrow it
//! across the service's poll loop. The controller is polled once a minute,
//! where a handshake (tens of milliseconds) does not matter.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use core::fmt;
use core::time::Duration;

use base64ct::{Base64, Encoding};
use embedded_io::{Read, Write};
use evehttp::{Client, HttpError, Request, Scheme, Target};
use evetls::{ClientConfig, Csprng, RootStore, TlsBuffers, TlsError};
use hal::clock::Instant;
use net::{IpEndpoint, Ipv4Address, NetError, Stack};

/// Where a request failed.
#[derive(Debug, Clone, Copy)]
pub enum FetchError {
    /// The host name did not resolve.
    Resolve(NetError),
    /// The TCP connection was not established.
    Connect(NetError),
    /// The TLS handshake failed or the server was refused.
    Tls(TlsError),
    /// An `https` target without a TLS configuration.
    NoTlsConfig,
    /// The request could not be sent or the response was not valid HTTP.
    Http(HttpError),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve(e) => write!(f, "resolve: {e}"),
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Tls(e) => write!(f, "tls: {e}"),
            Self::NoTlsConfig => f.write_str("https needs a TLS configuration (a trusted root)"),
            Self::Http(e) => write!(f, "http: {e}"),
        }
    }
}

/// How long each step of a request took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Name resolution (zero for an address literal).
    pub resolve: Duration,
    /// TCP three-way handshake.
    pub connect: Duration,
    /// TLS handshake including certificate verification; `None` for http.
    pub handshake: Option<Duration>,
    /// From sending the request to the response head.
    pub response_head: Duration,
    /// Reading the body to its end.
    pub body: Duration,
}

impl Timings {
    /// Everything together.
    pub fn total(&self) -> Duration {
        self.resolve
            + self.connect
            + self.handshake.unwrap_or_default()
            + self.response_head
            + self.body
    }
}

/// What a completed request returned (its body went to the sink).
#[derive(Debug, Clone, Copy)]
pub struct Fetched {
    pub status: u16,
    pub body_bytes: u64,
    pub peer: IpEndpoint,
    pub timings: Timings,
}

/// TLS state kept between requests: the configuration, a CSPRNG seeded
/// from the platform's entropy source, and the record buffers (33 KB,
/// allocated once).
pub struct TlsSession {
    config: ClientConfig,
    rng: Csprng,
    buffers: TlsBuffers,
}

impl TlsSession {
    /// Seeds the CSPRNG from the hardware or virtio entropy source.
    pub fn new(config: ClientConfig) -> Result<Self, hal::entropy::EntropyError> {
        let mut seed = [0u8; 32];
        hal::entropy::fill(&mut seed, false)?;
        Ok(Self {
            config,
            rng: Csprng::from_entropy(seed),
            buffers: TlsBuffers::new(),
        })
    }

    /// A session for `target`'s host name, trusting `roots`, with dates
    /// checked against [`certificate_clock`].
    pub fn for_target(roots: RootStore, target: &Target) -> Result<Self, SessionError> {
        let config = ClientConfig::new(roots, &target.host, certificate_clock())
            .map_err(SessionError::ServerName)?;
        Self::new(config).map_err(SessionError::Entropy)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }
}

/// Why [`TlsSession::for_target`] could not make a session.
#[derive(Debug, Clone, Copy)]
pub enum SessionError {
    /// The host is not a usable TLS server name.
    ServerName(evetls::ConfigError),
    /// No entropy to seed the CSPRNG.
    Entropy(hal::entropy::EntropyError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerName(e) => write!(f, "server name: {e:?}"),
            Self::Entropy(e) => write!(f, "entropy: {e:?}"),
        }
    }
}

/// The validity clock for certificates: the RTC carried forward by the
/// monotonic clock, or, on a machine without an RTC, no date checks (and a
/// warning, since an expired certificate is then accepted).
pub fn certificate_clock() -> evetls::Clock {
    if hal::clock::unix_now().is_some() {
        evetls::Clock::WallClock(|| hal::clock::unix_now().unwrap_or(0))
    } else {
        log::warn!("no RTC: certificate validity dates are not checked");
        evetls::Clock::NoClockInsecure
    }
}

/// The trusted roots from a command-line value: one certificate, DER or
/// PEM, base64-encoded (a command line cannot carry PEM's line breaks).
pub fn roots_from_base64(value: &str) -> Result<RootStore, RootsError> {
    let bytes = Base64::decode_vec(value).map_err(|_| RootsError::NotBase64)?;
    if bytes.starts_with(b"-----BEGIN") {
        RootStore::from_pem(&bytes)
    } else {
        RootStore::from_der(&[&bytes])
    }
    .map_err(RootsError::Certificate)
}

/// Why [`roots_from_base64`] refused its input.
#[derive(Debug, Clone, Copy)]
pub enum RootsError {
    NotBase64,
    Certificate(evetls::ConfigError),
}

impl fmt::Display for RootsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBase64 => f.write_str("not base64"),
            Self::Certificate(e) => write!(f, "not a usable certificate: {e:?}"),
        }
    }
}

/// Resolves `target`'s host: an address literal as is, otherwise through
/// the stack's static hosts and DNS.
pub fn resolve(
    stack: &mut Stack,
    target: &Target,
    timeout: Duration,
) -> Result<IpEndpoint, NetError> {
    let addr = match target.host.parse::<Ipv4Address>() {
        Ok(literal) => literal,
        Err(_) => stack.resolve(&target.host, timeout)?,
    };
    Ok(IpEndpoint::new(addr.into(), target.port))
}

/// Sends `request` to `target` on a fresh connection and streams the
/// response body into `sink`, then closes the connection.
///
/// Each socket operation is bounded by `timeout`.
pub fn fetch(
    stack: &mut Stack,
    target: &Target,
    tls: Option<&mut TlsSession>,
    request: &Request<'_>,
    timeout: Duration,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<Fetched, FetchError> {
    let mut timings = Timings::default();
    let started = Instant::now();
    let peer = resolve(stack, target, timeout).map_err(FetchError::Resolve)?;
    timings.resolve = started.elapsed();
    let tls = match (target.scheme, tls) {
        (Scheme::Https, None) => return Err(FetchError::NoTlsConfig),
        (Scheme::Https, Some(tls)) => Some(tls),
        (Scheme::Http, _) => None,
    };
    let connecting = Instant::now();
    let handle = stack
        .tcp_connect(peer, timeout)
        .map_err(FetchError::Connect)?;
    timings.connect = connecting.elapsed();
    let authority = target.authority();
    let result = {
        let stream = stack.stream(handle, timeout);
        match tls {
            None => exchange(stream, &authority, request, sink, &mut timings),
            Some(session) => {
                let handshaking = Instant::now();
                match evetls::connect(
                    stream,
                    &session.config,
                    &mut session.rng,
                    &mut session.buffers,
                ) {
                    Ok(secure) => {
                        timings.handshake = Some(handshaking.elapsed());
                        exchange(secure, &authority, request, sink, &mut timings)
                    }
                    Err(e) => Err(FetchError::Tls(e)),
                }
            }
        }
    };
    stack.tcp_close(handle, Duration::from_millis(500));
    let (status, body_bytes) = result?;
    Ok(Fetched {
        status,
        body_bytes,
        peer,
        timings,
    })
}

/// Sends one request on an established transport and streams the body.
fn exchange<T: Read + Write>(
    io: T,
    authority: &str,
    request: &Request<'_>,
    sink: &mut dyn FnMut(&[u8]),
    timings: &mut Timings,
) -> Result<(u16, u64), FetchError> {
    let mut client = Client::new(io, authority).map_err(FetchError::Http)?;
    let asked = Instant::now();
    let mut response = client.send(request).map_err(FetchError::Http)?;
    timings.response_head = asked.elapsed();
    let status = response.status();
    let reading = Instant::now();
    let mut buf = [0u8; 4096];
    let mut total = 0u64;
    loop {
        let n = response.body.read(&mut buf).map_err(FetchError::Http)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        sink(&buf[..n]);
    }
    timings.body = reading.elapsed();
    Ok((status, total))
}
