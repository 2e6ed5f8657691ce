//! Finding the node's disk and its CONFIG and PERSIST partitions.
//!
//! Every disk in `/sys/block` is read with `gptab`; the node's disk is the
//! one holding the partition the loader booted (its GUID is on the command
//! line), or, without one, the first with EVE's CONFIG and P3 partitions.
//! Partitions are found by their GPT names, as EVE's `zboot` finds them,
//! and the device node of partition N is the child of the disk in sysfs
//! whose `partition` file says N (`vda4`, `nvme0n1p4`, `mmcblk0p4`).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use gptab::{FileDisk, Gpt, Guid};

/// EVE's name of the CONFIG partition.
pub const CONFIG_NAME: &str = "CONFIG";
/// EVE's name of the PERSIST partition.
pub const PERSIST_NAME: &str = "P3";

/// The node's disk as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDisk {
    /// The disk's name in `/sys/block` (`vda`).
    pub disk: String,
    pub config: Option<PathBuf>,
    pub persist: Option<PathBuf>,
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The partitions of `disk` in sysfs: number to device name.
fn partition_names(sys_block: &Path, disk: &str) -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir(sys_block.join(disk)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let number = read_trimmed(&e.path().join("partition"))?.parse().ok()?;
            Some((number, e.file_name().into_string().ok()?))
        })
        .collect()
}

/// A disk's device node opened read-only (the init writes no table), with
/// the geometry sysfs gives.
fn open_disk(sys_block: &Path, dev: &Path, name: &str) -> Option<FileDisk<File>> {
    let block_size = read_trimmed(&sys_block.join(name).join("queue/logical_block_size"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(512usize);
    // sysfs counts 512-byte sectors whatever the block size.
    let sectors: u64 = read_trimmed(&sys_block.join(name).join("size"))?
        .parse()
        .ok()?;
    let blocks = sectors.checked_mul(512)? / block_size as u64;
    let file = File::open(dev.join(name)).ok()?;
    Some(FileDisk::with_blocks(file, block_size, blocks))
}

/// Whether a `/sys/block` entry can hold the node's table.
fn is_candidate(name: &str) -> bool {
    !["loop", "ram", "zram", "sr", "dm-", "md"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Looks for the node's disk under `sys_block` (`/sys/block`) with device
/// nodes in `dev` (`/dev`).
pub fn find(sys_block: &Path, dev: &Path, slot_guid: Option<Guid>) -> Option<NodeDisk> {
    let mut names: Vec<String> = fs::read_dir(sys_block)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_candidate(n))
        .collect();
    names.sort();
    let mut fallback = None;
    for name in names {
        let Some(mut disk) = open_disk(sys_block, dev, &name) else {
            continue;
        };
        let Ok(gpt) = Gpt::read(&mut disk) else {
            continue;
        };
        let partitions = partition_names(sys_block, &name);
        let device_of = |label: &str| {
            let number = gpt.partition_named(label)?.number;
            partitions
                .iter()
                .find(|(n, _)| *n == number)
                .map(|(_, part)| dev.join(part))
        };
        let found = NodeDisk {
            disk: name.clone(),
            config: device_of(CONFIG_NAME),
            persist: device_of(PERSIST_NAME),
        };
        let holds_slot =
            slot_guid.is_some_and(|g| gpt.partitions().iter().any(|p| p.unique_guid == g));
        if holds_slot {
            return Some(found);
        }
        if fallback.is_none() && found.config.is_some() && found.persist.is_some() {
            fallback = Some(found);
        }
    }
    fallback.filter(|_| slot_guid.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDisk;
    use gptab::{Blocks, NewPartition, types};

    /// A 4 MiB disk image with EVE's partitions, IMGA's GUID `guid`.
    fn eve_image(guid: Guid) -> Vec<u8> {
        let part = |number, type_guid, unique_guid, first_lba, last_lba, name| NewPartition {
            number,
            type_guid,
            unique_guid,
            first_lba,
            last_lba,
            attributes: 0,
            name,
        };
        let parts = [
            part(2, types::EVE_IMAGE, guid, 2048, 4095, "IMGA"),
            part(4, types::EVE_CONFIG, Guid([4; 16]), 4096, 6143, "CONFIG"),
            part(9, types::EVE_PERSIST, Guid([9; 16]), 6144, 8000, "P3"),
        ];
        let mut disk = Blocks(MemDisk::new(8192));
        Gpt::create(512, 8192, Guid([1; 16]), &parts)
            .unwrap()
            .write(&mut disk)
            .unwrap();
        disk.into_inner().into_bytes()
    }

    /// A fake `/sys/block` and `/dev` with disk `name` holding `image`,
    /// its partitions named `<name><sep><n>`.
    fn add_disk(root: &Path, name: &str, sep: &str, image: &[u8]) {
        let sys = root.join("sys").join(name);
        fs::create_dir_all(sys.join("queue")).unwrap();
        fs::write(sys.join("size"), format!("{}\n", image.len() / 512)).unwrap();
        fs::write(sys.join("queue/logical_block_size"), "512\n").unwrap();
        for n in [2, 4, 9] {
            let part = sys.join(format!("{name}{sep}{n}"));
            fs::create_dir_all(&part).unwrap();
            fs::write(part.join("partition"), format!("{n}\n")).unwrap();
        }
        fs::create_dir_all(root.join("dev")).unwrap();
        fs::write(root.join("dev").join(name), image).unwrap();
    }

    #[test]
    fn finds_the_disk_holding_the_booted_slot() {
        let root = tempfile::tempdir().unwrap();
        let (booted, other) = (Guid([0xB0; 16]), Guid([0x0A; 16]));
        add_disk(root.path(), "nvme0n1", "p", &eve_image(booted));
        // A second EVE disk (a stick left in) sorts first.
        add_disk(root.path(), "sda", "", &eve_image(other));
        let (sys, dev) = (root.path().join("sys"), root.path().join("dev"));
        let found = find(&sys, &dev, Some(booted)).unwrap();
        assert_eq!(found.disk, "nvme0n1");
        assert_eq!(found.config, Some(dev.join("nvme0n1p4")));
        assert_eq!(found.persist, Some(dev.join("nvme0n1p9")));
        // Without the loader's word, the first EVE disk.
        assert_eq!(find(&sys, &dev, None).unwrap().disk, "nvme0n1");
        // A slot on no disk: not found, rather than the wrong disk.
        assert_eq!(find(&sys, &dev, Some(Guid([0xCC; 16]))), None);
    }

    #[test]
    fn disks_without_a_table_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        add_disk(root.path(), "vda", "", &vec![0u8; 1 << 20]);
        add_disk(root.path(), "loop0", "p", &eve_image(Guid([1; 16])));
        let (sys, dev) = (root.path().join("sys"), root.path().join("dev"));
        assert_eq!(find(&sys, &dev, None), None);
        add_disk(root.path(), "vdb", "", &eve_image(Guid([2; 16])));
        assert_eq!(find(&sys, &dev, None).unwrap().disk, "vdb");
    }
}
