//! The `tpm` target: the node's TPM, which the host owns, behind
//! `eve_tpm::Mediator`. With `--tpm none` every operation fails as
//! `Unavailable`, which is what a board whose TPM is gone answers too.

use std::{error::Error, path::PathBuf, sync::Arc};

use eve_broker::{RpcError, RpcHandler};
use eve_tpm::{DeviceTransport, Mediator, Refusal, Swtpm};
use hostops::tpm::{
    CreateAttestationKey, CreateDeviceKey, CreateEcdhKey, DevicePublicKey, Ecdh, Quote, ReadEkCert,
    ReadPcrs, Sign, Tpm, TpmError, TpmErrorCode,
};
use hostops::{Operation, Target, TargetSpec};

use super::{HostTarget, Refused, TargetContext, serve};
use crate::{nodebus::TpmChoice, orphans};

/// The node's TPM as a host target.
pub struct TpmTarget {
    /// `None` when the node has no TPM.
    mediator: Option<Mediator>,
    backing: Backing,
}

/// What the TPM is.
enum Backing {
    /// A software TPM the host started; stopped when the target is dropped.
    Swtpm(Swtpm),
    /// A TPM character device.
    Device(PathBuf),
    None,
}

/// Opens the TPM `context.tpm` names: starts swtpm (after stopping one a
/// dead host left running) with its state in `<state-dir>/tpm`, or opens
/// the TPM device, or none.
pub fn open(
    context: &TargetContext<'_>,
) -> Result<Arc<dyn HostTarget>, Box<dyn Error + Send + Sync>> {
    let target = match context.tpm {
        TpmChoice::Swtpm => {
            if let Some(orphan) = orphans::reap(&Swtpm::pid_file(context.state_dir))? {
                log::warn!(
                    "tpm: stopped swtpm {} that a previous host left running",
                    orphan.pid
                );
            }
            let swtpm = Swtpm::start(context.state_dir).map_err(|e| {
                format!("starting swtpm (or run with --tpm device or --tpm none): {e}")
            })?;
            TpmTarget {
                mediator: Some(Mediator::new(swtpm.transport()?)?),
                backing: Backing::Swtpm(swtpm),
            }
        }
        TpmChoice::Device(path) => TpmTarget {
            mediator: Some(Mediator::new(DeviceTransport::open(path)?)?),
            backing: Backing::Device(path.clone()),
        },
        TpmChoice::None => TpmTarget::absent(),
    };
    Ok(Arc::new(target))
}

impl TpmTarget {
    /// A node without a TPM: every operation fails as `Unavailable`.
    pub fn absent() -> TpmTarget {
        TpmTarget {
            mediator: None,
            backing: Backing::None,
        }
    }

    fn mediator(&self) -> Result<&Mediator, Refused<TpmError>> {
        self.mediator
            .as_ref()
            .ok_or(Refused::Failed(TpmError::new(TpmErrorCode::Unavailable)))
    }
}

fn refused(refusal: Refusal) -> Refused<TpmError> {
    match refusal {
        Refusal::BadRequest(invalid) => Refused::BadRequest(invalid.to_string()),
        Refusal::Failed(error) => Refused::Failed(error),
    }
}

