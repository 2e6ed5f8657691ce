//! The blocking client: a handshake over any `embedded_io` transport and a
//! stream that encrypts and decrypts application data.

use alloc::boxed::Box;
use alloc::vec;

use embedded_io::{ErrorType, Read, Write};
use embedded_tls::CryptoRngCore;
use embedded_tls::blocking::{TLS_RECORD_OVERHEAD, TlsConfig, TlsConnection, TlsContext};

use crate::CipherSuite;
use crate::config::{ClientConfig, ServerName};
use crate::error::TlsError;
use crate::provider::Provider;

/// Size of the read buffer: the largest TLS 1.3 record body (2^14 bytes of
/// plaintext plus 256 of expansion, RFC 8446 5.2). It must hold a whole
/// record because records are decrypted in place; a smaller one would fail
/// on the first full-size record a server sends.
pub const READ_BUFFER_SIZE: usize = 16640;

/// Size of the write buffer. embedded-tls fills a record with as much
/// plaintext as the buffer holds after the 5-byte header and its
/// `TLS_RECORD_OVERHEAD` reserve, so a 16640-byte buffer would produce
/// records over the 2^14-byte plaintext limit, which servers refuse
/// (rustls with record_overflow). This size makes full records exactly
/// 2^14 bytes.
pub const WRITE_BUFFER_SIZE: usize = 5 + (1 << 14) + TLS_RECORD_OVERHEAD;

/// The two record buffers of a connection, on the heap.
///
/// embedded-tls borrows its buffers for the life of the connection, so they
/// live outside [`TlsStream`]; a service that connects periodically keeps
/// one `TlsBuffers` and reuses it rather than allocating 33 KB each time.
pub struct TlsBuffers {
    read: Box<[u8]>,
    write: Box<[u8]>,
}

impl TlsBuffers {
    /// Zeroed buffers of [`READ_BUFFER_SIZE`] and [`WRITE_BUFFER_SIZE`].
    pub fn new() -> Self {
        Self {
            read: vec![0; READ_BUFFER_SIZE].into_boxed_slice(),
            write: vec![0; WRITE_BUFFER_SIZE].into_boxed_slice(),
        }
    }
}

impl Default for TlsBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// embedded-tls's ClientHello offers P-256, P-384 and Ed25519 signatures,
/// and the RSA ones (PKCS#1 v1.5 for certificates, PSS for the handshake)
/// when asked: we verify all of them ([`crate::SIGNATURE_SCHEMES`]), so we
/// ask. Its `alloc` feature would add the same RSA set, but with a verifier
/// of its own that we do not use, so it stays off.
fn offered_schemes<'a>() -> TlsConfig<'a> {
    TlsConfig::new().enable_rsa_signatures()
}

/// An authenticated TLS 1.3 connection.
pub struct TlsStream<'b, T: Read + Write> {
    conn: TlsConnection<'b, T, CipherSuite>,
    /// The server sent close_notify: reads return end of stream.
    closed: bool,
}

/// Connects as a TLS 1.3 client over `transport` (already connected), with
/// SNI set to the configured DNS name, and returns the stream once the
/// server has proven its identity.
///
/// `rng` must be seeded from a real entropy source (see
/// [`crate::Csprng`]). On refusal the error says why (see [`TlsError`]);
/// the transport is dropped.
pub fn connect<'b, T, R>(
    transport: T,
    config: &ClientConfig,
    rng: &mut R,
    buffers: &'b mut TlsBuffers,
) -> Result<TlsStream<'b, T>, TlsError>
where
    T: Read + Write,
    R: CryptoRngCore,
{
    let mut conn = TlsConnection::new(transport, &mut buffers.read, &mut buffers.write);
    let tls_config = match config.server_name() {
        ServerName::Dns(name) => offered_schemes().with_server_name(name),
        ServerName::Ip(_) => offered_schemes(),
    };
    let mut provider = Provider::new(config, rng);
    let opened = conn.open(TlsContext::new(&tls_config, &mut provider));
    if let Err(e) = opened {
        return Err(provider.failure().unwrap_or_else(|| e.into()));
    }
    provider.outcome()?;
    Ok(TlsStream {
        conn,
        closed: false,
    })
}

impl<T: Read + Write> TlsStream<'_, T> {
    /// Sends close_notify and returns the transport.
    pub fn close(self) -> Result<T, (T, TlsError)> {
        self.conn.close().map_err(|(t, e)| (t, e.into()))
    }
}

impl<T: Read + Write> ErrorType for TlsStream<'_, T> {
    type Error = TlsError;
}

impl<T: Read + Write> Read for TlsStream<'_, T> {
    /// Returns 0 only after the server's close_notify; a transport that
    /// ends without one is reported as [`TlsError::Closed`], since the data
    /// may have been cut short by an attacker.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        if self.closed {
            return Ok(0);
        }
        match self.conn.read(buf) {
            Err(embedded_tls::TlsError::ConnectionClosed) => {
                self.closed = true;
                Ok(0)
            }
            other => other.map_err(TlsError::from),
        }
    }
}

impl<T: Read + Write> Write for TlsStream<'_, T> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, TlsError> {
        self.conn.write(buf).map_err(TlsError::from)
    }

    fn flush(&mut self) -> Result<(), TlsError> {
        self.conn.flush().map_err(TlsError::from)
    }
}
