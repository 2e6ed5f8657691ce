//! The host side of the `"tpm"` bus target: decodes a service's request,
//! checks the manifest's grants, runs the TPM commands and encodes the
//! answer.
//!
//! No operation returns private key material, because none exists outside
//! the TPM: the device key and the attestation key are generated inside it
//! with `fixedTPM | fixedParent`, so the TPM itself refuses to export them,
//! and the wire format ([`tpmwire`]) has no message that could carry one.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Mutex;

use tpmwire::{Failure, Op, PcrBank, PcrSelection, PcrValues, RequestRepr, ResponseRepr};

use crate::identity::{EkCertError, KeyError};
use crate::keys::KeyRole;
use crate::tpm::{Quote, Tpm, TpmCommandError};
use crate::transport::TpmTransport;

/// What a manifest may grant a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Create the device key (`create-device-key`).
    CreateDeviceKey,
    /// Sign digests with the device key (`sign`).
    Sign,
    /// Read PCR values (`read-pcrs`).
    ReadPcrs,
    /// Quote PCRs with the attestation key (`quote`).
    Quote,
    /// Read the EK certificate (`read-ek-cert`).
    ReadEkCert,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 5] = [
        Operation::CreateDeviceKey,
        Operation::Sign,
        Operation::ReadPcrs,
        Operation::Quote,
        Operation::ReadEkCert,
    ];

    /// The operation's name in a manifest.
    pub const fn manifest_name(self) -> &'static str {
        match self {
            Operation::CreateDeviceKey => "create-device-key",
            Operation::Sign => "sign",
            Operation::ReadPcrs => "read-pcrs",
            Operation::Quote => "quote",
            Operation::ReadEkCert => "read-ek-cert",
        }
    }

    /// The grants that allow a request: reading the device key's public
    /// key is allowed to whoever may create or use the key.
    fn allowing(op: Op) -> &'static [Operation] {
        match op {
            Op::CreateDeviceKey => &[Operation::CreateDeviceKey],
            Op::DevicePublicKey => &[Operation::CreateDeviceKey, Operation::Sign],
            Op::SignDigest => &[Operation::Sign],
            Op::ReadPcrs => &[Operation::ReadPcrs],
            Op::Quote => &[Operation::Quote],
            Op::ReadEkCert => &[Operation::ReadEkCert],
        }
    }
}

/// A manifest names a TPM operation this host does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown TPM operation {0:?} (known: create-device-key, sign, read-pcrs, quote, read-ek-cert)"
)]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Operation::ALL
            .into_iter()
            .find(|op| op.manifest_name() == name)
            .ok_or_else(|| UnknownOperation(name.to_owned()))
    }
}

/// Which service may do what, from the node's manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    by_service: HashMap<String, HashSet<Operation>>,
}

impl Grants {
    /// No grants: every request is denied.
    pub fn new() -> Self {
        Grants::default()
    }

    /// Allows `service` to perform `operation`.
    pub fn grant(&mut self, service: &str, operation: Operation) -> &mut Self {
        self.by_service
            .entry(service.to_owned())
            .or_default()
            .insert(operation);
        self
    }

    /// Whether `service` may perform `operation`.
    pub fn allows(&self, service: &str, operation: Operation) -> bool {
        self.by_service
            .get(service)
            .is_some_and(|ops| ops.contains(&operation))
    }
}

/// An answer before encoding; owns what [`ResponseRepr`] borrows.
enum Answer {
    PublicKey([u8; tpmwire::PUBLIC_KEY_LEN]),
    Signature([u8; tpmwire::SIGNATURE_LEN]),
    Pcrs {
        bank: PcrBank,
        selection: PcrSelection,
        digests: Vec<u8>,
    },
    Quote {
        quote: Quote,
        attestation_key: [u8; tpmwire::PUBLIC_KEY_LEN],
        bank: PcrBank,
        selection: PcrSelection,
        digests: Vec<u8>,
    },
    EkCert(Vec<u8>),
}

impl Answer {
    fn encode(&self) -> Result<Vec<u8>, tpmwire::WireError> {
        match self {
            Answer::PublicKey(key) => ResponseRepr::PublicKey(key).to_vec(),
            Answer::Signature(sig) => ResponseRepr::Signature(sig).to_vec(),
            Answer::Pcrs {
                bank,
                selection,
                digests,
            } => ResponseRepr::Pcrs(PcrValues::new(*bank, *selection, digests)?).to_vec(),
            Answer::Quote {
                quote,
                attestation_key,
                bank,
                selection,
                digests,
            } => ResponseRepr::Quote {
                attest: &quote.attest,
                signature: &quote.signature,
                attestation_key,
                pcrs: PcrValues::new(*bank, *selection, digests)?,
            }
            .to_vec(),
            Answer::EkCert(der) => ResponseRepr::EkCert(der).to_vec(),
        }
    }
}

fn command_failure(e: &TpmCommandError) -> Failure {
    match e {
        TpmCommandError::Transport { .. } => Failure::Unavailable,
        TpmCommandError::ResponseCode { rc, .. } => Failure::Tpm(*rc),
        TpmCommandError::Malformed { .. } => Failure::TpmMalformed,
    }
}

