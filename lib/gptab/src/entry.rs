//! One partition entry: type, unique GUID, first and last LBA,
//! attributes and a name of up to 36 UTF-16 code units.

use alloc::string::String;

use crate::Guid;

/// UTF-16 code units a partition name holds.
pub const ENTRY_NAME_UNITS: usize = 36;

/// A used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its number (1-based), as Linux and `sgdisk` count: `sda2` is 2.
    pub number: u32,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
    /// Decoded from UTF-16LE up to the first NUL (unpaired surrogates
    /// become U+FFFD).
    pub name: String,
}

fn guid_at(raw: &[u8], at: usize) -> Guid {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&raw[at..at + 16]);
    Guid(bytes)
}

fn u64_at(raw: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&raw[at..at + 8]);
    u64::from_le_bytes(bytes)
}

impl Partition {
    /// The entry in `raw` (at least 128 bytes), or `None` if unused (zero
    /// type GUID).
    pub(crate) fn parse(number: u32, raw: &[u8]) -> Option<Partition> {
        let raw = raw.get(..128)?;
        let type_guid = guid_at(raw, 0);
        if type_guid.is_zero() {
            return None;
        }
        let units = raw[56..128]
            .chunks_exact(2)
            .map(|u| u16::from_le_bytes([u[0], u[1]]))
            .take_while(|&u| u != 0);
        let name = char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        Some(Partition {
            number,
            type_guid,
            unique_guid: guid_at(raw, 16),
            first_lba: u64_at(raw, 32),
            last_lba: u64_at(raw, 40),
            attributes: u64_at(raw, 48),
            name,
        })
    }

    /// Writes the entry into the first 128 bytes of `raw`, leaving any
    /// bytes past them (larger entry sizes) alone. `None` if the name does
    /// not fit in 36 UTF-16 units.
    pub(crate) fn emit_into(&self, raw: &mut [u8]) -> Option<()> {
        let raw = raw.get_mut(..128)?;
        let mut name = [0u8; 2 * ENTRY_NAME_UNITS];
        for (i, unit) in self.name.encode_utf16().enumerate() {
            name.get_mut(2 * i..2 * i + 2)?
                .copy_from_slice(&unit.to_le_bytes());
        }
        raw[0..16].copy_from_slice(&self.type_guid.0);
        raw[16..32].copy_from_slice(&self.unique_guid.0);
        raw[32..40].copy_from_slice(&self.first_lba.to_le_bytes());
        raw[40..48].copy_from_slice(&self.last_lba.to_le_bytes());
        raw[48..56].copy_from_slice(&self.attributes.to_le_bytes());
        raw[56..128].copy_from_slice(&name);
        Some(())
    }

    /// Blocks it spans (0 for an entry whose last LBA is before its first).
    pub fn blocks(&self) -> u64 {
        self.last_lba
            .checked_sub(self.first_lba)
            .map_or(0, |d| d.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use alloc::vec;

    use super::*;
    use crate::types;

    fn sample(name: &str) -> Partition {
        Partition {
            number: 2,
            type_guid: types::EVE_IMAGE,
            unique_guid: Guid([7; 16]),
            first_lba: 2048,
            last_lba: 4095,
            attributes: 0x0102 << 48,
            name: name.to_string(),
        }
    }

    #[test]
    fn round_trips_and_keeps_the_bytes_past_128() {
        let mut raw = vec![0xAAu8; 256];
        sample("IMGA").emit_into(&mut raw).unwrap();
        assert!(raw[128..].iter().all(|&b| b == 0xAA));
        assert_eq!(Partition::parse(2, &raw), Some(sample("IMGA")));
        assert_eq!(sample("IMGA").blocks(), 2048);
    }

    #[test]
    fn names_fill_36_units_and_no_more() {
        let full = "A".repeat(ENTRY_NAME_UNITS);
        let mut raw = vec![0u8; 128];
        sample(&full).emit_into(&mut raw).unwrap();
        assert_eq!(Partition::parse(1, &raw).unwrap().name, full);
        assert_eq!(sample(&"A".repeat(37)).emit_into(&mut raw), None);
    }

    #[test]
    fn unused_and_odd_entries() {
        assert_eq!(Partition::parse(1, &[0u8; 128]), None);
        assert_eq!(Partition::parse(1, &[1u8; 100]), None);
        let mut raw = vec![0u8; 128];
        sample("x").emit_into(&mut raw).unwrap();
        // An unpaired surrogate decodes to the replacement character.
        raw[56..58].copy_from_slice(&0xD800u16.to_le_bytes());
        assert_eq!(Partition::parse(1, &raw).unwrap().name, "\u{FFFD}");
        let mut backwards = sample("x");
        backwards.last_lba = 10;
        assert_eq!(backwards.blocks(), 0);
    }
}
