//! The A/B disk as files: the whole disk for its partition table, a
//! partition (or an image file) as a block device for its FAT volume, and
//! the copy of an image into a partition.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use blockdev::{BLOCK_SIZE, BlockDevice, BlockError, check_request};
use configpart::FatVolume;
use gptab::{Disk, DiskError};

/// The longest `eve-release` read: a version string, not a file.
const MAX_RELEASE: usize = 256;
/// Bytes copied per write.
const CHUNK: usize = 1 << 20;

/// A disk image file or block device of 512-byte blocks (the node's
/// disks; 4 KiB-native disks are not handled yet).
pub struct FileDisk<'a> {
    pub file: &'a File,
    pub blocks: u64,
}

impl<'a> FileDisk<'a> {
    /// `file` as a disk of its whole length.
    pub fn new(file: &'a File) -> io::Result<FileDisk<'a>> {
        Ok(FileDisk {
            file,
            blocks: byte_len(file)? / BLOCK_SIZE as u64,
        })
    }
}

/// A file's or a block device's length (a device's metadata says 0).
pub fn byte_len(file: &File) -> io::Result<u64> {
    use std::io::Seek;
    let mut handle = file;
    let len = handle.seek(io::SeekFrom::End(0))?;
    handle.seek(io::SeekFrom::Start(0))?;
    Ok(len)
}

fn at(lba: u64) -> Result<u64, DiskError> {
    lba.checked_mul(BLOCK_SIZE as u64)
        .ok_or(DiskError::OutOfRange)
}

impl Disk for FileDisk<'_> {
    fn block_size(&self) -> usize {
        BLOCK_SIZE
    }
    fn block_count(&self) -> u64 {
        self.blocks
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.file
            .read_exact_at(buf, at(lba)?)
            .map_err(|_| DiskError::Io)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.file
            .write_all_at(buf, at(lba)?)
            .map_err(|_| DiskError::Io)
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        self.file.sync_data().map_err(|_| DiskError::Io)
    }
}

/// A read-only window of `blocks` blocks from `first` of a file: one
/// partition of the disk, or a whole image file.
pub struct Window<'a> {
    pub file: &'a File,
    pub first: u64,
    pub blocks: u64,
}

impl BlockDevice for Window<'_> {
    fn block_count(&self) -> u64 {
        self.blocks
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self.blocks, lba, buf.len())?;
        let offset = (self.first + lba) * BLOCK_SIZE as u64;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|_| BlockError::Io)
    }
    fn write_blocks(&mut self, _lba: u64, _buf: &[u8]) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

/// The `eve-release` of the base OS volume in `window`, trimmed; `None`
/// when there is no FAT volume, no such file, or it is not UTF-8.
pub fn release(window: Window<'_>) -> Option<String> {
    let mut fat = FatVolume::open(window).ok()?;
    let entry = fat.find("eve-release").ok()??;
    let bytes = fat.read_file(&entry, MAX_RELEASE).ok()?;
    String::from_utf8(bytes).ok().map(|s| s.trim().to_string())
}

/// Copies `image` into `disk` from byte `offset`, then makes it durable;
/// stops (as a killed host would) after `cut_after` bytes when given.
pub fn copy(image: &File, disk: &File, offset: u64, cut_after: Option<u64>) -> io::Result<()> {
    let mut reader = image;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let n = match cut_after {
            Some(limit) if done + n as u64 >= limit => {
                let rest = (limit - done) as usize;
                disk.write_all_at(&buf[..rest], offset + done)?;
                return Err(io::Error::other("write abandoned"));
            }
            _ => n,
        };
        disk.write_all_at(&buf[..n], offset + done)?;
        done += n as u64;
    }
    disk.sync_data()
}
