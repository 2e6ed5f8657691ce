//! Content: the config's datastores, content trees and volumes as tables
//! (zedagent publishes them), the downloads volumemgr asks for and the
//! downloader's progress, and what volumemgr reports (content trees,
//! volumes, blobs, the store's use of the disk), which zedagent sends to
//! the controller.
//!
//! Keys: config tables and volumemgr's reports are keyed by the object's
//! UUID; downloads by [`DownloadRequests::key`]. States are eve-api's
//! `ZSwState` numbers (`eve_proto::info::ZSwState`), as EVE reports them.

use alloc::string::String;
use alloc::vec::Vec;

use crate::Topic;

/// `datastore-config`: the config's datastores with their credentials
/// decrypted (only the downloader may subscribe).
pub struct DatastoreConfig;

impl Topic for DatastoreConfig {
    const NAME: &'static str = "datastore-config";
    type Value = Datastore;
}

/// A datastore as the downloader uses it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Datastore {
    /// EVE's `DatastoreConfig` with `apiKey` and `password` holding the
    /// credentials in clear (decrypted from `cipherData` when the config
    /// sealed them) and `cipherData` removed.
    #[prost(message, optional, tag = "1")]
    pub config: Option<eve_proto::config::DatastoreConfig>,
    /// Why sealed credentials could not be decrypted (empty when they
    /// were, or when there were none).
    #[prost(string, tag = "2")]
    pub credentials_error: String,
}

/// `content-tree-config`: the config's content trees (EVE's `ContentTree`).
pub struct ContentTreeConfig;

impl Topic for ContentTreeConfig {
    const NAME: &'static str = "content-tree-config";
    type Value = eve_proto::config::ContentTree;
}

/// `volume-config`: the config's volumes (EVE's `Volume`).
pub struct VolumeConfig;

impl Topic for VolumeConfig {
    const NAME: &'static str = "volume-config";
    type Value = eve_proto::config::Volume;
}

/// `content-settings`: the config items content follows, one item under
/// [`Self::KEY`].
pub struct ContentSettings;

impl Topic for ContentSettings {
    const NAME: &'static str = "content-settings";
    type Value = Settings;
}

impl ContentSettings {
    pub const KEY: &'static str = "device";
}

/// Content's config items, with EVE's defaults when absent.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Settings {
    /// `timer.gc.vdisk`: how long an unreferenced blob or volume stays.
    #[prost(uint64, tag = "1")]
    pub gc_vdisk_secs: u64,
    /// `timer.download.retry`: how long a failed download waits before
    /// volumemgr asks for it again.
    #[prost(uint64, tag = "2")]
    pub download_retry_secs: u64,
}

impl Settings {
    /// EVE's defaults: one hour, ten minutes.
    pub const DEFAULT: Settings = Settings {
        gc_vdisk_secs: 3600,
        download_retry_secs: 600,
    };
}

/// `download-request`: what volumemgr wants downloaded.
pub struct DownloadRequests;

impl Topic for DownloadRequests {
    const NAME: &'static str = "download-request";
    type Value = DownloadRequest;
}

impl DownloadRequests {
    /// The key of a download: the blob's digest (64 hex digits), or
    /// `resolve.<content tree UUID>` for a tag to resolve.
    pub fn key(request: &DownloadRequest) -> String {
        match request.kind() {
            DownloadKind::Resolve => alloc::format!("resolve.{}", request.content_tree),
            _ => request.digest.clone(),
        }
    }
}

/// What a download is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DownloadKind {
    Unspecified = 0,
    /// A file on an HTTP(S) datastore, verified against `digest`.
    File = 1,
    /// An OCI manifest or index, fetched by `digest`.
    Manifest = 2,
    /// An OCI blob (config or layer), fetched by `digest`.
    Blob = 3,
    /// An OCI reference's tag, resolved to the digest of its manifest or
    /// index (the content tree gave no sha256).
    Resolve = 4,
}

/// One download volumemgr asks for. The blob store has a slot for
/// `digest` before it is asked (except for [`DownloadKind::Resolve`]).
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct DownloadRequest {
    #[prost(enumeration = "DownloadKind", tag = "1")]
    pub kind: i32,
    /// The blob, 64 hex digits.
    #[prost(string, tag = "2")]
    pub digest: String,
    /// Its exact size, when known.
    #[prost(uint64, optional, tag = "3")]
    pub size: Option<u64>,
    /// The most bytes accepted when the size is not known.
    #[prost(uint64, tag = "4")]
    pub max_size: u64,
    /// The datastores to try, in order (`dsId`, then `ds_ids_list`).
    #[prost(string, repeated, tag = "5")]
    pub datastores: Vec<String>,
    /// The content tree's `URL`: a file name, or an OCI reference.
    #[prost(string, tag = "6")]
    pub url: String,
    /// The content tree it is for.
    #[prost(string, tag = "7")]
    pub content_tree: String,
    /// Bumped by volumemgr to ask for a new attempt (after a mismatch or
    /// a failure); the downloader starts over when it changes.
    #[prost(uint32, tag = "8")]
    pub attempt: u32,
}

