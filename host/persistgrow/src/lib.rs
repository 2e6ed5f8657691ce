//! Grows PERSIST on first boot: an image flashed to a disk larger than
//! itself has its backup GPT and PERSIST's end at the image's end. The
//! node's init ([`grow_table`], before anything from the disk is mounted)
//! moves the table and widens PERSIST (`gptab::grow_onto_disk`,
//! crash-safe), tells the kernel the partition's new size
//! (`BLKPG_RESIZE_PARTITION`, which works with partitions in use and keeps
//! their device nodes), and once PERSIST is mounted grows its ext4 online
//! ([`grow_ext4`], `EXT4_IOC_RESIZE_FS`, journalled by ext4 itself).
//! Both steps are idempotent: a power cut between them is finished at the
//! next boot.
//!
//! The two ioctls are unsafe code, which the host (`eve-host`) forbids:
//! they are here, each with the kernel's argument types exactly.

mod ext4;
mod ioctls;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use gptab::{FileDisk, GrowDiskError, Grown};

pub use ext4::{Superblock, SuperblockError};

/// Why the table could not be grown.
#[derive(Debug, thiserror::Error)]
pub enum GrowTableError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no partition named {0}")]
    NoPartition(String),
    #[error("{0}")]
    Table(GrowDiskError),
    /// The table is grown on the disk; the kernel keeps the old size until
    /// a reboot.
    #[error("telling the kernel partition {number}'s new size: {errno}")]
    Kernel {
        number: u32,
        errno: rustix::io::Errno,
    },
}

/// What [`grow_table`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableGrown {
    pub number: u32,
    pub block_size: usize,
    pub grown: Grown,
}

/// Grows the partition named `name` (EVE's `P3`) on `disk` (the whole
/// disk's device, or an image file) to the disk's end; `None` when it
/// already ends there. On a block device the kernel is told the new size.
pub fn grow_table(disk: &Path, name: &str) -> Result<Option<TableGrown>, GrowTableError> {
    let open_error = |source| GrowTableError::Open {
        path: disk.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(open_error)?;
    let mut blocks = FileDisk::detect(&file).map_err(open_error)?;
    let block_size = gptab::Disk::block_size(&blocks);
    let number = gptab::Gpt::read(&mut blocks)
        .map_err(|e| GrowTableError::Table(GrowDiskError::Read(e)))?
        .partition_named(name)
        .ok_or_else(|| GrowTableError::NoPartition(name.to_string()))?
        .number;
    let Some(grown) = gptab::grow_onto_disk(&mut blocks, number).map_err(GrowTableError::Table)?
    else {
        return Ok(None);
    };
    if file
        .metadata()
        .map_err(open_error)?
        .file_type()
        .is_block_device()
    {
        let table = gptab::Gpt::read(&mut blocks)
            .map_err(|e| GrowTableError::Table(GrowDiskError::Read(e)))?;
        let partition = table
            .partition(number)
            .ok_or_else(|| GrowTableError::NoPartition(name.to_string()))?;
        let bytes = |lba: u64| lba * block_size as u64;
        ioctls::resize_partition(
            &file,
            number,
            bytes(partition.first_lba),
            bytes(partition.blocks()),
        )
        .map_err(|errno| GrowTableError::Kernel { number, errno })?;
    }
    Ok(Some(TableGrown {
        number,
        block_size,
        grown,
    }))
}

/// Why the file system could not be grown.
#[derive(Debug, thiserror::Error)]
pub enum GrowExt4Error {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Superblock(SuperblockError),
    #[error("growing the ext4 on {path} to {blocks} blocks: {errno}")]
    Resize {
        path: PathBuf,
        blocks: u64,
        errno: rustix::io::Errno,
    },
}

/// Grows the ext4 on `device` (PERSIST's partition), mounted on
/// `mountpoint`, to fill the partition: its blocks before and after, or
/// `None` when it fills it already.
pub fn grow_ext4(device: &Path, mountpoint: &Path) -> Result<Option<(u64, u64)>, GrowExt4Error> {
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GrowExt4Error::Read { path, source }
    };
    let file = File::open(device).map_err(read_error(device))?;
    let superblock = Superblock::read(&file)
        .map_err(read_error(device))?
        .map_err(GrowExt4Error::Superblock)?;
    let partition_bytes = gptab::byte_len(&file).map_err(read_error(device))?;
    let fits = partition_bytes / u64::from(superblock.block_size);
    if fits <= superblock.blocks {
        return Ok(None);
    }
    let dir = File::open(mountpoint).map_err(read_error(mountpoint))?;
    ioctls::resize_ext4(&dir, fits).map_err(|errno| GrowExt4Error::Resize {
        path: device.to_path_buf(),
        blocks: fits,
        errno,
    })?;
    Ok(Some((superblock.blocks, fits)))
}
