//! PERSIST ("P3"): an empty ext4 file system made with `mke2fs` (no root
//! needed to format a file), where the node keeps its state.

use std::path::Path;
use std::process::Command;

/// An ext4 volume of `bytes`, labelled `persist`, for a disk of logical
/// blocks of `sector_size` bytes: Linux mounts ext4 only with blocks no
/// smaller than the disk's, and `mke2fs` picks 1 KiB blocks for a small
/// volume, so a 4Kn disk's PERSIST gets 4 KiB blocks.
pub fn ext4(bytes: u64, sector_size: usize, scratch: &Path) -> Result<Vec<u8>, String> {
    let file = scratch.join("persist.ext4");
    let _ = std::fs::remove_file(&file);
    let size = format!("{}k", bytes / 1024);
    let mut mke2fs = Command::new("mke2fs");
    mke2fs
        .args(["-q", "-F", "-t", "ext4", "-L", "persist", "-m", "0"])
        // A small volume: one journal, no lazy initialisation left for
        // the node to do at its first mount.
        .args([
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0",
        ]);
    if sector_size > 1024 {
        mke2fs.args(["-b", &sector_size.to_string()]);
    }
    let output = mke2fs
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

    /// The block size in an ext4 superblock (at byte 1024:
    /// `s_log_block_size` at 24, the magic 0xEF53 at 56).
    fn block_size(volume: &[u8]) -> u32 {
        let sb = &volume[1024..2048];
        assert_eq!(&sb[56..58], &[0x53, 0xEF]);
        1024 << u32::from_le_bytes(sb[24..28].try_into().unwrap())
    }

    #[test]
    fn a_4k_disk_gets_4k_blocks_and_a_512_byte_disk_mke2fs_own_choice() {
        let dir = tempfile::tempdir().unwrap();
        let small = ext4(16 << 20, 4096, dir.path()).unwrap();
        assert_eq!(small.len(), 16 << 20);
        assert_eq!(block_size(&small), 4096);
        let classic = ext4(16 << 20, 512, dir.path()).unwrap();
        assert_eq!(block_size(&classic), 1024);
    }
}
