//! What the controller's PKI is made of: P-256 (our default) or RSA (as
//! the open controller Adam, whose default set is RSA 2048), and the
//! envelope signer for either.
//!
//! With RSA, the root, the TLS server certificate and the envelope-signing
//! certificate are RSA, signed sha256WithRSAEncryption; TLS 1.3 handshakes
//! are then signed RSA-PSS and envelopes RSASSA-PKCS1-v1_5 over SHA-256,
//! which is what EVE verifies. The ECDH certificate stays P-256 whatever
//! the PKI (device secrets are encrypted by ECDH), issued by the RSA root.

use std::fmt;
use std::str::FromStr;

use eve_proto::sign::{EnvelopeSigner, SignError, SoftwareSigner};
use eve_proto::sigverify::KeyKind;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rsa::pkcs8::EncodePrivateKey;
use rustls::pki_types::PrivatePkcs8KeyDer;

/// The key type of the root, TLS server and envelope-signing certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pki {
    /// ECDSA P-256 with SHA-256.
    P256,
    /// RSA with a modulus of this many bits (2048, 3072 or 4096).
    Rsa {
        /// Modulus length in bits.
        bits: u16,
    },
}

impl Pki {
    /// The RSA sizes offered: what devices verify (`sigverify` takes 2048
    /// to 4096 bits).
    pub const RSA_BITS: [u16; 3] = [2048, 3072, 4096];

    /// A fresh key for one certificate of this PKI, set to sign with
    /// SHA-256 (ecdsa-with-SHA256, or sha256WithRSAEncryption).
    pub(crate) fn generate(self) -> Result<KeyPair, PkiError> {
        match self {
            Self::P256 => Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?),
            Self::Rsa { bits } => {
                let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, usize::from(bits))
                    .map_err(|e| PkiError::Generate(e.to_string()))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| PkiError::Generate(e.to_string()))?;
                Ok(KeyPair::from_pkcs8_der_and_sign_algo(
                    &PrivatePkcs8KeyDer::from(der.as_bytes()),
                    &PKCS_RSA_SHA256,
                )?)
            }
        }
    }

    /// The PKI a root certificate (PEM) belongs to.
    pub fn of_root(pem: &[u8]) -> Option<Self> {
        let cert = eve_proto::x509::parse_pem(pem).ok()?;
        match eve_proto::x509::signature_key(&cert).ok()?.kind() {
            KeyKind::P256 => Some(Self::P256),
            KeyKind::Rsa { bits } => Some(Self::Rsa {
                bits: u16::try_from(bits).ok()?,
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::P256 => f.write_str("p256"),
            Self::Rsa { bits } => write!(f, "rsa{bits}"),
        }
    }
}

impl FromStr for Pki {
    type Err = String;

    /// `p256`, `rsa2048`, `rsa3072`, `rsa4096`, or `rsa` for 3072 bits
    /// (NIST's size for keys used beyond 2030).
    fn from_str(s: &str) -> Result<Self, String> {
        let bits = match s {
            "p256" => return Ok(Self::P256),
            "rsa" => 3072,
            _ => s
                .strip_prefix("rsa")
                .and_then(|b| b.parse::<u16>().ok())
                .filter(|b| Self::RSA_BITS.contains(b))
                .ok_or_else(|| format!("{s}: expected p256, rsa, rsa2048, rsa3072 or rsa4096"))?,
        };
        Ok(Self::Rsa { bits })
    }
}

/// Why a key could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Key generation failed.
    #[error("generating a key: {0}")]
    Generate(String),
    /// rcgen refused the key.
    #[error("certificate key: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// The controller's envelope signer, whatever its key.
pub enum ControllerSigner {
    /// ECDSA P-256: raw `r || s` over SHA-256.
    P256(SoftwareSigner),
    /// RSA: RSASSA-PKCS1-v1_5 over SHA-256, signed by ring (constant time).
    Rsa(Box<RsaSigner>),
}

/// An RSA signing key and the randomness ring's blinding draws from.
pub struct RsaSigner {
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl ControllerSigner {
    /// The key in `signing-key.pem` (PKCS#8 or SEC1 P-256, PKCS#8 RSA).
    pub fn from_pem(pem: &str) -> Option<Self> {
        if let Ok(signer) = SoftwareSigner::from_pem(pem) {
            return Some(Self::P256(signer));
        }
        let der = match rustls_pemfile::private_key(&mut pem.as_bytes()).ok()?? {
            rustls::pki_types::PrivateKeyDer::Pkcs8(der) => der,
            _ => return None,
        };
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).ok()?;
        Some(Self::Rsa(Box::new(RsaSigner {
            key,
            rng: SystemRandom::new(),
        })))
    }
}

impl EnvelopeSigner for ControllerSigner {
    fn sign_payload(&self, payload: &[u8]) -> Result<Vec<u8>, SignError> {
        match self {
            Self::P256(signer) => signer.sign_payload(payload),
            Self::Rsa(rsa) => {
                let mut signature = vec![0; rsa.key.public().modulus_len()];
                rsa.key
                    .sign(&RSA_PKCS1_SHA256, &rsa.rng, payload, &mut signature)
                    .map_err(|_| SignError::Backend)?;
                Ok(signature)
            }
        }
    }
}
