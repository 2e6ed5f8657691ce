//! A disk over a std [`File`] (feature `std`): an image file or a block
//! device, of 512-byte or 4 KiB logical blocks. The one the host, the
//! harness and `xtask image` share, so each checks its offsets the same.
//!
//! The block size is a parameter, never assumed: a block device says its
//! own ([`logical_block_size`], the `BLKSSZGET` ioctl); an image file has
//! none, so its maker or user says (512, [`DEFAULT_BLOCK_SIZE`], unless
//! told otherwise).

use alloc::format;
use std::borrow::Borrow;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};

use crate::{Disk, DiskError, valid_block_size};

/// The block size of an image file nobody said otherwise about.
pub const DEFAULT_BLOCK_SIZE: usize = 512;

/// A file's or a block device's length in bytes (a device's metadata
/// says 0, so this seeks to its end and back).
pub fn byte_len(file: &File) -> io::Result<u64> {
    let mut handle = file;
    let len = handle.seek(SeekFrom::End(0))?;
    handle.seek(SeekFrom::Start(0))?;
    Ok(len)
}

/// The logical block size of `file`: the device's own for a block device,
/// [`DEFAULT_BLOCK_SIZE`] for anything else.
pub fn logical_block_size(file: &File) -> io::Result<usize> {
    if !file.metadata()?.file_type().is_block_device() {
        return Ok(DEFAULT_BLOCK_SIZE);
    }
    let size = rustix::fs::ioctl_blksszget(file)?;
    usize::try_from(size)
        .ok()
        .filter(|&s| valid_block_size(s))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the device's logical block size {size} is not one a GPT can have"),
            )
        })
}

/// `file` (owned or borrowed) as a [`Disk`] of `block_size` blocks.
/// Every request is checked against the disk's end before any I/O.
#[derive(Debug)]
pub struct FileDisk<F> {
    file: F,
    block_size: usize,
    blocks: u64,
}

impl<F: Borrow<File>> FileDisk<F> {
    /// `file` as a disk of its whole length (a partial last block is not
    /// part of it) in blocks of `block_size`.
    pub fn new(file: F, block_size: usize) -> io::Result<FileDisk<F>> {
        if !valid_block_size(block_size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{block_size} is not a logical block size"),
            ));
        }
        let blocks = byte_len(file.borrow())? / block_size as u64;
        Ok(FileDisk::with_blocks(file, block_size, blocks))
    }

    /// `file` as a disk in blocks of its own size ([`logical_block_size`]).
    pub fn detect(file: F) -> io::Result<FileDisk<F>> {
        let block_size = logical_block_size(file.borrow())?;
        FileDisk::new(file, block_size)
    }

    /// `file` as a disk of `blocks` blocks of `block_size`, as someone
    /// else measured it (sysfs for a device; the maker of an image being
    /// written). A block size the table code does not take is refused by
    /// `Gpt::read`, `create` and `write`.
    pub fn with_blocks(file: F, block_size: usize, blocks: u64) -> FileDisk<F> {
        FileDisk {
            file,
            block_size,
            blocks,
        }
    }

    pub fn file(&self) -> &File {
        self.file.borrow()
    }

    pub fn into_inner(self) -> F {
        self.file
    }

    /// The byte offset of block `lba`; None past what a u64 counts.
    pub fn offset_of(&self, lba: u64) -> Option<u64> {
        lba.checked_mul(self.block_size as u64)
    }

    /// The byte offset of a request of `len` bytes at `lba`, if it is
    /// whole blocks inside the disk.
    fn request(&self, lba: u64, len: usize) -> Result<u64, DiskError> {
        if !len.is_multiple_of(self.block_size) {
            return Err(DiskError::OutOfRange);
        }
        let end = lba
            .checked_add((len / self.block_size) as u64)
            .ok_or(DiskError::OutOfRange)?;
        if end > self.blocks {
            return Err(DiskError::OutOfRange);
        }
        self.offset_of(lba).ok_or(DiskError::OutOfRange)
    }
}

impl<F: Borrow<File>> Disk for FileDisk<F> {
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn block_count(&self) -> u64 {
        self.blocks
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let at = self.request(lba, buf.len())?;
        self.file()
            .read_exact_at(buf, at)
            .map_err(|_| DiskError::Io)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        let at = self.request(lba, buf.len())?;
        self.file()
            .write_all_at(buf, at)
            .map_err(|e| match e.kind() {
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                    DiskError::ReadOnly
                }
                _ => DiskError::Io,
            })
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        self.file().sync_data().map_err(|_| DiskError::Io)
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;
    use std::fs::OpenOptions;

    use super::*;
    use crate::ab::{self, SlotState};
    use crate::{Gpt, Guid, NewPartition, types};

    const BLOCKS_4K: u64 = 1024;

