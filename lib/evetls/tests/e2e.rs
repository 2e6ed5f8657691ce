//! End to end over loopback TCP: our client against a rustls TLS 1.3
//! server in a thread.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use embedded_io::{ErrorKind, ErrorType, Read, Write};
use evetls::{
    CertError, ClientConfig, ClientIdentity, Clock, Csprng, RootStore, SIGNATURE_SCHEMES,
    TlsBuffers, TlsError, connect,
};
use harness::pki::{Issued, NOW, intermediate, issue, leaf, root, root_with};
use rcgen::{ExtendedKeyUsagePurpose, IsCa, date_time_ymd};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

const TIMEOUT: Duration = Duration::from_secs(20);

/// `std::net::TcpStream` as an `embedded_io` transport.
struct Tcp(TcpStream);

impl ErrorType for Tcp {
    type Error = ErrorKind;
}

impl Read for Tcp {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.0.read(buf).map_err(|_| ErrorKind::Other)
    }
}

impl Write for Tcp {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.0.write(buf).map_err(|_| ErrorKind::Other)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        self.0.flush().map_err(|_| ErrorKind::Other)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key
    // exchange; ring keeps the build free of aws-lc's C toolchain, and the
    // peers here (EVE's API, loopback tests) use classical groups.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

/// A TLS 1.3-only rustls server presenting `chain`, optionally requiring
/// a client certificate under `client_root`.
fn server_config(chain: &[&Issued], client_root: Option<&Issued>) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3");
    let builder = match client_root {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from(ca.der()))
                .expect("client root");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let certs = chain
        .iter()
        .map(|c| CertificateDer::from(c.der()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain[0].key.serialize_der()));
    Arc::new(builder.with_single_cert(certs, key).expect("server cert"))
}

/// A server key that signs the handshake with one scheme only, so that a
/// test picks the scheme (rustls would choose the strongest offered).
#[derive(Debug)]
struct OnlyScheme {
    inner: Arc<dyn SigningKey>,
    scheme: rustls::SignatureScheme,
}

impl SigningKey for OnlyScheme {
    fn choose_scheme(&self, offered: &[rustls::SignatureScheme]) -> Option<Box<dyn Signer>> {
        if offered.contains(&self.scheme) {
            self.inner.choose_scheme(&[self.scheme])
        } else {
            None
        }
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        self.inner.algorithm()
    }
}

/// Serves one certified key and records the signature schemes each
/// ClientHello offered.
#[derive(Debug)]
struct Recorder {
    key: Arc<CertifiedKey>,
    offered: Arc<Mutex<Vec<u16>>>,
}

impl ResolvesServerCert for Recorder {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        *self.offered.lock().unwrap() = hello
            .signature_schemes()
            .iter()
            .map(|s| u16::from(*s))
            .collect();
        Some(self.key.clone())
    }
}

/// A TLS 1.3 server presenting `chain`, signing the handshake with
/// `scheme` when given; also returns where the offered schemes go.
fn recording_server_config(
    chain: &[&[u8]],
    key_pkcs8: Vec<u8>,
    scheme: Option<rustls::SignatureScheme>,
) -> (Arc<ServerConfig>, Arc<Mutex<Vec<u16>>>) {
    let key = provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8)))
        .expect("server key");
    let key: Arc<dyn SigningKey> = match scheme {
        Some(scheme) => Arc::new(OnlyScheme { inner: key, scheme }),
        None => key,
    };
    let certs = chain
        .iter()
        .map(|der| CertificateDer::from(der.to_vec()))
        .collect();
    let offered = Arc::new(Mutex::new(Vec::new()));
    let resolver = Recorder {
        key: Arc::new(CertifiedKey::new(certs, key)),
        offered: offered.clone(),
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    (Arc::new(config), offered)
}

/// What the server saw: how many client certificates, or its error.
type ServerOutcome = Result<usize, String>;

/// Serves one connection: echoes everything until the client closes.
fn echo_server(config: Arc<ServerConfig>) -> (SocketAddr, JoinHandle<ServerOutcome>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let conn = ServerConnection::new(config).map_err(|e| e.to_string())?;
        let mut tls = StreamOwned::new(conn, tcp);
        let mut buf = [0u8; 4096];
        loop {
            let n = tls.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            tls.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
        Ok(tls.conn.peer_certificates().map_or(0, <[_]>::len))
    });
    (addr, handle)
}

fn client_config(roots: &[&Issued], name: &str, clock: Clock) -> ClientConfig {
    let ders: Vec<Vec<u8>> = roots.iter().map(|r| r.der()).collect();
    let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
    ClientConfig::new(RootStore::from_der(&refs).unwrap(), name, clock).expect("config")
}

fn tcp(addr: SocketAddr) -> Tcp {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    Tcp(stream)
}

