//! TLS 1.3 client for our unikernels.
//!
//! The record layer and handshake come from `embedded-tls` (blocking API);
//! everything that decides whether a server is trusted is ours:
//!
//! - [`Provider`] is the `embedded_tls::CryptoProvider` we hand to the
//!   handshake. It always returns a verifier (embedded-tls silently skips
//!   verification when a provider returns none), takes its randomness from
//!   the caller, and offers the optional client identity for mutual TLS.
//! - [`verify_server_chain`] is a strict RFC 5280 subset: pinned roots,
//!   ECDSA P-256/P-384, RSA (2048 to 4096 bits; PKCS#1 v1.5 and PSS) and
//!   Ed25519 signatures, basicConstraints and pathLen, keyUsage,
//!   extendedKeyUsage, validity against the caller's clock, hostname against
//!   subjectAltName only. embedded-tls's own verifier accepted a chain whose
//!   issuer was not a CA, and checks dates only when it has a clock, so it is
//!   not used.
//! - The ClientHello offers exactly the [`SIGNATURE_SCHEMES`] we verify.
//! - [`connect`] runs a handshake over any `embedded_io` transport and
//!   returns a [`TlsStream`] that is itself `embedded_io::Read + Write`.
//!
//! Every refusal carries its reason ([`TlsError`], [`CertError`]) so a
//! service can log exactly why a controller was not trusted.
//!
//! Not supported: RSA keys under 2048 bits ([`CertError::WeakKey`]) or over
//! 4096, SHA-1 ([`CertError::WeakHash`]), session resumption, revocation,
//! name constraints (refused when critical), and client certificate chains
//! (embedded-tls sends the client leaf only).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod config;
mod error;
mod provider;
mod rng;
mod stream;
mod verify;

pub use config::{ClientConfig, ClientIdentity, Clock, ConfigError, RootStore, ServerName};
pub use embedded_tls::SignatureScheme;
pub use error::{CertError, TlsError};
pub use provider::Provider;
pub use rng::Csprng;
pub use stream::{READ_BUFFER_SIZE, TlsBuffers, TlsStream, WRITE_BUFFER_SIZE, connect};
pub use verify::{SIGNATURE_SCHEMES, ServerKey, verify_server_chain};

/// The only cipher suite we negotiate: TLS_AES_128_GCM_SHA256 is mandatory
/// for every TLS 1.3 server (RFC 8446, 9.1), so offering it alone never
/// loses a peer, and one suite keeps the transcript hash type fixed.
pub type CipherSuite = embedded_tls::Aes128GcmSha256;
