//! The dev node's disk and its boot choice: a sparse GPT disk file with
//! the node image's layout (`cargo xtask image`: EFI System, IMGA, IMGB,
//! CONFIG, P3, the same types and A/B attributes), and the choice our
//! UEFI loader makes between IMGA and IMGB (`gptab::ab::choose`, a try
//! spent and written back before the boot), so base OS updates run in
//! seconds without nested virtualization.
//!
//! Simplified against a real boot: the IMG partitions hold a small FAT
//! base OS volume whose `eve-release` is what differs between versions
//! (what the `partitions` target and baseosmgr read, and zedagent reports
//! in `swList`); the host binary and the service images that run are the
//! build's, not the partition's; no kernel boots, and "reboot" is
//! starting `eve-host run` again with `--booted-slot` set to the choice.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use configpart::{ImageLayout, build_config_image};
use gptab::ab::{self, SlotState};
use gptab::{DiskError, FileDisk, Gpt, Guid, NewPartition, types};

/// `eve-host run`'s exit status for "reboot requested"
/// (`eve_host::targets::power::EXIT_REBOOT`; the harness cannot depend on
/// the host, whose tests depend on the harness).
pub const EXIT_REBOOT: i32 = 3;

const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;

/// Why the dev disk could not be made, read or booted.
#[derive(Debug, thiserror::Error)]
pub enum DevDiskError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the base OS volume: {0}")]
    Volume(configpart::ImageError),
    #[error("the partition table: {0}")]
    Layout(gptab::LayoutError),
    #[error("the partition table: {0}")]
    Read(gptab::ReadError),
    #[error("writing the partition table: {0}")]
    Write(DiskError),
    #[error("choosing a partition: {0}")]
    Choose(ab::ChooseError),
    #[error("the base OS volume of {bytes} bytes does not fit a {slot} byte partition")]
    TooLarge { bytes: u64, slot: u64 },
}

/// A base OS volume (FAT) saying it is `version` in `eve-release`, the
/// file the `partitions` target reads; also what a datastore serves as
/// the update artifact of that version.
pub fn base_os(version: &str, volume_bytes: u64) -> Result<Vec<u8>, DevDiskError> {
    let release = format!("{version}\n");
    build_config_image(
        &[("eve-release", release.as_bytes())],
        ImageLayout::Bare { volume_bytes },
    )
    .map_err(DevDiskError::Volume)
}

/// A dev node's disk file.
#[derive(Debug, Clone)]
pub struct DevDisk {
    path: PathBuf,
}

