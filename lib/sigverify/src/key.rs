//! Public keys from `SubjectPublicKeyInfo`, with the key policy.

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912::{ID_EC_PUBLIC_KEY, RSA_ENCRYPTION, SECP_256_R_1, SECP_384_R_1};
use const_oid::db::rfc8410::ID_ED_25519;
use der::Decode;
use der::asn1::Any;
use rsa::BigUint;
use rsa::traits::PublicKeyParts;
use spki::SubjectPublicKeyInfoOwned;

use crate::error::VerifyError;

/// Smallest RSA modulus accepted: NIST SP 800-131A ended 1024-bit RSA in
/// 2013, and Go, rustls and browsers refuse keys below 2048 bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Largest RSA modulus accepted. Verification cost grows with the square
/// of the modulus, and a hostile server chooses its own key: the bound keeps
/// what one handshake can cost a device near a 4096-bit key's few
/// milliseconds. Controllers (Adam's default is 2048) stay well inside it.
pub const MAX_RSA_BITS: usize = 4096;

/// What kind of key a [`PublicKey`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA over NIST P-256.
    P256,
    /// ECDSA over NIST P-384.
    P384,
    /// RSA with a modulus of this many bits.
    Rsa {
        /// Modulus length in bits.
        bits: usize,
    },
    /// Ed25519.
    Ed25519,
}

/// A public key we can verify signatures with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(pub(crate) Inner);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inner {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// The key of a certificate's `SubjectPublicKeyInfo`.
    pub fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<Self, VerifyError> {
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or(VerifyError::Malformed)?;
        let params = spki.algorithm.parameters.as_ref();
        let inner = match spki.algorithm.oid {
            ID_EC_PUBLIC_KEY => {
                let curve: ObjectIdentifier = params
                    .ok_or(VerifyError::Malformed)?
                    .decode_as()
                    .map_err(|_| VerifyError::UnsupportedAlgorithm)?;
                match curve {
                    SECP_256_R_1 => Inner::P256(
                        p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                            .map_err(|_| VerifyError::Malformed)?,
                    ),
                    SECP_384_R_1 => Inner::P384(
                        p384::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                            .map_err(|_| VerifyError::Malformed)?,
                    ),
                    _ => return Err(VerifyError::UnsupportedAlgorithm),
                }
            }
            // RFC 3279 2.3.1: the parameters are NULL (Go refuses a key
            // without them, and so do we).
            RSA_ENCRYPTION if params.is_some_and(Any::is_null) => Inner::Rsa(rsa_key(bits)?),
            RSA_ENCRYPTION => return Err(VerifyError::Malformed),
            // RFC 8410 3: no parameters.
            ID_ED_25519 if params.is_none() => {
                let bytes: &[u8; 32] = bits.try_into().map_err(|_| VerifyError::Malformed)?;
                Inner::Ed25519(
                    ed25519_dalek::VerifyingKey::from_bytes(bytes)
                        .map_err(|_| VerifyError::Malformed)?,
                )
            }
            ID_ED_25519 => return Err(VerifyError::Malformed),
            _ => return Err(VerifyError::UnsupportedAlgorithm),
        };
        Ok(Self(inner))
    }

    /// The key of a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, VerifyError> {
        let spki = SubjectPublicKeyInfoOwned::from_der(der).map_err(|_| VerifyError::Malformed)?;
        Self::from_spki(&spki)
    }

    /// What kind of key this is.
    pub fn kind(&self) -> KeyKind {
        match &self.0 {
            Inner::P256(_) => KeyKind::P256,
            Inner::P384(_) => KeyKind::P384,
            Inner::Rsa(key) => KeyKind::Rsa {
                bits: key.n().bits(),
            },
            Inner::Ed25519(_) => KeyKind::Ed25519,
        }
    }

    /// The key if it is a P-256 key.
    pub fn p256(&self) -> Option<&p256::ecdsa::VerifyingKey> {
        match &self.0 {
            Inner::P256(key) => Some(key),
            _ => None,
        }
    }
}

impl From<p256::ecdsa::VerifyingKey> for PublicKey {
    fn from(key: p256::ecdsa::VerifyingKey) -> Self {
        Self(Inner::P256(key))
    }
}

/// An RSA key (PKCS#1 `RSAPublicKey`) within the size policy, with a
/// well-formed modulus and exponent (odd, the exponent at least 3 and
/// smaller than the modulus).
fn rsa_key(der: &[u8]) -> Result<rsa::RsaPublicKey, VerifyError> {
    let key = rsa::pkcs1::RsaPublicKey::from_der(der).map_err(|_| VerifyError::Malformed)?;
    let modulus = key.modulus.as_bytes();
    let bits = match modulus.first() {
        Some(&top) if top != 0 => modulus.len() * 8 - top.leading_zeros() as usize,
        _ => return Err(VerifyError::Malformed),
    };
    if bits < MIN_RSA_BITS {
        return Err(VerifyError::WeakKey);
    }
    if bits > MAX_RSA_BITS {
        return Err(VerifyError::UnsupportedAlgorithm);
    }
    rsa::RsaPublicKey::new(
        BigUint::from_bytes_be(modulus),
        BigUint::from_bytes_be(key.public_exponent.as_bytes()),
    )
    .map_err(|_| VerifyError::Malformed)
}
