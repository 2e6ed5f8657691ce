//! Disks for the table tests: an EVE layout on an in-memory disk, and a
//! disk of 4096-byte blocks.
#![allow(dead_code)]

use blockdev::MemDisk;
use gptab::{Blocks, Disk, DiskError, Gpt, Guid, NewPartition, ab::SlotState, types};

/// Blocks of the test disk: 16 MiB (many tests copy it).
pub const DISK_BLOCKS: u64 = 32_768;

/// EVE's partition GUIDs from `make-raw`.
pub fn eve_guid(last: u8) -> Guid {
    Guid::from_fields(
        0xad68_71ee,
        0x31f9,
        0x4cf3,
        [0x9e, 0x09, 0x6f, 0x7a, 0x25, 0xc3, 0x00, last],
    )
}

/// EVE's layout (numbers, names, types) in 256 KiB steps: EFI System,
/// IMGA (active), IMGB (unused), CONFIG, P3.
pub fn eve_partitions() -> Vec<NewPartition<'static>> {
    let mib = 512u64;
    vec![
        NewPartition {
            number: 1,
            type_guid: types::EFI_SYSTEM,
            unique_guid: eve_guid(0x51),
            first_lba: mib,
            last_lba: 2 * mib - 1,
            attributes: 0,
            name: "EFI System",
        },
        NewPartition {
            number: 2,
            type_guid: types::EVE_IMAGE,
            unique_guid: eve_guid(0x52),
            first_lba: 2 * mib,
            last_lba: 10 * mib - 1,
            attributes: SlotState::Active.apply(0),
            name: "IMGA",
        },
        NewPartition {
            number: 3,
            type_guid: types::EVE_IMAGE,
            unique_guid: eve_guid(0x53),
            first_lba: 10 * mib,
            last_lba: 18 * mib - 1,
            attributes: 0,
            name: "IMGB",
        },
        NewPartition {
            number: 4,
            type_guid: types::EVE_CONFIG,
            unique_guid: eve_guid(0x54),
            first_lba: 18 * mib,
            last_lba: 19 * mib - 1,
            attributes: 0,
            name: "CONFIG",
        },
        NewPartition {
            number: 9,
            type_guid: types::EVE_PERSIST,
            unique_guid: eve_guid(0x59),
            first_lba: 19 * mib,
            last_lba: 63 * mib - 1,
            attributes: 0,
            name: "P3",
        },
    ]
}

/// A 16 MiB disk with EVE's layout and a protective MBR.
pub fn eve_disk() -> Blocks<MemDisk> {
    let mut disk = Blocks(MemDisk::new(DISK_BLOCKS as usize));
    let gpt = Gpt::create(512, DISK_BLOCKS, eve_guid(0x50), &eve_partitions()).unwrap();
    disk.write(0, &gptab::protective_mbr(512, DISK_BLOCKS))
        .unwrap();
    gpt.write(&mut disk).unwrap();
    disk
}

/// The disk's bytes, for tests that damage them.
pub fn bytes(disk: &mut Blocks<MemDisk>) -> &mut [u8] {
    disk.0.as_bytes_mut()
}

/// Bytes as a disk of `block_size` blocks: an image file's, or a disk of
/// 4096-byte blocks (some NVMe and USB disks).
#[derive(Clone)]
pub struct VecDisk {
    pub bytes: Vec<u8>,
    pub block_size: usize,
}

impl Disk for VecDisk {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn block_count(&self) -> u64 {
        (self.bytes.len() / self.block_size) as u64
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let at = lba as usize * self.block_size;
        let src = self
            .bytes
            .get(at..at + buf.len())
            .ok_or(DiskError::OutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        let at = lba as usize * self.block_size;
        let dst = self
            .bytes
            .get_mut(at..at + buf.len())
            .ok_or(DiskError::OutOfRange)?;
        dst.copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        Ok(())
    }
}
