//! The Xen PVH boot ABI (`hvm_start_info`), as used by QEMU's PVH direct boot.
//!
//! On x86_64 the VMM enters us in 32-bit mode with `%ebx` holding the physical
//! address of a start info block. The HAL maps that block (and, in a second
//! step, the memory map and command line it points to) and hands the bytes to
//! this module. The block is written by the VMM, which we do not trust to be
//! well-formed, so every field is read through checked accessors and the
//! counts it contains are capped before the HAL sizes any slice from them.
//!
//! All structures are little-endian, matching `xen/include/public/arch-x86/hvm/start_info.h`.

use core::fmt;

use crate::bytes::{le_u32, le_u64};

/// `XEN_HVM_START_MAGIC_VALUE`; anything else means `%ebx` did not point at a
/// start info block (wrong boot protocol, or a corrupted hand-over).
pub const START_INFO_MAGIC: u32 = 0x336e_c578;

/// Size of a version 1 start info block: the most the HAL needs to map.
pub const START_INFO_LEN: usize = 56;

/// Size of a version 0 block, which ends where the version 1 memory map
/// fields begin (offset 40).
pub const START_INFO_V0_LEN: usize = 40;

/// Size of one `hvm_memmap_table_entry`.
pub const MEMMAP_ENTRY_LEN: usize = 24;

/// Cap on memory map entries. A real VM has a dozen; the cap keeps the slice
/// the HAL maps (at most 3 KiB) independent of what the VMM claims.
pub const MAX_MEMMAP_ENTRIES: usize = 128;

/// Cap on the command line window, so that an unterminated string cannot make
/// the HAL map (or us scan) an arbitrary amount of memory.
pub const MAX_CMDLINE_LEN: usize = 4096;

/// Why a PVH structure was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvhError {
    /// The slice is shorter than the structure it must contain.
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes that were provided.
        got: usize,
    },
    /// The first word is not [`START_INFO_MAGIC`].
    BadMagic(u32),
    /// The memory map claims more than [`MAX_MEMMAP_ENTRIES`] entries.
    TooManyEntries(u32),
    /// Memory map entry `index` has `addr + size` beyond the 64-bit space.
    RegionOverflow {
        /// Position of the offending entry in the table.
        index: usize,
    },
    /// No NUL within the first [`MAX_CMDLINE_LEN`] bytes of the command line.
    CmdlineUnterminated,
    /// The command line is not UTF-8.
    CmdlineNotUtf8 {
        /// Length of the valid UTF-8 prefix.
        valid_up_to: usize,
    },
}

impl fmt::Display for PvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, got } => {
                write!(f, "PVH structure truncated: need {needed} bytes, got {got}")
            }
            Self::BadMagic(m) => write!(
                f,
                "bad PVH start info magic {m:#010x} (expected {START_INFO_MAGIC:#010x})"
            ),
            Self::TooManyEntries(n) => write!(
                f,
                "PVH memory map has {n} entries (limit {MAX_MEMMAP_ENTRIES})"
            ),
            Self::RegionOverflow { index } => {
                write!(f, "PVH memory map entry {index} wraps past 2^64")
            }
            Self::CmdlineUnterminated => write!(
                f,
                "PVH command line has no NUL within {MAX_CMDLINE_LEN} bytes"
            ),
            Self::CmdlineNotUtf8 { valid_up_to } => {
                write!(f, "PVH command line is not UTF-8 after byte {valid_up_to}")
            }
        }
    }
}

impl core::error::Error for PvhError {}

/// The fields of `hvm_start_info` the HAL uses.
///
/// Module fields are not exposed because none of our services boot with
/// modules; the addresses are left for the HAL to map, since only it can turn
/// them into slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartInfo {
    /// ABI version; 0 means there is no memory map in the block.
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Physical address of the NUL-terminated command line, or 0.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP, or 0 (then scan for it).
    pub rsdp_paddr: u64,
    /// Physical address of the memory map; 0 for version 0.
    pub memmap_paddr: u64,
    /// Number of memory map entries; 0 for version 0. Not yet capped: pass it
    /// to [`memmap`], which is where the cap is enforced.
    pub memmap_entries: u32,
}

