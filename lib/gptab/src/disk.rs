//! What the table code needs from a disk: whole logical blocks of the
//! disk's own size (512 bytes on most disks, 4096 on some), read and
//! written by LBA, and a flush.

use core::fmt;

use blockdev::{BLOCK_SIZE, BlockDevice, BlockError};

/// Why a disk operation failed, as far as the table code cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskError {
    /// The request reaches past the last block.
    OutOfRange,
    /// The device refused writes.
    ReadOnly,
    /// The device reported a failure.
    Io,
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskError::OutOfRange => "request past the end of the disk",
            DiskError::ReadOnly => "disk is read-only",
            DiskError::Io => "disk I/O error",
        })
    }
}

/// Whether `size` is a logical block size the table code takes: a power
/// of two from 512 to 64 KiB.
pub fn valid_block_size(size: usize) -> bool {
    size.is_power_of_two() && (512..=65_536).contains(&size)
}

/// A disk of logical blocks.
pub trait Disk {
    /// Bytes per logical block: a power of two from 512 to 65536.
    fn block_size(&self) -> usize;

    /// Number of logical blocks.
    fn block_count(&self) -> u64;

    /// Reads `buf.len() / block_size` blocks from `lba`; `buf` is a whole
    /// number of blocks.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError>;

    /// Writes `buf.len() / block_size` blocks at `lba`.
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError>;

    /// Returns once every earlier write is durable.
    fn flush(&mut self) -> Result<(), DiskError>;
}

impl<D: Disk + ?Sized> Disk for &mut D {
    fn block_size(&self) -> usize {
        (**self).block_size()
    }
    fn block_count(&self) -> u64 {
        (**self).block_count()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        (**self).read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        (**self).write(lba, buf)
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        (**self).flush()
    }
}

/// A [`BlockDevice`] (512-byte blocks) as a [`Disk`]: in-memory disks and
/// the power-cut simulation of host tests, and a guest's virtio disks.
#[derive(Debug, Clone)]
pub struct Blocks<D>(pub D);

impl<D> Blocks<D> {
    /// The block device back.
    pub fn into_inner(self) -> D {
        self.0
    }
}

fn disk_error(e: BlockError) -> DiskError {
    match e {
        BlockError::OutOfRange | BlockError::BadBufferLength => DiskError::OutOfRange,
        BlockError::ReadOnly => DiskError::ReadOnly,
        BlockError::Io => DiskError::Io,
    }
}

impl<D: BlockDevice> Disk for Blocks<D> {
    fn block_size(&self) -> usize {
        BLOCK_SIZE
    }
    fn block_count(&self) -> u64 {
        self.0.block_count()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.0.read_blocks(lba, buf).map_err(disk_error)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.0.write_blocks(lba, buf).map_err(disk_error)
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        self.0.flush().map_err(disk_error)
    }
}
