//! A block device interface shared by the disk formats the services read.
//!
//! Services see their disks (the CONFIG partition, a state volume) through
//! [`BlockDevice`]: whole 512-byte blocks addressed by LBA, which is what
//! virtio-blk offers and all a power-loss-safe format can rely on. Formats
//! (`statestore`, `configpart`) are written against the trait so they run on
//! [`MemDisk`] in host tests and on a virtio disk in the guest.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(feature = "testing")]
mod faulty;
mod memdisk;

#[cfg(feature = "testing")]
pub use faulty::{FaultyDisk, Tear};
pub use memdisk::MemDisk;

/// Bytes in one block. virtio-blk sectors are 512 bytes whatever the
/// backing disk's physical sector size, so this is fixed.
pub const BLOCK_SIZE: usize = 512;

/// Why a block operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The request reaches past the last block.
    OutOfRange,
    /// The buffer is empty or not a whole number of blocks.
    BadBufferLength,
    /// The device refused writes.
    ReadOnly,
    /// The device reported a failure.
    Io,
}

impl core::fmt::Display for BlockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BlockError::OutOfRange => "block request past the end of the device",
            BlockError::BadBufferLength => "buffer is not a whole number of blocks",
            BlockError::ReadOnly => "device is read-only",
            BlockError::Io => "device I/O error",
        })
    }
}

/// A disk of [`BLOCK_SIZE`]-byte blocks.
///
/// Buffers are one or more whole blocks. A write is only known to be durable
/// after [`flush`](BlockDevice::flush) returns: until then the device may
/// hold it in a volatile cache and lose it, and the block being written when
/// power fails may come back torn (partly new, partly old).
pub trait BlockDevice {
    /// Number of blocks on the device.
    fn block_count(&self) -> u64;

    /// Reads `buf.len() / BLOCK_SIZE` blocks starting at `lba`.
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError>;

    /// Writes `buf.len() / BLOCK_SIZE` blocks starting at `lba`.
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError>;

    /// Returns once every write before it is durable (a write barrier).
    fn flush(&mut self) -> Result<(), BlockError>;
}

impl<D: BlockDevice + ?Sized> BlockDevice for &mut D {
    fn block_count(&self) -> u64 {
        (**self).block_count()
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        (**self).read_blocks(lba, buf)
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        (**self).write_blocks(lba, buf)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        (**self).flush()
    }
}

/// Checks a request of `buf_len` bytes at `lba` against a device of
/// `block_count` blocks and returns the number of blocks it covers.
///
/// Implementations call this first so every device rejects the same
/// requests the same way.
pub fn check_request(block_count: u64, lba: u64, buf_len: usize) -> Result<u64, BlockError> {
    if buf_len == 0 || !buf_len.is_multiple_of(BLOCK_SIZE) {
        return Err(BlockError::BadBufferLength);
    }
    let blocks = (buf_len / BLOCK_SIZE) as u64;
    match lba.checked_add(blocks) {
        Some(end) if end <= block_count => Ok(blocks),
        _ => Err(BlockError::OutOfRange),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_request_accepts_whole_blocks_inside_the_device() {
        assert_eq!(check_request(8, 0, 512), Ok(1));
        assert_eq!(check_request(8, 6, 1024), Ok(2));
    }

    #[test]
    fn check_request_rejects_partial_empty_and_out_of_range() {
        assert_eq!(check_request(8, 0, 0), Err(BlockError::BadBufferLength));
        assert_eq!(check_request(8, 0, 513), Err(BlockError::BadBufferLength));
        assert_eq!(check_request(8, 7, 1024), Err(BlockError::OutOfRange));
        assert_eq!(check_request(8, u64::MAX, 512), Err(BlockError::OutOfRange));
    }
}
