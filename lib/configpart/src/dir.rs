//! Directory entries, with VFAT long file names.
//!
//! A file with a name that is not a plain upper-case 8.3 name (such as
//! `root-certificate.pem`) has a short alias (`ROOT-C~1.PEM`) in its 32-byte
//! entry, preceded by long-name entries holding 13 UTF-16 units each, last
//! part first, each carrying a checksum of the short name so a long name left
//! over from a deleted file is not attached to the wrong entry.

use alloc::string::String;
use alloc::vec::Vec;

/// Bytes of one directory entry.
pub const ENTRY_LEN: usize = 32;

const ATTR_VOLUME_LABEL: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0F;
const DELETED: u8 = 0xE5;
const LAST_LONG_PART: u8 = 0x40;
/// 255 UTF-16 units at 13 per entry.
const MAX_LONG_PARTS: u8 = 20;
/// Where the 13 UTF-16 units of a long-name entry are.
const LONG_NAME_UNITS: [usize; 13] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];

/// A file or directory in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    short_name: String,
    long_name: Option<String>,
    attributes: u8,
    first_cluster: u32,
    size: u32,
}

impl DirEntry {
    /// The 8.3 name as `NAME.EXT`.
    pub fn short_name(&self) -> &str {
        &self.short_name
    }

    /// The long name, if the entry has an intact one.
    pub fn long_name(&self) -> Option<&str> {
        self.long_name.as_deref()
    }

    /// The name to show: the long one if any.
    pub fn name(&self) -> &str {
        self.long_name.as_deref().unwrap_or(&self.short_name)
    }

    /// Whether this is a directory.
    pub fn is_directory(&self) -> bool {
        self.attributes & ATTR_DIRECTORY != 0
    }

    /// File length in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The first data cluster (0 for an empty file).
    pub fn first_cluster(&self) -> u32 {
        self.first_cluster
    }
}

/// Whether `name` names `entry`, by long or short name, ignoring case as
/// FAT does.
pub fn names_match(entry: &DirEntry, name: &str) -> bool {
    let same = |a: &str| {
        a.chars()
            .flat_map(char::to_lowercase)
            .eq(name.chars().flat_map(char::to_lowercase))
    };
    entry.long_name.as_deref().is_some_and(same) || same(&entry.short_name)
}

/// The checksum of an 8.3 name that its long-name entries carry.
pub fn short_name_checksum(name: &[u8; 11]) -> u8 {
    name.iter()
        .fold(0u8, |sum, &byte| sum.rotate_right(1).wrapping_add(byte))
}

/// A long name being collected, from its last part (first on disk) down to
/// part 1.
struct LongName {
    checksum: u8,
    /// Part expected next.
    next_part: u8,
    units: Vec<u16>,
}

/// Turns a stream of directory entries into [`DirEntry`]s.
pub struct DirParser {
    fat32: bool,
    long_name: Option<LongName>,
    entries: Vec<DirEntry>,
}

impl DirParser {
    /// `fat32` says whether entries carry the high half of the cluster.
    pub fn new(fat32: bool) -> Self {
        DirParser {
            fat32,
            long_name: None,
            entries: Vec::new(),
        }
    }

    /// Takes the next 32-byte entry; returns false at the end of the
    /// directory.
    pub fn feed(&mut self, raw: &[u8]) -> bool {
        let Ok(raw) = <&[u8; ENTRY_LEN]>::try_from(raw) else {
            return false;
        };
        match raw[0] {
            0 => return false,
            DELETED => self.long_name = None,
            _ if raw[11] & 0x3F == ATTR_LONG_NAME => self.feed_long(raw),
            _ => self.feed_short(raw),
        }
        true
    }

    fn feed_long(&mut self, raw: &[u8; ENTRY_LEN]) {
        let part = raw[0] & 0x1F;
        let checksum = raw[13];
        if part == 0 || part > MAX_LONG_PARTS {
            self.long_name = None;
            return;
        }
        let continues = self
            .long_name
            .as_ref()
            .is_some_and(|name| name.next_part == part && name.checksum == checksum);
        if raw[0] & LAST_LONG_PART != 0 {
            self.long_name = Some(LongName {
                checksum,
                next_part: part,
                units: alloc::vec![0xFFFF; usize::from(part) * 13],
            });
        } else if !continues {
            self.long_name = None;
            return;
        }
        if let Some(name) = &mut self.long_name {
            let base = usize::from(part - 1) * 13;
            for (i, &at) in LONG_NAME_UNITS.iter().enumerate() {
                name.units[base + i] = u16::from_le_bytes([raw[at], raw[at + 1]]);
            }
            name.next_part = part - 1;
        }
    }

    fn feed_short(&mut self, raw: &[u8; ENTRY_LEN]) {
        let long_name = self.long_name.take();
        if raw[11] & ATTR_VOLUME_LABEL != 0 {
            return;
        }
        let mut name = [0u8; 11];
        name.copy_from_slice(&raw[..11]);
        let long_name = long_name
            .filter(|long| long.next_part == 0 && long.checksum == short_name_checksum(&name))
            .and_then(|long| decode_long_name(&long.units));
        if name[0] == 0x05 {
            // 0x05 stands for a leading 0xE5, which marks deleted entries.
            name[0] = DELETED;
        }
        let low = u32::from(u16::from_le_bytes([raw[26], raw[27]]));
        let high = if self.fat32 {
            u32::from(u16::from_le_bytes([raw[20], raw[21]]))
        } else {
            0
        };
        self.entries.push(DirEntry {
            short_name: short_name_text(&name),
            long_name,
            attributes: raw[11],
            first_cluster: (high << 16) | low,
            size: u32::from_le_bytes([raw[28], raw[29], raw[30], raw[31]]),
        });
    }

