//! The host's blob store: where downloaded content becomes trusted.
//!
//! The operations are split by who may call them, and the manifest grants
//! each service only its side:
//!
//! - volumemgr, which read the digests from the signed config (or from a
//!   manifest the store verified): [`Expect`] a blob, take and drop
//!   references ([`AddRef`], [`DropRef`], [`Reassert`]), see what the
//!   store holds ([`Status`], [`List`]), [`Read`] verified blobs (the
//!   manifests it walks) and [`CollectGarbage`].
//! - the downloader: [`Write`] bytes at an offset into a slot volumemgr
//!   expects, ask how much is [`StagedLength`] (to resume), keep a resume
//!   note with the bytes ([`Remember`]) and say [`Complete`].
//!
//! Nothing the downloader can call makes a blob verified: `complete` asks
//! the host to hash the staged bytes, and only bytes whose sha256 is the
//! slot's digest become a verified, immutable, content-addressed blob. A
//! mismatch discards the bytes and fails with both digests.
//!
//! Holders are names volumemgr chooses (one per content tree, say); the
//! host files them under the calling service's name, so one service can
//! never drop another's references. Digests travel as EVE writes them in
//! the config: 64 lowercase hex digits (`sha256:` before them is accepted).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

crate::target! {
    /// The host's content store.
    pub struct Blobs = "blobs", version 1, error BlobError;
    /// volumemgr: expects a blob (with its size when the config gives
    /// it) for a holder, who then refers to it; a verified blob only
    /// gains the reference.
    Expect = "expect": ExpectRequest => Expected;
    /// volumemgr: a holder refers to an expected or verified blob.
    AddRef = "add-ref": RefRequest => Empty;
    /// volumemgr: a holder no longer refers to a blob; unreferenced, it is
    /// collected by a later [`CollectGarbage`].
    DropRef = "drop-ref": RefRequest => Empty;
    /// volumemgr: sets a holder's references to exactly these digests (a
    /// restarted volumemgr re-asserts what its config still needs);
    /// answers those the store does not have.
    Reassert = "reassert": ReassertRequest => Digests;
    /// volumemgr: one blob or slot.
    Status = "status": BlobRef => BlobInfo;
    /// volumemgr: every blob and slot, and the store's use of the disk
    /// (`ZInfoBlobList` and storage metrics).
    List = "list": Empty => BlobList;
    /// volumemgr: bytes of a verified blob, at most [`MAX_CHUNK`] per call.
    Read = "read": ReadRequest => Chunk;
    /// volumemgr: removes what has been unreferenced for the given time
    /// (EVE's `timer.gc.vdisk`); answers what went.
    CollectGarbage = "collect-garbage": GcRequest => Digests;
    /// downloader: bytes at an offset at most the staged length (before
    /// it: the bytes after it are dropped, a restart), at most
    /// [`MAX_CHUNK`] per call.
    Write = "write": WriteRequest => Staged;
    /// downloader: how much is staged, and the resume note.
    StagedLength = "staged": BlobRef => Staged;
    /// downloader: keeps a note (the server's validator) with the staged
    /// bytes, until they are dropped.
    Remember = "remember": RememberRequest => Empty;
    /// downloader: every byte is staged; the host hashes them. Hashing a
    /// blob whose writes were not all seen by this host process (a resume
    /// after a restart) reads the whole file: long for large blobs.
    Complete = "complete": BlobRef => Completed, timeout Duration::from_secs(600);
}

/// Most bytes one [`Write`] carries or one [`Read`] returns: a bus frame
/// is at most 64 KiB with its headers.
pub const MAX_CHUNK: usize = 48 * 1024;
/// Longest resume note.
pub const MAX_NOTE: usize = 1024;
/// Longest holder name.
pub const MAX_HOLDER: usize = 96;

/// A request without parameters, or an answer without content.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Empty {}

/// One blob, by digest.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BlobRef {
    #[prost(string, tag = "1")]
    pub digest: String,
}

/// What volumemgr expects.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ExpectRequest {
    /// Who refers to it (see the module documentation).
    #[prost(string, tag = "1")]
    pub holder: String,
    #[prost(string, tag = "2")]
    pub digest: String,
    /// Its exact size, when the config or a verified manifest gives it.
    #[prost(uint64, optional, tag = "3")]
    pub size: Option<u64>,
}

/// Where an expected blob is.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Expected {
    #[prost(enumeration = "BlobState", tag = "1")]
    pub state: i32,
    /// Staging: bytes staged already (a resumed or shared download).
    /// Verified: the blob's size.
    #[prost(uint64, tag = "2")]
    pub bytes: u64,
}

/// A holder and a blob.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RefRequest {
    #[prost(string, tag = "1")]
    pub holder: String,
    #[prost(string, tag = "2")]
    pub digest: String,
}

/// Everything a holder refers to.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReassertRequest {
    #[prost(string, tag = "1")]
    pub holder: String,
    #[prost(string, repeated, tag = "2")]
    pub digests: Vec<String>,
}

/// Digests (missing ones, collected ones).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Digests {
    #[prost(string, repeated, tag = "1")]
    pub digests: Vec<String>,
}

