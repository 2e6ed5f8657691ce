//! The TPM operations services ask the host for (`hostops::tpm`), run
//! one at a time against the node's TPM.
//!
//! Which service may run which operation is the manifest's business, and
//! the bus broker checks it before a request gets here; the mediator
//! checks that each request holds what its operation needs, runs the TPM
//! commands and builds the answer.
//!
//! No operation returns private key material, because none exists outside
//! the TPM: the device, attestation and ECDH keys are generated inside it
//! with `fixedTPM | fixedParent`, so the TPM itself refuses to export them,
//! and no `hostops::tpm` message has a field that could carry one. (The
//! ECDH operation returns a shared point, which is what it is for.)

use std::sync::Mutex;

use hostops::tpm::{
    EkCert, Invalid, PcrBank, PcrSelect, PcrSelection, Pcrs, PublicKey, QuoteRequest,
    QuoteResponse, SharedPoint, SignRequest, Signature, TpmError, TpmErrorCode,
};

use crate::identity::{EkCertError, KeyError};
use crate::keys::KeyRole;
use crate::tpm::{Tpm, TpmCommandError};
use crate::transport::TpmTransport;

/// Why an operation was not carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The request does not hold what the operation needs; the TPM was
    /// not used.
    #[error("bad request: {0}")]
    BadRequest(Invalid),
    /// The TPM could not do it.
    #[error("{0}")]
    Failed(TpmError),
}

impl From<TpmCommandError> for Refusal {
    fn from(e: TpmCommandError) -> Self {
        Refusal::Failed(match e {
            TpmCommandError::Transport { .. } => TpmError::new(TpmErrorCode::Unavailable),
            TpmCommandError::ResponseCode { rc, .. } => TpmError::refused(rc),
            TpmCommandError::Malformed { .. } => TpmError::new(TpmErrorCode::TpmMalformed),
        })
    }
}

impl From<KeyError> for Refusal {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Missing(_) => Refusal::Failed(TpmError::new(TpmErrorCode::NotProvisioned)),
            KeyError::Mismatch(_) => Refusal::Failed(TpmError::new(TpmErrorCode::KeyMismatch)),
            KeyError::Command(e) => e.into(),
        }
    }
}

impl From<EkCertError> for Refusal {
    fn from(e: EkCertError) -> Self {
        match e {
            EkCertError::NotProvisioned => {
                Refusal::Failed(TpmError::new(TpmErrorCode::NotProvisioned))
            }
            EkCertError::Command(e) => e.into(),
        }
    }
}

/// An answer the wire cannot carry (the TPM said something out of bounds)
/// is the TPM's failure, not the caller's.
fn malformed(_: Invalid) -> Refusal {
    Refusal::Failed(TpmError::new(TpmErrorCode::TpmMalformed))
}

/// Runs the node's services' TPM operations, one at a time.
pub struct Mediator {
    tpm: Mutex<Tpm<Box<dyn TpmTransport + Send>>>,
}

impl Mediator {
    /// Takes the TPM behind `transport` and starts it if nobody has.
    pub fn new(transport: impl TpmTransport + Send + 'static) -> Result<Self, TpmCommandError> {
        let mut tpm = Tpm::new(Box::new(transport) as Box<dyn TpmTransport + Send>);
        tpm.startup()?;
        Ok(Mediator {
            tpm: Mutex::new(tpm),
        })
    }

