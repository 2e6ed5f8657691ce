//! The whole table: both copies read and checked, one layout kept, both
//! copies written back.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::header::{Header, Invalid, crc32};
use crate::{Disk, DiskError, Guid, Partition, has_protective_mbr};

mod grow;

pub use grow::{GrowDiskError, GrowError, Grown, grow_onto_disk};

/// The largest entry array we read: 8192 entries of 128 bytes. Real disks
/// have 16 KiB; a hostile header's count is refused before anything is
/// allocated.
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;

/// Entries in a table we create.
const NEW_ENTRY_COUNT: u32 = 128;
/// Bytes per entry in a table we create.
const NEW_ENTRY_SIZE: u32 = 128;

/// One of the two copies of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// Header at LBA 1, entries usually from LBA 2.
    Primary,
    /// Header at the disk's last block, entries just before it.
    Backup,
}

impl fmt::Display for Copy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Copy::Primary => "primary",
            Copy::Backup => "backup",
        })
    }
}

/// What was found of one copy: usable, or why not.
pub type CopyStatus = Result<(), Invalid>;

/// What the disk held when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Sector 0 is a protective (or hybrid) MBR. Only reported: GRUB and
    /// Linux read the GPT without one.
    pub protective_mbr: bool,
    pub primary: CopyStatus,
    pub backup: CopyStatus,
}

impl Status {
    /// Whether both copies were usable (nothing to repair).
    pub fn both_valid(&self) -> bool {
        self.primary.is_ok() && self.backup.is_ok()
    }
}

/// Why no table could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The disk's block size is not a power of two from 512 to 64 KiB.
    BlockSize(usize),
    /// Neither copy is usable.
    NoValidTable { primary: Invalid, backup: Invalid },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::BlockSize(size) => write!(f, "unsupported block size {size}"),
            ReadError::NoValidTable { primary, backup } => {
                write!(f, "no usable GPT: primary {primary}, backup {backup}")
            }
        }
    }
}

/// Why a table could not be laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The block size is not a power of two from 512 to 64 KiB.
    BlockSize(usize),
    /// The disk cannot hold two tables and a usable block.
    DiskTooSmall,
    /// Partition numbers run from 1 to 128.
    Number(u32),
    /// Two partitions with the same number.
    DuplicateNumber(u32),
    /// A partition outside the usable blocks, or ending before it starts.
    OutsideUsable(u32),
    /// Two partitions share blocks.
    Overlap(u32, u32),
    /// A name longer than 36 UTF-16 code units.
    NameTooLong(u32),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::BlockSize(size) => write!(f, "unsupported block size {size}"),
            LayoutError::DiskTooSmall => f.write_str("disk too small for a GPT"),
            LayoutError::Number(n) => write!(f, "partition number {n} outside 1-128"),
            LayoutError::DuplicateNumber(n) => write!(f, "partition {n} given twice"),
            LayoutError::OutsideUsable(n) => {
                write!(f, "partition {n} outside the disk's usable blocks")
            }
            LayoutError::Overlap(a, b) => write!(f, "partitions {a} and {b} overlap"),
            LayoutError::NameTooLong(n) => write!(f, "partition {n}'s name is too long"),
        }
    }
}

/// Why a change to the table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateError {
    /// No used entry with that number.
    NoSuchPartition(u32),
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::NoSuchPartition(n) => write!(f, "no partition {n}"),
        }
    }
}

/// A partition to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewPartition<'a> {
    /// 1-based entry number (EVE puts PERSIST at 9).
    pub number: u32,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
    pub name: &'a str,
}

/// A partition table: one layout, one entry array, and what the disk held
/// when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    block_size: usize,
    disk_blocks: u64,
    disk_guid: Guid,
    first_usable: u64,
    last_usable: u64,
    entry_count: u32,
    entry_size: u32,
    primary_entries_lba: u64,
    backup_lba: u64,
    backup_entries_lba: u64,
    entries: Vec<u8>,
    status: Status,
}

