//! Why a handshake or a certificate was refused.
//!
//! embedded-tls reports failures with its own coarse error type (a rejected
//! certificate is just "InvalidCertificate" at best). Our provider records
//! the precise reason while the handshake runs and [`crate::connect`]
//! returns it in place of embedded-tls's error, so callers can log exactly
//! why a server was refused.

use core::fmt;

use embedded_tls::alert::AlertDescription;

/// A problem with the server's certificate chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertError {
    /// The server sent no certificate at all.
    NoCertificate,
    /// Not parseable as DER X.509, or internally inconsistent (e.g. the
    /// signature algorithm inside and outside the signed part differ,
    /// duplicate extensions).
    Malformed,
    /// The chain does not lead to any of the pinned roots.
    UntrustedRoot,
    /// A certificate's signature does not verify under its issuer's key.
    BadSignature,
    /// A signature or key algorithm we do not verify (curves other than
    /// P-256 and P-384, RSA over 4096 bits or with RSA-PSS keys, SHA-224,
    /// Ed448, ...).
    UnsupportedAlgorithm,
    /// An RSA key in the chain is shorter than 2048 bits.
    WeakKey,
    /// A certificate is signed over SHA-1 or MD5.
    WeakHash,
    /// A certificate that signed another one is not a CA
    /// (basicConstraints absent or CA=false).
    IssuerNotCa,
    /// More CA certificates below an issuer than its pathLenConstraint allows.
    PathLenExceeded,
    /// More intermediates than we are willing to walk.
    ChainTooLong,
    /// An issuer's keyUsage lacks keyCertSign, or the leaf's lacks
    /// digitalSignature.
    BadKeyUsage,
    /// The leaf has extendedKeyUsage without serverAuth.
    NotServerAuth,
    /// A certificate marks as critical an extension we do not process.
    UnknownCriticalExtension,
    /// Now is after a certificate's notAfter.
    Expired,
    /// Now is before a certificate's notBefore.
    NotYetValid,
    /// The leaf's subjectAltName has no entry matching the server name
    /// (the subject CN is deliberately never consulted).
    WrongHostname,
}

impl CertError {
    /// The alert we send the server when refusing its chain for this reason.
    pub(crate) fn alert(self) -> AlertDescription {
        match self {
            Self::NoCertificate => AlertDescription::CertificateRequired,
            Self::Malformed => AlertDescription::DecodeError,
            Self::UntrustedRoot
            | Self::IssuerNotCa
            | Self::PathLenExceeded
            | Self::ChainTooLong => AlertDescription::UnknownCa,
            Self::UnsupportedAlgorithm
            | Self::UnknownCriticalExtension
            | Self::WeakKey
            | Self::WeakHash => AlertDescription::UnsupportedCertificate,
            Self::Expired | Self::NotYetValid => AlertDescription::CertificateExpired,
            Self::BadSignature | Self::BadKeyUsage | Self::NotServerAuth | Self::WrongHostname => {
                AlertDescription::BadCertificate
            }
        }
    }
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::NoCertificate => "server sent no certificate",
            Self::Malformed => "malformed certificate",
            Self::UntrustedRoot => "certificate chain does not lead to a pinned root",
            Self::BadSignature => "certificate signature does not verify",
            Self::UnsupportedAlgorithm => "unsupported certificate key or signature algorithm",
            Self::WeakKey => "RSA key shorter than 2048 bits in the certificate chain",
            Self::WeakHash => "certificate signed over SHA-1 or MD5",
            Self::IssuerNotCa => "certificate issued by a certificate that is not a CA",
            Self::PathLenExceeded => "CA path length constraint exceeded",
            Self::ChainTooLong => "certificate chain too long",
            Self::BadKeyUsage => "key usage does not allow this certificate's role",
            Self::NotServerAuth => "extended key usage lacks serverAuth",
            Self::UnknownCriticalExtension => "unknown critical extension",
            Self::Expired => "certificate expired",
            Self::NotYetValid => "certificate not yet valid",
            Self::WrongHostname => "certificate does not match the server name",
        };
        f.write_str(text)
    }
}

impl core::error::Error for CertError {}

/// Why a TLS connection failed or was refused.
///
/// Not `PartialEq`: it carries embedded-tls's types, which are not; match
/// on it instead.
#[derive(Debug, Clone, Copy)]
pub enum TlsError {
    /// The server's certificate chain was refused.
    Certificate(CertError),
    /// The server's CertificateVerify signature over the handshake does not
    /// verify under its certificate's key: it does not hold the private key.
    BadHandshakeSignature,
    /// The server signed the handshake with a scheme we do not verify, one
    /// TLS 1.3 forbids there (RSA PKCS#1 v1.5), or one that does not fit
    /// its key (another curve, another key type).
    UnsupportedSignatureScheme,
    /// The server finished the handshake without proving its identity
    /// (no Certificate or no CertificateVerify message).
    ServerNotAuthenticated,
    /// The server aborted the handshake with this alert.
    Alert(AlertDescription),
    /// The peer closed the connection (during the handshake: truncated).
    Closed,
    /// The transport failed.
    Io(embedded_io::ErrorKind),
    /// The client key or certificate could not be used.
    ClientIdentity,
    /// Any other protocol failure, as embedded-tls reported it.
    Protocol(embedded_tls::TlsError),
}

impl From<CertError> for TlsError {
    fn from(e: CertError) -> Self {
        Self::Certificate(e)
    }
}

impl From<embedded_tls::TlsError> for TlsError {
    fn from(e: embedded_tls::TlsError) -> Self {
        use embedded_tls::TlsError as E;
        match e {
            E::ConnectionClosed | E::IoError => Self::Closed,
            E::Io(kind) => Self::Io(kind),
            E::HandshakeAborted(_, description) => Self::Alert(description),
            E::InvalidPrivateKey => Self::ClientIdentity,
            other => Self::Protocol(other),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(e) => write!(f, "server certificate refused: {e}"),
            Self::BadHandshakeSignature => f.write_str("server handshake signature is invalid"),
            Self::UnsupportedSignatureScheme => {
                f.write_str("server handshake signature scheme unsupported")
            }
            Self::ServerNotAuthenticated => f.write_str("server did not authenticate itself"),
            Self::Alert(a) => write!(f, "server sent alert {a:?}"),
            Self::Closed => f.write_str("connection closed by peer"),
            Self::Io(kind) => write!(f, "transport error: {kind:?}"),
            Self::ClientIdentity => f.write_str("client certificate or key unusable"),
            Self::Protocol(e) => write!(f, "TLS protocol error: {e:?}"),
        }
    }
}

impl core::error::Error for TlsError {}

impl embedded_io::Error for TlsError {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            Self::Io(kind) => *kind,
            Self::Closed => embedded_io::ErrorKind::ConnectionAborted,
            _ => embedded_io::ErrorKind::Other,
        }
    }
}
