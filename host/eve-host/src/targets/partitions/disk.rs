//! The A/B disk as files: a partition (or an image file) as a block
//! device for its FAT volume, and the copy of an image into a partition
//! (the whole disk for its table is `gptab::FileDisk`).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use blockdev::{BLOCK_SIZE, BlockDevice, BlockError, check_request};
use configpart::FatVolume;

/// The longest `eve-release` read: a version string, not a file.
const MAX_RELEASE: usize = 256;
/// Bytes copied per write.
const CHUNK: usize = 1 << 20;

/// A read-only window of `blocks` 512-byte blocks (the FAT reader's)
/// from byte `start` of a file: one partition of the disk, whatever the
/// disk's own block size, or a whole image file.
pub struct Window<'a> {
    pub file: &'a File,
    pub start: u64,
    pub blocks: u64,
}

impl BlockDevice for Window<'_> {
    fn block_count(&self) -> u64 {
        self.blocks
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self.blocks, lba, buf.len())?;
        let offset = lba
            .checked_mul(BLOCK_SIZE as u64)
            .and_then(|at| at.checked_add(self.start))
            .ok_or(BlockError::OutOfRange)?;
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