impl RpcHandler for TpmTarget {
    fn call(&self, caller: &str, operation: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        log::debug!("tpm: {operation} for {caller}");
        match operation {
            CreateDeviceKey::NAME => serve::<CreateDeviceKey>(request, |_| {
                self.mediator()?.create_device_key().map_err(refused)
            }),
            DevicePublicKey::NAME => serve::<DevicePublicKey>(request, |_| {
                self.mediator()?.device_public_key().map_err(refused)
            }),
            Sign::NAME => serve::<Sign>(request, |r| self.mediator()?.sign(&r).map_err(refused)),
            ReadPcrs::NAME => {
                serve::<ReadPcrs>(request, |r| self.mediator()?.read_pcrs(&r).map_err(refused))
            }
            Quote::NAME => serve::<Quote>(request, |r| self.mediator()?.quote(&r).map_err(refused)),
            ReadEkCert::NAME => serve::<ReadEkCert>(request, |_| {
                self.mediator()?.read_ek_cert().map_err(refused)
            }),
            CreateEcdhKey::NAME => serve::<CreateEcdhKey>(request, |_| {
                self.mediator()?.create_ecdh_key().map_err(refused)
            }),
            Ecdh::NAME => serve::<Ecdh>(request, |r| self.mediator()?.ecdh(&r).map_err(refused)),
            CreateAttestationKey::NAME => serve::<CreateAttestationKey>(request, |_| {
                self.mediator()?.create_attestation_key().map_err(refused)
            }),
            other => Err(RpcError::BadRequest(format!(
                "tpm has no operation {other}"
            ))),
        }
    }
}

impl HostTarget for TpmTarget {
    fn spec(&self) -> &'static TargetSpec {
        &Tpm::SPEC
    }

    fn describe(&self) -> String {
        match &self.backing {
            Backing::Swtpm(swtpm) => format!("swtpm ({})", swtpm.state_dir().display()),
            Backing::Device(path) => path.display().to_string(),
            Backing::None => String::from("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use hostops::tpm::{PcrBank, PcrSelect, PcrSelection, PublicKey, QuoteRequest, SignRequest};
    use prost::Message;

    use super::*;

    /// Requests of every operation, well formed.
    fn valid() -> Vec<(&'static str, Vec<u8>)> {
        let select = PcrSelect::new(PcrBank::Sha256, PcrSelection::from_bits(0x83).unwrap());
        vec![
            (CreateDeviceKey::NAME, Vec::new()),
            (DevicePublicKey::NAME, Vec::new()),
            (
                Sign::NAME,
                SignRequest {
                    digest: vec![3; 32],
                }
                .encode_to_vec(),
            ),
            (ReadPcrs::NAME, select.encode_to_vec()),
            (
                Quote::NAME,
                QuoteRequest {
                    nonce: vec![9; 16],
                    select: Some(select),
                }
                .encode_to_vec(),
            ),
            (ReadEkCert::NAME, Vec::new()),
            (CreateEcdhKey::NAME, Vec::new()),
            (Ecdh::NAME, PublicKey { point: vec![4; 65] }.encode_to_vec()),
            (CreateAttestationKey::NAME, Vec::new()),
        ]
    }

    #[test]
    fn without_a_tpm_every_operation_fails_as_unavailable() {
        let target = TpmTarget::absent();
        assert_eq!(target.describe(), "none");
        for (operation, request) in valid() {
            let Err(RpcError::Failed { error, .. }) = target.call("zedagent", operation, &request)
            else {
                panic!("{operation} did not fail");
            };
            let error = TpmError::decode(error.as_slice()).unwrap();
            assert_eq!(error.code(), TpmErrorCode::Unavailable, "{operation}");
        }
    }

    /// An xorshift generator: deterministic, so a failure can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn hostile_request_bytes_are_bad_requests_or_unavailable_never_panics() {
        let target = TpmTarget::absent();
        let seeds = valid();
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut bad = 0;
        for i in 0..2000 {
            let (operation, seed) = &seeds[rng.below(seeds.len())];
            let mut request: Vec<u8> = if i % 2 == 0 {
                (0..rng.below(100)).map(|_| rng.next() as u8).collect()
            } else {
                seed.clone()
            };
            if !request.is_empty() {
                let at = rng.below(request.len());
                request[at] ^= 1 << rng.below(8);
            }
            match target.call("zedagent", operation, &request) {
                Err(RpcError::BadRequest(_)) => bad += 1,
                Err(RpcError::Failed { .. }) => {}
                other => panic!("{operation}: {other:?}"),
            }
        }
        assert!(
            bad > 500,
            "only {bad} of the mutated requests were malformed"
        );
    }
}
