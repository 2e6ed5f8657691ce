//! The GPT header: 92 bytes at the start of LBA 1 (primary) and of the
//! last LBA (backup), each describing where its copy of the entry array is
//! and what that array's CRC-32 is.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use wirebytes::{le_u32_at, le_u64_at};

use crate::{DiskError, Guid};

/// `EFI PART`.
pub(crate) const SIGNATURE: [u8; 8] = *b"EFI PART";
/// Revision 1.0, the only one there is.
pub(crate) const REVISION: u32 = 0x0001_0000;
/// The header size we write (the fields end there).
pub(crate) const HEADER_SIZE: u32 = 92;
/// The specification's minimum entry array: 128 entries of 128 bytes.
pub(crate) const MIN_ENTRY_ARRAY_BYTES: u64 = 16_384;

/// Why one copy of the table (header or entries) is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Its blocks could not be read.
    Unreadable(DiskError),
    /// No `EFI PART` signature: no GPT here.
    Signature,
    /// A revision other than 1.0.
    Revision,
    /// Header size below 92 bytes or above a block.
    HeaderSize,
    /// The header's CRC-32 does not match.
    HeaderCrc,
    /// Entry size not 128 times a power of two.
    EntrySize,
    /// Entry array smaller than the 16 KiB the specification requires.
    EntryTableSize,
    /// Entry array larger than we accept (see [`crate::MAX_ENTRY_ARRAY_BYTES`]).
    TooManyEntries,
    /// First usable LBA after the last one.
    UsableRange,
    /// The header does not name the block it was read from as its own.
    Location,
    /// The entry array overlaps a header or the usable blocks, or runs
    /// past the disk.
    EntriesLocation,
    /// The other header's location is inside the usable blocks or past
    /// the disk.
    AlternateLocation,
    /// The entry array's CRC-32 does not match its header.
    EntriesCrc,
    /// The backup disagrees with a valid primary header.
    OutOfSync,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Unreadable(e) => write!(f, "unreadable ({e})"),
            Invalid::Signature => f.write_str("no GPT signature"),
            Invalid::Revision => f.write_str("unknown GPT revision"),
            Invalid::HeaderSize => f.write_str("bad header size"),
            Invalid::HeaderCrc => f.write_str("header CRC mismatch"),
            Invalid::EntrySize => f.write_str("bad partition entry size"),
            Invalid::EntryTableSize => f.write_str("partition entry array too small"),
            Invalid::TooManyEntries => f.write_str("partition entry array too large"),
            Invalid::UsableRange => f.write_str("first usable block after the last"),
            Invalid::Location => f.write_str("header not where it says it is"),
            Invalid::EntriesLocation => f.write_str("partition entries misplaced"),
            Invalid::AlternateLocation => f.write_str("other header misplaced"),
            Invalid::EntriesCrc => f.write_str("partition entries CRC mismatch"),
            Invalid::OutOfSync => f.write_str("out of sync with the primary"),
        }
    }
}

/// The fields of one header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub header_size: u32,
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable: u64,
    pub last_usable: u64,
    pub disk_guid: Guid,
    pub entries_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

/// The CRC-32 (IEEE, as zlib computes it) GPT uses.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytes);
    hasher.finalize()
}

impl Header {
    /// Reads and checks the header at the start of `block` on its own:
    /// signature, revision, sizes, CRC, entry geometry. Where it sits on
    /// the disk is checked by the caller, which knows which copy it is.
    pub fn parse(block: &[u8], max_entry_array: u64) -> Result<Header, Invalid> {
        let field = |at| le_u32_at(block, at).map_err(|_| Invalid::HeaderSize);
        let wide = |at| le_u64_at(block, at).map_err(|_| Invalid::HeaderSize);
        if block.get(..8) != Some(&SIGNATURE[..]) {
            return Err(Invalid::Signature);
        }
        if field(8)? != REVISION {
            return Err(Invalid::Revision);
        }
        let header_size = field(12)?;
        let size = usize::try_from(header_size).map_err(|_| Invalid::HeaderSize)?;
        if header_size < HEADER_SIZE || size > block.len() {
            return Err(Invalid::HeaderSize);
        }
        let mut zeroed = block[..size].to_vec();
        zeroed[16..20].fill(0);
        if crc32(&zeroed) != field(16)? {
            return Err(Invalid::HeaderCrc);
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&block[56..72]);
        let header = Header {
            header_size,
            my_lba: wide(24)?,
            alternate_lba: wide(32)?,
            first_usable: wide(40)?,
            last_usable: wide(48)?,
            disk_guid: Guid(guid),
            entries_lba: wide(72)?,
            entry_count: field(80)?,
            entry_size: field(84)?,
            entries_crc: field(88)?,
        };
        let entry_size = header.entry_size;
        if entry_size < 128
            || !entry_size.is_multiple_of(128)
            || !(entry_size / 128).is_power_of_two()
        {
            return Err(Invalid::EntrySize);
        }
        let array = header.entry_array_bytes();
        if array < MIN_ENTRY_ARRAY_BYTES {
            return Err(Invalid::EntryTableSize);
        }
        if array > max_entry_array {
            return Err(Invalid::TooManyEntries);
        }
        if header.first_usable > header.last_usable {
            return Err(Invalid::UsableRange);
        }
        Ok(header)
    }

    /// Bytes of the entry array.
    pub fn entry_array_bytes(&self) -> u64 {
        u64::from(self.entry_count) * u64::from(self.entry_size)
    }

    /// Blocks the entry array takes.
    pub fn entry_array_blocks(&self, block_size: usize) -> u64 {
        self.entry_array_bytes().div_ceil(block_size as u64)
    }

    /// The header as a whole block, with its CRC.
    pub fn emit(&self, block_size: usize) -> Vec<u8> {
        let mut block = vec![0u8; block_size];
        block[..8].copy_from_slice(&SIGNATURE);
        block[8..12].copy_from_slice(&REVISION.to_le_bytes());
        block[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        block[24..32].copy_from_slice(&self.my_lba.to_le_bytes());
        block[32..40].copy_from_slice(&self.alternate_lba.to_le_bytes());
        block[40..48].copy_from_slice(&self.first_usable.to_le_bytes());
        block[48..56].copy_from_slice(&self.last_usable.to_le_bytes());
        block[56..72].copy_from_slice(&self.disk_guid.0);
        block[72..80].copy_from_slice(&self.entries_lba.to_le_bytes());
        block[80..84].copy_from_slice(&self.entry_count.to_le_bytes());
        block[84..88].copy_from_slice(&self.entry_size.to_le_bytes());
        block[88..92].copy_from_slice(&self.entries_crc.to_le_bytes());
        let crc = crc32(&block[..HEADER_SIZE as usize]);
        block[16..20].copy_from_slice(&crc.to_le_bytes());
        block
    }

    /// Whether a backup header describes the same table as this primary:
    /// everything but the locations, which mirror each other.
    pub fn mirrors(&self, backup: &Header) -> bool {
        self.header_size == backup.header_size
            && self.my_lba == backup.alternate_lba
            && self.alternate_lba == backup.my_lba
            && self.first_usable == backup.first_usable
            && self.last_usable == backup.last_usable
            && self.disk_guid == backup.disk_guid
            && self.entry_count == backup.entry_count
            && self.entry_size == backup.entry_size
            && self.entries_crc == backup.entries_crc
    }
}
