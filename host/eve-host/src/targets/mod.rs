//! The host's operation targets: what performs each `hostops` target on
//! this host (the TPM, the blob store, volumes, app ports, app domains,
//! the base OS partitions, the node's power).
//!
//! A target is one module here implementing [`HostTarget`], registered in
//! [`HOST_TARGETS`]. The broker, the manifest parser and xtask know
//! targets only as `hostops::TargetSpec`s (their names, versions and
//! operation names), so adding a target touches none of them: it takes its
//! operation module in `hostops` and its module here.

pub mod blobs;
pub mod content;
pub mod domains;
pub mod partitions;
pub mod ports;
pub mod power;
pub mod tpm;
pub mod volumes;

use std::{error::Error, path::Path, sync::Arc};

use eve_broker::{RpcError, RpcHandler};
use hostops::{Operation, Target, TargetSpec};
use prost::Message;

use crate::{manifest::Manifest, nodebus::TpmChoice};
pub use content::ContentOptions;
pub use domains::DomainsOptions;
pub use partitions::BootDisk;
pub use ports::ForwardOptions;
pub use power::PowerSwitch;

/// What serves one `hostops` target. The broker calls it (through
/// [`RpcHandler`]) only for operations of its spec, in its version, that
/// the manifest grants the caller.
pub trait HostTarget: RpcHandler {
    fn spec(&self) -> &'static TargetSpec;
    /// What backs it, for the host's log and status file (e.g. `swtpm
    /// (/state/tpm)`).
    fn describe(&self) -> String;
}

/// What targets are opened with: the node's state directory (a target
/// keeps its state under it) and the host's choices.
#[derive(Debug, Clone, Copy)]
pub struct TargetContext<'a> {
    pub state_dir: &'a Path,
    /// The TPM the host was told to use.
    pub tpm: &'a TpmChoice,
    /// The content store's reserve and capacity.
    pub content: ContentOptions,
    /// What app domains may use, and the shim VM for containers.
    pub domains: &'a DomainsOptions,
    /// The A/B disk the node booted from (`--disk`), if any.
    pub disk: Option<&'a BootDisk>,
    /// This boot's record and the host's stop flag, for the `power` target.
    pub power: &'a PowerSwitch,
    /// What the services' uplink forwards may use (the `ports` target).
    pub forwards: &'a ForwardOptions,
}

/// Why a target could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("opening the host target {target}: {source}")]
pub struct OpenError {
    pub target: &'static str,
    #[source]
    pub source: Box<dyn Error + Send + Sync>,
}

/// Opens one target: what it serves, or why it cannot.
pub type Opener =
    fn(&TargetContext<'_>) -> Result<Arc<dyn HostTarget>, Box<dyn Error + Send + Sync>>;

/// How one target of this host is opened.
#[derive(Clone, Copy)]
pub struct TargetEntry {
    pub spec: &'static TargetSpec,
    pub open: Opener,
}

/// Every target this host serves: `hostops::CATALOGUE`, each with its
/// module.
pub const HOST_TARGETS: &[TargetEntry] = &[
    TargetEntry {
        spec: &<hostops::tpm::Tpm as Target>::SPEC,
        open: tpm::open,
    },
    TargetEntry {
        spec: &<hostops::blobs::Blobs as Target>::SPEC,
        open: blobs::open,
    },
    TargetEntry {
        spec: &<hostops::volumes::Volumes as Target>::SPEC,
        open: volumes::open,
    },
    TargetEntry {
        spec: &<hostops::ports::Ports as Target>::SPEC,
        open: ports::open,
    },
    TargetEntry {
        spec: &<hostops::domains::Domains as Target>::SPEC,
        open: domains::open,
    },
    TargetEntry {
        spec: &<hostops::partitions::Partitions as Target>::SPEC,
        open: partitions::open,
    },
    TargetEntry {
        spec: &<hostops::power::Power as Target>::SPEC,
        open: power::open,
    },
];

/// Opens each target of `entries` that some service of `manifest` is
/// granted an operation of; the others are not opened at all (a node
/// whose services use no TPM opens none).
pub fn open_granted(
    manifest: &Manifest,
    entries: &[TargetEntry],
    context: &TargetContext<'_>,
) -> Result<Vec<Arc<dyn HostTarget>>, OpenError> {
    entries
        .iter()
        .filter(|entry| {
            manifest
                .services
                .iter()
                .any(|s| s.bus.call.contains_key(entry.spec.name))
        })
        .map(|entry| {
            (entry.open)(context).map_err(|source| OpenError {
                target: entry.spec.name,
                source,
            })
        })
        .collect()
}

/// Why a target did not answer an operation with its response.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused<E> {
    /// The request does not hold what the operation needs.
    BadRequest(String),
    /// The operation failed: the target's typed error.
    Failed(E),
    /// The target cannot take the call now.
    Busy,
}

/// Serves one call of operation `O`: decodes the request, runs `run`, and
/// encodes the response, or the target's typed error.
pub fn serve<O: Operation>(
    request: &[u8],
    run: impl FnOnce(O::Request) -> Result<O::Response, Refused<<O::Target as Target>::Error>>,
) -> Result<Vec<u8>, RpcError> {
    let request = O::Request::decode(request)
        .map_err(|e| RpcError::BadRequest(format!("not a {} request: {e}", O::NAME)))?;
    match run(request) {
        Ok(response) => Ok(response.encode_to_vec()),
        Err(Refused::BadRequest(why)) => Err(RpcError::BadRequest(why)),
        Err(Refused::Failed(error)) => Err(RpcError::Failed {
            message: error.to_string(),
            error: error.encode_to_vec(),
        }),
        Err(Refused::Busy) => Err(RpcError::Busy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_serves_every_target_of_the_catalogue() {
        let served: Vec<&TargetSpec> = HOST_TARGETS.iter().map(|e| e.spec).collect();
        assert_eq!(served, hostops::CATALOGUE);
    }
}
