//! PERSIST grown to the end of the disk on the first boot of an image
//! flashed to a larger disk (`persistgrow`): the table before anything on
//! the disk is mounted, the ext4 once PERSIST is. Each step says what it
//! did, or that there was nothing to do (what a later boot says, so a
//! console shows the growth ran once); a failure leaves PERSIST as it
//! was, usable, and is said.

use std::path::Path;

use super::disks::PERSIST_NAME;
use super::say;

/// Grows PERSIST's partition on the whole disk `disk` (`/dev/vda`).
pub fn table(disk: &Path) {
    match persistgrow::grow_table(disk, PERSIST_NAME) {
        Ok(None) => say(format_args!(
            "PERSIST already ends at the end of {}",
            disk.display()
        )),
        Ok(Some(grown)) => say(format_args!(
            "PERSIST grown to the end of {}: partition {} now ends at block {} (was {}, blocks of {} bytes)",
            disk.display(),
            grown.number,
            grown.grown.new_last_lba,
            grown.grown.old_last_lba,
            grown.block_size
        )),
        Err(e) => say(format_args!("PERSIST not grown on {}: {e}", disk.display())),
    }
}

/// Grows the ext4 on `device`, mounted on `mountpoint`, to its partition.
pub fn ext4(device: &Path, mountpoint: &Path) {
    match persistgrow::grow_ext4(device, mountpoint) {
        Ok(None) => say(format_args!("PERSIST's ext4 already fills its partition")),
        Ok(Some((old, new))) => say(format_args!(
            "PERSIST's ext4 grown from {old} to {new} blocks"
        )),
        Err(e) => say(format_args!("PERSIST's ext4 not grown: {e}")),
    }
}