/// Reads `blocks` blocks at `lba`, refusing ranges past the disk before
/// allocating.
fn read_blocks<D: Disk>(disk: &mut D, lba: u64, blocks: u64) -> Result<Vec<u8>, Invalid> {
    let end = lba
        .checked_add(blocks)
        .ok_or(Invalid::Unreadable(DiskError::OutOfRange))?;
    if end > disk.block_count() {
        return Err(Invalid::Unreadable(DiskError::OutOfRange));
    }
    let bytes = usize::try_from(blocks)
        .ok()
        .and_then(|b| b.checked_mul(disk.block_size()))
        .ok_or(Invalid::Unreadable(DiskError::OutOfRange))?;
    let mut buf = vec![0u8; bytes];
    disk.read(lba, &mut buf).map_err(Invalid::Unreadable)?;
    Ok(buf)
}

/// Reads the header at `lba`.
fn read_header<D: Disk>(disk: &mut D, lba: u64) -> Result<Header, Invalid> {
    let block = read_blocks(disk, lba, 1)?;
    Header::parse(&block, MAX_ENTRY_ARRAY_BYTES)
}

/// Reads `header`'s entry array and checks its CRC.
fn read_entries<D: Disk>(disk: &mut D, header: &Header) -> Result<Vec<u8>, Invalid> {
    let blocks = header.entry_array_blocks(disk.block_size());
    let mut array = read_blocks(disk, header.entries_lba, blocks)?;
    // Bounded by MAX_ENTRY_ARRAY_BYTES in `Header::parse`.
    array.truncate(header.entry_array_bytes() as usize);
    if crc32(&array) != header.entries_crc {
        return Err(Invalid::EntriesCrc);
    }
    Ok(array)
}

/// The primary header's placement, as GRUB checks it.
fn check_primary(h: &Header, block_size: usize) -> Result<(), Invalid> {
    if h.my_lba != 1 {
        return Err(Invalid::Location);
    }
    let entries_end = h
        .entries_lba
        .checked_add(h.entry_array_blocks(block_size))
        .ok_or(Invalid::EntriesLocation)?;
    if h.entries_lba <= 1 || entries_end > h.first_usable {
        return Err(Invalid::EntriesLocation);
    }
    if h.alternate_lba <= h.last_usable {
        return Err(Invalid::AlternateLocation);
    }
    Ok(())
}

/// The backup header's placement, as GRUB checks it.
fn check_backup(h: &Header, found_at: u64, block_size: usize) -> Result<(), Invalid> {
    if h.my_lba != found_at || h.my_lba <= h.last_usable {
        return Err(Invalid::Location);
    }
    if h.alternate_lba != 1 {
        return Err(Invalid::AlternateLocation);
    }
    let entries_end = h
        .entries_lba
        .checked_add(h.entry_array_blocks(block_size))
        .ok_or(Invalid::EntriesLocation)?;
    if h.entries_lba <= h.last_usable || entries_end > h.my_lba {
        return Err(Invalid::EntriesLocation);
    }
    Ok(())
}

impl Gpt {
    /// Reads both copies of the table from `disk` and keeps the usable
    /// one (the primary when both are). As in GRUB's `gpt` module, a
    /// backup that disagrees with a readable primary header is not used,
    /// so a table half-written by [`Gpt::write`] reads back as the old or
    /// the new table, never a mix.
    pub fn read<D: Disk>(disk: &mut D) -> Result<Gpt, ReadError> {
        let block_size = disk.block_size();
        if !crate::valid_block_size(block_size) {
            return Err(ReadError::BlockSize(block_size));
        }
        let disk_blocks = disk.block_count();
        let protective_mbr =
            read_blocks(disk, 0, 1).is_ok_and(|sector| has_protective_mbr(&sector));

        let primary_header =
            read_header(disk, 1).and_then(|h| check_primary(&h, block_size).map(|()| h));
        let primary =
            primary_header.and_then(|h| read_entries(disk, &h).map(|entries| (h, entries)));

        let backup_at = match &primary_header {
            Ok(h) if h.alternate_lba >= disk_blocks => Err(Invalid::AlternateLocation),
            Ok(h) => Ok(h.alternate_lba),
            Err(_) => disk_blocks.checked_sub(1).ok_or(Invalid::Location),
        };
        let backup = backup_at.and_then(|at| {
            let h = read_header(disk, at)?;
            check_backup(&h, at, block_size)?;
            if primary_header.is_ok_and(|p| !p.mirrors(&h)) {
                return Err(Invalid::OutOfSync);
            }
            let entries = read_entries(disk, &h)?;
            if primary.as_ref().is_ok_and(|(_, p)| *p != entries) {
                return Err(Invalid::OutOfSync);
            }
            Ok((h, entries))
        });

        let status = Status {
            protective_mbr,
            primary: primary.as_ref().map(|_| ()).map_err(|e| *e),
            backup: backup.as_ref().map(|_| ()).map_err(|e| *e),
        };
        let backup_header = backup.as_ref().ok().map(|(h, _)| *h);
        let (header, entries) = match (primary, backup) {
            (Ok(p), _) => p,
            (Err(_), Ok(b)) => b,
            (Err(primary), Err(backup)) => {
                return Err(ReadError::NoValidTable { primary, backup });
            }
        };
        let entry_blocks = header.entry_array_blocks(block_size);
        let (primary_entries_lba, backup_lba, backup_entries_lba) =
            match (status.primary, backup_header) {
                (Ok(()), Some(b)) => (header.entries_lba, b.my_lba, b.entries_lba),
                // The backup is rebuilt from the primary where the primary
                // says it is, or at the disk's new end if the disk grew (an
                // image written to a larger stick), as GRUB's repair does.
                (Ok(()), None) => {
                    let lba = header.alternate_lba.max(disk_blocks.saturating_sub(1));
                    (header.entries_lba, lba, lba.saturating_sub(entry_blocks))
                }
                // The primary is rebuilt from the backup, entries at LBA 2.
                (Err(_), _) => (2, header.my_lba, header.entries_lba),
            };
        Ok(Gpt {
            block_size,
            disk_blocks,
            disk_guid: header.disk_guid,
            first_usable: header.first_usable,
            last_usable: header.last_usable,
            entry_count: header.entry_count,
            entry_size: header.entry_size,
            primary_entries_lba,
            backup_lba,
            backup_entries_lba,
            entries,
            status,
        })
    }

