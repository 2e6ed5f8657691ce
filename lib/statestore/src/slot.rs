//! One snapshot slot: a header block followed by the payload.
//!
//! Header (little-endian, at the start of the slot's first block, payload
//! right after it):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `EVESTATE` |
//! | 8 | 2 | format version (1) |
//! | 10 | 2 | flags (0) |
//! | 12 | 4 | payload length |
//! | 16 | 8 | sequence number |
//! | 24 | 4 | reserved (0) |
//! | 28 | 4 | CRC-32 (IEEE) of bytes 0..28 and the payload |

use alloc::vec;
use alloc::vec::Vec;

use blockdev::{BLOCK_SIZE, BlockDevice, BlockError};
use wirebytes::{le_u16_at, le_u32_at, le_u64_at};

const MAGIC: [u8; 8] = *b"EVESTATE";
const FORMAT_VERSION: u16 = 1;
/// Bytes of the slot header.
pub const HEADER_LEN: usize = 32;
const CRC_OFFSET: usize = 28;

/// The largest snapshot a store keeps, whatever the device size: it bounds
/// what a hostile header can make `open` allocate.
pub const MAX_SNAPSHOT_BYTES: usize = 16 * 1024 * 1024;

/// Blocks moved per device request, so a driver never sees a request larger
/// than virtio-blk queues comfortably take.
const CHUNK_BLOCKS: usize = 64;

/// A slot header that passed its structural checks (not yet the CRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    pub payload_len: usize,
    pub sequence: u64,
    pub crc: u32,
}

impl HeaderRepr {
    /// Parses the first [`HEADER_LEN`] bytes of a slot; `None` for anything
    /// that is not a version-1 header whose payload fits `capacity`.
    pub fn parse(bytes: &[u8], capacity: usize) -> Option<HeaderRepr> {
        let header = bytes.get(..HEADER_LEN)?;
        let u16_at = |at| le_u16_at(header, at).ok();
        let u32_at = |at| le_u32_at(header, at).ok();
        if header.get(..8)? != MAGIC
            || u16_at(8)? != FORMAT_VERSION
            || u16_at(10)? != 0
            || u32_at(24)? != 0
        {
            return None;
        }
        let payload_len = usize::try_from(u32_at(12)?).ok()?;
        if payload_len > capacity {
            return None;
        }
        Some(HeaderRepr {
            payload_len,
            sequence: le_u64_at(header, 16).ok()?,
            crc: u32_at(CRC_OFFSET)?,
        })
    }
}

/// The CRC stored in a header: over the header up to the CRC field and the
/// payload, so a header from one write and a payload from another never pass.
fn snapshot_crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..CRC_OFFSET]);
    hasher.update(payload);
    hasher.finalize()
}

/// Where the two slots are on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLayout {
    slot_blocks: u64,
}

impl SlotLayout {
    /// Two equal slots in the first part of the device; `None` when the
    /// device has fewer than two blocks.
    pub fn for_device(block_count: u64) -> Option<SlotLayout> {
        let max_slot_blocks = (HEADER_LEN + MAX_SNAPSHOT_BYTES).div_ceil(BLOCK_SIZE) as u64;
        let slot_blocks = (block_count / 2).min(max_slot_blocks);
        (slot_blocks > 0).then_some(SlotLayout { slot_blocks })
    }

    /// Largest payload a slot holds.
    pub fn capacity(&self) -> usize {
        // slot_blocks is bounded by MAX_SNAPSHOT_BYTES above, so this fits.
        (self.slot_blocks as usize * BLOCK_SIZE - HEADER_LEN).min(MAX_SNAPSHOT_BYTES)
    }

    fn first_block(&self, slot: usize) -> u64 {
        slot as u64 * self.slot_blocks
    }

