//! The FAT boot sector (BIOS parameter block) and the geometry it implies.

use crate::FatError;
use crate::fat::FatType;

/// Bytes per sector this reader supports (all virtio-blk disks, all
/// `mkfs.vfat` defaults).
pub const SECTOR_SIZE: usize = 512;

/// Where everything of a FAT volume is, in sectors from the volume's start,
/// checked to lie inside the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub fat_type: FatType,
    pub sectors_per_cluster: u32,
    /// First sector of the first FAT.
    pub fat_start: u64,
    /// Sectors of one FAT.
    pub fat_sectors: u64,
    /// FAT12/16: first sector of the fixed root directory.
    pub root_dir_start: u64,
    /// FAT12/16: sectors of the fixed root directory (0 on FAT32).
    pub root_dir_sectors: u64,
    /// FAT32: first cluster of the root directory.
    pub root_cluster: u32,
    /// First sector of cluster 2.
    pub data_start: u64,
    /// Data clusters: valid cluster numbers are `2..cluster_count + 2`.
    pub cluster_count: u32,
}

fn u16_at(sector: &[u8; SECTOR_SIZE], at: usize) -> u16 {
    u16::from_le_bytes([sector[at], sector[at + 1]])
}

fn u32_at(sector: &[u8; SECTOR_SIZE], at: usize) -> u32 {
    u32::from_le_bytes([sector[at], sector[at + 1], sector[at + 2], sector[at + 3]])
}

impl Geometry {
    /// Parses a boot sector of a volume of `volume_sectors` sectors.
    pub fn parse(sector: &[u8; SECTOR_SIZE], volume_sectors: u64) -> Result<Geometry, FatError> {
        let jump_ok = sector[0] == 0xE9 || (sector[0] == 0xEB && sector[2] == 0x90);
        if !jump_ok || sector[510..512] != [0x55, 0xAA] {
            return Err(FatError::BadBootSector);
        }
        if usize::from(u16_at(sector, 11)) != SECTOR_SIZE {
            return Err(FatError::UnsupportedSectorSize);
        }
        let sectors_per_cluster = u32::from(sector[13]);
        let reserved = u64::from(u16_at(sector, 14));
        let fat_count = u64::from(sector[16]);
        let root_entries = u64::from(u16_at(sector, 17));
        let total = match u16_at(sector, 19) {
            0 => u64::from(u32_at(sector, 32)),
            small => u64::from(small),
        };
        let fat_sectors = match u16_at(sector, 22) {
            0 => u64::from(u32_at(sector, 36)),
            small => u64::from(small),
        };
        if !sectors_per_cluster.is_power_of_two()
            || reserved == 0
            || !(1..=4).contains(&fat_count)
            || fat_sectors == 0
            || total > volume_sectors
        {
            return Err(FatError::BadBootSector);
        }
        let root_dir_sectors = (root_entries * 32).div_ceil(SECTOR_SIZE as u64);
        let root_dir_start = reserved + fat_count * fat_sectors;
        let data_start = root_dir_start + root_dir_sectors;
        if data_start >= total {
            return Err(FatError::BadBootSector);
        }
        let clusters = (total - data_start) / u64::from(sectors_per_cluster);
        // The FAT type follows from the cluster count alone (Microsoft's
        // FAT specification); the type string in the boot sector is a label.
        let fat_type = match clusters {
            0 => return Err(FatError::BadBootSector),
            1..4085 => FatType::Fat12,
            4085..65525 => FatType::Fat16,
            _ => FatType::Fat32,
        };
        let cluster_count =
            u32::try_from(clusters.min(0x0FFF_FFF5)).map_err(|_| FatError::BadBootSector)?;
        let entry_bits: u64 = match fat_type {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        };
        if fat_sectors * SECTOR_SIZE as u64 * 8 < (u64::from(cluster_count) + 2) * entry_bits {
            return Err(FatError::BadBootSector);
        }
        let root_cluster = match fat_type {
            FatType::Fat32 => {
                let root_cluster = u32_at(sector, 44);
                if root_entries != 0 || !(2..cluster_count + 2).contains(&root_cluster) {
                    return Err(FatError::BadBootSector);
                }
                root_cluster
            }
            FatType::Fat12 | FatType::Fat16 => {
                if root_entries == 0 {
                    return Err(FatError::BadBootSector);
                }
                0
            }
        };
        Ok(Geometry {
            fat_type,
            sectors_per_cluster,
            fat_start: reserved,
            fat_sectors,
            root_dir_start,
            root_dir_sectors,
            root_cluster,
            data_start,
            cluster_count,
        })
    }