impl StartInfo {
    /// Parses a start info block.
    ///
    /// The HAL cannot know the version before mapping, so it maps
    /// [`START_INFO_LEN`] bytes; a version 0 block only needs
    /// [`START_INFO_V0_LEN`] of them. Versions above 1 are accepted because
    /// the ABI only ever appends fields.
    pub fn parse(bytes: &[u8]) -> Result<StartInfo, PvhError> {
        let truncated = |needed| PvhError::Truncated {
            needed,
            got: bytes.len(),
        };
        let magic = le_u32(bytes, 0).ok_or(truncated(START_INFO_V0_LEN))?;
        if magic != START_INFO_MAGIC {
            return Err(PvhError::BadMagic(magic));
        }
        let version = le_u32(bytes, 4).ok_or(truncated(START_INFO_V0_LEN))?;
        let needed = if version == 0 {
            START_INFO_V0_LEN
        } else {
            START_INFO_LEN
        };
        if bytes.len() < needed {
            return Err(truncated(needed));
        }
        let u32_at = |off| le_u32(bytes, off).ok_or(truncated(needed));
        let u64_at = |off| le_u64(bytes, off).ok_or(truncated(needed));
        let (memmap_paddr, memmap_entries) = if version == 0 {
            (0, 0)
        } else {
            (u64_at(40)?, u32_at(48)?)
        };
        Ok(StartInfo {
            version,
            flags: u32_at(8)?,
            cmdline_paddr: u64_at(24)?,
            rsdp_paddr: u64_at(32)?,
            memmap_paddr,
            memmap_entries,
        })
    }
}

/// Same as [`StartInfo::parse`], for callers that prefer a free function.
pub fn parse(bytes: &[u8]) -> Result<StartInfo, PvhError> {
    StartInfo::parse(bytes)
}

/// What a memory map entry may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM (type 1).
    Ram,
    /// Reserved (type 2).
    Reserved,
    /// ACPI tables, reusable once parsed (type 3).
    AcpiReclaimable,
    /// ACPI non-volatile storage (type 4).
    AcpiNvs,
    /// Bad memory (type 5).
    Unusable,
    /// Persistent memory (type 7).
    Persistent,
    /// Any other type; kept raw so that logs show what the VMM sent.
    Other(u32),
}

impl From<u32> for MemoryKind {
    fn from(raw: u32) -> Self {
        match raw {
            1 => Self::Ram,
            2 => Self::Reserved,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Unusable,
            7 => Self::Persistent,
            other => Self::Other(other),
        }
    }
}

/// One memory map entry. `start + len` is guaranteed not to overflow for
/// regions produced by [`memmap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First physical address.
    pub start: u64,
    /// Length in bytes (may be 0; the VMM is not required to omit those).
    pub len: u64,
    /// What the region may be used for.
    pub kind: MemoryKind,
}

impl MemoryRegion {
    /// One past the last address; saturates for hand-built regions so that it
    /// can never panic.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

fn decode_entry(entry: &[u8]) -> Option<MemoryRegion> {
    Some(MemoryRegion {
        start: le_u64(entry, 0)?,
        len: le_u64(entry, 8)?,
        kind: MemoryKind::from(le_u32(entry, 16)?),
    })
}

/// Decodes the memory map table pointed to by [`StartInfo::memmap_paddr`].
///
/// The whole table is validated before the iterator is returned, so a
/// consumer never sees half a memory map followed by an error: either all
/// entries are usable or none is. Extra bytes after the table are ignored so
/// the HAL can map a rounded-up window.
pub fn memmap(
    bytes: &[u8],
    entries: u32,
) -> Result<impl Iterator<Item = MemoryRegion> + '_, PvhError> {
    let count = usize::try_from(entries)
        .ok()
        .filter(|&n| n <= MAX_MEMMAP_ENTRIES)
        .ok_or(PvhError::TooManyEntries(entries))?;
    // Cannot overflow: count <= 128.
    let needed = count * MEMMAP_ENTRY_LEN;
    let table = bytes.get(..needed).ok_or(PvhError::Truncated {
        needed,
        got: bytes.len(),
    })?;
    for (index, entry) in table.chunks_exact(MEMMAP_ENTRY_LEN).enumerate() {
        let region = decode_entry(entry).ok_or(PvhError::Truncated {
            needed,
            got: bytes.len(),
        })?;
        if region.start.checked_add(region.len).is_none() {
            return Err(PvhError::RegionOverflow { index });
        }
    }
    Ok(table
        .chunks_exact(MEMMAP_ENTRY_LEN)
        .filter_map(decode_entry))
}