    /// Reads a slot; `Ok(None)` when it holds no intact snapshot.
    pub fn read(
        &self,
        dev: &mut impl BlockDevice,
        slot: usize,
    ) -> Result<Option<(u64, Vec<u8>)>, BlockError> {
        let first = self.first_block(slot);
        let mut head = vec![0u8; BLOCK_SIZE];
        dev.read_blocks(first, &mut head)?;
        let Some(header) = HeaderRepr::parse(&head, self.capacity()) else {
            return Ok(None);
        };
        let total_blocks = (HEADER_LEN + header.payload_len).div_ceil(BLOCK_SIZE);
        let mut image = head;
        image.resize(total_blocks * BLOCK_SIZE, 0);
        read_chunked(dev, first + 1, &mut image[BLOCK_SIZE..])?;
        let payload = &image[HEADER_LEN..HEADER_LEN + header.payload_len];
        if snapshot_crc(&image, payload) != header.crc {
            return Ok(None);
        }
        Ok(Some((header.sequence, payload.to_vec())))
    }

    /// Writes a complete snapshot into a slot and flushes it.
    pub fn write(
        &self,
        dev: &mut impl BlockDevice,
        slot: usize,
        sequence: u64,
        payload: &[u8],
    ) -> Result<(), BlockError> {
        let total_blocks = (HEADER_LEN + payload.len()).div_ceil(BLOCK_SIZE);
        let mut image = vec![0u8; total_blocks * BLOCK_SIZE];
        image[..8].copy_from_slice(&MAGIC);
        image[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // Bounded by capacity() by the caller, so it fits in u32.
        image[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image[16..24].copy_from_slice(&sequence.to_le_bytes());
        let crc = snapshot_crc(&image, payload);
        image[CRC_OFFSET..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        image[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        let first = self.first_block(slot);
        for (index, chunk) in image.chunks(CHUNK_BLOCKS * BLOCK_SIZE).enumerate() {
            dev.write_blocks(first + (index * CHUNK_BLOCKS) as u64, chunk)?;
        }
        dev.flush()
    }
}

fn read_chunked(dev: &mut impl BlockDevice, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
    for (index, chunk) in buf.chunks_mut(CHUNK_BLOCKS * BLOCK_SIZE).enumerate() {
        dev.read_blocks(lba + (index * CHUNK_BLOCKS) as u64, chunk)?;
    }
    Ok(())
}

/// Whether sequence `a` is newer than `b`, in serial-number arithmetic so a
/// wrapped counter still orders correctly.
pub fn is_newer(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDisk;

    #[test]
    fn written_slot_reads_back() {
        let mut disk = MemDisk::new(20);
        let layout = SlotLayout::for_device(20).unwrap();
        let payload: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        layout.write(&mut disk, 1, 7, &payload).unwrap();
        assert_eq!(layout.read(&mut disk, 1).unwrap(), Some((7, payload)));
        assert_eq!(layout.read(&mut disk, 0).unwrap(), None);
    }

    #[test]
    fn any_flipped_bit_invalidates_the_slot() {
        let layout = SlotLayout::for_device(8).unwrap();
        let mut disk = MemDisk::new(8);
        layout.write(&mut disk, 0, 1, b"hello state").unwrap();
        for bit in 0..(HEADER_LEN + 11) * 8 {
            let mut damaged = disk.clone();
            damaged.as_bytes_mut()[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(layout.read(&mut damaged, 0).unwrap(), None, "bit {bit}");
        }
    }

    #[test]
    fn header_with_oversized_length_is_refused() {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&MAGIC);
        header[8] = 1;
        header[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderRepr::parse(&header, 1000), None);
        header[12..16].copy_from_slice(&1000u32.to_le_bytes());
        assert!(HeaderRepr::parse(&header, 1000).is_some());
    }

    #[test]
    fn sequence_order_survives_wrapping() {
        assert!(is_newer(2, 1));
        assert!(!is_newer(1, 2));
        assert!(is_newer(0, u64::MAX));
        assert!(!is_newer(5, 5));
    }

    #[test]
    fn layout_needs_two_blocks_and_caps_slot_size() {
        assert_eq!(SlotLayout::for_device(1), None);
        assert_eq!(
            SlotLayout::for_device(2).unwrap().capacity(),
            BLOCK_SIZE - HEADER_LEN
        );
        assert_eq!(
            SlotLayout::for_device(u64::MAX).unwrap().capacity(),
            MAX_SNAPSHOT_BYTES
        );
    }
}
