//! Volumes the host builds from verified blobs, for app domains.
//!
//! volumemgr decides what a volume holds; the host builds it from blobs
//! its blob store verified (never from anything else) and keeps it under
//! its state directory. A volume is named by the config's volume UUID and
//! its generation (EVE's `generationCount`): a purge asks for the next
//! generation while the current one stays untouched and in use, and the
//! old one is deleted only once the new one is ready (make-before-break).
//!
//! # For the services that use volumes
//!
//! - [`Create`] answers at once, with the volume [`VolumeState::Creating`]
//!   (or `Ready` if it exists with the same content); the host builds it
//!   on a thread of its own, and [`Status`] says when it is `Ready`, or
//!   `Failed` with the reason. Asking again for the same volume and
//!   generation with the same content is harmless; with other content it
//!   fails as `Exists`.
//! - Forms, under `<state-dir>/content/volumes/<uuid>.<generation>/`:
//!   - `Raw`: `disk.raw`, a copy of the verified image, grown (sparse) to
//!     `max_size_bytes` when that is larger.
//!   - `Qcow2`: `disk.qcow2`, written by `qemu-img convert` from the
//!     verified image after `qemu-img info` found no backing file and no
//!     external data file (either would make a VM open a host path) and a
//!     virtual size within the host's limit; resized to `max_size_bytes`
//!     when that is larger. `qemu-img` runs with a time limit and a memory
//!     limit.
//!   - `Container`: an OCI image layout (`oci-layout`, `index.json`,
//!     `blobs/sha256/<hex>`) holding exactly the verified manifest, config
//!     and layers (hard links to the store's read-only blobs), layers in
//!     the manifest's order, for the container runtime (the shim VM
//!     unpacks the layers itself: the host never does).
//!   - `Blank`: `disk.raw`, sparse, of `max_size_bytes`.
//! - [`VolumeInfo::name`] (`<uuid>.<generation>`) is how another host
//!   target (app domains) names a volume to the host; services never see
//!   host paths.
//! - [`Delete`] removes a generation. A generation still being built is
//!   not deleted (`Busy`): ask again when its status is final.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

crate::target! {
    /// The host's volumes.
    pub struct Volumes = "volumes", version 1, error VolumeError;
    /// Starts building a volume generation from verified blobs.
    Create = "create": CreateRequest => VolumeInfo;
    /// One volume generation.
    Status = "status": VolumeRef => VolumeInfo;
    /// Every volume generation on the host.
    List = "list": Empty => VolumeList;
    /// Removes a volume generation.
    Delete = "delete": VolumeRef => Empty;
}

/// A request without parameters, or an answer without content.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Empty {}

/// What a volume is built as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum VolumeFormat {
    Unspecified = 0,
    /// A raw disk image.
    Raw = 1,
    /// A qcow2 disk image.
    Qcow2 = 2,
    /// A container image: manifest, config and layers.
    Container = 3,
    /// An empty disk.
    Blank = 4,
}

/// Where a volume generation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum VolumeState {
    Unspecified = 0,
    /// Being built.
    Creating = 1,
    /// Built: usable.
    Ready = 2,
    /// The build failed; [`VolumeInfo::error`] says why.
    Failed = 3,
}

/// One volume generation.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VolumeRef {
    /// The config's volume UUID (canonical lowercase form).
    #[prost(string, tag = "1")]
    pub uuid: String,
    /// EVE's `generationCount`.
    #[prost(int64, tag = "2")]
    pub generation: i64,
}

/// A verified blob the volume is built from, as the manifest lists it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Component {
    /// Its digest (64 hex digits, optionally after `sha256:`).
    #[prost(string, tag = "1")]
    pub digest: String,
    /// Its media type (container images; empty for disk images).
    #[prost(string, tag = "2")]
    pub media_type: String,
}

/// What to build.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreateRequest {
    #[prost(message, optional, tag = "1")]
    pub volume: Option<VolumeRef>,
    #[prost(enumeration = "VolumeFormat", tag = "2")]
    pub format: i32,
    /// Raw and Qcow2: the image, one component. Container: the manifest
    /// first, then the config, then the layers bottom first. Blank: none.
    #[prost(message, repeated, tag = "3")]
    pub components: Vec<Component>,
    /// The size the volume may grow to (EVE's `maxsizebytes`); 0 keeps an
    /// image's own size. Required for Blank.
    #[prost(uint64, tag = "4")]
    pub max_size_bytes: u64,
    /// For the logs.
    #[prost(string, tag = "5")]
    pub display_name: String,
}