/// Extracts the command line from a window starting at
/// [`StartInfo::cmdline_paddr`].
///
/// The HAL does not know the string's length before reading it, so it maps up
/// to [`MAX_CMDLINE_LEN`] bytes (less near the end of RAM) and we look for the
/// terminator inside that window; bytes past the window are never examined.
pub fn cmdline(bytes: &[u8]) -> Result<&str, PvhError> {
    let window = bytes.get(..MAX_CMDLINE_LEN).unwrap_or(bytes);
    let nul = window
        .iter()
        .position(|&b| b == 0)
        .ok_or(PvhError::CmdlineUnterminated)?;
    let text = window.get(..nul).ok_or(PvhError::CmdlineUnterminated)?;
    core::str::from_utf8(text).map_err(|e| PvhError::CmdlineNotUtf8 {
        valid_up_to: e.valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn start_info(version: u32, entries: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&START_INFO_MAGIC.to_le_bytes());
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&0x5u32.to_le_bytes()); // flags
        b.extend_from_slice(&0u32.to_le_bytes()); // nr_modules
        b.extend_from_slice(&0x1000u64.to_le_bytes()); // modlist
        b.extend_from_slice(&0x2000u64.to_le_bytes()); // cmdline
        b.extend_from_slice(&0xe0000u64.to_le_bytes()); // rsdp
        if version >= 1 {
            b.extend_from_slice(&0x3000u64.to_le_bytes()); // memmap
            b.extend_from_slice(&entries.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        b
    }

    fn entry(addr: u64, size: u64, kind: u32) -> [u8; MEMMAP_ENTRY_LEN] {
        let mut e = [0u8; MEMMAP_ENTRY_LEN];
        e[..8].copy_from_slice(&addr.to_le_bytes());
        e[8..16].copy_from_slice(&size.to_le_bytes());
        e[16..20].copy_from_slice(&kind.to_le_bytes());
        e
    }

    #[test]
    fn parses_version_1() {
        let b = start_info(1, 3);
        assert_eq!(b.len(), START_INFO_LEN);
        let info = StartInfo::parse(&b).unwrap();
        assert_eq!(
            info,
            StartInfo {
                version: 1,
                flags: 5,
                cmdline_paddr: 0x2000,
                rsdp_paddr: 0xe0000,
                memmap_paddr: 0x3000,
                memmap_entries: 3,
            }
        );
        assert_eq!(parse(&b), Ok(info));
    }

    #[test]
    fn parses_version_0_without_memmap() {
        let mut b = start_info(0, 0);
        assert_eq!(b.len(), START_INFO_V0_LEN);
        let info = StartInfo::parse(&b).unwrap();
        assert_eq!((info.memmap_paddr, info.memmap_entries), (0, 0));
        assert_eq!(info.cmdline_paddr, 0x2000);
        // Garbage after a v0 block must not be read as a memory map.
        b.extend_from_slice(&[0xff; 8]);
        assert_eq!(StartInfo::parse(&b).unwrap().memmap_paddr, 0);
    }

    #[test]
    fn accepts_future_versions() {
        let info = StartInfo::parse(&start_info(2, 1)).unwrap();
        assert_eq!((info.version, info.memmap_entries), (2, 1));
    }

    #[test]
    fn rejects_bad_magic_and_truncation() {
        let mut b = start_info(1, 0);
        b[0] ^= 1;
        assert_eq!(
            StartInfo::parse(&b),
            Err(PvhError::BadMagic(START_INFO_MAGIC ^ 1))
        );
        let b = start_info(1, 0);
        for len in 0..START_INFO_LEN {
            assert!(
                matches!(StartInfo::parse(&b[..len]), Err(PvhError::Truncated { .. })),
                "len {len}"
            );
        }
        let b = start_info(0, 0);
        assert_eq!(
            StartInfo::parse(&b[..39]),
            Err(PvhError::Truncated {
                needed: 40,
                got: 39
            })
        );
    }

    #[test]
    fn decodes_memmap() {
        let mut b = Vec::new();
        b.extend_from_slice(&entry(0, 0x9fc00, 1));
        b.extend_from_slice(&entry(0xf0000, 0x10000, 2));
        b.extend_from_slice(&entry(0x10_0000, 0x7ff0_0000, 1));
        for kind in [3, 4, 5, 6, 7, 0xdead] {
            b.extend_from_slice(&entry(0xfee0_0000, 0x1000, kind));
        }
        b.extend_from_slice(&[0xaa; 5]); // trailing window bytes are ignored
        let regions: Vec<_> = memmap(&b, 9).unwrap().collect();
        assert_eq!(regions.len(), 9);
        assert_eq!(
            regions[2],
            MemoryRegion {
                start: 0x10_0000,
                len: 0x7ff0_0000,
                kind: MemoryKind::Ram
            }
        );
        assert_eq!(regions[2].end(), 0x8000_0000);
        let kinds: Vec<_> = regions.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                MemoryKind::Ram,
                MemoryKind::Reserved,
                MemoryKind::Ram,
                MemoryKind::AcpiReclaimable,
                MemoryKind::AcpiNvs,
                MemoryKind::Unusable,
                MemoryKind::Other(6),
                MemoryKind::Persistent,
                MemoryKind::Other(0xdead),
            ]
        );
        assert_eq!(memmap(&[], 0).unwrap().count(), 0);
    }

    #[test]
    fn rejects_bad_memmaps() {
        let b = entry(0x1000, 0x1000, 1);
        assert_eq!(
            memmap(&b, 2).err(),
            Some(PvhError::Truncated {
                needed: 48,
                got: 24
            })
        );
        assert_eq!(memmap(&b[..23], 1).err().map(|_| ()), Some(()));
        let big = [0u8; (MAX_MEMMAP_ENTRIES + 1) * MEMMAP_ENTRY_LEN];
        assert_eq!(memmap(&big, 128).unwrap().count(), 128);
        assert_eq!(memmap(&big, 129).err(), Some(PvhError::TooManyEntries(129)));
        assert_eq!(
            memmap(&big, u32::MAX).err(),
            Some(PvhError::TooManyEntries(u32::MAX))
        );
        let mut b = Vec::new();
        b.extend_from_slice(&entry(0, 0x1000, 1));
        b.extend_from_slice(&entry(u64::MAX - 0xfff, 0x1000, 2));
        assert_eq!(
            memmap(&b, 2).err(),
            Some(PvhError::RegionOverflow { index: 1 })
        );
        // Ending exactly at the top of the space is still representable.
        let b = entry(u64::MAX - 0xfff, 0xfff, 2);
        assert_eq!(memmap(&b, 1).unwrap().count(), 1);
    }

    #[test]
    fn extracts_cmdline() {
        assert_eq!(
            cmdline(b"service=selftest log=debug\0junk"),
            Ok("service=selftest log=debug")
        );
        assert_eq!(cmdline(b"\0"), Ok(""));
        assert_eq!(cmdline(b""), Err(PvhError::CmdlineUnterminated));
        assert_eq!(
            cmdline(b"no terminator"),
            Err(PvhError::CmdlineUnterminated)
        );
        assert_eq!(
            cmdline(b"ok\xffbad\0"),
            Err(PvhError::CmdlineNotUtf8 { valid_up_to: 2 })
        );
        assert_eq!(cmdline("né=ü\0".as_bytes()), Ok("né=ü"));
    }

    #[test]
    fn cmdline_window_is_capped() {
        let mut b = std::vec![b'a'; MAX_CMDLINE_LEN - 1];
        b.push(0);
        assert_eq!(cmdline(&b).map(str::len), Ok(MAX_CMDLINE_LEN - 1));
        // A NUL just past the window does not count.
        let mut b = std::vec![b'a'; MAX_CMDLINE_LEN];
        b.push(0);
        assert_eq!(cmdline(&b), Err(PvhError::CmdlineUnterminated));
    }

    #[test]
    fn errors_display() {
        use std::string::ToString;
        for e in [
            PvhError::Truncated { needed: 1, got: 0 },
            PvhError::BadMagic(0),
            PvhError::TooManyEntries(999),
            PvhError::RegionOverflow { index: 3 },
            PvhError::CmdlineUnterminated,
            PvhError::CmdlineNotUtf8 { valid_up_to: 4 },
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let valid = start_info(1, 4);
        for _ in 0..5000 {
            let len = (next() % 200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if next() % 2 == 0 {
                b = valid.clone();
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
                b.truncate((next() as usize) % (b.len() + 1));
            }
            let _ = StartInfo::parse(&b);
            let entries = (next() % 140) as u32;
            if let Ok(it) = memmap(&b, entries) {
                for r in it {
                    let _ = r.end();
                }
            }
            let _ = cmdline(&b);
        }
    }
}
