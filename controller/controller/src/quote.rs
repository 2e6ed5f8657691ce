//! Verification of a TPM 2.0 quote (`ZAttestQuote`) against the device's
//! attestation key and the nonce the controller handed out.
//!
//! `attestData` is a marshalled `TPMS_ATTEST` (TPM 2.0 spec, part 2, 10.12):
//! magic, type `TPM_ST_ATTEST_QUOTE`, qualified signer, `extraData` (our
//! nonce), clock info, firmware version, then `TPMS_QUOTE_INFO`: the PCR
//! selection and the digest of the selected PCRs. The signature is ECDSA
//! P-256 over SHA-256 of `attestData`, as raw `r || s` or DER.

use eve_proto::attest::{TpmHashAlgo, ZAttestQuote};
use eve_proto::p256::PublicKey;
use eve_proto::p256::ecdsa::signature::hazmat::PrehashVerifier;
use eve_proto::p256::ecdsa::{Signature, VerifyingKey};
use eve_proto::sha256;

const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
const TPM_ALG_SHA256: u16 = 0x000b;

/// Why a quote was refused; each maps to a `ZAttestResponseCode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The signature does not verify under the attestation key.
    #[error("quote signature does not verify")]
    BadSignature,
    /// `attestData` is not a well-formed `TPMS_ATTEST` quote.
    #[error("attestation data is malformed")]
    Malformed,
    /// The quote does not carry the outstanding nonce.
    #[error("nonce mismatch")]
    NonceMismatch,
    /// A PCR bank other than SHA-256 was selected.
    #[error("unsupported PCR hash algorithm {0:#06x}")]
    HashAlgorithm(u16),
    /// A selected PCR has no value in `pcr_values`.
    #[error("PCR {0} selected but not reported")]
    MissingPcr(u32),
    /// The reported PCR values do not hash to the quoted digest.
    #[error("PCR values do not match the quoted digest")]
    DigestMismatch,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], QuoteError> {
        if self.0.len() < n {
            return Err(QuoteError::Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, QuoteError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, QuoteError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, QuoteError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn sized(&mut self) -> Result<&'a [u8], QuoteError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

/// Checks signature, nonce and PCR digest of `quote`.
pub fn verify_quote(quote: &ZAttestQuote, key: &PublicKey, nonce: &[u8]) -> Result<(), QuoteError> {
    let sig = if quote.signature.len() == 64 {
        Signature::from_slice(&quote.signature)
    } else {
        Signature::from_der(&quote.signature)
    }
    .map_err(|_| QuoteError::BadSignature)?;
    VerifyingKey::from(key)
        .verify_prehash(&sha256(&quote.attest_data), &sig)
        .map_err(|_| QuoteError::BadSignature)?;

    let mut r = Reader(&quote.attest_data);
    if r.u32()? != TPM_GENERATED_VALUE || r.u16()? != TPM_ST_ATTEST_QUOTE {
        return Err(QuoteError::Malformed);
    }
    r.sized()?; // qualifiedSigner
    let extra = r.sized()?;
    r.take(17 + 8)?; // clockInfo, firmwareVersion
    if extra != nonce {
        return Err(QuoteError::NonceMismatch);
    }
    let mut selected = Vec::new();
    for _ in 0..r.u32()? {
        let alg = r.u16()?;
        if alg != TPM_ALG_SHA256 {
            return Err(QuoteError::HashAlgorithm(alg));
        }
        let n = r.u8()? as usize;
        for (byte_idx, bits) in r.take(n)?.iter().enumerate() {
            for bit in 0..8 {
                if bits & (1 << bit) != 0 {
                    selected.push((byte_idx * 8 + bit) as u32);
                }
            }
        }
    }
    let digest = r.sized()?;
    let mut concat = Vec::new();
    for idx in selected {
        let value = quote
            .pcr_values
            .iter()
            .find(|p| p.index == idx && p.hash_algo == TpmHashAlgo::Sha256 as i32)
            .ok_or(QuoteError::MissingPcr(idx))?;
        concat.extend_from_slice(&value.value);
    }
    if sha256(&concat).as_slice() != digest {
        return Err(QuoteError::DigestMismatch);
    }
    Ok(())
}