impl DevDisk {
    /// Writes a disk at `path` with IMGA active holding `base_os` and
    /// IMGB unused and empty, each `slot_mib` MiB, CONFIG holding
    /// `config` (at most 1 MiB) and a 1 MiB P3 the dev node does not use
    /// (its state directory stands in for PERSIST).
    pub fn create(
        path: &Path,
        base_os: &[u8],
        slot_mib: u64,
        config: &[u8],
    ) -> Result<DevDisk, DevDiskError> {
        let io = |source| DevDiskError::Io {
            path: path.to_path_buf(),
            source,
        };
        let slot = slot_mib * MIB;
        if base_os.len() as u64 > slot {
            return Err(DevDiskError::TooLarge {
                bytes: base_os.len() as u64,
                slot,
            });
        }
        if config.len() as u64 > MIB {
            return Err(DevDiskError::TooLarge {
                bytes: config.len() as u64,
                slot: MIB,
            });
        }
        // (number, name, type, attributes, bytes)
        let layout = [
            (1, "EFI System", types::EFI_SYSTEM, 0, MIB),
            (
                2,
                "IMGA",
                types::EVE_IMAGE,
                SlotState::Active.apply(0),
                slot,
            ),
            (
                3,
                "IMGB",
                types::EVE_IMAGE,
                SlotState::Unused.apply(0),
                slot,
            ),
            (4, "CONFIG", types::EVE_CONFIG, 0, MIB),
            (9, "P3", types::EVE_PERSIST, 0, MIB),
        ];
        let mut first = MIB / SECTOR;
        let mut parts = Vec::new();
        for (number, name, type_guid, attributes, bytes) in layout {
            let blocks = bytes / SECTOR;
            parts.push(NewPartition {
                number,
                type_guid,
                unique_guid: Guid([number as u8; 16]),
                first_lba: first,
                last_lba: first + blocks - 1,
                attributes,
                name,
            });
            first += blocks;
        }
        // One MiB after the last partition holds the backup table.
        let blocks = first + MIB / SECTOR;
        let gpt = Gpt::create(SECTOR as usize, blocks, Guid([0xde; 16]), &parts)
            .map_err(DevDiskError::Layout)?;
        let file = File::create(path).map_err(io)?;
        file.set_len(blocks * SECTOR).map_err(io)?;
        gpt.write(&mut FileDisk::with_blocks(&file, SECTOR as usize, blocks))
            .map_err(DevDiskError::Write)?;
        file.write_all_at(base_os, parts[1].first_lba * SECTOR)
            .map_err(io)?;
        file.write_all_at(config, parts[3].first_lba * SECTOR)
            .map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DevDisk {
            path: path.to_path_buf(),
        })
    }

    /// The disk a previous [`DevDisk::create`] wrote at `path` (a dev
    /// node keeps its disk across runs, as a device does); read when it
    /// boots.
    pub fn existing(path: &Path) -> DevDisk {
        DevDisk {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> Result<FileDisk<File>, DevDiskError> {
        let io = |source| DevDiskError::Io {
            path: self.path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(io)?;
        FileDisk::new(file, SECTOR as usize).map_err(io)
    }

    /// What the loader does at power-on: chooses IMGA or IMGB by their
    /// attributes, spends a try of an untested one and writes the table
    /// back, and answers the chosen partition's name.
    pub fn boot(&self) -> Result<String, DevDiskError> {
        let mut disk = self.open()?;
        let mut gpt = Gpt::read(&mut disk).map_err(DevDiskError::Read)?;
        let choice = ab::choose(&mut gpt, types::EVE_IMAGE).map_err(DevDiskError::Choose)?;
        if choice.spent_try {
            gpt.write(&mut disk).map_err(DevDiskError::Write)?;
        }
        Ok(choice.partition().name.clone())
    }

    /// The A/B state of the partition `name` (None: no such partition).
    pub fn state(&self, name: &str) -> Result<Option<SlotState>, DevDiskError> {
        let gpt = Gpt::read(&mut self.open()?).map_err(DevDiskError::Read)?;
        Ok(gpt
            .partition_named(name)
            .map(|p| SlotState::of(p.attributes)))
    }
}

/// How a dev node's run of hosts ended.
#[derive(Debug)]
pub struct DevRun {
    /// The partition each host run booted, in order.
    pub boots: Vec<String>,
    /// The last host's exit status (not a reboot request).
    pub status: ExitStatus,
}

/// Boots the dev node until its host ends other than by asking for a
/// reboot: each boot chooses a partition as the loader does and runs
/// `host(slot)` (an `eve-host run --disk DISK --booted-slot SLOT`) to its
/// end.
pub fn run_host_until_not_rebooted(
    disk: &DevDisk,
    mut host: impl FnMut(&str) -> std::io::Result<ExitStatus>,
) -> Result<DevRun, DevDiskError> {
    let mut boots = Vec::new();
    loop {
        let slot = disk.boot()?;
        boots.push(slot.clone());
        let status = host(&slot).map_err(|source| DevDiskError::Io {
            path: disk.path.clone(),
            source,
        })?;
        if status.code() != Some(EXIT_REBOOT) {
            return Ok(DevRun { boots, status });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn the_dev_disk_boots_as_the_loader_chooses() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = base_os("1.0", 512 * 1024).unwrap();
        let disk = DevDisk::create(&dir.path().join("disk.img"), &v1, 1, b"").unwrap();
        assert_eq!(disk.boot().unwrap(), "IMGA");
        assert_eq!(disk.state("IMGB").unwrap(), Some(SlotState::Unused));
        // IMGB marked to be tried once, as partitions.try-once does.
        let mut fd = disk.open().unwrap();
        let mut gpt = Gpt::read(&mut fd).unwrap();
        ab::set_state(&mut gpt, "IMGB", types::EVE_IMAGE, SlotState::Updating).unwrap();
        gpt.write(&mut fd).unwrap();
        // A host that asks for a reboot twice: the trial boot spends
        // IMGB's try, and without a commit the next boot is IMGA again.
        let mut statuses = vec![0, EXIT_REBOOT << 8, EXIT_REBOOT << 8].into_iter();
        let run = run_host_until_not_rebooted(&disk, |_| {
            Ok(ExitStatus::from_raw(statuses.next_back().unwrap()))
        })
        .unwrap();
        assert_eq!(run.boots, ["IMGB", "IMGA", "IMGA"]);
        assert!(run.status.success());
        assert_eq!(disk.state("IMGB").unwrap(), Some(SlotState::InProgress));
        assert_eq!(disk.state("IMGA").unwrap(), Some(SlotState::Active));
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![1u8; 2 * MIB as usize];
        assert!(matches!(
            DevDisk::create(&dir.path().join("disk.img"), &big, 1, b""),
            Err(DevDiskError::TooLarge { .. })
        ));
    }
}
