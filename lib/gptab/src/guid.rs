//! GUIDs as GPT stores them: the first three fields little-endian, the
//! last eight bytes as they are.

use core::fmt;

/// A GUID in its on-disk byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID: an unused partition entry's type.
    pub const ZERO: Guid = Guid([0; 16]);

    /// The GUID written `d1-d2-d3-d4[0..2]-d4[2..8]` in text.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// Parses the text form (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, any
    /// case).
    pub fn parse(text: &str) -> Option<Guid> {
        let bytes = text.as_bytes();
        if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
            return None;
        }
        let mut digits = [0u8; 32];
        let mut n = 0;
        for &c in bytes {
            if c == b'-' {
                continue;
            }
            digits[n] = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return None,
            };
            n += 1;
        }
        let mut big_endian = [0u8; 16];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            big_endian[i] = pair[0] << 4 | pair[1];
        }
        let field = |range: core::ops::Range<usize>| {
            big_endian[range]
                .iter()
                .fold(0u32, |acc, &b| acc << 8 | u32::from(b))
        };
        let mut d4 = [0u8; 8];
        d4.copy_from_slice(&big_endian[8..]);
        Some(Guid::from_fields(
            field(0..4),
            field(4..6) as u16,
            field(6..8) as u16,
            d4,
        ))
    }

    /// Whether this is the all-zero GUID.
    pub fn is_zero(&self) -> bool {
        *self == Guid::ZERO
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

/// Partition type GUIDs an EVE disk uses.
pub mod types {
    use super::Guid;

    /// The EFI system partition, where firmware finds boot loaders.
    pub const EFI_SYSTEM: Guid = Guid::from_fields(
        0xc12a_7328,
        0xf81f,
        0x11d2,
        [0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b],
    );
    /// IMGA and IMGB: CoreOS's "usr" type, the only type GRUB's `gptprio`
    /// (and so EVE) chooses among.
    pub const EVE_IMAGE: Guid = Guid::from_fields(
        0x5dfb_f5f4,
        0x2848,
        0x4bac,
        [0xaa, 0x5e, 0x0d, 0x9a, 0x20, 0xb7, 0x45, 0xa6],
    );
    /// EVE's CONFIG partition (the factory controller settings, FAT).
    pub const EVE_CONFIG: Guid = Guid::from_fields(
        0x1330_7e62,
        0xcd9c,
        0x4920,
        [0x8f, 0x9b, 0x91, 0xb4, 0x58, 0x28, 0xb7, 0x98],
    );
    /// EVE's PERSIST partition ("P3": state that survives updates).
    pub const EVE_PERSIST: Guid = Guid::from_fields(
        0x5f24_425a,
        0x2dfa,
        0x11e8,
        [0xa2, 0x70, 0x7b, 0x66, 0x3f, 0xac, 0xcc, 0x2c],
    );
    /// Microsoft basic data: a FAT volume any system mounts (the
    /// Raspberry Pi firmware boots from these).
    pub const BASIC_DATA: Guid = Guid::from_fields(
        0xebd0_a0a2,
        0xb9e5,
        0x4433,
        [0x87, 0xc0, 0x68, 0xb6, 0xb7, 0x26, 0x99, 0xc7],
    );
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;

    use super::*;

    #[test]
    fn text_and_disk_forms_agree() {
        let esp = Guid::parse("C12A7328-F81F-11D2-BA4B-00A0C93EC93B").unwrap();
        assert_eq!(esp, types::EFI_SYSTEM);
        assert_eq!(
            esp.0,
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        assert_eq!(esp.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        for guid in [
            types::EVE_IMAGE,
            types::EVE_CONFIG,
            types::EVE_PERSIST,
            types::BASIC_DATA,
        ] {
            assert_eq!(Guid::parse(&guid.to_string()), Some(guid));
        }
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in [
            "",
            "c12a7328f81f11d2ba4b00a0c93ec93b",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93bb",
            "g12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            "c12a7328+f81f-11d2-ba4b-00a0c93ec93b",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec9\u{e9}",
        ] {
            assert_eq!(Guid::parse(bad), None, "{bad:?}");
        }
    }
}
