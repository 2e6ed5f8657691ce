//! The device key held by the host's TPM: created and used through the
//! bus's `tpm` target, so its private half never reaches this VM.

use eve_proto::p256::PublicKey;
use eve_proto::sign::{SignError, Signer};
use tpmwire::{RequestRepr, ResponseRepr};

use core::time::Duration;

/// A TPM operation can take a while (key creation on a real TPM: seconds).
const TPM_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TpmKey {
    public: PublicKey,
}

/// Why the TPM key is not usable.
#[derive(Debug, Clone, Copy)]
pub enum TpmKeyError {
    Bus(runtime::bus::BusError),
    /// The host answered with a failure (denied, no TPM, TPM error).
    Failure(tpmwire::Failure),
    /// The answer was not the one asked for, or not parseable.
    BadAnswer,
}

impl core::fmt::Display for TpmKeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TpmKeyError::Bus(e) => write!(f, "bus: {e}"),
            TpmKeyError::Failure(failure) => write!(f, "host refused: {failure:?}"),
            TpmKeyError::BadAnswer => f.write_str("unexpected answer"),
        }
    }
}

fn call(request: RequestRepr<'_>) -> Result<alloc::vec::Vec<u8>, TpmKeyError> {
    let payload = request.to_vec().map_err(|_| TpmKeyError::BadAnswer)?;
    runtime::bus::call(tpmwire::TARGET, &payload, TPM_TIMEOUT).map_err(TpmKeyError::Bus)
}

impl TpmKey {
    /// Creates the device key in the TPM unless it exists, and learns its
    /// public half.
    pub fn create() -> Result<TpmKey, TpmKeyError> {
        let answer = call(RequestRepr::CreateDeviceKey)?;
        match ResponseRepr::from_bytes(&answer) {
            Ok(ResponseRepr::PublicKey(point)) => Ok(TpmKey {
                public: PublicKey::from_sec1_bytes(point).map_err(|_| TpmKeyError::BadAnswer)?,
            }),
            Ok(ResponseRepr::Failure(f)) => Err(TpmKeyError::Failure(f)),
            _ => Err(TpmKeyError::BadAnswer),
        }
    }
}

impl Signer for TpmKey {
    fn public_key(&self) -> PublicKey {
        self.public
    }

    fn sign_digest(&self, sha256: &[u8; 32]) -> Result<[u8; 64], SignError> {
        let answer =
            call(RequestRepr::SignDigest { digest: sha256 }).map_err(|_| SignError::Backend)?;
        match ResponseRepr::from_bytes(&answer) {
            Ok(ResponseRepr::Signature(signature)) => Ok(*signature),
            _ => Err(SignError::Backend),
        }
    }
}
