//! Public-key signature verification for certificates, TLS 1.3 and EVE's
//! object signing, with one policy for every caller.
//!
//! A device meets controllers whose keys are ECDSA (P-256, P-384), RSA or
//! Ed25519 (Go's TLS and X.509 verify all three, so EVE does), in three
//! places: certificate chains, the TLS CertificateVerify and `AuthContainer`
//! envelopes. Each place names its algorithm differently (an X.509
//! `AlgorithmIdentifier`, a TLS `SignatureScheme`, the key type alone), but
//! the checks behind them are the same, so they live here once:
//!
//! - [`PublicKey::from_spki`] accepts P-256, P-384, RSA with a 2048 to
//!   4096-bit modulus and Ed25519. A smaller RSA key is refused as
//!   [`VerifyError::WeakKey`]; anything else as
//!   [`VerifyError::UnsupportedAlgorithm`].
//! - [`Scheme`] is one way of signing: ECDSA (DER or fixed-width `r || s`),
//!   RSASSA-PKCS1-v1_5, RSASSA-PSS (MGF1 with the same hash, salt as long
//!   as the hash, as TLS 1.3 and Go require) or Ed25519, with SHA-256,
//!   SHA-384 or SHA-512. SHA-1 is not a [`Hash`] at all: an identifier that
//!   names it is refused as [`VerifyError::WeakHash`].
//! - [`x509_scheme`] maps a certificate's signature algorithm to a scheme.
//!
//! Everything is `no_std` + `alloc` and only verifies: no private key is
//! ever handled, so the RSA crate's timing weaknesses in decryption and
//! signing do not apply.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "testing")]
extern crate std;

mod error;
mod key;
mod scheme;
mod x509;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::VerifyError;
pub use key::{KeyKind, MAX_RSA_BITS, MIN_RSA_BITS, PublicKey};
pub use scheme::{Hash, Scheme};
pub use x509::x509_scheme;
