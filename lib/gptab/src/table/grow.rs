//! Growing a table onto a larger disk: an image written to a disk larger
//! than itself keeps its backup table at the image's end, and its last
//! partition (EVE's PERSIST) ends there too. [`Gpt::fill_disk`] moves the
//! backup to the disk's end and [`Gpt::grow_to_end`] widens the last
//! partition to the new last usable block; one [`Gpt::write`] then writes
//! both crash-safely: the new backup goes to blocks the old primary does
//! not point at, and once the primary header is new its entries are new
//! too or it fails its CRC and the (new, whole) backup at the disk's end
//! is the one read. [`grow_onto_disk`] does it all on a disk.

use alloc::vec;
use core::fmt;

use super::{Gpt, ReadError};
use crate::{Disk, DiskError, has_protective_mbr};

/// Why a partition could not be grown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrowError {
    /// No used entry with that number.
    NoSuchPartition(u32),
    /// Another partition lies after it.
    NotLast { number: u32, after: u32 },
}

impl fmt::Display for GrowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrowError::NoSuchPartition(n) => write!(f, "no partition {n}"),
            GrowError::NotLast { number, after } => {
                write!(
                    f,
                    "partition {number} is not the last: {after} lies after it"
                )
            }
        }
    }
}

impl Gpt {
    /// Moves the backup table to the last block of a disk of
    /// `disk_blocks` blocks and the last usable block just before its
    /// entries, if that is further than they are now (in memory; see
    /// [`Gpt::write`]). Whether anything moved.
    pub fn fill_disk(&mut self, disk_blocks: u64) -> bool {
        let entry_blocks = self.entry_blocks().len() as u64 / self.block_size as u64;
        let Some(backup_lba) = disk_blocks.checked_sub(1) else {
            return false;
        };
        let Some(last_usable) = backup_lba
            .checked_sub(entry_blocks)
            .and_then(|entries| entries.checked_sub(1))
        else {
            return false;
        };
        if backup_lba <= self.backup_lba || last_usable <= self.last_usable {
            return false;
        }
        self.disk_blocks = disk_blocks;
        self.backup_lba = backup_lba;
        self.backup_entries_lba = backup_lba - entry_blocks;
        self.last_usable = last_usable;
        true
    }

    /// Extends partition `number`, which must be the last on the disk, to
    /// the last usable block (in memory; see [`Gpt::write`]). Its new last
    /// block, or `None` if it already ends there.
    pub fn grow_to_end(&mut self, number: u32) -> Result<Option<u64>, GrowError> {
        let partition = self
            .partition(number)
            .ok_or(GrowError::NoSuchPartition(number))?;
        if let Some(after) = self
            .partitions()
            .iter()
            .find(|p| p.number != number && p.last_lba > partition.last_lba)
        {
            return Err(GrowError::NotLast {
                number,
                after: after.number,
            });
        }
        if partition.last_lba >= self.last_usable {
            return Ok(None);
        }
        let size = self.entry_size as usize;
        // `partition` found the entry, so this range is inside the array.
        let at = (number as usize - 1) * size + 40;
        self.entries[at..at + 8].copy_from_slice(&self.last_usable.to_le_bytes());
        Ok(Some(self.last_usable))
    }
}

/// What [`grow_onto_disk`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    /// The partition's last block before.
    pub old_last_lba: u64,
    /// Its last block now.
    pub new_last_lba: u64,
}

/// Why [`grow_onto_disk`] failed; the disk still holds a valid table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrowDiskError {
    Read(ReadError),
    Grow(GrowError),
    Write(DiskError),
}

impl fmt::Display for GrowDiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrowDiskError::Read(e) => write!(f, "reading the GPT: {e}"),
            GrowDiskError::Grow(e) => write!(f, "growing: {e}"),
            GrowDiskError::Write(e) => write!(f, "writing the GPT: {e}"),
        }
    }
}

/// Grows the table on `disk` onto all of it and partition `number` (the
/// last) to its end: `None` when there was nothing to grow. Safe to run
/// at every boot and to cut at any write: the disk reads as the old table
/// or the new one ([`Gpt::write`]), and a run after a cut finishes the
/// job (a table left with one good copy is rewritten whole). Afterwards
/// the old backup header, now inside the partition, is zeroed, and a
/// protective MBR's size is made the disk's: one 4-byte field, so a torn
/// write of sector 0 leaves it protective still.
pub fn grow_onto_disk<D: Disk>(disk: &mut D, number: u32) -> Result<Option<Grown>, GrowDiskError> {
    let mut gpt = Gpt::read(disk).map_err(GrowDiskError::Read)?;
    let old_backup = gpt.backup_lba;
    let old_last_lba = gpt
        .partition(number)
        .ok_or(GrowDiskError::Grow(GrowError::NoSuchPartition(number)))?
        .last_lba;
    let moved = gpt.fill_disk(disk.block_count());
    let grown = gpt.grow_to_end(number).map_err(GrowDiskError::Grow)?;
    if !moved && grown.is_none() {
        if !gpt.status().both_valid() {
            gpt.write(disk).map_err(GrowDiskError::Write)?;
        }
        return Ok(None);
    }
    gpt.write(disk).map_err(GrowDiskError::Write)?;
    if moved && old_backup < gpt.backup_entries_lba {
        disk.write(old_backup, &vec![0u8; gpt.block_size])
            .map_err(GrowDiskError::Write)?;
    }
    let mut sector = vec![0u8; gpt.block_size];
    disk.read(0, &mut sector).map_err(GrowDiskError::Write)?;
    if has_protective_mbr(&sector) && sector[446 + 4] == 0xEE {
        let size = u32::try_from(gpt.disk_blocks.saturating_sub(1)).unwrap_or(u32::MAX);
        sector[446 + 12..446 + 16].copy_from_slice(&size.to_le_bytes());
        disk.write(0, &sector).map_err(GrowDiskError::Write)?;
    }
    disk.flush().map_err(GrowDiskError::Write)?;
    Ok(Some(Grown {
        old_last_lba,
        new_last_lba: grown.unwrap_or(old_last_lba),
    }))
}