    /// Runs `f` with the TPM. A panic elsewhere while holding the lock
    /// leaves no half-done state here: the TPM's own state is consistent
    /// after every command.
    fn with<R>(
        &self,
        f: impl FnOnce(&mut Tpm<Box<dyn TpmTransport + Send>>) -> Result<R, Refusal>,
    ) -> Result<R, Refusal> {
        let mut tpm = self.tpm.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut tpm)
    }

    /// Creates the device key unless it exists; its public key.
    pub fn create_device_key(&self) -> Result<PublicKey, Refusal> {
        self.with(|tpm| {
            Ok(PublicKey {
                point: tpm.ensure_key(KeyRole::Device)?.point.to_vec(),
            })
        })
    }

    /// The device key's public key, if it was created.
    pub fn device_public_key(&self) -> Result<PublicKey, Refusal> {
        self.with(|tpm| {
            Ok(PublicKey {
                point: tpm.existing_key(KeyRole::Device)?.point.to_vec(),
            })
        })
    }

    /// Signs a SHA-256 digest with the device key.
    pub fn sign(&self, request: &SignRequest) -> Result<Signature, Refusal> {
        let digest = request.digest().map_err(Refusal::BadRequest)?;
        self.with(|tpm| {
            tpm.existing_key(KeyRole::Device)?;
            Ok(Signature {
                signature: tpm.sign(KeyRole::Device.handle(), digest)?.to_vec(),
            })
        })
    }

    /// Creates the ECDH key unless it exists; its public key.
    pub fn create_ecdh_key(&self) -> Result<PublicKey, Refusal> {
        self.with(|tpm| {
            Ok(PublicKey {
                point: tpm.ensure_key(KeyRole::Ecdh)?.point.to_vec(),
            })
        })
    }

    /// Creates the attestation key unless it exists; its public key, for
    /// the device to certify before the controller takes its quotes.
    pub fn create_attestation_key(&self) -> Result<PublicKey, Refusal> {
        self.with(|tpm| {
            Ok(PublicKey {
                point: tpm.ensure_key(KeyRole::Attestation)?.point.to_vec(),
            })
        })
    }

    /// The point the ECDH key shares with `peer`: what opens a secret the
    /// controller sealed for the key. The private key stays in the TPM.
    pub fn ecdh(&self, peer: &PublicKey) -> Result<SharedPoint, Refusal> {
        let point = peer.point().map_err(Refusal::BadRequest)?;
        self.with(|tpm| {
            tpm.existing_key(KeyRole::Ecdh)?;
            Ok(SharedPoint {
                point: tpm.ecdh_zgen(KeyRole::Ecdh.handle(), point)?.to_vec(),
            })
        })
    }

    /// Reads PCR values.
    pub fn read_pcrs(&self, request: &PcrSelect) -> Result<Pcrs, Refusal> {
        let (bank, selection) = request.checked().map_err(Refusal::BadRequest)?;
        self.with(|tpm| read_pcrs(tpm, bank, selection))
    }

    /// Quotes PCRs with the attestation key (created if missing), with the
    /// PCR values read right after.
    pub fn quote(&self, request: &QuoteRequest) -> Result<QuoteResponse, Refusal> {
        let (nonce, bank, selection) = request.checked().map_err(Refusal::BadRequest)?;
        self.with(|tpm| {
            let key = tpm.ensure_key(KeyRole::Attestation)?;
            let quote = tpm.quote(KeyRole::Attestation.handle(), nonce, bank, selection)?;
            let answer = QuoteResponse {
                attest: quote.attest,
                signature: quote.signature.to_vec(),
                attestation_key: key.point.to_vec(),
                pcrs: Some(read_pcrs(tpm, bank, selection)?),
            };
            answer.check().map_err(malformed)?;
            Ok(answer)
        })
    }

    /// The endorsement key certificate.
    pub fn read_ek_cert(&self) -> Result<EkCert, Refusal> {
        self.with(|tpm| {
            let answer = EkCert {
                der: tpm.ek_certificate()?,
            };
            answer.der().map_err(malformed)?;
            Ok(answer)
        })
    }
}

fn read_pcrs<T: TpmTransport>(
    tpm: &mut Tpm<T>,
    bank: PcrBank,
    selection: PcrSelection,
) -> Result<Pcrs, Refusal> {
    Ok(Pcrs {
        select: Some(PcrSelect::new(bank, selection)),
        digests: tpm
            .pcr_read(bank, selection)?
            .into_iter()
            .map(|d| d.to_vec())
            .collect(),
    })
}