/// Where a blob stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum BlobState {
    Unspecified = 0,
    /// Expected, bytes arriving.
    Staging = 1,
    /// Hashed to its digest: immutable.
    Verified = 2,
}

/// One blob or slot, as `ZInfoBlob` reports it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BlobInfo {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(enumeration = "BlobState", tag = "2")]
    pub state: i32,
    /// The verified size, or the expected size when known.
    #[prost(uint64, optional, tag = "3")]
    pub size: Option<u64>,
    /// Bytes on disk: staged so far, or the whole blob.
    #[prost(uint64, tag = "4")]
    pub current: u64,
    /// Percent staged (100 once verified; 0 when the size is unknown).
    #[prost(uint32, tag = "5")]
    pub progress_percent: u32,
    /// Holders, each as `<service>/<holder>`.
    #[prost(string, repeated, tag = "6")]
    pub holders: Vec<String>,
    /// When the store first had it (Unix seconds).
    #[prost(uint64, tag = "7")]
    pub created_unix: u64,
    /// When its holders last changed (Unix seconds).
    #[prost(uint64, tag = "8")]
    pub last_ref_change_unix: u64,
    /// Failed verifications of this slot.
    #[prost(uint32, tag = "9")]
    pub mismatches: u32,
    /// What the last failed verification hashed to.
    #[prost(string, tag = "10")]
    pub last_mismatch: String,
}

/// The store's use of the disk.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Usage {
    /// Bytes of verified blobs.
    #[prost(uint64, tag = "1")]
    pub verified_bytes: u64,
    /// Bytes staged.
    #[prost(uint64, tag = "2")]
    pub staged_bytes: u64,
    /// Verification failures over the store's life.
    #[prost(uint64, tag = "3")]
    pub mismatches_total: u64,
    /// Bytes the store may still use before the reserve.
    #[prost(uint64, tag = "4")]
    pub free_bytes: u64,
    /// Bytes that must stay free.
    #[prost(uint64, tag = "5")]
    pub reserve_bytes: u64,
    /// Size of the filesystem (or of the store's capacity, if smaller).
    #[prost(uint64, tag = "6")]
    pub total_bytes: u64,
}

/// Every blob and slot.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BlobList {
    #[prost(message, repeated, tag = "1")]
    pub blobs: Vec<BlobInfo>,
    #[prost(message, optional, tag = "2")]
    pub usage: Option<Usage>,
}

/// Bytes of a verified blob to read.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReadRequest {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(uint64, tag = "2")]
    pub offset: u64,
    /// At most [`MAX_CHUNK`].
    #[prost(uint32, tag = "3")]
    pub length: u32,
}

/// Bytes read; fewer than asked at the blob's end.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Chunk {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

/// How long unreferenced blobs stay.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct GcRequest {
    #[prost(uint64, tag = "1")]
    pub unreferenced_for_secs: u64,
}

/// Bytes for a slot.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WriteRequest {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(uint64, tag = "2")]
    pub offset: u64,
    /// At most [`MAX_CHUNK`] bytes.
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
}

/// How far a slot is.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Staged {
    /// Bytes staged: resume here.
    #[prost(uint64, tag = "1")]
    pub length: u64,
    /// The size volumemgr expects, if known.
    #[prost(uint64, optional, tag = "2")]
    pub expected_size: Option<u64>,
    /// The downloader's resume note.
    #[prost(string, optional, tag = "3")]
    pub note: Option<String>,
}

/// A resume note for a slot (none clears it).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RememberRequest {
    #[prost(string, tag = "1")]
    pub digest: String,
    /// At most [`MAX_NOTE`] bytes.
    #[prost(string, optional, tag = "2")]
    pub note: Option<String>,
}

/// A verified blob.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Completed {
    #[prost(uint64, tag = "1")]
    pub size: u64,
}

/// Why a blob operation failed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BlobError {
    #[prost(enumeration = "BlobErrorCode", tag = "1")]
    pub code: i32,
    /// The blob concerned.
    #[prost(string, tag = "2")]
    pub digest: String,
    /// Mismatch: what the staged bytes hashed to.
    #[prost(string, tag = "3")]
    pub actual: String,
    /// Mismatch: failed verifications of the slot, this one included.
    #[prost(uint32, tag = "4")]
    pub attempts: u32,
    /// Incomplete, Gap: bytes staged. TooLarge: where the write ended.
    #[prost(uint64, tag = "5")]
    pub staged: u64,
    /// Incomplete: the expected size. TooLarge, SizeConflict: the limit or
    /// the size already expected.
    #[prost(uint64, tag = "6")]
    pub expected: u64,
    /// Reserve: bytes the operation needed.
    #[prost(uint64, tag = "7")]
    pub needed: u64,
    /// Reserve: bytes free.
    #[prost(uint64, tag = "8")]
    pub free: u64,
    /// Reserve: bytes that must stay free.
    #[prost(uint64, tag = "9")]
    pub reserve: u64,
    /// Storage: what failed, in the host's words.
    #[prost(string, tag = "10")]
    pub detail: String,
}

