//! A GPT disk with one partition around a filesystem image: protective
//! MBR, primary header and entries, the partition at 1 MiB, the backup
//! entries and header at the end, CRC32s as UEFI checks them.

const SECTOR: u64 = 512;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
/// Sectors the entry array takes (128 x 128 bytes).
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;
const FIRST_LBA: u64 = 2048;

/// The EFI system partition's type GUID, C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
pub const ESP_TYPE: [u8; 16] = guid(
    0xc12a_7328,
    0xf81f,
    0x11d2,
    [0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b],
);

/// A GUID in its on-disk (mixed-endian) form.
const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// A disk holding `partition` (whose length is a multiple of 512) as one
/// partition of `type_guid` named `name`; GUIDs derive from `seed` so the
/// image is reproducible.
pub fn disk(partition: &[u8], type_guid: [u8; 16], name: &str, seed: u64) -> Vec<u8> {
    assert!(
        (partition.len() as u64).is_multiple_of(SECTOR),
        "partition not in sectors"
    );
    let part_sectors = partition.len() as u64 / SECTOR;
    let last_usable = FIRST_LBA + part_sectors - 1;
    // Backup entries then header after the partition, rounded to 1 MiB.
    let total = (last_usable + 1 + ENTRY_SECTORS + 1).div_ceil(2048) * 2048;
    let mut disk = vec![0u8; (total * SECTOR) as usize];
    let lba = |n: u64| (n * SECTOR) as usize;

    // Protective MBR: one partition of type 0xEE over the whole disk.
    let mbr = &mut disk[..512];
    mbr[446 + 1..446 + 4].copy_from_slice(&[0x00, 0x02, 0x00]);
    mbr[446 + 4] = 0xee;
    mbr[446 + 5..446 + 8].copy_from_slice(&[0xff, 0xff, 0xff]);
    mbr[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    let mbr_sectors = u32::try_from(total - 1).unwrap_or(u32::MAX);
    mbr[446 + 12..446 + 16].copy_from_slice(&mbr_sectors.to_le_bytes());
    mbr[510..512].copy_from_slice(&[0x55, 0xaa]);

    let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    entries[..16].copy_from_slice(&type_guid);
    entries[16..32].copy_from_slice(&derived_guid(seed, 1));
    entries[32..40].copy_from_slice(&FIRST_LBA.to_le_bytes());
    entries[40..48].copy_from_slice(&last_usable.to_le_bytes());
    for (i, unit) in name.encode_utf16().take(36).enumerate() {
        entries[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
    let entries_crc = crc32fast::hash(&entries);
    let backup_entries = total - 1 - ENTRY_SECTORS;

    let header = |current: u64, backup: u64, entries_at: u64| {
        let mut h = [0u8; 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(backup_entries - 1).to_le_bytes());
        h[56..72].copy_from_slice(&derived_guid(seed, 0));
        h[72..80].copy_from_slice(&entries_at.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    disk[lba(1)..lba(1) + 92].copy_from_slice(&header(1, total - 1, 2));
    disk[lba(2)..lba(2) + entries.len()].copy_from_slice(&entries);
    disk[lba(FIRST_LBA)..lba(FIRST_LBA) + partition.len()].copy_from_slice(partition);
    disk[lba(backup_entries)..lba(backup_entries) + entries.len()].copy_from_slice(&entries);
    disk[lba(total - 1)..lba(total - 1) + 92].copy_from_slice(&header(
        total - 1,
        1,
        backup_entries,
    ));
    disk
}

fn derived_guid(seed: u64, n: u64) -> [u8; 16] {
    let mut x = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    // Version 4, RFC 4122 variant.
    out[7] = (out[7] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_entries_check_out() {
        let part = vec![0xabu8; 4 * 1024 * 1024];
        let d = disk(&part, ESP_TYPE, "ESP", 7);
        let total = d.len() as u64 / SECTOR;
        assert_eq!(&d[510..512], &[0x55, 0xaa]);
        for (at, entries_at) in [(1u64, 2u64), (total - 1, total - 1 - ENTRY_SECTORS)] {
            let h = &d[(at * SECTOR) as usize..(at * SECTOR) as usize + 92];
            assert_eq!(&h[..8], b"EFI PART");
            let mut zeroed = h.to_vec();
            zeroed[16..20].fill(0);
            assert_eq!(
                u32::from_le_bytes(h[16..20].try_into().unwrap()),
                crc32fast::hash(&zeroed)
            );
            let e = &d[(entries_at * SECTOR) as usize..][..(ENTRIES * ENTRY_SIZE) as usize];
            assert_eq!(
                u32::from_le_bytes(h[88..92].try_into().unwrap()),
                crc32fast::hash(e)
            );
            assert_eq!(&e[..16], &ESP_TYPE);
        }
        assert_eq!(&d[(FIRST_LBA * SECTOR) as usize..][..part.len()], &part[..]);
        assert_eq!(ESP_TYPE[..4], [0x28, 0x73, 0x2a, 0xc1]);
    }
}
