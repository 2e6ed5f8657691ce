//! What volumemgr reports besides trees and volumes: the blob store's
//! blobs (`ZInfoBlobList`) and the disk's use (storage metrics).

use alloc::format;
use alloc::string::String;

use eve_proto::info::ZSwState;
use hostops::blobs::{BlobState, Usage as StoreUsage};
use hostops::volumes::VolumeFormat;
use topics::content::{BlobEntry, Blobs, Usage, VolumeUsage};

use crate::manager::{Manager, View};

impl Manager {
    pub(crate) fn report(&mut self, view: &View, store: StoreUsage) {
        self.blobs = Blobs {
            blobs: view
                .blobs
                .values()
                .map(|b| BlobEntry {
                    sha256: b.digest.clone(),
                    state: match b.state() {
                        BlobState::Verified => ZSwState::Verified,
                        _ => ZSwState::DownloadStarted,
                    } as i32,
                    size_bytes: b.current,
                    progress_percent: b.progress_percent,
                    ref_count: u32::try_from(b.holders.len()).unwrap_or(u32::MAX),
                    error: if b.mismatches > 0 && b.state() != BlobState::Verified {
                        format!(
                            "sha256 mismatch: the bytes received hashed to {} ({} times)",
                            b.last_mismatch, b.mismatches
                        )
                    } else {
                        String::new()
                    },
                })
                .collect(),
        };
        self.usage = Usage {
            total_bytes: store.total_bytes,
            free_bytes: store.free_bytes,
            reserve_bytes: store.reserve_bytes,
            blob_bytes: store.verified_bytes,
            staged_bytes: store.staged_bytes,
            mismatches_total: store.mismatches_total,
            volumes: self
                .volume_states
                .values()
                .filter(|v| !v.host_volume.is_empty())
                .map(|v| {
                    let host = view.volumes.get(&v.host_volume);
                    VolumeUsage {
                        uuid: v.uuid.clone(),
                        display_name: v.display_name.clone(),
                        total_bytes: host.map_or(0, |h| h.size_bytes),
                        used_bytes: v.used_bytes,
                        disk: v.host_volume.clone(),
                        disk_type: String::from(host.map_or("", |h| disk_type(h.format()))),
                        dirty: host.is_some_and(|h| h.dirty),
                    }
                })
                .collect(),
        };
    }
}

/// A volume format as `qemu-img` names it, which is what EVE reports as an
/// app disk's type; a blank volume is a raw file.
fn disk_type(format: VolumeFormat) -> &'static str {
    match format {
        VolumeFormat::Raw | VolumeFormat::Blank => "raw",
        VolumeFormat::Qcow2 => "qcow2",
        VolumeFormat::Container => "container",
        VolumeFormat::Unspecified => "",
    }
}