impl From<TpmCommandError> for Failure {
    fn from(e: TpmCommandError) -> Self {
        command_failure(&e)
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Missing(_) => Failure::NotProvisioned,
            KeyError::Mismatch(_) => Failure::KeyMismatch,
            KeyError::Command(e) => command_failure(&e),
        }
    }
}

impl From<EkCertError> for Failure {
    fn from(e: EkCertError) -> Self {
        match e {
            EkCertError::NotProvisioned => Failure::NotProvisioned,
            EkCertError::Command(e) => command_failure(&e),
        }
    }
}

/// Runs granted TPM requests for the node's services, one at a time.
pub struct Mediator {
    tpm: Mutex<Tpm<Box<dyn TpmTransport + Send>>>,
    grants: Grants,
}

impl Mediator {
    /// Takes the TPM behind `transport` and starts it if nobody has.
    pub fn new(
        transport: impl TpmTransport + Send + 'static,
        grants: Grants,
    ) -> Result<Self, TpmCommandError> {
        let mut tpm = Tpm::new(Box::new(transport) as Box<dyn TpmTransport + Send>);
        tpm.startup()?;
        Ok(Mediator {
            tpm: Mutex::new(tpm),
            grants,
        })
    }

    /// Answers one request from `caller` (the bus's authenticated sender
    /// name) with an encoded [`ResponseRepr`]. Refusals and failures are
    /// answers too, so this always returns a response.
    pub fn handle(&self, caller: &str, request: &[u8]) -> Vec<u8> {
        let answer = self.answer(caller, request);
        let encoded = match &answer {
            Ok(answer) => answer.encode(),
            Err(failure) => ResponseRepr::Failure(*failure).to_vec(),
        };
        encoded.unwrap_or_else(|e| {
            log::warn!("tpm: answer for {caller} does not fit the wire format: {e}");
            ResponseRepr::Failure(Failure::TpmMalformed)
                .to_vec()
                .expect("a failure always encodes")
        })
    }

    fn answer(&self, caller: &str, request: &[u8]) -> Result<Answer, Failure> {
        let request = RequestRepr::from_bytes(request).map_err(|e| {
            log::warn!("tpm: malformed request from {caller}: {e}");
            Failure::BadRequest
        })?;
        let op = request.op();
        if !Operation::allowing(op)
            .iter()
            .any(|&granted| self.grants.allows(caller, granted))
        {
            log::warn!("tpm: denied {op:?} to {caller}: not granted by the manifest");
            return Err(Failure::Denied);
        }
        // A panic elsewhere while holding the lock leaves no half-done state
        // here: the TPM's own state is consistent after every command.
        let mut tpm = self.tpm.lock().unwrap_or_else(|p| p.into_inner());
        let result = run(&mut tpm, request);
        match &result {
            Ok(_) => log::debug!("tpm: {op:?} for {caller} done"),
            Err(failure) => log::warn!("tpm: {op:?} for {caller} failed: {failure}"),
        }
        result
    }
}

fn run<T: TpmTransport>(tpm: &mut Tpm<T>, request: RequestRepr<'_>) -> Result<Answer, Failure> {
    Ok(match request {
        RequestRepr::CreateDeviceKey => Answer::PublicKey(tpm.ensure_key(KeyRole::Device)?.point),
        RequestRepr::DevicePublicKey => Answer::PublicKey(tpm.existing_key(KeyRole::Device)?.point),
        RequestRepr::SignDigest { digest } => {
            tpm.existing_key(KeyRole::Device)?;
            Answer::Signature(tpm.sign(KeyRole::Device.handle(), digest)?)
        }
        RequestRepr::ReadPcrs { bank, selection } => Answer::Pcrs {
            bank,
            selection,
            digests: tpm.pcr_read(bank, selection)?.concat(),
        },
        RequestRepr::Quote {
            nonce,
            bank,
            selection,
        } => {
            let key = tpm.ensure_key(KeyRole::Attestation)?;
            let quote = tpm.quote(KeyRole::Attestation.handle(), nonce, bank, selection)?;
            Answer::Quote {
                quote,
                attestation_key: key.point,
                bank,
                selection,
                digests: tpm.pcr_read(bank, selection)?.concat(),
            }
        }
        RequestRepr::ReadEkCert => Answer::EkCert(tpm.ek_certificate()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(op.manifest_name().parse::<Operation>(), Ok(op));
        }
        assert_eq!(
            "export-key".parse::<Operation>(),
            Err(UnknownOperation("export-key".into()))
        );
    }

    #[test]
    fn grants_are_per_service() {
        let mut grants = Grants::new();
        grants
            .grant("zedagent", Operation::Sign)
            .grant("zedagent", Operation::Quote);
        assert!(grants.allows("zedagent", Operation::Sign));
        assert!(!grants.allows("zedagent", Operation::ReadEkCert));
        assert!(!grants.allows("nim", Operation::Sign));
    }
}
