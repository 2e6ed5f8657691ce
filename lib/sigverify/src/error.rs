//! Why a key or a signature was refused.

use core::fmt;

/// Why a key or a signature was refused. Callers map these onto their own
/// errors; each reason stays distinct so a refusal can be logged exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// A key, signature or algorithm identifier is not well formed.
    Malformed,
    /// An algorithm, curve, hash or key size we do not verify (for
    /// example RSA over 4096 bits, P-521, SHA-224, RSA-PSS keys).
    UnsupportedAlgorithm,
    /// An RSA key under [`crate::MIN_RSA_BITS`] bits.
    WeakKey,
    /// A signature over SHA-1 or MD5.
    WeakHash,
    /// The scheme needs another kind of key (an RSA signature checked with
    /// an ECDSA key, ...): whoever signed, it was not this key.
    WrongKeyType,
    /// The signature does not verify under the key.
    BadSignature,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed key, signature or algorithm identifier",
            Self::UnsupportedAlgorithm => "unsupported key or signature algorithm",
            Self::WeakKey => "RSA key shorter than 2048 bits",
            Self::WeakHash => "signature over SHA-1 or MD5",
            Self::WrongKeyType => "signature scheme does not fit the key",
            Self::BadSignature => "signature does not verify",
        })
    }
}

impl core::error::Error for VerifyError {}
