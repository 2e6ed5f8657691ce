//! Object signing: the [`AuthContainer`] envelope.
//!
//! The rules follow what EVE's client does on the wire:
//!
//! * the signature is over SHA-256 of `protectedPayload.payload`: devices
//!   sign with ECDSA P-256, stored as raw `r || s` (each left-padded to 32
//!   bytes, 64 bytes total); controllers sign with ECDSA the same way (96
//!   bytes for P-384) or with RSA, as RSASSA-PKCS1-v1_5 (what EVE's
//!   `verifyAuthSig` accepts, and what Adam's RSA keys produce);
//! * `senderCertHash` is the first 16 or 32 bytes (per `algo`) of a SHA-256
//!   over the signer's certificate. Devices hash their certificate's **DER**;
//!   a device compares the controller's hash against SHA-256 of the signing
//!   certificate's **PEM text exactly as delivered by `/certs`**. Both
//!   conventions are exposed through [`TrustedSigner`] constructors so callers
//!   cannot mix them up;
//! * `senderCert`, when set, is base64 of the signer's PEM certificate (used at
//!   registration, when the controller does not yet know the onboarding cert);
//! * verification checks, in this order: hash length (16 or 32), algorithm,
//!   hash match, signature. Each failure has its own [`VerifyError`] variant,
//!   mirroring EVE's distinct sender statuses.

use alloc::vec::Vec;

use base64ct::{Base64, Encoding};
use p256::PublicKey;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use prost::Message;
use sigverify::{Hash, KeyKind, Scheme};

use crate::auth::{AuthBody, AuthContainer};
use crate::common::HashAlgorithm;
use crate::sha256;
use crate::x509::{self, CertError};

/// Why producing a signature failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignError {
    /// The key backend (software or TPM) refused or failed to sign.
    Backend,
    /// The secret key bytes are not a valid P-256 scalar.
    InvalidKey,
    /// `algo` was not one of the SHA-256 variants.
    UnsupportedAlgorithm,
}

/// Something that can produce ECDSA P-256 signatures over a SHA-256 digest.
///
/// The private key never has to leave the implementation: a TPM-backed key
/// implements this trait by calling `TPM2_Sign` on the digest.
pub trait Signer {
    /// The public half, used to build certificates and checked by peers.
    fn public_key(&self) -> PublicKey;
    /// Signs a SHA-256 digest, returning raw `r || s` (32 bytes each).
    fn sign_digest(&self, sha256: &[u8; 32]) -> Result<[u8; 64], SignError>;
}

/// Whatever signs envelopes: devices through [`Signer`] (ECDSA P-256, raw
/// `r || s`), and a controller with any key EVE verifies (its RSA signer
/// makes PKCS#1 v1.5 signatures over SHA-256 of the payload).
pub trait EnvelopeSigner {
    /// The envelope signature over `payload`, as `signatureHash` carries it.
    fn sign_payload(&self, payload: &[u8]) -> Result<Vec<u8>, SignError>;
}

impl<T: Signer + ?Sized> EnvelopeSigner for T {
    fn sign_payload(&self, payload: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(self.sign_digest(&sha256(payload))?.to_vec())
    }
}

/// A [`Signer`] holding the P-256 key in memory. Signatures are
/// deterministic (RFC 6979), which keeps test vectors reproducible.
#[derive(Clone)]
pub struct SoftwareSigner {
    key: SigningKey,
}

impl SoftwareSigner {
    /// Wraps an existing secret key.
    pub fn new(secret: &p256::SecretKey) -> Self {
        Self {
            key: SigningKey::from(secret),
        }
    }

    /// Builds a signer from a big-endian 32-byte scalar.
    pub fn from_bytes(scalar: &[u8; 32]) -> Result<Self, SignError> {
        let key = SigningKey::from_slice(scalar).map_err(|_| SignError::InvalidKey)?;
        Ok(Self { key })
    }

    /// Parses a PKCS#8 or SEC1 ("EC PRIVATE KEY") PEM private key.
    pub fn from_pem(pem: &str) -> Result<Self, SignError> {
        use p256::pkcs8::DecodePrivateKey;
        if let Ok(secret) = p256::SecretKey::from_pkcs8_pem(pem) {
            return Ok(Self::new(&secret));
        }
        let secret = p256::SecretKey::from_sec1_pem(pem).map_err(|_| SignError::InvalidKey)?;
        Ok(Self::new(&secret))
    }
}

impl Signer for SoftwareSigner {
    fn public_key(&self) -> PublicKey {
        PublicKey::from(self.key.verifying_key())
    }

    fn sign_digest(&self, sha256: &[u8; 32]) -> Result<[u8; 64], SignError> {
        let sig: Signature = self
            .key
            .sign_prehash(sha256)
            .map_err(|_| SignError::Backend)?;
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        Ok(out)
    }
}

/// How the signer identifies itself inside the envelope.
#[derive(Debug, Clone, Copy)]
pub struct SenderIdentity<'a> {
    /// Full SHA-256 fingerprint of the signer's certificate (DER for devices).
    pub cert_hash: [u8; 32],
    /// Which truncation to put on the wire.
    pub algo: HashAlgorithm,
    /// PEM of the signer's certificate, to embed (base64) as `senderCert`.
    /// EVE sets it only when registering with the onboarding certificate.
    pub embed_cert_pem: Option<&'a [u8]>,
}

