//! A host killed at each point of an update's disk writes: before the
//! data (while the table is rewritten, at every block), in the middle of
//! the data, after its `fsync`, and after `try-once` (again while that
//! table is rewritten, at every block). Each time the loader's next
//! choice must be the booted active partition, or a partition holding a
//! whole image that was meant to be tried: never a partly written one.
//!
//! A SIGKILL stops the process between two writes and leaves what it
//! wrote in the page cache, so stopping the writes at a point is what the
//! disk holds after a kill there. A power cut can lose writes not yet
//! synced as well; the table copies are each flushed before the next is
//! written, and the data is synced before anything makes it bootable.

use gptab::DiskError;

use super::*;

/// The disk running 1.0 from IMGA, with 3.0 written into IMGB and marked
/// to be tried (`updating`), as a node is when a newer update replaces
/// one that was waiting for its reboot.
fn waiting_trial() -> (Node, String) {
    let node = Node::new();
    let a = node.target(Some("IMGA"));
    let v3 = node.verified(&base_os("3.0", 512 * 1024));
    call::<Write>(&a, &write("3.0", &v3)).unwrap();
    call::<TryOnce>(&a, &imgb()).unwrap();
    let v4 = node.verified(&base_os("4.0", 512 * 1024));
    (node, v4)
}

fn imgb() -> PartitionRef {
    PartitionRef {
        label: "IMGB".into(),
    }
}

/// A disk whose writes stop, as a killed host's do, after `blocks` more
/// blocks (a multi-block write is cut part-way).
struct Killed<'a> {
    disk: FileDisk<&'a File>,
    blocks: u64,
}

impl gptab::Disk for Killed<'_> {
    fn block_size(&self) -> usize {
        self.disk.block_size()
    }
    fn block_count(&self) -> u64 {
        self.disk.block_count()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.disk.read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        let block_size = self.disk.block_size();
        let wanted = (buf.len() / block_size) as u64;
        let done = wanted.min(self.blocks);
        self.disk.write(lba, &buf[..done as usize * block_size])?;
        self.blocks -= done;
        if done < wanted {
            return Err(DiskError::Io);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        self.disk.flush()
    }
}

/// Sets IMGB to `state` with the writes stopped after `blocks` blocks;
/// whether the whole table got written.
fn set_imgb_killed(node: &Node, state: SlotState, blocks: u64) -> bool {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&node.disk)
        .unwrap();
    let mut gpt = Gpt::read(&mut FileDisk::new(&file, node.block_size).unwrap()).unwrap();
    ab::set_state(&mut gpt, "IMGB", types::EVE_IMAGE, state).unwrap();
    let mut disk = Killed {
        disk: FileDisk::new(&file, node.block_size).unwrap(),
        blocks,
    };
    gpt.write(&mut disk).is_ok()
}

/// What the loader boots next, and the version it finds there.
fn next_boot(node: &Node) -> (String, String) {
    let slot = node.boot();
    let version = status(&node.target(Some(&slot)))
        .into_iter()
        .find(|p| p.0 == slot)
        .map(|p| p.2)
        .unwrap();
    (slot, version)
}

#[test]
fn killed_while_the_table_is_rewritten_before_the_data() {
    let (node, _) = waiting_trial();
    let before = fs::read(&node.disk).unwrap();
    let mut blocks = 0;
    loop {
        fs::write(&node.disk, &before).unwrap();
        let whole = set_imgb_killed(&node, SlotState::Unused, blocks);
        // The data is not touched yet: IMGB still holds the whole 3.0
        // it was to try, or it is unused.
        let boot = next_boot(&node);
        assert!(
            boot == ("IMGA".into(), "1.0".into()) || boot == ("IMGB".into(), "3.0".into()),
            "killed after {blocks} table blocks: booted {boot:?}"
        );
        if whole {
            assert_eq!(boot.0, "IMGA", "the table written: IMGB unused");
            break;
        }
        blocks += 1;
    }
    assert!(blocks > 2, "the table write spans {blocks} blocks");
}

#[test]
fn killed_in_the_data_or_after_its_fsync_boots_the_running_partition() {
    let (node, v4) = waiting_trial();
    let before = fs::read(&node.disk).unwrap();
    let len = 512 * 1024;
    for cut in [0, 1, len / 2, len - 1] {
        fs::write(&node.disk, &before).unwrap();
        let a = node.target(Some("IMGA"));
        let killed = a.write(&write("4.0", &v4), Some(cut));
        assert!(
            matches!(killed, Err(Refused::Failed(ref e)) if e.code() == Code::Storage),
            "{cut}: {killed:?}"
        );
        assert_eq!(status(&a)[1].1, "unused", "killed after {cut} bytes");
        assert_eq!(node.boot(), "IMGA", "killed after {cut} bytes");
        assert_eq!(node.boot(), "IMGA", "killed after {cut} bytes, again");
    }
    // The whole image written and synced, the host killed before
    // try-once: written, not bootable.
    fs::write(&node.disk, &before).unwrap();
    let a = node.target(Some("IMGA"));
    call::<Write>(&a, &write("4.0", &v4)).unwrap();
    assert_eq!(status(&a)[1], row("IMGB", "unused", "4.0", false));
    assert_eq!(next_boot(&node), ("IMGA".into(), "1.0".into()));
}

#[test]
fn killed_during_or_after_try_once_boots_the_trial_or_the_running_partition() {
    let (node, v4) = waiting_trial();
    call::<Write>(&node.target(Some("IMGA")), &write("4.0", &v4)).unwrap();
    let written = fs::read(&node.disk).unwrap();
    let mut blocks = 0;
    loop {
        fs::write(&node.disk, &written).unwrap();
        let whole = set_imgb_killed(&node, SlotState::Updating, blocks);
        let boot = next_boot(&node);
        assert!(
            boot == ("IMGA".into(), "1.0".into()) || boot == ("IMGB".into(), "4.0".into()),
            "killed after {blocks} blocks of try-once's table: booted {boot:?}"
        );
        if boot.0 == "IMGB" {
            // A trial: uncommitted, the next boot is the running one.
            assert_eq!(next_boot(&node), ("IMGA".into(), "1.0".into()));
        }
        if whole {
            assert_eq!(boot.0, "IMGB", "try-once done: the trial boots");
            break;
        }
        blocks += 1;
    }
}
