//! The node's two base OS partitions (EVE's IMGA and IMGB) and their A/B
//! states.
//!
//! baseosmgr decides when the base OS changes; the host does the writing,
//! on the disk it booted from, and only from a blob its blob store
//! verified: a service names the image by digest and never sends its
//! bytes. The states are EVE's (`gptab::ab`): `active`, `updating` (one
//! boot to try), `inprogress` (booted on trial), `unused`.
//!
//! # For baseosmgr
//!
//! - [`Status`]: both partitions, which one booted.
//! - [`Write`]: the image (a verified blob holding a base OS FAT volume)
//!   into the partition that did not boot, which becomes `unused` first
//!   and stays so: refused if the image is larger than the partition or
//!   its `eve-release` is not the version asked for.
//! - [`TryOnce`]: the written partition becomes `updating`; the next boot
//!   tries it once, and boots the old one again after that unless
//!   [`Commit`] follows.
//! - [`Commit`]: run on the booted `inprogress` partition once it works:
//!   it becomes `active`, the other `unused`.
//! - [`Fallback`]: EVE's `force.fallback`: the other partition, which must
//!   hold a base OS, becomes `updating`, so the next boot goes back to it.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

crate::target! {
    /// The node's base OS partitions.
    pub struct Partitions = "partitions", version 1, error PartitionError;
    /// Both partitions.
    Status = "status": Empty => PartitionsStatus;
    /// Writes a verified image into the partition that did not boot.
    Write = "write": WriteRequest => PartitionInfo,
        timeout core::time::Duration::from_secs(300);
    /// Marks the written partition to be tried on the next boot.
    TryOnce = "try-once": PartitionRef => PartitionsStatus;
    /// Makes the booted, on-trial partition the active one.
    Commit = "commit": Empty => PartitionsStatus;
    /// Boots the other partition next.
    Fallback = "fallback": Empty => PartitionsStatus;
}

/// A request without parameters.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Empty {}

/// One partition by its GPT name (`IMGA` or `IMGB`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PartitionRef {
    #[prost(string, tag = "1")]
    pub label: String,
}

/// What to write.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WriteRequest {
    /// The verified blob holding the base OS volume (64 hex digits,
    /// optionally after `sha256:`).
    #[prost(string, tag = "1")]
    pub digest: String,
    /// The version the image must say it is (its `eve-release`).
    #[prost(string, tag = "2")]
    pub version: String,
}

/// One base OS partition as the disk has it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PartitionInfo {
    /// `IMGA` or `IMGB`.
    #[prost(string, tag = "1")]
    pub label: String,
    /// EVE's state name: `active`, `updating`, `inprogress`, `unused` or
    /// `unknown 0x..`.
    #[prost(string, tag = "2")]
    pub state: String,
    /// Its `eve-release`, empty when it holds no readable base OS.
    #[prost(string, tag = "3")]
    pub version: String,
    #[prost(uint64, tag = "4")]
    pub size_bytes: u64,
    /// Whether the node booted from it.
    #[prost(bool, tag = "5")]
    pub booted: bool,
}

/// Both partitions.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PartitionsStatus {
    #[prost(message, repeated, tag = "1")]
    pub partitions: Vec<PartitionInfo>,
}

impl PartitionsStatus {
    /// The partition the node booted from.
    pub fn booted(&self) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|p| p.booted)
    }

    /// The partition the node did not boot from.
    pub fn other(&self) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|p| !p.booted)
    }
}

/// Why a partitions operation failed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PartitionError {
    #[prost(enumeration = "PartitionErrorCode", tag = "1")]
    pub code: i32,
    /// What it is about: a partition's label or a blob's digest.
    #[prost(string, tag = "2")]
    pub subject: String,
    /// TooLarge: the image's bytes. VersionMismatch: unused.
    #[prost(uint64, tag = "3")]
    pub needed: u64,
    /// TooLarge: the partition's bytes.
    #[prost(uint64, tag = "4")]
    pub available: u64,
    /// The host's words, or the version found.
    #[prost(string, tag = "5")]
    pub detail: String,
}

