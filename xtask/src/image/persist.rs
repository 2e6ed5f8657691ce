//! PERSIST ("P3"): an empty ext4 file system made with `mke2fs` (no root
//! needed to format a file), where the node keeps its state.

use std::path::Path;
use std::process::Command;

/// An ext4 volume of `bytes`, labelled `persist`.
pub fn ext4(bytes: u64, scratch: &Path) -> Result<Vec<u8>, String> {
    let file = scratch.join("persist.ext4");
    let _ = std::fs::remove_file(&file);
    let size = format!("{}k", bytes / 1024);
    let output = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "persist", "-m", "0"])
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
