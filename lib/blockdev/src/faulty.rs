//! Power loss, simulated: the disk that formats are tested against.

use alloc::vec;

use crate::{BLOCK_SIZE, BlockDevice, BlockError, check_request};

/// What the block being written at the moment of the power cut holds
/// afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// The block keeps its old contents.
    Old,
    /// The first `n` bytes are new, the rest old (`n` is clamped to a block).
    Prefix(usize),
    /// The first `n` bytes are old, the rest new (`n` is clamped to a block).
    Suffix(usize),
}

/// A [`BlockDevice`] wrapper that loses power after a number of block writes.
///
/// Every block of every write counts, in order. The first `cut_after` blocks
/// reach the inner disk; the next one is torn as [`Tear`] says; every later
/// write is silently dropped, as writes sent to a disk that has lost power
/// are, and reported as successful because the writer cannot tell. A test then
/// takes the inner disk back with [`into_inner`](FaultyDisk::into_inner) and
/// "reboots" by opening it again.
#[derive(Debug)]
pub struct FaultyDisk<D> {
    inner: D,
    cut_after: Option<u64>,
    tear: Tear,
    blocks_written: u64,
}

impl<D: BlockDevice> FaultyDisk<D> {
    /// A disk that never loses power but counts block writes, to learn how
    /// many writes an operation makes.
    pub fn new(inner: D) -> Self {
        FaultyDisk {
            inner,
            cut_after: None,
            tear: Tear::Old,
            blocks_written: 0,
        }
    }

    /// A disk that loses power after `cut_after` block writes.
    pub fn with_power_cut(inner: D, cut_after: u64, tear: Tear) -> Self {
        FaultyDisk {
            inner,
            cut_after: Some(cut_after),
            tear,
            blocks_written: 0,
        }
    }

    /// Block writes issued so far: landed, torn or dropped.
    pub fn blocks_written(&self) -> u64 {
        self.blocks_written
    }

    /// Whether the power cut has happened (a write reached the cut).
    pub fn power_lost(&self) -> bool {
        self.cut_after.is_some_and(|cut| self.blocks_written > cut)
    }

    /// The inner disk, as it is after the power cut.
    pub fn into_inner(self) -> D {
        self.inner
    }

    fn write_torn(&mut self, lba: u64, new: &[u8]) -> Result<(), BlockError> {
        let mut block = vec![0u8; BLOCK_SIZE];
        self.inner.read_blocks(lba, &mut block)?;
        match self.tear {
            Tear::Old => return Ok(()),
            Tear::Prefix(n) => {
                let n = n.min(BLOCK_SIZE);
                block[..n].copy_from_slice(&new[..n]);
            }
            Tear::Suffix(n) => {
                let n = n.min(BLOCK_SIZE);
                block[n..].copy_from_slice(&new[n..]);
            }
        }
        self.inner.write_blocks(lba, &block)
    }
}

impl<D: BlockDevice> BlockDevice for FaultyDisk<D> {
    fn block_count(&self) -> u64 {
        self.inner.block_count()
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.inner.read_blocks(lba, buf)
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_request(self.block_count(), lba, buf.len())?;
        for (block_lba, block) in (lba..).zip(buf.chunks_exact(BLOCK_SIZE)) {
            match self.cut_after {
                Some(cut) if self.blocks_written > cut => {}
                Some(cut) if self.blocks_written == cut => self.write_torn(block_lba, block)?,
                _ => self.inner.write_blocks(block_lba, block)?,
            }
            self.blocks_written += 1;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.power_lost() {
            return Ok(());
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemDisk;

    fn block(byte: u8) -> [u8; BLOCK_SIZE] {
        [byte; BLOCK_SIZE]
    }

    #[test]
    fn writes_before_the_cut_land_and_later_ones_are_dropped() {
        let mut disk = FaultyDisk::with_power_cut(MemDisk::new(4), 2, Tear::Old);
        let mut data = [0u8; 4 * BLOCK_SIZE];
        data.fill(9);
        disk.write_blocks(0, &data).unwrap();
        assert!(disk.power_lost());
        let bytes = disk.into_inner().into_bytes();
        assert!(bytes[..2 * BLOCK_SIZE].iter().all(|&b| b == 9));
        assert!(bytes[2 * BLOCK_SIZE..].iter().all(|&b| b == 0));
    }

    #[test]
    fn the_block_at_the_cut_is_torn() {
        let mut inner = MemDisk::new(2);
        inner.write_blocks(1, &block(1)).unwrap();
        let mut disk = FaultyDisk::with_power_cut(inner, 1, Tear::Prefix(100));
        disk.write_blocks(0, &block(2)).unwrap();
        disk.write_blocks(1, &block(2)).unwrap();
        let bytes = disk.into_inner().into_bytes();
        assert!(bytes[BLOCK_SIZE..BLOCK_SIZE + 100].iter().all(|&b| b == 2));
        assert!(bytes[BLOCK_SIZE + 100..].iter().all(|&b| b == 1));

        let mut disk = FaultyDisk::with_power_cut(MemDisk::new(1), 0, Tear::Suffix(500));
        disk.write_blocks(0, &block(3)).unwrap();
        let bytes = disk.into_inner().into_bytes();
        assert!(bytes[..500].iter().all(|&b| b == 0));
        assert!(bytes[500..].iter().all(|&b| b == 3));
    }

    #[test]
    fn counting_disk_never_loses_power() {
        let mut disk = FaultyDisk::new(MemDisk::new(3));
        disk.write_blocks(0, &[5u8; 3 * BLOCK_SIZE]).unwrap();
        disk.flush().unwrap();
        assert_eq!(disk.blocks_written(), 3);
        assert!(!disk.power_lost());
    }
}
