//! What a client needs before it connects: the pinned roots, the server's
//! name, a clock, and optionally its own identity for mutual TLS.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;

use der::{Decode, Encode};
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use x509_cert::Certificate;

use crate::error::CertError;
use crate::verify::{Parsed, ServerKey};

/// Why a configuration could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// A root store needs at least one root.
    NoRoots,
    /// A root is not a parseable X.509 certificate (DER or PEM).
    BadRoot,
    /// A root is not a CA (basicConstraints absent or CA=false, or keyUsage
    /// without keyCertSign), so it could not have issued a server chain.
    RootNotCa,
    /// A root's key is RSA under 2048 bits.
    WeakRootKey,
    /// A root's key is of a kind we do not verify with.
    UnsupportedRootKey,
    /// The server name is neither a DNS name nor an IP address literal.
    InvalidServerName,
    /// The client certificate is not a parseable X.509 certificate.
    BadClientCertificate,
    /// The client key is not a P-256 private key in PKCS#8 or SEC1 form.
    BadClientKey,
    /// The client key does not belong to the client certificate.
    ClientKeyMismatch,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::NoRoots => "no trusted roots given",
            Self::BadRoot => "a trusted root is not a parseable certificate",
            Self::RootNotCa => "a trusted root is not a CA certificate",
            Self::WeakRootKey => "a trusted root has an RSA key shorter than 2048 bits",
            Self::UnsupportedRootKey => "a trusted root has a key we cannot verify with",
            Self::InvalidServerName => "server name is neither a DNS name nor an IP address",
            Self::BadClientCertificate => "client certificate is not parseable",
            Self::BadClientKey => "client key is not a P-256 private key",
            Self::ClientKeyMismatch => "client key does not match the client certificate",
        };
        f.write_str(text)
    }
}

impl core::error::Error for ConfigError {}

/// The pinned set of roots a server chain must lead to.
///
/// Roots are trust anchors: their own validity dates are not checked (an
/// expired root is removed by updating the store), but they must be CAs and
/// their pathLenConstraint applies to the chains under them.
pub struct RootStore {
    anchors: Vec<Parsed>,
}

impl RootStore {
    /// Roots given as DER certificates.
    pub fn from_der(roots: &[&[u8]]) -> Result<Self, ConfigError> {
        let anchors = roots
            .iter()
            .map(|der| Parsed::from_der(der).map_err(|_| ConfigError::BadRoot))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_anchors(anchors)
    }

    /// Roots given as one PEM text holding one or more CERTIFICATE blocks.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let certs = Certificate::load_pem_chain(pem).map_err(|_| ConfigError::BadRoot)?;
        let anchors = certs
            .iter()
            .map(|cert| {
                let der = cert.to_der().map_err(|_| ConfigError::BadRoot)?;
                Parsed::from_der(&der).map_err(|_| ConfigError::BadRoot)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_anchors(anchors)
    }

    fn from_anchors(anchors: Vec<Parsed>) -> Result<Self, ConfigError> {
        if anchors.is_empty() {
            return Err(ConfigError::NoRoots);
        }
        for anchor in &anchors {
            if !anchor.may_issue() {
                return Err(ConfigError::RootNotCa);
            }
            // A root whose key we cannot use would fail every handshake
            // later; say so now.
            match anchor.key() {
                Ok(_) => {}
                Err(CertError::WeakKey) => return Err(ConfigError::WeakRootKey),
                Err(CertError::Malformed) => return Err(ConfigError::BadRoot),
                Err(_) => return Err(ConfigError::UnsupportedRootKey),
            }
        }
        Ok(Self { anchors })
    }

    /// How many roots are pinned.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Always false: a store is never built empty.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    pub(crate) fn anchors(&self) -> &[Parsed] {
        &self.anchors
    }
}

/// The name the server's certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerName {
    /// A DNS name, lower-cased, without a trailing dot. Matched against
    /// subjectAltName dNSName entries and sent as SNI.
    Dns(String),
    /// An IP literal. Matched against subjectAltName iPAddress entries; no
    /// SNI is sent, since RFC 6066 forbids literal addresses there.
    Ip(IpAddr),
}

impl ServerName {
    /// Parses an IP literal or a DNS name (letters, digits and hyphens,
    /// labels of 1 to 63 characters, 253 at most in all).
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid_label = |label: &str| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(ConfigError::InvalidServerName);
        }
        Ok(Self::Dns(name.to_ascii_lowercase()))
    }
}

