//! A read-only FAT12/16/32 volume: cluster chains, the root directory and
//! file contents, all bounds- and loop-checked.

use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;

use blockdev::BlockDevice;

use crate::FatError;
use crate::bpb::{Geometry, SECTOR_SIZE};
use crate::dir::{DirEntry, DirParser, ENTRY_LEN, names_match};
use crate::locate::locate_volume;

/// Largest directory this reader walks; the CONFIG root holds a handful of
/// files, so this only stops a hostile chain from running on.
const MAX_DIR_BYTES: usize = 1024 * 1024;

/// Which FAT variant a volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

/// A FAT volume on a block device, opened read-only.
#[derive(Debug)]
pub struct FatVolume<D: BlockDevice> {
    dev: D,
    /// First block of the volume on the device.
    start: u64,
    geometry: Geometry,
    /// The FAT sector read last, as FAT reads come in runs.
    fat_cache: Option<(u64, [u8; SECTOR_SIZE])>,
}

/// What a FAT entry says about the cluster after a given one.
enum Next {
    Cluster(u32),
    End,
}

impl<D: BlockDevice> FatVolume<D> {
    /// Opens the FAT volume at block 0 of `dev` or in the first FAT
    /// partition of its MBR.
    pub fn open(mut dev: D) -> Result<Self, FatError> {
        let volume = locate_volume(&mut dev)?;
        let geometry = Geometry::parse(&volume.boot_sector, volume.sectors)?;
        Ok(FatVolume {
            dev,
            start: volume.start,
            geometry,
            fat_cache: None,
        })
    }

    /// The volume's FAT variant.
    pub fn fat_type(&self) -> FatType {
        self.geometry.fat_type
    }

    fn read_sector(&mut self, sector: u64) -> Result<[u8; SECTOR_SIZE], FatError> {
        let mut buf = [0u8; SECTOR_SIZE];
        self.dev.read_blocks(self.start + sector, &mut buf)?;
        Ok(buf)
    }

    fn fat_byte(&mut self, offset: u64) -> Result<u8, FatError> {
        let sector = self.geometry.fat_start + offset / SECTOR_SIZE as u64;
        let within = (offset % SECTOR_SIZE as u64) as usize;
        if let Some((cached, bytes)) = &self.fat_cache
            && *cached == sector
        {
            return Ok(bytes[within]);
        }
        let bytes = self.read_sector(sector)?;
        self.fat_cache = Some((sector, bytes));
        Ok(bytes[within])
    }

    fn next_cluster(&mut self, cluster: u32) -> Result<Next, FatError> {
        let n = u64::from(cluster);
        let (value, end_at, bad) = match self.geometry.fat_type {
            FatType::Fat12 => {
                let offset = n + n / 2;
                let pair = u16::from_le_bytes([self.fat_byte(offset)?, self.fat_byte(offset + 1)?]);
                let value = if cluster % 2 == 1 {
                    pair >> 4
                } else {
                    pair & 0x0FFF
                };
                (u32::from(value), 0xFF8, 0xFF7)
            }
            FatType::Fat16 => {
                let offset = n * 2;
                let value =
                    u16::from_le_bytes([self.fat_byte(offset)?, self.fat_byte(offset + 1)?]);
                (u32::from(value), 0xFFF8, 0xFFF7)
            }
            FatType::Fat32 => {
                let offset = n * 4;
                let mut bytes = [0u8; 4];
                for (i, byte) in bytes.iter_mut().enumerate() {
                    *byte = self.fat_byte(offset + i as u64)?;
                }
                (
                    u32::from_le_bytes(bytes) & 0x0FFF_FFFF,
                    0x0FFF_FFF8,
                    0x0FFF_FFF7,
                )
            }
        };
        if value >= end_at {
            Ok(Next::End)
        } else if value == bad || !self.is_data_cluster(value) {
            Err(FatError::BadCluster)
        } else {
            Ok(Next::Cluster(value))
        }
    }

    fn is_data_cluster(&self, cluster: u32) -> bool {
        (2..self.geometry.cluster_count + 2).contains(&cluster)
    }

    /// Reads the chain from `first` for at most `max_bytes`, stopping at its
    /// end; errors on loops and on chains pointing outside the volume.
    fn read_chain(&mut self, first: u32, max_bytes: usize) -> Result<Vec<u8>, FatError> {
        let mut out = Vec::new();
        let mut visited = BTreeSet::new();
        let mut cluster = first;
        loop {
            if !self.is_data_cluster(cluster) {
                return Err(FatError::BadCluster);
            }
            if !visited.insert(cluster) {
                return Err(FatError::ChainLoop);
            }
            let start = self.geometry.cluster_start(cluster);
            let mut buf = vec![0u8; self.geometry.cluster_bytes()];
            self.dev.read_blocks(self.start + start, &mut buf)?;
            out.extend_from_slice(&buf);
            if out.len() >= max_bytes {
                return Ok(out);
            }
            match self.next_cluster(cluster)? {
                Next::Cluster(next) => cluster = next,
                Next::End => return Ok(out),
            }
        }
    }

    /// Every file and directory entry of the root directory.
    pub fn root_entries(&mut self) -> Result<Vec<DirEntry>, FatError> {
        let fat32 = self.geometry.fat_type == FatType::Fat32;
        let raw = if fat32 {
            let bytes = self.read_chain(self.geometry.root_cluster, MAX_DIR_BYTES + 1)?;
            if bytes.len() > MAX_DIR_BYTES {
                return Err(FatError::DirectoryTooLarge);
            }
            bytes
        } else {
            let sectors = self.geometry.root_dir_sectors as usize;
            let mut bytes = vec![0u8; sectors * SECTOR_SIZE];
            self.dev
                .read_blocks(self.start + self.geometry.root_dir_start, &mut bytes)?;
            bytes
        };
        let mut parser = DirParser::new(fat32);
        for entry in raw.chunks_exact(ENTRY_LEN) {
            if !parser.feed(entry) {
                break;
            }
        }
        Ok(parser.into_entries())
    }

    /// Finds a root-directory file by name, long or 8.3, ignoring case.
    pub fn find(&mut self, name: &str) -> Result<Option<DirEntry>, FatError> {
        Ok(self
            .root_entries()?
            .into_iter()
            .find(|entry| !entry.is_directory() && names_match(entry, name)))
    }

    /// Reads a file's contents, refusing files over `max_len` bytes.
    pub fn read_file(&mut self, entry: &DirEntry, max_len: usize) -> Result<Vec<u8>, FatError> {
        let len = entry.size() as usize;
        if len > max_len {
            return Err(FatError::FileTooLarge);
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut bytes = self.read_chain(entry.first_cluster(), len)?;
        if bytes.len() < len {
            return Err(FatError::ChainTooShort);
        }
        bytes.truncate(len);
        Ok(bytes)
    }

    /// The device, giving up the volume.
    pub fn into_device(self) -> D {
        self.dev
    }
}