/// The reasons a partitions operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PartitionErrorCode {
    Unspecified = 0,
    /// The host was given no A/B disk (`eve-host run --disk`).
    NoDisk = 1,
    /// The disk's table is unreadable or lacks IMGA and IMGB.
    NoAbPartitions = 2,
    /// Which partition booted is not known, so neither can be written.
    BootUnknown = 3,
    /// Reading or writing the disk failed.
    Storage = 4,
    /// The digest is not a verified blob.
    NotVerified = 5,
    /// The image is larger than the partition.
    TooLarge = 6,
    /// The image's `eve-release` is not the version asked for (or it has
    /// none); `detail` holds what it says.
    VersionMismatch = 7,
    /// The operation would touch the booted partition.
    Booted = 8,
    /// The partition holds no readable base OS.
    NoImage = 9,
    /// The state change is not one EVE makes from the states on disk.
    BadTransition = 10,
}

impl PartitionError {
    /// An error of `code` about `subject`.
    pub fn new(code: PartitionErrorCode, subject: &str) -> PartitionError {
        PartitionError {
            code: code as i32,
            subject: String::from(subject),
            ..Default::default()
        }
    }

    /// An error of `code` about `subject`, with the host's words.
    pub fn with_detail(code: PartitionErrorCode, subject: &str, detail: String) -> PartitionError {
        PartitionError {
            detail,
            ..PartitionError::new(code, subject)
        }
    }
}

impl fmt::Display for PartitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.subject;
        let d = &self.detail;
        match self.code() {
            PartitionErrorCode::NoDisk => f.write_str("the host has no A/B disk"),
            PartitionErrorCode::NoAbPartitions => write!(f, "{s}: no IMGA/IMGB partitions: {d}"),
            PartitionErrorCode::BootUnknown => f.write_str("which partition booted is not known"),
            PartitionErrorCode::Storage => write!(f, "{s}: the disk failed: {d}"),
            PartitionErrorCode::NotVerified => write!(f, "{s} is not a verified blob"),
            PartitionErrorCode::TooLarge => write!(
                f,
                "{s}: the image's {} bytes exceed the partition's {}",
                self.needed, self.available
            ),
            PartitionErrorCode::VersionMismatch => {
                write!(f, "{s}: the image's eve-release is {d:?}")
            }
            PartitionErrorCode::Booted => write!(f, "{s} is the booted partition"),
            PartitionErrorCode::NoImage => write!(f, "{s} holds no base OS"),
            PartitionErrorCode::BadTransition => write!(f, "{s}: {d}"),
            PartitionErrorCode::Unspecified => write!(f, "{s}: partition error {}", self.code),
        }
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
        let spec = Partitions::SPEC;
        assert_eq!((spec.name, spec.version), ("partitions", 1));
        for name in [
            Status::NAME,
            Write::NAME,
            TryOnce::NAME,
            Commit::NAME,
            Fallback::NAME,
        ] {
            assert!(spec.serves(name), "{name}");
        }
        assert_eq!(spec.operations.len(), 5);
    }

    #[test]
    fn errors_round_trip_and_read_well() {
        let e = PartitionError {
            needed: 9,
            available: 4,
            ..PartitionError::new(PartitionErrorCode::TooLarge, "IMGB")
        };
        let back = PartitionError::decode(e.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            format!("{back}"),
            "IMGB: the image's 9 bytes exceed the partition's 4"
        );
        assert!(PartitionsStatus::decode(&[0x0a, 0x7f][..]).is_err());
    }

    #[test]
    fn status_names_the_booted_and_the_other() {
        let part = |label: &str, booted| PartitionInfo {
            label: label.into(),
            booted,
            ..Default::default()
        };
        let status = PartitionsStatus {
            partitions: alloc::vec![part("IMGA", false), part("IMGB", true)],
        };
        assert_eq!(status.booted().unwrap().label, "IMGB");
        assert_eq!(status.other().unwrap().label, "IMGA");
    }
}