    /// A new, empty-but-for-`partitions` table for a disk of `disk_blocks`
    /// blocks: 128 entries of 128 bytes, the primary entries at LBA 2.
    pub fn create(
        block_size: usize,
        disk_blocks: u64,
        disk_guid: Guid,
        partitions: &[NewPartition<'_>],
    ) -> Result<Gpt, LayoutError> {
        if !crate::valid_block_size(block_size) {
            return Err(LayoutError::BlockSize(block_size));
        }
        let array_bytes = u64::from(NEW_ENTRY_COUNT) * u64::from(NEW_ENTRY_SIZE);
        let entry_blocks = array_bytes.div_ceil(block_size as u64);
        let first_usable = 2 + entry_blocks;
        let backup_lba = disk_blocks
            .checked_sub(1)
            .ok_or(LayoutError::DiskTooSmall)?;
        let backup_entries_lba = backup_lba
            .checked_sub(entry_blocks)
            .ok_or(LayoutError::DiskTooSmall)?;
        let last_usable = backup_entries_lba
            .checked_sub(1)
            .filter(|&last| last >= first_usable)
            .ok_or(LayoutError::DiskTooSmall)?;
        let mut entries = vec![0u8; array_bytes as usize];
        for (i, p) in partitions.iter().enumerate() {
            if !(1..=NEW_ENTRY_COUNT).contains(&p.number) {
                return Err(LayoutError::Number(p.number));
            }
            if p.first_lba < first_usable || p.last_lba > last_usable || p.last_lba < p.first_lba {
                return Err(LayoutError::OutsideUsable(p.number));
            }
            for q in &partitions[..i] {
                if q.number == p.number {
                    return Err(LayoutError::DuplicateNumber(p.number));
                }
                if p.first_lba <= q.last_lba && q.first_lba <= p.last_lba {
                    return Err(LayoutError::Overlap(q.number, p.number));
                }
            }
            let partition = Partition {
                number: p.number,
                type_guid: p.type_guid,
                unique_guid: p.unique_guid,
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                attributes: p.attributes,
                name: p.name.into(),
            };
            let at = (p.number as usize - 1) * NEW_ENTRY_SIZE as usize;
            partition
                .emit_into(&mut entries[at..at + NEW_ENTRY_SIZE as usize])
                .ok_or(LayoutError::NameTooLong(p.number))?;
        }
        Ok(Gpt {
            block_size,
            disk_blocks,
            disk_guid,
            first_usable,
            last_usable,
            entry_count: NEW_ENTRY_COUNT,
            entry_size: NEW_ENTRY_SIZE,
            primary_entries_lba: 2,
            backup_lba,
            backup_entries_lba,
            entries,
            status: Status {
                protective_mbr: false,
                primary: Err(Invalid::Signature),
                backup: Err(Invalid::Signature),
            },
        })
    }

    /// What the disk held when this table was read.
    pub fn status(&self) -> Status {
        self.status
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn disk_guid(&self) -> Guid {
        self.disk_guid
    }

    /// The first block a partition may use.
    pub fn first_usable(&self) -> u64 {
        self.first_usable
    }

    /// The last block a partition may use.
    pub fn last_usable(&self) -> u64 {
        self.last_usable
    }

    /// The raw bytes of entry `number` (1-based), if it exists.
    fn raw_entry(&self, number: u32) -> Option<&[u8]> {
        let size = self.entry_size as usize;
        let at = (number.checked_sub(1)? as usize).checked_mul(size)?;
        self.entries.get(at..at.checked_add(size)?)
    }

    /// Every used entry, in entry order.
    pub fn partitions(&self) -> Vec<Partition> {
        (1..=self.entry_count)
            .filter_map(|n| Partition::parse(n, self.raw_entry(n)?))
            .collect()
    }

    /// Used entry `number` (1-based).
    pub fn partition(&self, number: u32) -> Option<Partition> {
        Partition::parse(number, self.raw_entry(number)?)
    }

    /// The first used entry named `name`.
    pub fn partition_named(&self, name: &str) -> Option<Partition> {
        self.partitions().into_iter().find(|p| p.name == name)
    }

    /// Sets partition `number`'s 64 attribute bits (in memory; see
    /// [`Gpt::write`]).
    pub fn set_attributes(&mut self, number: u32, attributes: u64) -> Result<(), UpdateError> {
        if self.partition(number).is_none() {
            return Err(UpdateError::NoSuchPartition(number));
        }
        let size = self.entry_size as usize;
        // `partition` found the entry, so this range is inside the array.
        let at = (number as usize - 1) * size + 48;
        self.entries[at..at + 8].copy_from_slice(&attributes.to_le_bytes());
        Ok(())
    }

    fn header(&self, copy: Copy) -> Header {
        let (my_lba, alternate_lba, entries_lba) = match copy {
            Copy::Primary => (1, self.backup_lba, self.primary_entries_lba),
            Copy::Backup => (self.backup_lba, 1, self.backup_entries_lba),
        };
        Header {
            header_size: crate::header::HEADER_SIZE,
            my_lba,
            alternate_lba,
            first_usable: self.first_usable,
            last_usable: self.last_usable,
            disk_guid: self.disk_guid,
            entries_lba,
            entry_count: self.entry_count,
            entry_size: self.entry_size,
            entries_crc: crc32(&self.entries),
        }
    }

    /// The entry array padded to whole blocks.
    fn entry_blocks(&self) -> Vec<u8> {
        let mut blocks = self.entries.clone();
        blocks.resize(
            self.entries.len().div_ceil(self.block_size) * self.block_size,
            0,
        );
        blocks
    }

    /// Writes both copies: the backup first and then the primary, each
    /// header before its entries, with a flush after each copy. A power
    /// cut at any point leaves a disk that [`Gpt::read`] reads as the old
    /// table or the new one: until the backup is whole the primary is
    /// intact; once the primary header is new, the backup agrees with it.
    /// The backup is left out, as GRUB leaves it, if the disk is too small
    /// for where the table puts it.
    pub fn write<D: Disk>(&self, disk: &mut D) -> Result<(), DiskError> {
        if disk.block_size() != self.block_size {
            return Err(DiskError::OutOfRange);
        }
        let entries = self.entry_blocks();
        for copy in [Copy::Backup, Copy::Primary] {
            let header = self.header(copy);
            if copy == Copy::Backup && header.my_lba >= disk.block_count() {
                continue;
            }
            disk.write(header.my_lba, &header.emit(self.block_size))?;
            disk.write(header.entries_lba, &entries)?;
            disk.flush()?;
        }
        Ok(())
    }

    /// The disk's size in blocks when the table was read or created.
    pub fn disk_blocks(&self) -> u64 {
        self.disk_blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::MIN_ENTRY_ARRAY_BYTES;

    #[test]
    fn the_minimum_entry_array_is_what_we_create() {
        assert_eq!(
            u64::from(NEW_ENTRY_COUNT) * u64::from(NEW_ENTRY_SIZE),
            MIN_ENTRY_ARRAY_BYTES
        );
    }
}
