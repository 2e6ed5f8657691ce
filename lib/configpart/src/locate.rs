//! Finding the FAT volume on the CONFIG disk: either the whole disk (what a
//! host passes when it hands over just the partition, and what EVE's
//! `config.img` is) or the first FAT partition of an MBR disk.

use blockdev::BlockDevice;

use crate::FatError;
use crate::bpb::{Geometry, SECTOR_SIZE};

/// MBR partition types of FAT volumes: FAT12, FAT16 < 32 MiB, FAT16,
/// FAT32 (CHS), FAT32 (LBA), FAT16 (LBA).
const FAT_PARTITION_TYPES: [u8; 6] = [0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E];

/// A FAT volume's place on the disk and its boot sector.
pub struct VolumeLocation {
    pub start: u64,
    pub sectors: u64,
    pub boot_sector: [u8; SECTOR_SIZE],
}

/// One MBR partition entry (16 bytes at 446 + 16 * i).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MbrPartition {
    kind: u8,
    start: u64,
    sectors: u64,
}

impl MbrPartition {
    fn parse(entry: &[u8]) -> Option<MbrPartition> {
        let status = *entry.first()?;
        if status & 0x7F != 0 || entry.len() != 16 {
            return None;
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([entry[at], entry[at + 1], entry[at + 2], entry[at + 3]])
        };
        Some(MbrPartition {
            kind: entry[4],
            start: u64::from(u32_at(8)),
            sectors: u64::from(u32_at(12)),
        })
    }
}

pub fn locate_volume(dev: &mut impl BlockDevice) -> Result<VolumeLocation, FatError> {
    let disk_sectors = dev.block_count();
    if disk_sectors == 0 {
        return Err(FatError::NoFatVolume);
    }
    let mut first = [0u8; SECTOR_SIZE];
    dev.read_blocks(0, &mut first)?;
    // A FAT boot sector also ends in 55 AA, so try it as one first: its
    // partition-table bytes are boot code and would parse as nonsense.
    if Geometry::parse(&first, disk_sectors).is_ok() {
        return Ok(VolumeLocation {
            start: 0,
            sectors: disk_sectors,
            boot_sector: first,
        });
    }
    if first[510..512] != [0x55, 0xAA] {
        return Err(FatError::NoFatVolume);
    }
    let partition = first[446..510]
        .chunks_exact(16)
        .filter_map(MbrPartition::parse)
        .find(|p| FAT_PARTITION_TYPES.contains(&p.kind) && p.start > 0 && p.sectors > 0)
        .ok_or(FatError::NoFatVolume)?;
    let end = partition
        .start
        .checked_add(partition.sectors)
        .filter(|&end| end <= disk_sectors)
        .ok_or(FatError::BadBootSector)?;
    let mut boot_sector = [0u8; SECTOR_SIZE];
    dev.read_blocks(partition.start, &mut boot_sector)?;
    Ok(VolumeLocation {
        start: partition.start,
        sectors: end - partition.start,
        boot_sector,
    })
}
