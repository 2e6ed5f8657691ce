//! The host's blob store: where downloaded content becomes trusted.
//!
//! The trust rule: the downloader can never mark content verified. Its
//! operations ([`Writer`]) put bytes into a slot that volumemgr
//! ([`Manager`]) created from the signed config's digest, ask how much is
//! staged, and say "complete"; the store then hashes the staged bytes and
//! only a match with the slot's digest becomes a verified, immutable,
//! content-addressed blob. The store never parses content, it only
//! hashes it.
//!
//! On disk, under the store's root:
//!
//! | path | what |
//! |---|---|
//! | `state.json` | slots, blobs, holders, durable lengths, counters; replaced atomically |
//! | `staging/<hex>` | bytes of an expected blob, trusted up to its recorded durable length |
//! | `blobs/sha256/<hex>` | verified blobs, read-only |
//!
//! Power loss at any point leaves a store that opens consistent
//! ([`BlobStore::open`] repairs and reports in [`Recovery`]): staged bytes
//! past the last durable point are cut (the downloader fetches them
//! again), a blob renamed in by a commit whose record was lost is hashed
//! again before it is kept, records without files are dropped.

#![forbid(unsafe_code)]

mod digest;
mod error;
mod manager;
#[cfg(any(test, feature = "testing"))]
pub mod sim;
mod state;
mod storage;
mod store;
#[cfg(test)]
mod tests;
mod writer;

pub use digest::{BadDigest, Digest};
pub use error::{
    CompleteError, CreateSlotError, GcError, IoFailure, NoteError, OpenError, ReadError, RefError,
    ReserveExceeded, StagedError, WriteError,
};
pub use manager::{BlobInfo, BlobState, Expected, Manager, Usage};
pub use storage::{OsStorage, Storage};
pub use store::{BlobStore, Clock, Config, Recovery, SystemClock};
pub use writer::{MAX_NOTE, Staged, Writer};
