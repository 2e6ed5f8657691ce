//! Power-loss-safe state records on a block device.
//!
//! A service's state volume holds named records (`name -> bytes`) and
//! bounded FIFO queues kept as records. The whole state is one snapshot,
//! written as a unit into one of two slots; the other slot keeps the
//! previous snapshot until the new one is complete and flushed. A snapshot
//! carries a sequence number and a CRC-32 over header and payload, so after
//! a power cut at any point opening the volume finds either the old state or
//! the new one, never a mix and never an error.
//!
//! ```text
//! block 0                      block N                      block 2N
//! | slot 0: header + payload   | slot 1: header + payload   | (unused)
//! ```
//!
//! There is no superblock: nothing is ever updated in place, which is what
//! keeps a torn write harmless.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod queue;
mod records;
pub mod selfcheck;
mod slot;
mod store;

pub use blockdev::{BlockDevice, BlockError};
pub use queue::{BoundedQueue, QueueLimits};
pub use slot::MAX_SNAPSHOT_BYTES;
pub use store::{MAX_NAME_LEN, Store};

/// Why a store operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The device failed; the committed state is unchanged.
    Device(BlockError),
    /// The device cannot hold two slots of one block each.
    DeviceTooSmall,
    /// A record name is empty or longer than [`MAX_NAME_LEN`] bytes.
    BadName,
    /// The change would make the snapshot larger than a slot.
    CapacityExceeded,
    /// A record does not hold what it was read as (e.g. not a queue).
    BadRecord,
    /// A queue item is larger than the queue's byte limit.
    QueueItemTooLarge,
}

impl From<BlockError> for StoreError {
    fn from(error: BlockError) -> Self {
        StoreError::Device(error)
    }
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StoreError::Device(error) => write!(f, "state volume: {error}"),
            StoreError::DeviceTooSmall => f.write_str("state volume is too small"),
            StoreError::BadName => f.write_str("record name is empty or too long"),
            StoreError::CapacityExceeded => f.write_str("state does not fit the volume"),
            StoreError::BadRecord => f.write_str("record has an unexpected encoding"),
            StoreError::QueueItemTooLarge => f.write_str("queue item exceeds the queue limit"),
        }
    }
}
