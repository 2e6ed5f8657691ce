//! The two numbers of an ext4 superblock the growth needs.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The superblock's place: 1024 bytes in, 1024 long.
const OFFSET: u64 = 1024;
const MAGIC: u16 = 0xEF53;
/// `INCOMPAT_64BIT`: the block count's high half is used.
const INCOMPAT_64BIT: u32 = 0x80;

/// What a superblock says of the file system's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    pub block_size: u32,
    pub blocks: u64,
}

/// Why a superblock was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    #[error("not an ext2/3/4 file system")]
    NotExt4,
    #[error("ext4 block size 2^(10+{0}) is not one Linux mounts")]
    BlockSize(u32),
}

fn u32_at(sb: &[u8; 1024], at: usize) -> u32 {
    u32::from_le_bytes([sb[at], sb[at + 1], sb[at + 2], sb[at + 3]])
}

impl Superblock {
    /// Parses the superblock's 1024 bytes; never panics on any bytes.
    pub fn parse(sb: &[u8; 1024]) -> Result<Superblock, SuperblockError> {
        if u16::from_le_bytes([sb[56], sb[57]]) != MAGIC {
            return Err(SuperblockError::NotExt4);
        }
        let log = u32_at(sb, 24);
        // 1 KiB to 64 KiB.
        if log > 6 {
            return Err(SuperblockError::BlockSize(log));
        }
        let low = u64::from(u32_at(sb, 4));
        let high = if u32_at(sb, 0x60) & INCOMPAT_64BIT != 0 {
            u64::from(u32_at(sb, 0x150))
        } else {
            0
        };
        Ok(Superblock {
            block_size: 1024 << log,
            blocks: high << 32 | low,
        })
    }

    /// Reads and parses the superblock of the file system on `device`.
    pub fn read(device: &File) -> io::Result<Result<Superblock, SuperblockError>> {
        let mut sb = [0u8; 1024];
        device.read_exact_at(&mut sb, OFFSET)?;
        Ok(Superblock::parse(&sb))
    }
}