    fn slot(
        number: u32,
        name: &'static str,
        first: u64,
        state: SlotState,
    ) -> NewPartition<'static> {
        NewPartition {
            number,
            type_guid: types::EVE_IMAGE,
            unique_guid: Guid([number as u8; 16]),
            first_lba: first,
            last_lba: first + 255,
            attributes: state.apply(0),
            name,
        }
    }

    /// A 4 MiB image file of 4 KiB blocks with IMGA active and IMGB
    /// updating.
    fn disk_4k(dir: &std::path::Path) -> File {
        let path = dir.join("disk-4k.img");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        file.set_len(BLOCKS_4K * 4096).unwrap();
        let gpt = Gpt::create(
            4096,
            BLOCKS_4K,
            Guid([7; 16]),
            &[
                slot(2, "IMGA", 256, SlotState::Active),
                slot(3, "IMGB", 512, SlotState::Updating),
            ],
        )
        .unwrap();
        let mut disk = FileDisk::new(&file, 4096).unwrap();
        disk.write(0, &crate::protective_mbr(4096, BLOCKS_4K))
            .unwrap();
        gpt.write(&mut disk).unwrap();
        file
    }

    #[test]
    fn a_4k_table_is_at_byte_4096_and_reads_back_only_as_4k() {
        let dir = tempfile::tempdir().unwrap();
        let file = disk_4k(dir.path());
        let mut header = [0u8; 8];
        file.read_exact_at(&mut header, 4096).unwrap();
        assert_eq!(&header, b"EFI PART");
        // The entries follow the header's block: LBA 2 is byte 8192, and
        // partition 2 is the second 128-byte entry.
        let mut imga_type = vec![0u8; 16];
        file.read_exact_at(&mut imga_type, 8192 + 128).unwrap();
        assert_eq!(imga_type, types::EVE_IMAGE.0);
        let gpt = Gpt::read(&mut FileDisk::new(&file, 4096).unwrap()).unwrap();
        assert!(gpt.status().both_valid() && gpt.status().protective_mbr);
        assert_eq!(gpt.block_size(), 4096);
        assert_eq!(gpt.partition_named("IMGB").unwrap().first_lba, 512);
        // Read as 512-byte blocks, nothing is where a table would be.
        assert!(Gpt::read(&mut FileDisk::new(&file, 512).unwrap()).is_err());
    }

    #[test]
    fn the_ab_choice_on_a_4k_file_spends_the_try_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let file = disk_4k(dir.path());
        let mut disk = FileDisk::new(&file, 4096).unwrap();
        let mut gpt = Gpt::read(&mut disk).unwrap();
        let choice = ab::choose(&mut gpt, types::EVE_IMAGE).unwrap();
        assert_eq!(choice.partition().name, "IMGB");
        assert!(choice.spent_try);
        gpt.write(&mut disk).unwrap();
        let mut again = Gpt::read(&mut FileDisk::new(&file, 4096).unwrap()).unwrap();
        let imgb = again.partition_named("IMGB").unwrap();
        assert_eq!(SlotState::of(imgb.attributes), SlotState::InProgress);
        let next = ab::choose(&mut again, types::EVE_IMAGE).unwrap();
        assert_eq!(next.partition().name, "IMGA");
    }

    #[test]
    fn requests_are_checked_against_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let file = disk_4k(dir.path());
        let mut disk = FileDisk::new(&file, 4096).unwrap();
        assert_eq!(disk.block_count(), BLOCKS_4K);
        let mut block = vec![0u8; 4096];
        disk.read(BLOCKS_4K - 1, &mut block).unwrap();
        assert_eq!(disk.read(BLOCKS_4K, &mut block), Err(DiskError::OutOfRange));
        assert_eq!(disk.read(u64::MAX, &mut block), Err(DiskError::OutOfRange));
        assert_eq!(disk.read(0, &mut block[..512]), Err(DiskError::OutOfRange));
        assert_eq!(disk.write(BLOCKS_4K, &block), Err(DiskError::OutOfRange));
        assert_eq!(disk.offset_of(3), Some(3 * 4096));
        assert_eq!(disk.offset_of(u64::MAX), None);
        // A partial last block is not part of the disk.
        file.set_len(BLOCKS_4K * 4096 + 100).unwrap();
        assert_eq!(FileDisk::new(&file, 4096).unwrap().block_count(), BLOCKS_4K);
        for bad in [0, 100, 1000, 1 << 17] {
            assert!(FileDisk::new(&file, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_image_file_has_the_default_block_size() {
        let dir = tempfile::tempdir().unwrap();
        let file = disk_4k(dir.path());
        assert_eq!(logical_block_size(&file).unwrap(), DEFAULT_BLOCK_SIZE);
        let owned = FileDisk::detect(file).unwrap();
        assert_eq!(owned.block_size(), 512);
        assert_eq!(owned.block_count(), BLOCKS_4K * 8);
        assert_eq!(byte_len(&owned.into_inner()).unwrap(), BLOCKS_4K * 4096);
    }
}