    /// First sector of data cluster `cluster` (already range-checked).
    pub fn cluster_start(&self, cluster: u32) -> u64 {
        self.data_start + u64::from(cluster - 2) * u64::from(self.sectors_per_cluster)
    }

    /// Bytes of one cluster.
    pub fn cluster_bytes(&self) -> usize {
        self.sectors_per_cluster as usize * SECTOR_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boot sector `mkfs.vfat -C img 1024` writes (FAT12, 1 MiB).
    fn fat12_1mib() -> [u8; SECTOR_SIZE] {
        let mut s = [0u8; SECTOR_SIZE];
        s[..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        s[11..13].copy_from_slice(&512u16.to_le_bytes());
        s[13] = 4;
        s[14..16].copy_from_slice(&4u16.to_le_bytes());
        s[16] = 2;
        s[17..19].copy_from_slice(&512u16.to_le_bytes());
        s[19..21].copy_from_slice(&2048u16.to_le_bytes());
        s[22..24].copy_from_slice(&2u16.to_le_bytes());
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    #[test]
    fn fat12_geometry() {
        let geometry = Geometry::parse(&fat12_1mib(), 2048).unwrap();
        assert_eq!(geometry.fat_type, FatType::Fat12);
        assert_eq!(geometry.root_dir_start, 8);
        assert_eq!(geometry.root_dir_sectors, 32);
        assert_eq!(geometry.data_start, 40);
        assert_eq!(geometry.cluster_count, (2048 - 40) / 4);
        assert_eq!(geometry.cluster_start(3), 44);
    }

    #[test]
    fn inconsistent_fields_are_refused() {
        let cases: [(usize, &[u8], FatError); 8] = [
            (0, &[0], FatError::BadBootSector),
            (510, &[0], FatError::BadBootSector),
            (11, &[0, 4], FatError::UnsupportedSectorSize),
            (13, &[0], FatError::BadBootSector),
            (13, &[3], FatError::BadBootSector),
            (16, &[0], FatError::BadBootSector),
            (17, &[0, 0], FatError::BadBootSector),
            (22, &[0, 0], FatError::BadBootSector),
        ];
        for (at, bytes, error) in cases {
            let mut sector = fat12_1mib();
            sector[at..at + bytes.len()].copy_from_slice(bytes);
            assert_eq!(Geometry::parse(&sector, 2048), Err(error), "offset {at}");
        }
        assert_eq!(
            Geometry::parse(&fat12_1mib(), 2047),
            Err(FatError::BadBootSector)
        );
    }

    #[test]
    fn random_boot_sectors_never_panic() {
        let mut rng = wirebytes::testing::XorShift::new(0x853c_49e6_748f_ea9b);
        let mut sector = fat12_1mib();
        for round in 0..20_000 {
            let state = rng.next_u64();
            let at = 3 + (state % 60) as usize;
            sector[at] = (state >> 32) as u8;
            if round % 1000 == 0 {
                sector = fat12_1mib();
            }
            if let Ok(geometry) = Geometry::parse(&sector, 1 << 40) {
                assert!(geometry.data_start < 1 << 40);
                assert!(geometry.cluster_count >= 1);
            }
        }
    }
}
