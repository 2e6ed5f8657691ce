//! volumemgr's logic, portable and host-tested (the service drives it on
//! the bus; tests drive it against the host's real targets).
//!
//! [`Manager`] is level-triggered: it holds the config's content trees and
//! volumes, the downloader's progress and its own memory of attempts, and
//! [`Manager::reconcile`] brings the host towards the config through a
//! [`Host`] (the `blobs` and `volumes` host operations), leaving behind
//! the downloads to ask for and the states to report.
//!
//! - A content tree is known by its root digest: the config's `sha256`,
//!   or, for an OCI image given by tag only, the digest the downloader
//!   resolved (trust on first use, as EVE does; kept with the blob's
//!   reference under the holder `root.<uuid>`, so a restart does not
//!   resolve again). Every blob of the tree is expected in the blob store
//!   before the downloader is asked for it; an OCI tree's manifests are
//!   read back from the store only once the store verified them, and their
//!   descriptors (the node's platform's manifest of an index, then config
//!   and layers) are the next digests to expect. So every digest volumemgr
//!   trusts comes from the signed config or from a verified manifest,
//!   never from the downloader.
//! - States, as EVE reports them (eve-api `ZSwState`): `RESOLVING_TAG`
//!   while a tag is resolved, `DOWNLOAD_STARTED` with progress while
//!   bytes arrive, `DOWNLOADED` when every byte is staged and verification
//!   is pending, `LOADED` when every blob is verified (in our store
//!   verifying a blob and loading it are one step), `ERROR` with text.
//! - A failed download is shown as `ERROR` and asked for again after
//!   `timer.download.retry`; a blob whose bytes did not hash to its digest
//!   is asked for again at once, up to [`MAX_MISMATCHES`] times.
//! - Volumes are built by the host from verified blobs, one generation
//!   per `generationCount`: a purge builds the next generation while the
//!   current one stays, and the old one is deleted once the new one is
//!   ready and no domain runs with it (make-before-break: domainmgr's
//!   `domain-status` lists each domain's host volumes; until that table
//!   is complete no host volume is deleted).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod domains;
mod manager;
mod report;
mod trees;
mod volumes;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use hostops::blobs::{BlobError, BlobList, Expected};
use hostops::volumes::{CreateRequest, VolumeError, VolumeInfo, VolumeRef};

pub use manager::{Manager, Reconciled};

/// Mismatches of one blob asked for again at once; after them, only after
/// `timer.download.retry`.
pub const MAX_MISMATCHES: u32 = 3;

/// The host operations volumemgr uses (`hostops::blobs` and
/// `hostops::volumes`). Holders are volumemgr's own names; the host files
/// them under the service's name.
pub trait Host {
    fn expect(
        &mut self,
        holder: &str,
        digest: &str,
        size: Option<u64>,
    ) -> Result<Expected, HostError>;
    /// Sets the holder's references to exactly `digests`; the ones the
    /// store does not have.
    fn reassert(&mut self, holder: &str, digests: &[String]) -> Result<Vec<String>, HostError>;
    fn blobs(&mut self) -> Result<BlobList, HostError>;
    fn read(&mut self, digest: &str, offset: u64, length: u32) -> Result<Vec<u8>, HostError>;
    fn collect_garbage(&mut self, after_secs: u64) -> Result<Vec<String>, HostError>;
    fn create_volume(&mut self, request: &CreateRequest) -> Result<VolumeInfo, HostError>;
    fn volumes(&mut self) -> Result<Vec<VolumeInfo>, HostError>;
    fn delete_volume(&mut self, volume: &VolumeRef) -> Result<(), HostError>;
}

/// Why a host operation did not answer.
#[derive(Debug, Clone, PartialEq)]
pub enum HostError {
    /// The blob store's typed error.
    Blob(BlobError),
    /// The volumes target's typed error.
    Volume(VolumeError),
    /// No answer, refused by the bus, or an answer that made no sense.
    Call(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Blob(e) => write!(f, "{e}"),
            HostError::Volume(e) => write!(f, "{e}"),
            HostError::Call(why) => f.write_str(why),
        }
    }
}
