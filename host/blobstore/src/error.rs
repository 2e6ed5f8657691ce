//! One error type per operation, so each caller handles exactly what its
//! operation can do.

use std::io;
use std::path::PathBuf;

use crate::Digest;

/// A storage operation that failed, with the file it was about.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct IoFailure {
    /// The operation (`writing`, `syncing`, ...).
    pub what: &'static str,
    /// The file or directory, relative to the store's root.
    pub path: PathBuf,
    /// The cause.
    pub source: io::Error,
}

/// Opening (and recovering) the store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The storage failed.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// The state file is not ours or is damaged. It is only ever replaced
    /// atomically, so this is damage from outside, not a power cut.
    #[error("state file {path} is unreadable: {reason}")]
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Creating an expected slot (volumemgr).
#[derive(Debug, thiserror::Error)]
pub enum CreateSlotError {
    /// The storage failed.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// A slot for this digest exists with another expected size.
    #[error("{digest} is already expected with size {existing:?}, not {requested:?}")]
    SizeConflict {
        /// The digest.
        digest: Digest,
        /// Size the existing slot expects.
        existing: Option<u64>,
        /// Size asked for now.
        requested: Option<u64>,
    },
    /// The expected size is larger than the store accepts for one blob.
    #[error("{digest}: {size} bytes is more than the {limit}-byte limit for one blob")]
    TooLarge {
        /// The digest.
        digest: Digest,
        /// Requested size.
        size: u64,
        /// The store's limit.
        limit: u64,
    },
    /// The holder name is empty, too long or has control characters.
    #[error("bad holder name {0:?}")]
    BadHolder(String),
    /// The blob would not fit without eating into the disk reserve.
    #[error(transparent)]
    Reserve(#[from] ReserveExceeded),
}

/// A write that would leave less than the configured reserve free.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{digest}: refusing {needed} bytes: {free} bytes free and {reserve} must stay free \
     (a full disk would stop the node)"
)]
pub struct ReserveExceeded {
    /// The blob being written.
    pub digest: Digest,
    /// Bytes the operation needs.
    pub needed: u64,
    /// Bytes free now.
    pub free: u64,
    /// Bytes that must stay free.
    pub reserve: u64,
}

/// Writing staged bytes (downloader).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The storage failed; the staged bytes are as [`crate::Writer::staged`] says.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// No slot expects this digest (never asked for, verified or collected).
    #[error("no slot expects {0}")]
    NotExpected(Digest),
    /// The write does not start at or before the staged length.
    #[error("{digest}: write at offset {offset} leaves a gap after the {staged} staged bytes")]
    Gap {
        /// The digest.
        digest: Digest,
        /// Where the write started.
        offset: u64,
        /// Bytes staged.
        staged: u64,
    },
    /// The write goes past the expected size or the store's limit.
    #[error("{digest}: bytes up to {end} exceed the {limit}-byte limit for this blob")]
    TooLarge {
        /// The digest.
        digest: Digest,
        /// Where the write would end.
        end: u64,
        /// The limit.
        limit: u64,
    },
    /// The disk reserve would be used.
    #[error(transparent)]
    Reserve(#[from] ReserveExceeded),
}

/// Keeping the downloader's resume note with a slot.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// The storage failed; the slot keeps its previous note.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// No slot expects this digest.
    #[error("no slot expects {0}")]
    NotExpected(Digest),
    /// The note is longer than [`crate::MAX_NOTE`] bytes.
    #[error("a resume note of {0} bytes is longer than allowed")]
    TooLong(usize),
}

/// Asking how much is staged (downloader, to resume).
#[derive(Debug, thiserror::Error)]
pub enum StagedError {
    /// No slot expects this digest.
    #[error("no slot expects {0}")]
    NotExpected(Digest),
}

/// Completing a blob: the host hashes the staged bytes (downloader).
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    /// The storage failed; the staged bytes are kept.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// No slot expects this digest.
    #[error("no slot expects {0}")]
    NotExpected(Digest),
    /// Fewer bytes are staged than the expected size; they are kept.
    #[error("{digest}: {staged} of {expected} bytes staged")]
    Incomplete {
        /// The digest.
        digest: Digest,
        /// Bytes staged.
        staged: u64,
        /// Expected size.
        expected: u64,
    },
    /// The staged bytes hash to another digest. They were discarded and
    /// the mismatch counted; the slot stays for a retry.
    #[error("{expected}: staged bytes hash to {actual} (mismatch {attempts}); discarded")]
    Mismatch {
        /// The digest the config asked for.
        expected: Digest,
        /// The digest of what was received.
        actual: Digest,
        /// Mismatches of this slot so far, this one included.
        attempts: u32,
    },
}

/// Taking, dropping or re-asserting references (volumemgr).
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    /// The storage failed; references are as before the call.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// The store has no slot or blob for this digest.
    #[error("no blob or slot {0}")]
    Unknown(Digest),
    /// The holder name is empty, too long or has control characters.
    #[error("bad holder name {0:?}")]
    BadHolder(String),
}

/// Reading a verified blob (volumemgr, for manifests it walks).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The storage failed.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// No verified blob has this digest (unknown, or still staging).
    #[error("{0} is not a verified blob")]
    NotVerified(Digest),
}

/// Garbage collection.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The storage failed; what was already removed is gone, the rest stays.
    #[error(transparent)]
    Io(#[from] IoFailure),
}
