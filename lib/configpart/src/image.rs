//! Host side: building a CONFIG disk image from files.
//!
//! The FAT volume itself is made by the `fatfs` crate (format, long names);
//! the MBR around it is ours, since `fatfs` only knows volumes.

use std::io::{Cursor, Write};
use std::string::String;
use std::vec::Vec;

use fatfs::{FileSystem, FormatVolumeOptions, FsOptions};

use crate::bpb::SECTOR_SIZE;

/// Where the partition starts on an MBR image: 1 MiB, as partitioning tools
/// align it.
const PARTITION_START: u64 = 2048;

/// How a CONFIG image is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageLayout {
    /// A FAT volume alone, as EVE's `config.img` (1 MiB makes FAT12).
    Bare { volume_bytes: u64 },
    /// An MBR with one FAT partition starting at 1 MiB.
    Mbr { volume_bytes: u64 },
}

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("volume size {0} is not a whole number of sectors between 64 KiB and 2 TiB")]
    BadSize(u64),
    #[error("formatting the FAT volume failed")]
    Format(#[source] std::io::Error),
    #[error("writing {name} into the FAT volume failed")]
    Write {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Builds a disk image holding `files` (name, contents) in the root
/// directory of a FAT volume labelled `EVE`, with long names where needed.
pub fn build_config_image(
    files: &[(&str, &[u8])],
    layout: ImageLayout,
) -> Result<Vec<u8>, ImageError> {
    let (volume_bytes, partitioned) = match layout {
        ImageLayout::Bare { volume_bytes } => (volume_bytes, false),
        ImageLayout::Mbr { volume_bytes } => (volume_bytes, true),
    };
    let sectors = volume_bytes / SECTOR_SIZE as u64;
    if !volume_bytes.is_multiple_of(SECTOR_SIZE as u64)
        || volume_bytes < 64 * 1024
        || u32::try_from(sectors + PARTITION_START).is_err()
    {
        return Err(ImageError::BadSize(volume_bytes));
    }
    let mut volume = Cursor::new(std::vec![0u8; volume_bytes as usize]);
    fatfs::format_volume(
        &mut volume,
        FormatVolumeOptions::new().volume_label(*b"EVE        "),
    )
    .map_err(ImageError::Format)?;
    let fat_type = {
        let fs = FileSystem::new(&mut volume, FsOptions::new()).map_err(ImageError::Format)?;
        for (name, contents) in files {
            let write_error = |source| ImageError::Write {
                name: String::from(*name),
                source,
            };
            let mut file = fs.root_dir().create_file(name).map_err(write_error)?;
            file.truncate().map_err(write_error)?;
            file.write_all(contents).map_err(write_error)?;
            file.flush().map_err(write_error)?;
        }
        let fat_type = fs.fat_type();
        fs.unmount().map_err(ImageError::Format)?;
        fat_type
    };
    let volume = volume.into_inner();
    if !partitioned {
        return Ok(volume);
    }
    let partition_type = match fat_type {
        fatfs::FatType::Fat12 => 0x01,
        fatfs::FatType::Fat16 if sectors < 65536 => 0x04,
        fatfs::FatType::Fat16 => 0x06,
        fatfs::FatType::Fat32 => 0x0C,
    };
    let mut image = mbr(partition_type, PARTITION_START as u32, sectors as u32);
    image.resize(PARTITION_START as usize * SECTOR_SIZE, 0);
    image.extend_from_slice(&volume);
    Ok(image)
}

/// A sector-0 MBR with one partition, addressed by LBA only (the CHS fields
/// hold the "beyond CHS" marker every current tool writes).
fn mbr(partition_type: u8, start: u32, sectors: u32) -> Vec<u8> {
    let mut sector = std::vec![0u8; SECTOR_SIZE];
    let entry = &mut sector[446..462];
    entry[1..4].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    entry[4] = partition_type;
    entry[5..8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    entry[8..12].copy_from_slice(&start.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}
