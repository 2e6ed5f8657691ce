//! PERSIST ("P3"): an empty ext4 file system made with `mke2fs` (no root
//! needed to format a file), where the node keeps its state.

use std::path::Path;
use std::process::Command;

/// PERSIST's ext4 block size, whatever the volume's size. A file system
/// grown online keeps the block size and the inodes per block group it
/// was made with, and the node grows this small volume to the disk's end
/// on its first boot: `mke2fs` would make a 16 MiB volume as a small one
/// (1 KiB blocks, an inode per 4 KiB), which grown to a 1 TB disk would
/// have 256 million inodes, 64 GiB of inode tables for the kernel to zero.
/// 4 KiB is also no smaller than any disk's logical block, which Linux
/// needs to mount it.
const BLOCK_SIZE: u64 = 4096;

/// A block group of [`BLOCK_SIZE`] blocks: one bitmap block's bits.
const GROUP_BYTES: u64 = 8 * BLOCK_SIZE * BLOCK_SIZE;

/// An inode per 16 KiB of the grown volume, `mke2fs`'s ratio for
/// anything but small volumes: the inodes of a block group are fixed when
/// it is made, so each group, even the small volume's only partial one,
/// gets a whole group's share.
const INODES_PER_GROUP: u64 = GROUP_BYTES / 16384;

/// An ext4 volume of `bytes`, labelled `persist`, made to be grown online
/// to a disk of any size (see [`BLOCK_SIZE`]).
pub fn ext4(bytes: u64, scratch: &Path) -> Result<Vec<u8>, String> {
    let file = scratch.join("persist.ext4");
    let _ = std::fs::remove_file(&file);
    let size = format!("{}k", bytes / 1024);
    let inodes = bytes.div_ceil(GROUP_BYTES) * INODES_PER_GROUP;
    let output = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "persist", "-m", "0"])
        .args(["-b", &BLOCK_SIZE.to_string(), "-N", &inodes.to_string()])
        // A small volume: one journal, no lazy initialisation left for
        // the node to do at its first mount.
        .args([
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0",
        ])
        .arg(&file)
        .arg(&size)
        .output()
        .map_err(|e| format!("mke2fs (e2fsprogs): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "mke2fs failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let bytes_read = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let _ = std::fs::remove_file(&file);
    Ok(bytes_read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(sb: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(sb[at..at + 4].try_into().unwrap())
    }

    /// The superblock's block size, blocks per group and inodes per
    /// group (at byte 1024: `s_log_block_size` at 24,
    /// `s_blocks_per_group` at 32, `s_inodes_per_group` at 40, the magic
    /// 0xEF53 at 56).
    fn geometry(volume: &[u8]) -> (u64, u64, u64) {
        let sb = &volume[1024..2048];
        assert_eq!(&sb[56..58], &[0x53, 0xEF]);
        (
            1024 << u32_at(sb, 24),
            u64::from(u32_at(sb, 32)),
            u64::from(u32_at(sb, 40)),
        )
    }

    #[test]
    fn every_size_gets_4k_blocks_and_an_inode_per_16k_of_a_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        for mib in [8, 16, 300] {
            let volume = ext4(mib << 20, dir.path()).unwrap();
            assert_eq!(volume.len() as u64, mib << 20);
            let (block_size, blocks_per_group, inodes_per_group) = geometry(&volume);
            assert_eq!(block_size, 4096, "{mib} MiB");
            assert_eq!(
                inodes_per_group * 16384,
                blocks_per_group * block_size,
                "{mib} MiB"
            );
        }
    }
}
