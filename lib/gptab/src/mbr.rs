//! The protective MBR: one partition of type 0xEE covering the disk, so
//! tools that only know MBR see the disk as in use.

use alloc::vec;
use alloc::vec::Vec;

/// The MBR partition type of a GPT disk's protective entry.
const PROTECTIVE_TYPE: u8 = 0xEE;

/// Sector 0 of a GPT disk of `block_size`-byte blocks and `blocks` blocks:
/// the protective entry covers LBA 1 to the end (capped at what 32 bits
/// hold, as the specification says).
pub fn protective_mbr(block_size: usize, blocks: u64) -> Vec<u8> {
    let mut sector = vec![0u8; block_size.max(512)];
    let entry = &mut sector[446..462];
    // Not bootable; CHS start 0/0/2, CHS end "beyond CHS".
    entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    entry[4] = PROTECTIVE_TYPE;
    entry[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    entry[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(blocks.saturating_sub(1)).unwrap_or(u32::MAX);
    entry[12..16].copy_from_slice(&size.to_le_bytes());
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

/// Whether sector 0 is a protective (or hybrid) MBR: the boot signature
/// and an entry of type 0xEE.
pub fn has_protective_mbr(sector: &[u8]) -> bool {
    sector.get(510..512) == Some(&[0x55, 0xAA][..])
        && sector
            .get(446..510)
            .is_some_and(|t| t.chunks_exact(16).any(|e| e[4] == PROTECTIVE_TYPE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_disk_after_sector_zero() {
        let mbr = protective_mbr(512, 131_072);
        assert!(has_protective_mbr(&mbr));
        assert_eq!(&mbr[454..458], &1u32.to_le_bytes());
        assert_eq!(&mbr[458..462], &131_071u32.to_le_bytes());
        let huge = protective_mbr(512, 1 << 40);
        assert_eq!(&huge[458..462], &u32::MAX.to_le_bytes());
        assert_eq!(protective_mbr(4096, 8).len(), 4096);
    }

    #[test]
    fn a_plain_mbr_is_not_protective() {
        let mut mbr = protective_mbr(512, 100);
        mbr[450] = 0x0C;
        assert!(!has_protective_mbr(&mbr));
        assert!(!has_protective_mbr(&[0u8; 10]));
    }
}