/// The reasons a blob operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum BlobErrorCode {
    Unspecified = 0,
    /// The host's storage failed.
    Storage = 1,
    /// No slot expects this digest (never expected, verified or collected).
    NotExpected = 2,
    /// No blob or slot has this digest.
    Unknown = 3,
    /// The blob is not verified (reading it, building from it).
    NotVerified = 4,
    /// A write starting past the staged bytes.
    Gap = 5,
    /// Bytes past the expected size or the store's limit for one blob.
    TooLarge = 6,
    /// The disk reserve would be used: refused so the disk never fills.
    Reserve = 7,
    /// Completing with fewer bytes than the expected size.
    Incomplete = 8,
    /// The staged bytes hash to another digest; they were discarded.
    Mismatch = 9,
    /// The blob is already expected with another size.
    SizeConflict = 10,
}

impl BlobError {
    /// An error of `code` about `digest`.
    pub fn new(code: BlobErrorCode, digest: &str) -> BlobError {
        BlobError {
            code: code as i32,
            digest: String::from(digest),
            ..Default::default()
        }
    }
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.digest;
        match self.code() {
            BlobErrorCode::Storage => write!(f, "{d}: the host's storage failed: {}", self.detail),
            BlobErrorCode::NotExpected => write!(f, "no slot expects {d}"),
            BlobErrorCode::Unknown => write!(f, "no blob or slot {d}"),
            BlobErrorCode::NotVerified => write!(f, "{d} is not a verified blob"),
            BlobErrorCode::Gap => write!(
                f,
                "{d}: a write past the {} staged bytes leaves a gap",
                self.staged
            ),
            BlobErrorCode::TooLarge => write!(
                f,
                "{d}: bytes up to {} exceed the {}-byte limit",
                self.staged, self.expected
            ),
            BlobErrorCode::Reserve => write!(
                f,
                "{d}: the disk reserve refused {} bytes: {} bytes free and {} must stay free",
                self.needed, self.free, self.reserve
            ),
            BlobErrorCode::Incomplete => {
                write!(f, "{d}: {} of {} bytes staged", self.staged, self.expected)
            }
            BlobErrorCode::Mismatch => write!(
                f,
                "sha256 mismatch: expected {d}, the bytes hash to {} (attempt {})",
                self.actual, self.attempts
            ),
            BlobErrorCode::SizeConflict => {
                write!(f, "{d} is already expected with size {}", self.expected)
            }
            BlobErrorCode::Unspecified => write!(f, "{d}: blob error {}", self.code),
        }
    }
}

/// Whether `digest` is one the store takes: 64 hex digits, after an
/// optional `sha256:`.
pub fn valid_digest(digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::vec;
    use prost::Message;

    use super::*;
    use crate::{Operation, Target};

    #[test]
    fn the_target_lists_every_operation_once() {
        let spec = Blobs::SPEC;
        assert_eq!((spec.name, spec.version), ("blobs", 1));
        for name in [
            Expect::NAME,
            AddRef::NAME,
            DropRef::NAME,
            Reassert::NAME,
            Status::NAME,
            List::NAME,
            Read::NAME,
            CollectGarbage::NAME,
            Write::NAME,
            StagedLength::NAME,
            Remember::NAME,
            Complete::NAME,
        ] {
            assert!(spec.serves(name), "{name}");
        }
        assert_eq!(spec.operations.len(), 12);
        assert_eq!(Complete::TIMEOUT, Duration::from_secs(600));
    }

    #[test]
    fn a_full_write_fits_a_bus_frame() {
        let write = WriteRequest {
            digest: "ab".repeat(32),
            offset: u64::MAX,
            data: vec![0xff; MAX_CHUNK],
        };
        // The bus's frames are 64 KiB with the target's and operation's
        // names and an 8-byte header.
        assert!(write.encoded_len() + 256 < 64 * 1024);
    }

    #[test]
    fn errors_say_both_digests_and_the_numbers() {
        let mismatch = BlobError {
            actual: "cd".repeat(32),
            attempts: 2,
            ..BlobError::new(BlobErrorCode::Mismatch, &"ab".repeat(32))
        };
        let back = BlobError::decode(mismatch.encode_to_vec().as_slice()).unwrap();
        let text = format!("{back}");
        assert!(text.contains(&"ab".repeat(32)) && text.contains(&"cd".repeat(32)));
        assert!(text.contains("attempt 2"), "{text}");
        let reserve = BlobError {
            needed: 10,
            free: 20,
            reserve: 15,
            ..BlobError::new(BlobErrorCode::Reserve, "x")
        };
        assert_eq!(
            format!("{reserve}"),
            "x: the disk reserve refused 10 bytes: 20 bytes free and 15 must stay free"
        );
        assert!(BlobError::decode(&[0xff, 0xff][..]).is_err());
    }

    #[test]
    fn digests_are_hex_with_an_optional_prefix() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(valid_digest(&hex));
        assert!(valid_digest(&format!("sha256:{hex}")));
        assert!(!valid_digest(&hex[1..]));
        assert!(!valid_digest(&format!("sha512:{hex}")));
        assert!(!valid_digest(&"g".repeat(64)));
    }
}
