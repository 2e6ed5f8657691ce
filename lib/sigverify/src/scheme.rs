//! Signature schemes and verification.

use alloc::vec::Vec;

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::error::VerifyError;
use crate::key::{Inner, PublicKey};

/// A hash a signature is made over. SHA-1 and MD5 are deliberately absent:
/// collisions for both are practical, so a signature over them proves
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// The digest's length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The digest of `message`.
    pub fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(message).to_vec(),
            Self::Sha384 => Sha384::digest(message).to_vec(),
            Self::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

/// One way of signing a message with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// ECDSA over the hash, the signature a DER `ECDSA-Sig-Value` (X.509,
    /// TLS). Either curve, as X.509 allows.
    EcdsaDer(Hash),
    /// ECDSA over the hash, the signature fixed-width big-endian `r || s`
    /// (64 bytes for P-256, 96 for P-384), as EVE's envelopes carry it.
    EcdsaFixed(Hash),
    /// RSASSA-PKCS1-v1_5 (RFC 8017 8.2).
    RsaPkcs1(Hash),
    /// RSASSA-PSS (RFC 8017 8.1) with MGF1 over the same hash and a salt as
    /// long as the hash: what TLS 1.3's `rsa_pss_rsae_*` schemes require
    /// and the only PSS form Go's X.509 verifies.
    RsaPss(Hash),
    /// Ed25519 (RFC 8032), over the message itself.
    Ed25519,
}

impl PublicKey {
    /// Verifies `signature` over `message` under `scheme` (the message is
    /// hashed here, with the scheme's hash).
    pub fn verify(
        &self,
        scheme: Scheme,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        let verified = match (scheme, &self.0) {
            (Scheme::EcdsaDer(hash), Inner::P256(key)) => {
                p256::ecdsa::Signature::from_der(signature)
                    .is_ok_and(|sig| key.verify_prehash(&hash.digest(message), &sig).is_ok())
            }
            (Scheme::EcdsaDer(hash), Inner::P384(key)) => {
                p384::ecdsa::Signature::from_der(signature)
                    .is_ok_and(|sig| key.verify_prehash(&hash.digest(message), &sig).is_ok())
            }
            (Scheme::EcdsaFixed(hash), Inner::P256(key)) => {
                p256::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify_prehash(&hash.digest(message), &sig).is_ok())
            }
            (Scheme::EcdsaFixed(hash), Inner::P384(key)) => {
                p384::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify_prehash(&hash.digest(message), &sig).is_ok())
            }
            (Scheme::RsaPkcs1(hash), Inner::Rsa(key)) => {
                in_range(key, signature)
                    && key
                        .verify(pkcs1(hash), &hash.digest(message), signature)
                        .is_ok()
            }
            (Scheme::RsaPss(hash), Inner::Rsa(key)) => {
                in_range(key, signature)
                    && key
                        .verify(pss(hash), &hash.digest(message), signature)
                        .is_ok()
            }
            (Scheme::Ed25519, Inner::Ed25519(key)) => {
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok())
            }
            _ => return Err(VerifyError::WrongKeyType),
        };
        if verified {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

/// RFC 8017 8.1.2 and 8.2.2: the signature is exactly as long as the
/// modulus and, as a number, smaller than it. The PSS path of the `rsa`
/// crate reduces a larger value modulo n instead of refusing it, which
/// would accept `s + n` wherever `s` verifies.
fn in_range(key: &RsaPublicKey, signature: &[u8]) -> bool {
    let modulus = key.n().to_bytes_be();
    signature.len() == modulus.len() && signature < &modulus[..]
}

fn pkcs1(hash: Hash) -> Pkcs1v15Sign {
    match hash {
        Hash::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
        Hash::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
        Hash::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
    }
}

fn pss(hash: Hash) -> Pss {
    match hash {
        Hash::Sha256 => Pss::new::<Sha256>(),
        Hash::Sha384 => Pss::new::<Sha384>(),
        Hash::Sha512 => Pss::new::<Sha512>(),
    }
}
