//! The device key held by the host's TPM: created and used through the
//! host operations of `hostops::tpm`, so its private half never reaches
//! this VM.

use eve_proto::p256::PublicKey;
use eve_proto::sign::{SignError, Signer};
use hostops::tpm::{self, Empty, SignRequest, TpmError};
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