/// `download-status`: the downloader's progress, keyed as the requests.
pub struct DownloadStatus;

impl Topic for DownloadStatus {
    const NAME: &'static str = "download-status";
    type Value = DownloadProgress;
}

/// Where a download is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DownloadState {
    Unspecified = 0,
    /// Waiting for a turn (bounded concurrency).
    Queued = 1,
    /// Bytes are moving.
    Downloading = 2,
    /// Failed in a way a retry may fix; waiting for the next try.
    RetryWait = 3,
    /// Staged and verified by the host (or resolved).
    Done = 4,
    /// Failed; `error` says why. volumemgr decides whether to ask again.
    Failed = 5,
}

/// The downloader's progress on one request.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct DownloadProgress {
    /// The request's `attempt` this answers.
    #[prost(uint32, tag = "1")]
    pub attempt: u32,
    #[prost(enumeration = "DownloadState", tag = "2")]
    pub state: i32,
    /// Bytes staged in the blob store.
    #[prost(uint64, tag = "3")]
    pub staged: u64,
    /// The blob's size, when known.
    #[prost(uint64, optional, tag = "4")]
    pub total: Option<u64>,
    /// Bytes received from the network for this request since the
    /// downloader took it (all tries).
    #[prost(uint64, tag = "5")]
    pub fetched: u64,
    /// Where the last try started: above 0, it resumed.
    #[prost(uint64, tag = "6")]
    pub resumed_from: u64,
    /// Tries made.
    #[prost(uint32, tag = "7")]
    pub tries: u32,
    /// The last failure, in words (a mismatch names both digests).
    #[prost(string, tag = "8")]
    pub error: String,
    /// Resolve: the digest of the manifest or index the tag names.
    #[prost(string, tag = "9")]
    pub resolved_digest: String,
    /// Manifest and Resolve: the media type the registry served it as (a
    /// hint for volumemgr's parser; the document itself is verified).
    #[prost(string, tag = "10")]
    pub media_type: String,
    /// The last failure was the host refusing the bytes: they did not hash
    /// to the digest, and were discarded.
    #[prost(bool, tag = "11")]
    pub mismatch: bool,
}

/// `content-tree-status`: volumemgr's view of each content tree, keyed by
/// UUID, as `ZInfoContentTree` reports it.
pub struct ContentTreeStatus;

impl Topic for ContentTreeStatus {
    const NAME: &'static str = "content-tree-status";
    type Value = ContentTreeState;
}

/// A content tree's state.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct ContentTreeState {
    #[prost(string, tag = "1")]
    pub uuid: String,
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// The root digest: the config's sha256, or the tag's resolution.
    #[prost(string, tag = "3")]
    pub sha256: String,
    /// eve-api `ZSwState`.
    #[prost(int32, tag = "4")]
    pub state: i32,
    #[prost(uint32, tag = "5")]
    pub progress_percent: u32,
    /// Why it is in ERROR (a mismatch names both digests).
    #[prost(string, tag = "6")]
    pub error: String,
    /// When the error was seen (Unix seconds).
    #[prost(uint64, tag = "7")]
    pub error_unix: u64,
    /// Every blob of the tree (an OCI image's index, manifest, config and
    /// layers; a file's one), as `componentShaList`.
    #[prost(string, repeated, tag = "8")]
    pub components: Vec<String>,
    /// Bytes of the tree held (staged or verified).
    #[prost(uint64, tag = "9")]
    pub size_bytes: u64,
    #[prost(int64, tag = "10")]
    pub generation_count: i64,
}

/// `volume-status`: volumemgr's view of each volume, keyed by UUID, as
/// `ZInfoVolume` reports it, with the host volume that holds it.
pub struct VolumeStatus;

impl Topic for VolumeStatus {
    const NAME: &'static str = "volume-status";
    type Value = VolumeState;
}

/// A volume's state.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct VolumeState {
    #[prost(string, tag = "1")]
    pub uuid: String,
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// eve-api `ZSwState`.
    #[prost(int32, tag = "3")]
    pub state: i32,
    #[prost(uint32, tag = "4")]
    pub progress_percent: u32,
    #[prost(string, tag = "5")]
    pub error: String,
    #[prost(uint64, tag = "6")]
    pub error_unix: u64,
    /// The generation the config asks for.
    #[prost(int64, tag = "7")]
    pub generation_count: i64,
    #[prost(uint64, tag = "8")]
    pub max_size_bytes: u64,
    /// Bytes the ready generation takes on the host.
    #[prost(uint64, tag = "9")]
    pub used_bytes: u64,
    /// The host volume in use (`<uuid>.<generation>`, the `volumes`
    /// target's name); empty until one is ready. During a purge it stays
    /// the old generation until the new one is ready.
    #[prost(string, tag = "10")]
    pub host_volume: String,
    /// Every generation of the volume on the host.
    #[prost(string, repeated, tag = "11")]
    pub host_generations: Vec<String>,
}