/// Wraps `payload` in a signed [`AuthContainer`].
pub fn sign_auth_container<S: EnvelopeSigner + ?Sized>(
    payload: Vec<u8>,
    signer: &S,
    sender: &SenderIdentity<'_>,
) -> Result<AuthContainer, SignError> {
    let hash_len = hash_len(sender.algo).ok_or(SignError::UnsupportedAlgorithm)?;
    let signature = signer.sign_payload(&payload)?;
    Ok(AuthContainer {
        protected_payload: Some(AuthBody { payload }),
        algo: sender.algo as i32,
        sender_cert_hash: sender.cert_hash[..hash_len].to_vec(),
        signature_hash: signature,
        sender_cert: sender
            .embed_cert_pem
            .map(|pem| Base64::encode_string(pem).into_bytes())
            .unwrap_or_default(),
        cipher_context: None,
        cipher_data: None,
    })
}

fn hash_len(algo: HashAlgorithm) -> Option<usize> {
    match algo {
        HashAlgorithm::Sha25616bytes => Some(16),
        HashAlgorithm::Sha25632bytes => Some(32),
        HashAlgorithm::Invalid => None,
    }
}

/// Why an envelope was rejected. Variants follow EVE's verify order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The bytes are not an `AuthContainer` at all.
    Malformed,
    /// `senderCertHash` is neither 16 nor 32 bytes long.
    BadHashLength(usize),
    /// `algo` is not a SHA-256 variant we know.
    UnsupportedAlgorithm(i32),
    /// `senderCertHash` does not name the certificate we trust.
    UnknownSenderCert,
    /// The signature does not verify under the trusted key.
    BadSignature,
}

/// A public key we accept envelopes from, and the fingerprint that names it.
#[derive(Debug, Clone)]
pub struct TrustedSigner {
    key: sigverify::PublicKey,
    cert_hash: [u8; 32],
}

impl TrustedSigner {
    /// Trusts the P-256 `key`, identified by the full 32-byte `cert_hash`.
    pub fn new(key: &PublicKey, cert_hash: [u8; 32]) -> Self {
        Self {
            key: VerifyingKey::from(key).into(),
            cert_hash,
        }
    }

    /// The signing certificate of a verified `/certs` set
    /// ([`x509::verify_controller_certs`] checked its key is one EVE signs
    /// envelopes with).
    pub fn from_controller(cert: &x509::ControllerCert) -> Self {
        Self {
            key: cert.key.clone(),
            cert_hash: cert.cert_hash,
        }
    }

    /// The controller's signing certificate, as the PEM text delivered by
    /// `/certs`. EVE fingerprints these bytes verbatim (not the DER), so any
    /// re-encoding would break the hash match.
    pub fn from_controller_pem(pem: &[u8]) -> Result<Self, CertError> {
        let cert = x509::parse_pem(pem)?;
        let key = x509::signature_key(&cert)?;
        if !matches!(
            key.kind(),
            KeyKind::P256 | KeyKind::P384 | KeyKind::Rsa { .. }
        ) {
            return Err(CertError::UnsupportedKey);
        }
        Ok(Self {
            key,
            cert_hash: sha256(pem),
        })
    }

    /// A device certificate in DER: devices fingerprint the DER encoding.
    pub fn from_device_der(der: &[u8]) -> Result<Self, CertError> {
        let cert = x509::parse_der(der)?;
        let key = x509::p256_public_key(&cert)?;
        Ok(Self::new(&key, sha256(der)))
    }

    /// The certificate a registering device embedded in `senderCert`
    /// (base64 of PEM), fingerprinted over its DER as the device does.
    pub fn from_embedded_sender_cert(container: &AuthContainer) -> Result<Self, CertError> {
        let pem = Base64::decode_vec(
            core::str::from_utf8(&container.sender_cert).map_err(|_| CertError::Malformed)?,
        )
        .map_err(|_| CertError::Malformed)?;
        let cert = x509::parse_pem(&pem)?;
        let der = x509::to_der(&cert)?;
        Self::from_device_der(&der)
    }

    /// The full SHA-256 fingerprint this signer is known by.
    pub fn cert_hash(&self) -> &[u8; 32] {
        &self.cert_hash
    }
}

/// Checks an envelope and returns its payload (empty if absent, as in EVE).
pub fn verify_auth_container<'a>(
    container: &'a AuthContainer,
    trusted: &TrustedSigner,
) -> Result<&'a [u8], VerifyError> {
    let hash = &container.sender_cert_hash;
    if hash.len() != 16 && hash.len() != 32 {
        return Err(VerifyError::BadHashLength(hash.len()));
    }
    let expected: &[u8] = match HashAlgorithm::try_from(container.algo) {
        Ok(HashAlgorithm::Sha25632bytes) => &trusted.cert_hash,
        Ok(HashAlgorithm::Sha25616bytes) => &trusted.cert_hash[..16],
        _ => return Err(VerifyError::UnsupportedAlgorithm(container.algo)),
    };
    if hash.as_slice() != expected {
        return Err(VerifyError::UnknownSenderCert);
    }
    let payload = container
        .protected_payload
        .as_ref()
        .map_or(&[][..], |b| b.payload.as_slice());
    // EVE hashes the payload with SHA-256 whatever the key.
    let scheme = match trusted.key.kind() {
        KeyKind::Rsa { .. } => Scheme::RsaPkcs1(Hash::Sha256),
        _ => Scheme::EcdsaFixed(Hash::Sha256),
    };
    trusted
        .key
        .verify(scheme, payload, &container.signature_hash)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(payload)
}

/// Decodes and verifies a serialized envelope, returning an owned payload.
pub fn open_auth_container(bytes: &[u8], trusted: &TrustedSigner) -> Result<Vec<u8>, VerifyError> {
    let container = AuthContainer::decode(bytes).map_err(|_| VerifyError::Malformed)?;
    verify_auth_container(&container, trusted).map(<[u8]>::to_vec)
}