/// Connects, echoes `payload` and closes; returns the echo.
fn echo(addr: SocketAddr, config: &ClientConfig, payload: &[u8]) -> Result<Vec<u8>, TlsError> {
    let mut rng = Csprng::from_entropy([0x5a; 32]);
    let mut buffers = TlsBuffers::new();
    let mut stream = connect(tcp(addr), config, &mut rng, &mut buffers)?;
    stream.write_all(payload)?;
    stream.flush()?;
    let mut echoed = vec![0u8; payload.len()];
    stream.read_exact(&mut echoed).map_err(|e| match e {
        embedded_io::ReadExactError::Other(e) => e,
        embedded_io::ReadExactError::UnexpectedEof => TlsError::Closed,
    })?;
    stream.close().map_err(|(_, e)| e)?;
    Ok(echoed)
}

/// Runs a handshake the client must refuse; returns the client's error
/// and checks the server saw the handshake fail too.
fn refused(chain: &[&Issued], roots: &[&Issued], name: &str) -> TlsError {
    let (addr, server) = echo_server(server_config(chain, None));
    let config = client_config(roots, name, Clock::Fixed(NOW));
    let err = echo(addr, &config, b"never sent").expect_err("handshake must fail");
    let seen = server.join().unwrap();
    assert!(seen.is_err(), "server thinks it succeeded: {seen:?}");
    err
}

#[test]
fn handshake_and_echo() {
    let ca = root("Root");
    let inter = intermediate("Inter", &ca);
    let server = leaf(&["controller.test"], &inter);
    let (addr, handle) = echo_server(server_config(&[&server, &inter], None));
    let config = client_config(&[&ca], "controller.test", Clock::Fixed(NOW));
    // More than two full records each way.
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(echo(addr, &config, &payload).expect("echo"), payload);
    assert_eq!(handle.join().unwrap(), Ok(0));
}

#[test]
fn wall_clock_and_ip_literal_without_sni() {
    fn clock() -> u64 {
        NOW
    }
    let ca = root("Root");
    let server = leaf(&["127.0.0.1"], &ca);
    let (addr, handle) = echo_server(server_config(&[&server], None));
    let config = client_config(&[&ca], "127.0.0.1", Clock::WallClock(clock));
    assert_eq!(echo(addr, &config, b"ping").expect("echo"), b"ping");
    assert_eq!(handle.join().unwrap(), Ok(0));
}

#[test]
fn p384_server_key_signs_the_handshake() {
    let p384 = &rcgen::PKCS_ECDSA_P384_SHA384;
    let ca = root_with("Root 384", p384, |_| {});
    let server = harness::pki::issue_alg("s", &["controller.test"], &ca, p384, |_| {});
    let (addr, handle) = echo_server(server_config(&[&server], None));
    let config = client_config(&[&ca], "controller.test", Clock::Fixed(NOW));
    assert_eq!(echo(addr, &config, b"ping").expect("echo"), b"ping");
    assert_eq!(handle.join().unwrap(), Ok(0));
}

#[test]
fn client_certificate_is_presented_when_asked() {
    let ca = root("Root");
    let server = leaf(&["controller.test"], &ca);
    let device_ca = root("Device CA");
    let device = issue("device", &[], &device_ca, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let identity = ClientIdentity::from_der(&device.der(), &device.key.serialize_der()).unwrap();

    let (addr, handle) = echo_server(server_config(&[&server], Some(&device_ca)));
    let config =
        client_config(&[&ca], "controller.test", Clock::Fixed(NOW)).with_client_identity(identity);
    assert_eq!(echo(addr, &config, b"v1 api").expect("echo"), b"v1 api");
    assert_eq!(handle.join().unwrap(), Ok(1));

    // Without an identity the server refuses us.
    let (addr, handle) = echo_server(server_config(&[&server], Some(&device_ca)));
    let config = client_config(&[&ca], "controller.test", Clock::Fixed(NOW));
    assert!(echo(addr, &config, b"v1 api").is_err());
    assert!(handle.join().unwrap().is_err());
}

#[test]
fn untrusted_root_is_refused() {
    let ca = root("Root");
    let other = root("Other");
    let server = leaf(&["controller.test"], &other);
    let err = refused(&[&server, &other], &[&ca], "controller.test");
    assert!(
        matches!(err, TlsError::Certificate(CertError::UntrustedRoot)),
        "{err:?}"
    );
}

#[test]
fn wrong_hostname_is_refused() {
    let ca = root("Root");
    let server = leaf(&["other.test"], &ca);
    let err = refused(&[&server], &[&ca], "controller.test");
    assert!(
        matches!(err, TlsError::Certificate(CertError::WrongHostname)),
        "{err:?}"
    );
}

#[test]
fn expired_certificate_is_refused() {
    let ca = root("Root");
    let server = issue("s", &["controller.test"], &ca, |p| {
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2021, 1, 1);
    });
    let err = refused(&[&server], &[&ca], "controller.test");
    assert!(
        matches!(err, TlsError::Certificate(CertError::Expired)),
        "{err:?}"
    );
}

#[test]
fn server_certificate_signed_by_non_ca_is_refused() {
    let ca = root("Root");
    let not_ca = issue("Not a CA", &["other.test"], &ca, |p| {
        p.is_ca = IsCa::ExplicitNoCa;
    });
    let server = leaf(&["controller.test"], &not_ca);
    let err = refused(&[&server, &not_ca], &[&ca], "controller.test");
    assert!(
        matches!(err, TlsError::Certificate(CertError::IssuerNotCa)),
        "{err:?}"
    );
}

