//! A disk in memory, for host tests and host-side image building.

use alloc::vec;
use alloc::vec::Vec;

use crate::{BLOCK_SIZE, BlockDevice, BlockError, check_request};

/// A `Vec`-backed [`BlockDevice`]. Writes are durable at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemDisk {
    bytes: Vec<u8>,
    read_only: bool,
}

impl MemDisk {
    /// A zero-filled disk of `blocks` blocks.
    pub fn new(blocks: usize) -> Self {
        MemDisk {
            bytes: vec![0; blocks * BLOCK_SIZE],
            read_only: false,
        }
    }

    /// A disk holding `image`, zero-padded up to a whole block, as a disk
    /// image file whose size is not a multiple of 512 is read by QEMU.
    pub fn from_image(mut image: Vec<u8>) -> Self {
        let padded = image.len().div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
        image.resize(padded, 0);
        MemDisk {
            bytes: image,
            read_only: false,
        }
    }

    /// Refuses every later write with [`BlockError::ReadOnly`], as the guest's
    /// CONFIG disk does.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// The disk's contents.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The disk's contents, mutable, for tests that damage a disk.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// The disk's contents, consuming it.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    fn range(&self, lba: u64, len: usize) -> Result<core::ops::Range<usize>, BlockError> {
        check_request(self.block_count(), lba, len)?;
        // In range of `bytes` (checked above), so the casts cannot truncate.
        let start = lba as usize * BLOCK_SIZE;
        Ok(start..start + len)
    }
}

impl BlockDevice for MemDisk {
    fn block_count(&self) -> u64 {
        (self.bytes.len() / BLOCK_SIZE) as u64
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let range = self.range(lba, buf.len())?;
        buf.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let range = self.range(lba, buf.len())?;
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        self.bytes[range].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_read_back_and_bounds_are_enforced() {
        let mut disk = MemDisk::new(4);
        let data = [7u8; 1024];
        disk.write_blocks(2, &data).unwrap();
        let mut back = [0u8; 1024];
        disk.read_blocks(2, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(disk.read_blocks(3, &mut back), Err(BlockError::OutOfRange));
        assert_eq!(
            disk.write_blocks(0, &data[..100]),
            Err(BlockError::BadBufferLength)
        );
    }

    #[test]
    fn from_image_pads_to_a_whole_block() {
        let disk = MemDisk::from_image(vec![1; 600]);
        assert_eq!(disk.block_count(), 2);
        assert_eq!(disk.as_bytes()[599], 1);
        assert_eq!(disk.as_bytes()[600], 0);
    }

    #[test]
    fn read_only_disk_refuses_writes() {
        let mut disk = MemDisk::new(1);
        disk.set_read_only(true);
        assert_eq!(disk.write_blocks(0, &[0; 512]), Err(BlockError::ReadOnly));
    }
}
