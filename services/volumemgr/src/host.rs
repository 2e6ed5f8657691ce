//! The host's `blobs` and `volumes` operations as `contentmgr::Host`,
//! over the bus.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use contentmgr::{Host, HostError};
use hostops::blobs::{self, BlobError, BlobList, Expected};
use hostops::volumes::{self, CreateRequest, VolumeError, VolumeInfo, VolumeRef};
use runtime::service::{self, CallError};

/// The bus to the host.
pub struct BusHost;

fn blob(e: CallError<BlobError>) -> HostError {
    match e {
        CallError::Failed(error) => HostError::Blob(error),
        other => HostError::Call(format!("blobs: {other}")),
    }
}

fn volume(e: CallError<VolumeError>) -> HostError {
    match e {
        CallError::Failed(error) => HostError::Volume(error),
        other => HostError::Call(format!("volumes: {other}")),
    }
}

impl Host for BusHost {
    fn expect(
        &mut self,
        holder: &str,
        digest: &str,
        size: Option<u64>,
    ) -> Result<Expected, HostError> {
        service::call::<blobs::Expect>(&blobs::ExpectRequest {
            holder: String::from(holder),
            digest: String::from(digest),
            size,
        })
        .map_err(blob)
    }

    fn reassert(&mut self, holder: &str, digests: &[String]) -> Result<Vec<String>, HostError> {
        service::call::<blobs::Reassert>(&blobs::ReassertRequest {
            holder: String::from(holder),
            digests: digests.to_vec(),
        })
        .map(|d| d.digests)
        .map_err(blob)
    }

    fn blobs(&mut self) -> Result<BlobList, HostError> {
        service::call::<blobs::List>(&blobs::Empty {}).map_err(blob)
    }

    fn read(&mut self, digest: &str, offset: u64, length: u32) -> Result<Vec<u8>, HostError> {
        service::call::<blobs::Read>(&blobs::ReadRequest {
            digest: String::from(digest),
            offset,
            length,
        })
        .map(|c| c.data)
        .map_err(blob)
    }

    fn collect_garbage(&mut self, after_secs: u64) -> Result<Vec<String>, HostError> {
        service::call::<blobs::CollectGarbage>(&blobs::GcRequest {
            unreferenced_for_secs: after_secs,
        })
        .map(|d| d.digests)
        .map_err(blob)
    }

    fn create_volume(&mut self, request: &CreateRequest) -> Result<VolumeInfo, HostError> {
        service::call::<volumes::Create>(request).map_err(volume)
    }

    fn volumes(&mut self) -> Result<Vec<VolumeInfo>, HostError> {
        service::call::<volumes::List>(&volumes::Empty {})
            .map(|l| l.volumes)
            .map_err(volume)
    }

    fn delete_volume(&mut self, which: &VolumeRef) -> Result<(), HostError> {
        service::call::<volumes::Delete>(which)
            .map(|_| ())
            .map_err(volume)
    }
}