/// `blob-status`: every blob of the store, one item under [`Self::KEY`]
/// (`ZInfoBlobList`).
pub struct BlobStatus;

impl Topic for BlobStatus {
    const NAME: &'static str = "blob-status";
    type Value = Blobs;
}

impl BlobStatus {
    pub const KEY: &'static str = "blobs";
}

/// The blob store's blobs.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Blobs {
    #[prost(message, repeated, tag = "1")]
    pub blobs: Vec<BlobEntry>,
}

/// One blob, as `ZInfoBlob` reports it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct BlobEntry {
    #[prost(string, tag = "1")]
    pub sha256: String,
    /// eve-api `ZSwState`.
    #[prost(int32, tag = "2")]
    pub state: i32,
    /// Bytes on disk.
    #[prost(uint64, tag = "3")]
    pub size_bytes: u64,
    #[prost(uint32, tag = "4")]
    pub progress_percent: u32,
    /// References held.
    #[prost(uint32, tag = "5")]
    pub ref_count: u32,
    /// The last verification failure.
    #[prost(string, tag = "6")]
    pub error: String,
}

/// `content-usage`: the store's use of the disk, one item under
/// [`Self::KEY`] (storage metrics).
pub struct ContentUsage;

impl Topic for ContentUsage {
    const NAME: &'static str = "content-usage";
    type Value = Usage;
}

impl ContentUsage {
    pub const KEY: &'static str = "content";
}

/// Disk use by content.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Usage {
    /// Size of the disk content lives on (or of the store's capacity).
    #[prost(uint64, tag = "1")]
    pub total_bytes: u64,
    /// Bytes still free for the store.
    #[prost(uint64, tag = "2")]
    pub free_bytes: u64,
    /// Bytes that must stay free.
    #[prost(uint64, tag = "3")]
    pub reserve_bytes: u64,
    /// Verified blobs.
    #[prost(uint64, tag = "4")]
    pub blob_bytes: u64,
    /// Staged bytes.
    #[prost(uint64, tag = "5")]
    pub staged_bytes: u64,
    /// Verification failures over the store's life.
    #[prost(uint64, tag = "6")]
    pub mismatches_total: u64,
    /// Each volume's use.
    #[prost(message, repeated, tag = "7")]
    pub volumes: Vec<VolumeUsage>,
}

/// One volume's use of the disk (`ZMetricVolume`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct VolumeUsage {
    #[prost(string, tag = "1")]
    pub uuid: String,
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// What the guest sees.
    #[prost(uint64, tag = "3")]
    pub total_bytes: u64,
    /// What it takes on the host.
    #[prost(uint64, tag = "4")]
    pub used_bytes: u64,
    /// The host's name of the generation in use (`<uuid>.<generation>`):
    /// an app disk's `disk` in its metrics, as EVE names it by its file.
    #[prost(string, tag = "5")]
    pub disk: String,
    /// Its format as `qemu-img` names it (`qcow2`, `raw`; `container` for
    /// an OCI image): an app disk's `diskType`.
    #[prost(string, tag = "6")]
    pub disk_type: String,
    /// A qcow2 disk not closed cleanly (its header's dirty bit).
    #[prost(bool, tag = "7")]
    pub dirty: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_keyed_by_digest_or_by_the_tree_to_resolve() {
        let blob = DownloadRequest {
            kind: DownloadKind::Blob as i32,
            digest: "ab".repeat(32),
            content_tree: "t".into(),
            ..Default::default()
        };
        assert_eq!(DownloadRequests::key(&blob), "ab".repeat(32));
        let resolve = DownloadRequest {
            kind: DownloadKind::Resolve as i32,
            content_tree: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
            ..Default::default()
        };
        assert_eq!(
            DownloadRequests::key(&resolve),
            "resolve.6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        );
        for key in [
            DownloadRequests::key(&blob),
            DownloadRequests::key(&resolve),
        ] {
            assert!(evebus::name::valid_key(&key), "{key}");
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn reports_are_json_for_the_status_file() {
        let tree = ContentTreeState {
            uuid: "u".into(),
            state: eve_proto::info::ZSwState::Error as i32,
            error: "sha256 mismatch".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(&tree).unwrap();
        assert_eq!(json["state"], 21);
        assert_eq!(
            serde_json::from_value::<ContentTreeState>(json).unwrap(),
            tree
        );
    }
}
