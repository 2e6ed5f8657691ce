//! The device's keys held by the host's TPM: the device key (signing), the
//! ECDH key (opening secrets the controller seals for the device) and the
//! attestation key (quoting PCRs for the controller), created and used
//! through the host operations of `hostops::tpm`, so their private halves
//! never reach this VM.

use alloc::format;
use alloc::string::String;
use eve_proto::cipher::{CipherError, KeyAgreement};
use eve_proto::p256::PublicKey;
use eve_proto::p256::elliptic_curve::sec1::ToEncodedPoint;
use eve_proto::sign::{SignError, Signer};
use eveagent::{QUOTED_PCRS, Quoter, TpmQuote};
use hostops::tpm::{
    self, Empty, PcrBank, PcrSelect, PcrSelection, QuoteRequest, SignRequest, TpmError,
};
use runtime::service::{self, CallError};

pub struct TpmKey {
    public: PublicKey,
}

/// Why the TPM key is not usable.
#[derive(Debug, Clone, Copy)]
pub enum TpmKeyError {
    /// The call failed: no bus, refused, or the TPM's own error.
    Call(CallError<TpmError>),
    /// The public key is not a P-256 point.
    BadKey,
}

impl core::fmt::Display for TpmKeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TpmKeyError::Call(e) => write!(f, "{e}"),
            TpmKeyError::BadKey => f.write_str("the TPM's public key is not a P-256 point"),
        }
    }
}

impl TpmKey {
    /// Creates the device key in the TPM unless it exists, and learns its
    /// public half.
    pub fn create() -> Result<TpmKey, TpmKeyError> {
        let answer = service::call::<tpm::CreateDeviceKey>(&Empty {}).map_err(TpmKeyError::Call)?;
        let point = answer.point().map_err(|_| TpmKeyError::BadKey)?;
        Ok(TpmKey {
            public: PublicKey::from_sec1_bytes(point).map_err(|_| TpmKeyError::BadKey)?,
        })
    }
}

impl Signer for TpmKey {
    fn public_key(&self) -> PublicKey {
        self.public
    }

    fn sign_digest(&self, sha256: &[u8; 32]) -> Result<[u8; 64], SignError> {
        let answer = service::call::<tpm::Sign>(&SignRequest {
            digest: sha256.to_vec(),
        })
        .map_err(|_| SignError::Backend)?;
        answer.raw().copied().map_err(|_| SignError::Backend)
    }
}

/// The TPM's ECDH key: the shared point is computed in the TPM.
pub struct TpmEcdh;

impl TpmEcdh {
    /// Creates the ECDH key in the TPM unless it exists; its public key.
    pub fn create() -> Result<PublicKey, TpmKeyError> {
        let answer = service::call::<tpm::CreateEcdhKey>(&Empty {}).map_err(TpmKeyError::Call)?;
        let point = answer.point().map_err(|_| TpmKeyError::BadKey)?;
        PublicKey::from_sec1_bytes(point).map_err(|_| TpmKeyError::BadKey)
    }
}

impl KeyAgreement for TpmEcdh {
    fn shared_point(&self, peer: &PublicKey) -> Result<[u8; 64], CipherError> {
        let request = tpm::PublicKey {
            point: peer.to_encoded_point(false).as_bytes().to_vec(),
        };
        let answer = service::call::<tpm::Ecdh>(&request).map_err(|e| {
            log::warn!("the TPM's ECDH: {e}");
            CipherError::KeyAgreement
        })?;
        answer
            .point()
            .copied()
            .map_err(|_| CipherError::KeyAgreement)
    }
}

/// The TPM's attestation key, quoting through the host's `quote`.
pub struct TpmQuoter;

impl TpmQuoter {
    /// Creates the attestation key in the TPM unless it exists; its public
    /// key, which the agent certifies with the device key.
    pub fn create_key() -> Result<PublicKey, TpmKeyError> {
        let answer =
            service::call::<tpm::CreateAttestationKey>(&Empty {}).map_err(TpmKeyError::Call)?;
        let point = answer.point().map_err(|_| TpmKeyError::BadKey)?;
        PublicKey::from_sec1_bytes(point).map_err(|_| TpmKeyError::BadKey)
    }
}

impl Quoter for TpmQuoter {
    fn quote(&self, nonce: &[u8]) -> Result<TpmQuote, String> {
        let bits = QUOTED_PCRS.fold(0u32, |b, i| b | (1 << i));
        let selection = PcrSelection::from_bits(bits).map_err(|e| format!("{e}"))?;
        let request = QuoteRequest {
            nonce: nonce.to_vec(),
            select: Some(PcrSelect::new(PcrBank::Sha256, selection)),
        };
        let answer = service::call::<tpm::Quote>(&request).map_err(|e| format!("{e}"))?;
        // The host checked it; a malformed answer is still refused here
        // rather than sent.
        answer.check().map_err(|e| format!("{e}"))?;
        let pcrs = answer
            .pcrs
            .as_ref()
            .ok_or_else(|| String::from("no PCR values"))?
            .values()
            .map_err(|e| format!("{e}"))?
            .map(|(i, v)| (u32::from(i), v.to_vec()))
            .collect();
        Ok(TpmQuote {
            attest: answer.attest,
            signature: answer.signature,
            pcrs,
            // The host offers no event log yet: EVE's controller takes a
            // quote without one.
            event_log: alloc::vec::Vec::new(),
        })
    }
}