/// Where certificate validity dates are checked against.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Read at each handshake; returns Unix seconds (e.g. the RTC).
    WallClock(fn() -> u64),
    /// A fixed instant in Unix seconds, for a caller that reads its clock
    /// itself before building the configuration.
    Fixed(u64),
    /// The device has no trustworthy time, so validity dates are NOT
    /// checked and an expired or not yet valid certificate is accepted.
    /// This must be chosen explicitly: there is no default.
    NoClockInsecure,
}

impl Clock {
    pub(crate) fn now(&self) -> Option<u64> {
        match self {
            Self::WallClock(read) => Some(read()),
            Self::Fixed(now) => Some(*now),
            Self::NoClockInsecure => None,
        }
    }
}

/// A client certificate and its P-256 key, for mutual TLS with the EVE v1
/// API.
///
/// embedded-tls sends exactly one certificate in the client Certificate
/// message, so only the leaf is sent: the server must know its issuer.
#[derive(Clone)]
pub struct ClientIdentity {
    cert_der: Vec<u8>,
    key: SigningKey,
}

impl ClientIdentity {
    /// A DER certificate and its key, as PKCS#8 or SEC1 DER.
    pub fn from_der(cert_der: &[u8], key_der: &[u8]) -> Result<Self, ConfigError> {
        let key = SigningKey::from_pkcs8_der(key_der)
            .or_else(|_| p256::SecretKey::from_sec1_der(key_der).map(SigningKey::from))
            .map_err(|_| ConfigError::BadClientKey)?;
        Self::new(cert_der, key)
    }

    /// A PEM certificate and its key as a PEM "PRIVATE KEY" (PKCS#8) or
    /// "EC PRIVATE KEY" (SEC1) block.
    pub fn from_pem(cert_pem: &[u8], key_pem: &str) -> Result<Self, ConfigError> {
        use der::DecodePem;
        let cert =
            Certificate::from_pem(cert_pem).map_err(|_| ConfigError::BadClientCertificate)?;
        let cert_der = cert
            .to_der()
            .map_err(|_| ConfigError::BadClientCertificate)?;
        let key = SigningKey::from_pkcs8_pem(key_pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(key_pem).map(SigningKey::from))
            .map_err(|_| ConfigError::BadClientKey)?;
        Self::new(&cert_der, key)
    }

    /// A DER certificate and a key already in memory; checks they belong
    /// together so a mismatch shows here, not as a server refusal.
    pub fn new(cert_der: &[u8], key: SigningKey) -> Result<Self, ConfigError> {
        let cert =
            Certificate::from_der(cert_der).map_err(|_| ConfigError::BadClientCertificate)?;
        let cert_key = ServerKey::from_spki(&cert.tbs_certificate.subject_public_key_info)
            .map_err(|_| ConfigError::ClientKeyMismatch)?;
        if !cert_key.is_p256(key.verifying_key()) {
            return Err(ConfigError::ClientKeyMismatch);
        }
        Ok(Self {
            cert_der: cert_der.to_vec(),
            key,
        })
    }

    pub(crate) fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub(crate) fn key(&self) -> &SigningKey {
        &self.key
    }
}

/// Everything [`crate::connect`] needs besides the transport and the RNG.
pub struct ClientConfig {
    roots: RootStore,
    server_name: ServerName,
    clock: Clock,
    identity: Option<ClientIdentity>,
}

impl ClientConfig {
    /// A configuration for one server. `clock` is mandatory so that a
    /// device without a clock has to say so ([`Clock::NoClockInsecure`]).
    pub fn new(roots: RootStore, server_name: &str, clock: Clock) -> Result<Self, ConfigError> {
        Ok(Self {
            roots,
            server_name: ServerName::parse(server_name)?,
            clock,
            identity: None,
        })
    }

    /// Presents this identity when the server asks for a client certificate.
    #[must_use]
    pub fn with_client_identity(mut self, identity: ClientIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The pinned roots.
    pub fn roots(&self) -> &RootStore {
        &self.roots
    }

    /// The name the server must prove.
    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// The clock validity dates are checked against.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The client identity, if any.
    pub fn client_identity(&self) -> Option<&ClientIdentity> {
        self.identity.as_ref()
    }
}
