//! FAT volumes for the EFI system partition and the IMG partitions,
//! made in memory with the `fatfs` crate (no timestamps: the same files
//! give the same volume).

use std::io::{Cursor, Write};

use fatfs::{Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, TimeProvider};

/// Stamps every entry with the DOS epoch. `fatfs` reads the wall clock
/// whenever any crate in the build turns on its `chrono` feature (the
/// harness does), so the time is fixed here rather than left to
/// feature unification.
#[derive(Debug)]
struct DosEpoch;

impl TimeProvider for DosEpoch {
    fn get_current_date(&self) -> Date {
        self.get_current_date_time().date
    }

    fn get_current_date_time(&self) -> DateTime {
        DateTime {
            date: Date {
                year: 1980,
                month: 1,
                day: 1,
            },
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static DOS_EPOCH: DosEpoch = DosEpoch;

/// Which FAT a volume gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// What `fatfs` picks for the size (FAT12 for small volumes).
    Auto,
    /// FAT16 with 512-byte clusters (at least 2 MiB).
    Fat16,
    /// FAT32 with 512-byte clusters (at least 33 MiB).
    Fat32,
}

/// A volume of `bytes` (a whole number of 512-byte sectors) labelled
/// `label`, holding `files` (`/`-separated paths, directories made as
/// needed).
pub fn volume(
    bytes: u64,
    label: &str,
    kind: Kind,
    files: &[(&str, &[u8])],
) -> Result<Vec<u8>, String> {
    let size = usize::try_from(bytes).map_err(|_| format!("FAT volume of {bytes} bytes"))?;
    let mut label_bytes = [b' '; 11];
    for (slot, byte) in label_bytes.iter_mut().zip(label.bytes()) {
        *slot = byte.to_ascii_uppercase();
    }
    let mut options = FormatVolumeOptions::new().volume_label(label_bytes);
    options = match kind {
        Kind::Auto => options,
        // Small clusters reach each type's minimum cluster count soonest.
        Kind::Fat16 => options.fat_type(FatType::Fat16).bytes_per_cluster(512),
        Kind::Fat32 => options.fat_type(FatType::Fat32).bytes_per_cluster(512),
    };
    let mut disk = Cursor::new(vec![0u8; size]);
    fatfs::format_volume(&mut disk, options).map_err(|e| format!("formatting {label}: {e}"))?;
    {
        let fs = FileSystem::new(&mut disk, FsOptions::new().time_provider(&DOS_EPOCH))
            .map_err(|e| format!("opening {label}: {e}"))?;
        for (path, data) in files {
            let mut dir = fs.root_dir();
            let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            let name = parts
                .pop()
                .ok_or_else(|| format!("empty path in {label}"))?;
            for part in parts {
                dir = match dir.open_dir(part) {
                    Ok(d) => d,
                    Err(_) => dir
                        .create_dir(part)
                        .map_err(|e| format!("{label}: mkdir {part}: {e}"))?,
                };
            }
            let fail = |e: std::io::Error| format!("{label}: writing {path}: {e}");
            let mut file = dir.create_file(name).map_err(fail)?;
            file.truncate().map_err(fail)?;
            file.write_all(data).map_err(fail)?;
            file.flush().map_err(fail)?;
        }
        fs.unmount().map_err(|e| format!("closing {label}: {e}"))?;
    }
    Ok(disk.into_inner())
}

/// The bytes a volume needs for `files`: their sizes in 4 KiB clusters
/// plus room for the file system's own tables.
pub fn bytes_needed(files: &[(&str, &[u8])]) -> u64 {
    let clusters: u64 = files
        .iter()
        .map(|(_, data)| (data.len() as u64).div_ceil(4096) * 4096)
        .sum();
    clusters + clusters / 64 + (256 << 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::MemDisk;
    use configpart::FatVolume;

    #[test]
    fn files_read_back_with_our_reader() {
        let kernel = vec![7u8; 100_000];
        let image = volume(
            4 << 20,
            "eve",
            Kind::Auto,
            &[
                ("kernel", &kernel),
                ("EFI/BOOT/BOOTX64.EFI", b"MZ"),
                ("cmdline", b"quiet"),
            ],
        )
        .unwrap();
        assert_eq!(image.len(), 4 << 20);
        let mut fat = FatVolume::open(MemDisk::from_image(image)).unwrap();
        let entry = fat.find("kernel").unwrap().unwrap();
        assert_eq!(fat.read_file(&entry, 1 << 20).unwrap(), kernel);
        assert!(
            fat.root_entries()
                .unwrap()
                .iter()
                .any(|e| e.is_directory() && e.name() == "EFI")
        );
        let same = volume(
            4 << 20,
            "eve",
            Kind::Auto,
            &[
                ("kernel", &kernel),
                ("EFI/BOOT/BOOTX64.EFI", b"MZ"),
                ("cmdline", b"quiet"),
            ],
        )
        .unwrap();
        assert_eq!(fat.into_device().into_bytes(), same, "deterministic");
    }

    #[test]
    fn entries_carry_the_dos_epoch_not_the_clock() {
        let mut image = volume(4 << 20, "eve", Kind::Auto, &[("EFI/BOOT/x", b"x")]).unwrap();
        let fs = FileSystem::new(Cursor::new(&mut image[..]), FsOptions::new()).unwrap();
        let epoch = DOS_EPOCH.get_current_date_time();
        let dir = fs.root_dir().open_dir("EFI/BOOT").unwrap();
        for entry in fs.root_dir().iter().chain(dir.iter()) {
            let entry = entry.unwrap();
            assert_eq!(entry.modified(), epoch, "{}", entry.file_name());
            assert_eq!(entry.created(), epoch, "{}", entry.file_name());
        }
    }

    #[test]
    fn forced_fat32() {
        let image = volume(
            40 << 20,
            "boot",
            Kind::Fat32,
            &[("config.txt", b"arm_64bit=1\n")],
        )
        .unwrap();
        let fat = FatVolume::open(MemDisk::from_image(image)).unwrap();
        assert_eq!(fat.fat_type(), configpart::FatType::Fat32);
        let image = volume(
            4 << 20,
            "rpiboot",
            Kind::Fat16,
            &[("autoboot.txt", b"[all]\n")],
        )
        .unwrap();
        let fat = FatVolume::open(MemDisk::from_image(image)).unwrap();
        assert_eq!(fat.fat_type(), configpart::FatType::Fat16);
    }
}
