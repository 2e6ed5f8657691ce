//! Object-level encryption of secrets inside configs (`CipherBlock`).
//!
//! Scheme, as EVE implements it: the controller and the device each hold a
//! P-256 ECDH key (the controller's is certified as
//! CERT_TYPE_CONTROLLER_ECDH_EXCHANGE). The shared point `Z = d * Q` is turned
//! into an AES-256 key by SHA-256 over `Z.x || Z.y` (each coordinate 32 bytes,
//! big-endian, left-padded). The secret is AES-256 in CFB mode (128-bit
//! segments) with `initialValue` as IV, and `clearTextSha256` guards the
//! result. The clear text is a serialized [`EncryptionBlock`].

use alloc::vec::Vec;

use aes::Aes256;
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{ProjectivePoint, PublicKey, SecretKey};
use prost::Message;

use crate::common::{
    CipherBlock, CipherContext, EncryptionBlock, EncryptionScheme, KeyExchangeScheme,
};
use crate::sha256;

/// Why a secret could not be recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherError {
    /// The block names a different cipher context than the one supplied.
    ContextMismatch,
    /// The context asks for a key exchange or cipher other than ECDH + AES-256-CFB.
    UnsupportedScheme,
    /// `initialValue` is not 16 bytes.
    BadIv,
    /// The key-agreement backend failed.
    KeyAgreement,
    /// The decrypted bytes do not hash to `clearTextSha256`.
    DigestMismatch,
    /// The clear text is not a valid `EncryptionBlock`.
    Malformed,
}

/// Holder of a private ECDH key. A TPM-resident key implements this with
/// `TPM2_ECDH_ZGen`; [`SecretKey`] implements it in software.
pub trait KeyAgreement {
    /// The shared point with `peer`, as `x || y` (32 bytes each).
    fn shared_point(&self, peer: &PublicKey) -> Result<[u8; 64], CipherError>;
}

impl KeyAgreement for SecretKey {
    fn shared_point(&self, peer: &PublicKey) -> Result<[u8; 64], CipherError> {
        let z = (peer.to_projective() * *self.to_nonzero_scalar()).to_affine();
        let encoded = ProjectivePoint::from(z).to_affine().to_encoded_point(false);
        let (Some(x), Some(y)) = (encoded.x(), encoded.y()) else {
            return Err(CipherError::KeyAgreement);
        };
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(x);
        out[32..].copy_from_slice(y);
        Ok(out)
    }
}

/// The AES-256 key both sides derive from the shared point.
fn derive_key(own: &dyn KeyAgreement, peer: &PublicKey) -> Result<[u8; 32], CipherError> {
    Ok(sha256(&own.shared_point(peer)?))
}

fn check_context(block: &CipherBlock, ctx: &CipherContext) -> Result<(), CipherError> {
    if block.cipher_context_id != ctx.context_id {
        return Err(CipherError::ContextMismatch);
    }
    if ctx.key_exchange_scheme != KeyExchangeScheme::KeaEcdh as i32
        || ctx.encryption_scheme != EncryptionScheme::SaAes256Cfb as i32
    {
        return Err(CipherError::UnsupportedScheme);
    }
    Ok(())
}

fn iv(block: &CipherBlock) -> Result<[u8; 16], CipherError> {
    block
        .initial_value
        .as_slice()
        .try_into()
        .map_err(|_| CipherError::BadIv)
}

/// Decrypts `block` on the device with its ECDH key and the controller's
/// ECDH public key, returning the verified clear text.
pub fn decrypt_cipher_block(
    block: &CipherBlock,
    ctx: &CipherContext,
    device_key: &dyn KeyAgreement,
    controller_key: &PublicKey,
) -> Result<Vec<u8>, CipherError> {
    check_context(block, ctx)?;
    let iv = iv(block)?;
    let key = derive_key(device_key, controller_key)?;
    let mut data = block.cipher_data.clone();
    cfb_mode::Decryptor::<Aes256>::new(&key.into(), &iv.into()).decrypt(&mut data);
    if sha256(&data).as_slice() != block.clear_text_sha256.as_slice() {
        return Err(CipherError::DigestMismatch);
    }
    Ok(data)
}

/// [`decrypt_cipher_block`] followed by decoding the [`EncryptionBlock`].
pub fn decrypt_encryption_block(
    block: &CipherBlock,
    ctx: &CipherContext,
    device_key: &dyn KeyAgreement,
    controller_key: &PublicKey,
) -> Result<EncryptionBlock, CipherError> {
    let clear = decrypt_cipher_block(block, ctx, device_key, controller_key)?;
    EncryptionBlock::decode(clear.as_slice()).map_err(|_| CipherError::Malformed)
}

/// The controller side: encrypts `clear` for the device's ECDH public key.
/// `iv` must be fresh random bytes for every block.
pub fn encrypt_cipher_block(
    clear: &[u8],
    context_id: &str,
    iv: [u8; 16],
    controller_key: &dyn KeyAgreement,
    device_key: &PublicKey,
) -> Result<CipherBlock, CipherError> {
    let key = derive_key(controller_key, device_key)?;
    let mut data = clear.to_vec();
    cfb_mode::Encryptor::<Aes256>::new(&key.into(), &iv.into()).encrypt(&mut data);
    Ok(CipherBlock {
        cipher_context_id: context_id.into(),
        initial_value: iv.to_vec(),
        cipher_data: data,
        clear_text_sha256: sha256(clear).to_vec(),
    })
}