/// A volume generation as the host has it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VolumeInfo {
    #[prost(message, optional, tag = "1")]
    pub volume: Option<VolumeRef>,
    #[prost(enumeration = "VolumeFormat", tag = "2")]
    pub format: i32,
    #[prost(enumeration = "VolumeState", tag = "3")]
    pub state: i32,
    /// Why the build failed.
    #[prost(string, tag = "4")]
    pub error: String,
    /// The host's name for it, `<uuid>.<generation>`.
    #[prost(string, tag = "5")]
    pub name: String,
    /// What a guest sees: the disk's size (a qcow2's virtual size), or the
    /// image's bytes for a container.
    #[prost(uint64, tag = "6")]
    pub size_bytes: u64,
    /// Bytes it takes on the host's disk now.
    #[prost(uint64, tag = "7")]
    pub used_bytes: u64,
    /// When it was created (Unix seconds).
    #[prost(uint64, tag = "8")]
    pub created_unix: u64,
    /// A qcow2 disk whose header says it was not closed cleanly (its
    /// dirty bit): EVE reports it as the app disk's `dirty`, a hint that
    /// its guest was cut off mid-write.
    #[prost(bool, tag = "9")]
    pub dirty: bool,
}

/// Every volume generation.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VolumeList {
    #[prost(message, repeated, tag = "1")]
    pub volumes: Vec<VolumeInfo>,
}

/// Why a volume operation failed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VolumeError {
    #[prost(enumeration = "VolumeErrorCode", tag = "1")]
    pub code: i32,
    /// What it is about: the volume's name, or a blob's digest.
    #[prost(string, tag = "2")]
    pub subject: String,
    /// Reserve: bytes needed.
    #[prost(uint64, tag = "3")]
    pub needed: u64,
    /// Reserve: bytes free.
    #[prost(uint64, tag = "4")]
    pub free: u64,
    /// Reserve: bytes that must stay free.
    #[prost(uint64, tag = "5")]
    pub reserve: u64,
    /// The host's words (a storage failure).
    #[prost(string, tag = "6")]
    pub detail: String,
}

/// The reasons a volume operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum VolumeErrorCode {
    Unspecified = 0,
    /// The host's storage failed.
    Storage = 1,
    /// A component is not a verified blob.
    NotVerified = 2,
    /// Building it would use the disk reserve.
    Reserve = 3,
    /// No such volume generation.
    NotFound = 4,
    /// The generation exists with other content.
    Exists = 5,
    /// The generation is still being built.
    Busy = 6,
}

impl VolumeError {
    /// An error of `code` about `subject`.
    pub fn new(code: VolumeErrorCode, subject: &str) -> VolumeError {
        VolumeError {
            code: code as i32,
            subject: String::from(subject),
            ..Default::default()
        }
    }
}

impl fmt::Display for VolumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.subject;
        match self.code() {
            VolumeErrorCode::Storage => {
                write!(f, "{s}: the host's storage failed: {}", self.detail)
            }
            VolumeErrorCode::NotVerified => write!(f, "{s} is not a verified blob"),
            VolumeErrorCode::Reserve => write!(
                f,
                "{s}: the disk reserve refused {} bytes: {} bytes free and {} must stay free",
                self.needed, self.free, self.reserve
            ),
            VolumeErrorCode::NotFound => write!(f, "no volume {s}"),
            VolumeErrorCode::Exists => write!(f, "volume {s} exists with other content"),
            VolumeErrorCode::Busy => write!(f, "volume {s} is still being built"),
            VolumeErrorCode::Unspecified => write!(f, "{s}: volume error {}", self.code),
        }
    }
}

/// Whether `uuid` is a UUID in canonical lowercase form (it names files
/// on the host).
pub fn valid_uuid(uuid: &str) -> bool {
    let b = uuid.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

impl VolumeRef {
    /// The host's name for the generation, when the reference is valid.
    pub fn name(&self) -> Option<String> {
        (valid_uuid(&self.uuid) && self.generation >= 0)
            .then(|| alloc::format!("{}.{}", self.uuid, self.generation))
    }
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use prost::Message;

    use super::*;
    use crate::{Operation, Target};

    #[test]
    fn the_target_lists_every_operation_once() {
        let spec = Volumes::SPEC;
        assert_eq!((spec.name, spec.version), ("volumes", 1));
        for name in [Create::NAME, Status::NAME, List::NAME, Delete::NAME] {
            assert!(spec.serves(name), "{name}");
        }
        assert_eq!(spec.operations.len(), 4);
    }

    #[test]
    fn names_are_only_made_of_valid_references() {
        let good = VolumeRef {
            uuid: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
            generation: 3,
        };
        assert_eq!(
            good.name().as_deref(),
            Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8.3")
        );
        for uuid in [
            "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
            "../../../../etc/passwd-aaaaaaaaaaaaaa",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c",
            "",
        ] {
            let bad = VolumeRef {
                uuid: uuid.into(),
                generation: 0,
            };
            assert_eq!(bad.name(), None, "{uuid}");
        }
        let negative = VolumeRef {
            generation: -1,
            ..good
        };
        assert_eq!(negative.name(), None);
    }

    #[test]
    fn errors_round_trip_and_read_well() {
        let e = VolumeError {
            needed: 5,
            free: 7,
            reserve: 6,
            ..VolumeError::new(VolumeErrorCode::Reserve, "v.1")
        };
        let back = VolumeError::decode(e.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            format!("{back}"),
            "v.1: the disk reserve refused 5 bytes: 7 bytes free and 6 must stay free"
        );
        assert!(VolumeInfo::decode(&[0x0a, 0x7f][..]).is_err());
    }
}