    pub fn into_entries(self) -> Vec<DirEntry> {
        self.entries
    }
}

/// A long name's units up to the NUL (then 0xFFFF padding), as text.
fn decode_long_name(units: &[u16]) -> Option<String> {
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    let name: String = char::decode_utf16(units[..end].iter().copied())
        .collect::<Result<_, _>>()
        .ok()?;
    (!name.is_empty() && !name.contains('\u{FFFF}')).then_some(name)
}

/// `NAME    EXT` as `NAME.EXT`; bytes past ASCII (an OEM code page) are
/// read as Latin-1, which keeps them distinct without a code-page table.
fn short_name_text(name: &[u8; 11]) -> String {
    let trim = |part: &[u8]| -> String {
        let len = part.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
        part[..len].iter().map(|&b| char::from(b)).collect()
    };
    let base = trim(&name[..8]);
    let extension = trim(&name[8..]);
    if extension.is_empty() {
        base
    } else {
        alloc::format!("{base}.{extension}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(name: &[u8; 11], attributes: u8, cluster: u16, size: u32) -> [u8; 32] {
        let mut raw = [0u8; 32];
        raw[..11].copy_from_slice(name);
        raw[11] = attributes;
        raw[26..28].copy_from_slice(&cluster.to_le_bytes());
        raw[28..32].copy_from_slice(&size.to_le_bytes());
        raw
    }

    /// The long-name entries for `long`, in disk order.
    fn long(long: &str, short_name: &[u8; 11]) -> Vec<[u8; 32]> {
        let mut units: Vec<u16> = long.encode_utf16().collect();
        units.push(0);
        while !units.len().is_multiple_of(13) {
            units.push(0xFFFF);
        }
        let parts = units.len() / 13;
        (1..=parts)
            .rev()
            .map(|part| {
                let mut raw = [0u8; 32];
                raw[0] = part as u8 | if part == parts { LAST_LONG_PART } else { 0 };
                raw[11] = ATTR_LONG_NAME;
                raw[13] = short_name_checksum(short_name);
                for (i, &at) in LONG_NAME_UNITS.iter().enumerate() {
                    raw[at..at + 2].copy_from_slice(&units[(part - 1) * 13 + i].to_le_bytes());
                }
                raw
            })
            .collect()
    }

    fn parse(entries: &[[u8; 32]]) -> Vec<DirEntry> {
        let mut parser = DirParser::new(false);
        for raw in entries {
            if !parser.feed(raw) {
                break;
            }
        }
        parser.into_entries()
    }

    #[test]
    fn long_names_attach_to_their_short_entry() {
        let alias = *b"ROOT-C~1PEM";
        let mut entries = long("root-certificate.pem", &alias);
        entries.push(short(&alias, 0x20, 5, 1234));
        entries.push(short(b"SERVER     ", 0x20, 9, 20));
        let parsed = parse(&entries);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].long_name(), Some("root-certificate.pem"));
        assert_eq!(parsed[0].short_name(), "ROOT-C~1.PEM");
        assert_eq!((parsed[0].first_cluster(), parsed[0].size()), (5, 1234));
        assert_eq!(parsed[1].name(), "SERVER");
        assert!(names_match(&parsed[0], "Root-Certificate.PEM"));
        assert!(names_match(&parsed[0], "root-c~1.pem"));
        assert!(names_match(&parsed[1], "server"));
        assert!(!names_match(&parsed[1], "server2"));
    }

    #[test]
    fn stale_or_broken_long_names_are_dropped() {
        let alias = *b"ONBOAR~1PEM";
        // Checksum of another short name: left over from a deleted file.
        let mut entries = long("onboard.cert.pem", b"OTHER   TXT");
        entries.push(short(&alias, 0x20, 3, 1));
        // A part missing in the middle.
        let mut gappy = long("a-name-longer-than-thirteen-units", &alias);
        gappy.remove(1);
        entries.extend(gappy);
        entries.push(short(&alias, 0x20, 3, 1));
        let parsed = parse(&entries);
        assert_eq!(parsed.len(), 2);
        assert!(parsed.iter().all(|entry| entry.long_name().is_none()));
    }

    #[test]
    fn deleted_labels_and_end_marker() {
        let mut deleted = short(b"GONE    TXT", 0x20, 2, 1);
        deleted[0] = DELETED;
        let mut kanji = short(b"XNAME   TXT", 0x20, 2, 1);
        kanji[0] = 0x05;
        let entries = [
            short(b"EVE        ", ATTR_VOLUME_LABEL, 0, 0),
            deleted,
            kanji,
            short(b"SUBDIR     ", ATTR_DIRECTORY, 4, 0),
            [0u8; 32],
            short(b"AFTER   END", 0x20, 2, 1),
        ];
        let parsed = parse(&entries);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].short_name(), "\u{e5}NAME.TXT");
        assert!(parsed[1].is_directory());
    }

    #[test]
    fn random_entries_never_panic() {
        let mut rng = wirebytes::testing::XorShift::new(0x9e37_79b9_7f4a_7c15);
        let mut parser = DirParser::new(true);
        for _ in 0..50_000 {
            let mut raw = [0u8; 32];
            let mut state = 0;
            for byte in raw.iter_mut() {
                state = rng.next_u64();
                *byte = state as u8;
            }
            if state.is_multiple_of(3) {
                raw[11] = ATTR_LONG_NAME;
            }
            if raw[0] == 0 {
                raw[0] = 1;
            }
            assert!(parser.feed(&raw));
        }
    }
}