#[test]
fn truncated_handshake_is_reported_as_closed() {
    let ca = root("Root");
    let server = leaf(&["controller.test"], &ca);
    let config = server_config(&[&server], None);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A real server flight, cut in half, then the connection is closed.
    let handle = thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut conn = ServerConnection::new(config).unwrap();
        while !conn.wants_write() {
            conn.read_tls(&mut tcp).unwrap();
            conn.process_new_packets().unwrap();
        }
        let mut flight = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut flight).unwrap();
        }
        tcp.write_all(&flight[..flight.len() / 2]).unwrap();
        flight.len()
    });
    let config = client_config(&[&ca], "controller.test", Clock::Fixed(NOW));
    let err = echo(addr, &config, b"never sent").expect_err("must fail");
    assert!(handle.join().unwrap() > 100);
    assert!(matches!(err, TlsError::Closed), "{err:?}");
}

#[test]
fn client_hello_offers_exactly_the_schemes_we_verify() {
    let ca = root("Root");
    let server = leaf(&["controller.test"], &ca);
    let (config, offered) =
        recording_server_config(&[&server.der()], server.key.serialize_der(), None);
    let (addr, handle) = echo_server(config);
    let client = client_config(&[&ca], "controller.test", Clock::Fixed(NOW));
    assert_eq!(echo(addr, &client, b"ping").expect("echo"), b"ping");
    assert_eq!(handle.join().unwrap(), Ok(0));
    let mut offered = offered.lock().unwrap().clone();
    let mut verified: Vec<u16> = SIGNATURE_SCHEMES.iter().map(|s| s.as_u16()).collect();
    offered.sort_unstable();
    verified.sort_unstable();
    assert_eq!(offered, verified);
}

#[test]
fn rsa_server_keys_sign_the_handshake_with_each_pss_scheme() {
    use rcgen::{PKCS_RSA_SHA256, PKCS_RSA_SHA384, PKCS_RSA_SHA512};
    let algs = [&PKCS_RSA_SHA256, &PKCS_RSA_SHA384, &PKCS_RSA_SHA512];
    for (bits, alg) in [2048, 3072, 4096].into_iter().zip(algs) {
        let ca = common::rsa_root("RSA Root", bits, alg);
        let inter = common::issue_with("RSA Inter", &[], common::rsa_key(bits, 1, alg), &ca, true);
        let server = common::issue_with(
            "server",
            &["controller.test"],
            common::rsa_key(bits, 2, alg),
            &inter,
            false,
        );
        for scheme in [
            rustls::SignatureScheme::RSA_PSS_SHA256,
            rustls::SignatureScheme::RSA_PSS_SHA384,
            rustls::SignatureScheme::RSA_PSS_SHA512,
        ] {
            let (config, _) = recording_server_config(
                &[&server.der(), &inter.der()],
                server.key.serialize_der(),
                Some(scheme),
            );
            let (addr, handle) = echo_server(config);
            let client = client_config(&[&ca], "controller.test", Clock::Fixed(NOW));
            assert_eq!(
                echo(addr, &client, b"rsa").unwrap_or_else(|e| panic!("{bits} {scheme:?}: {e}")),
                b"rsa"
            );
            assert_eq!(handle.join().unwrap(), Ok(0));
        }
    }
}

#[test]
fn ed25519_server_key_signs_the_handshake() {
    let ca = root("Root");
    let server = issue_alg_ed25519(&ca);
    let (addr, handle) = echo_server(server_config(&[&server], None));
    let config = client_config(&[&ca], "controller.test", Clock::Fixed(NOW));
    assert_eq!(echo(addr, &config, b"ping").expect("echo"), b"ping");
    assert_eq!(handle.join().unwrap(), Ok(0));
}

fn issue_alg_ed25519(ca: &Issued) -> Issued {
    harness::pki::issue_alg("s", &["controller.test"], ca, &rcgen::PKCS_ED25519, |_| {})
}

#[test]
fn sha1_signed_rsa_server_certificate_is_refused() {
    use sigverify::testing::{Digest, Padding};
    let ca = common::rsa_root("RSA Root", 2048, &rcgen::PKCS_RSA_SHA256);
    let server = common::issue_with(
        "server",
        &["controller.test"],
        common::rsa_key(2048, 2, &rcgen::PKCS_RSA_SHA256),
        &ca,
        false,
    );
    let sha1 = common::resigned(&server, &ca, Digest::Sha1, Padding::Pkcs1);
    let (config, _) = recording_server_config(&[&sha1], server.key.serialize_der(), None);
    let (addr, handle) = echo_server(config);
    let client = client_config(&[&ca], "controller.test", Clock::Fixed(NOW));
    let err = echo(addr, &client, b"never sent").expect_err("SHA-1 refused");
    assert!(
        matches!(err, TlsError::Certificate(CertError::WeakHash)),
        "{err:?}"
    );
    assert!(handle.join().unwrap().is_err());
}
