//! Connections for `fetch` and `ocidist` over the unikernel's network
//! stack: TCP through a proxy tunnel when one applies, TLS 1.3 (evetls)
//! checked against the datastore's own certificates (`dsCertPEM`).
//!
//! A connection borrows the stack and the TLS record buffers, so the
//! transport carries one at a time; its TCP socket is closed when it is
//! dropped.

use alloc::boxed::Box;
use core::time::Duration;

use embedded_io::{ErrorKind, ErrorType, Read, Write};
use evehttp::Scheme;
use evetls::{ClientConfig, Csprng, RootStore, TlsBuffers, TlsStream};
use fetch::{ConnectError, Route, Transport};
use net::{IpEndpoint, Ipv4Address, NetError, Stack, TcpHandle};

/// How long a socket operation may wait.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(20);
/// How long closing waits for the peer to take our last bytes.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// What TLS needs between connections: a CSPRNG and the record buffers
/// (33 KB, allocated once).
pub struct TlsParts {
    pub rng: Csprng,
    pub buffers: TlsBuffers,
}

/// The network as `fetch::Transport`.
pub struct GuestTransport<'s> {
    pub stack: &'s mut Stack,
    pub tls: &'s mut TlsParts,
    /// The datastore's certificates (`dsCertPEM`), PEM; https is refused
    /// without them.
    pub roots_pem: &'s [u8],
}

/// A TCP connection that closes its socket when dropped.
pub struct Tcp<'a> {
    stack: &'a mut Stack,
    handle: TcpHandle,
}

impl Drop for Tcp<'_> {
    fn drop(&mut self) {
        self.stack.tcp_close(self.handle, CLOSE_WAIT);
    }
}

impl ErrorType for Tcp<'_> {
    type Error = NetError;
}

impl Read for Tcp<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        self.stack.stream(self.handle, SOCKET_TIMEOUT).read(buf)
    }
}

impl Write for Tcp<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        self.stack.stream(self.handle, SOCKET_TIMEOUT).write(buf)
    }

    fn flush(&mut self) -> Result<(), NetError> {
        self.stack.stream(self.handle, SOCKET_TIMEOUT).flush()
    }
}

/// A connection, plain or TLS (boxed: the TLS state is large).
pub enum Conn<'a> {
    Plain(Tcp<'a>),
    Tls(Box<TlsStream<'a, Tcp<'a>>>),
}

impl ErrorType for Conn<'_> {
    type Error = ErrorKind;
}

impl Read for Conn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        match self {
            Conn::Plain(s) => s.read(buf).map_err(|e| embedded_io::Error::kind(&e)),
            Conn::Tls(s) => s.read(buf).map_err(|e| embedded_io::Error::kind(&e)),
        }
    }
}

impl Write for Conn<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        match self {
            Conn::Plain(s) => s.write(buf).map_err(|e| embedded_io::Error::kind(&e)),
            Conn::Tls(s) => s.write(buf).map_err(|e| embedded_io::Error::kind(&e)),
        }
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        match self {
            Conn::Plain(s) => s.flush().map_err(|e| embedded_io::Error::kind(&e)),
            Conn::Tls(s) => s.flush().map_err(|e| embedded_io::Error::kind(&e)),
        }
    }
}

impl Transport for GuestTransport<'_> {
    type Conn<'a>
        = Conn<'a>
    where
        Self: 'a;

    fn open<'a>(&'a mut self, route: &Route<'_>) -> Result<Conn<'a>, ConnectError> {
        let (host, port) = route.first_hop();
        let addr = match host.parse::<Ipv4Address>() {
            Ok(literal) => literal,
            Err(_) => self
                .stack
                .resolve(host, SOCKET_TIMEOUT)
                .map_err(|_| ConnectError::Resolve)?,
        };
        let handle = self
            .stack
            .tcp_connect(IpEndpoint::new(addr.into(), port), SOCKET_TIMEOUT)
            .map_err(|e| ConnectError::Tcp(embedded_io::Error::kind(&e)))?;
        let mut tcp = Tcp {
            stack: &mut *self.stack,
            handle,
        };
        if let Some(proxy) = route.proxy {
            fetch::tunnel(&mut tcp, proxy, route.host, route.port)?;
        }
        if route.scheme == Scheme::Http {
            return Ok(Conn::Plain(tcp));
        }
        if self.roots_pem.is_empty() {
            log::warn!(
                "https to {}: the datastore gives no certificate (dsCertPEM) to trust",
                route.host
            );
            return Err(ConnectError::Tls);
        }
        let roots = RootStore::from_pem(self.roots_pem).map_err(|e| {
            log::warn!("the datastore's dsCertPEM is not usable: {e:?}");
            ConnectError::Tls
        })?;
        let config = ClientConfig::new(roots, route.host, evehttps::certificate_clock())
            .map_err(|_| ConnectError::Tls)?;
        let tls = &mut *self.tls;
        evetls::connect(tcp, &config, &mut tls.rng, &mut tls.buffers)
            .map(|s| Conn::Tls(Box::new(s)))
            .map_err(|e| {
                log::warn!("tls to {}: {e:?}", route.host);
                ConnectError::Tls
            })
    }
}
