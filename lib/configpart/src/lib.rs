//! The EVE CONFIG partition (FAT): read in the guest, written on the host.
//!
//! An EVE device is personalised by a small FAT partition an installer can
//! edit on any PC: the controller's address (`server`), its trust root
//! (`root-certificate.pem`), the onboarding certificate and key, an optional
//! `soft_serial` and an optional `hosts` file. Services get it as a read-only
//! disk and read it with [`read_factory_config`].
//!
//! The FAT reader is our own, read-only and small. embedded-sdmmc 0.10 was
//! the candidate, but it refuses FAT12 (what `mkfs.vfat` makes of EVE's
//! 1 MiB CONFIG partition), needs an MBR, matches long names case-sensitively
//! and panics on a hostile boot sector (division by zero when the sectors per
//! cluster field is 0); a service must survive whatever is on the disk.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod bpb;
mod dir;
mod factory;
mod fat;
#[cfg(feature = "std")]
mod image;
mod locate;

pub use dir::DirEntry;
pub use factory::{ConfigError, ConfigFile, FactoryConfig, read_factory_config, split_server};
pub use fat::{FatType, FatVolume};
#[cfg(feature = "std")]
pub use image::{ImageError, ImageLayout, build_config_image};

use blockdev::BlockError;

/// Why the FAT volume could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatError {
    /// The disk failed.
    Device(BlockError),
    /// Neither a FAT boot sector at block 0 nor an MBR with a FAT partition.
    NoFatVolume,
    /// The boot sector's geometry is inconsistent or outside the disk.
    BadBootSector,
    /// Sectors other than 512 bytes.
    UnsupportedSectorSize,
    /// A cluster chain points at a free, reserved, bad or nonexistent cluster.
    BadCluster,
    /// A cluster chain ends before the file does.
    ChainTooShort,
    /// A cluster chain comes back to a cluster it already visited.
    ChainLoop,
    /// A directory is larger than this reader accepts.
    DirectoryTooLarge,
    /// A file is larger than the caller accepts.
    FileTooLarge,
}

impl From<BlockError> for FatError {
    fn from(error: BlockError) -> Self {
        FatError::Device(error)
    }
}

impl core::fmt::Display for FatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FatError::Device(error) => write!(f, "CONFIG disk: {error}"),
            FatError::NoFatVolume => f.write_str("no FAT volume on the CONFIG disk"),
            FatError::BadBootSector => f.write_str("FAT boot sector is inconsistent"),
            FatError::UnsupportedSectorSize => f.write_str("FAT sector size is not 512"),
            FatError::BadCluster => f.write_str("FAT chain points at an invalid cluster"),
            FatError::ChainTooShort => f.write_str("FAT chain ends before the file"),
            FatError::ChainLoop => f.write_str("FAT chain loops"),
            FatError::DirectoryTooLarge => f.write_str("FAT directory is too large"),
            FatError::FileTooLarge => f.write_str("file is too large"),
        }
    }
}
