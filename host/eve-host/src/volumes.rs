//! The node's state directory and the disks the host gives VMs: one state
//! volume per service, created and owned by the host and never shared,
//! and the CONFIG partition, shared but only ever read-only.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io,
    path::{Path, PathBuf},
};

use crate::vmm::{Disk, DiskRole};

/// Why a volume or the state directory could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "state volume {path} is {have_mib} MiB, larger than the manifest's {want_mib} MiB: refusing to shrink it (and lose data)"
    )]
    WouldShrink {
        path: PathBuf,
        have_mib: u64,
        want_mib: u64,
    },
    #[error("the CONFIG partition {path} is not a regular file")]
    ConfigNotAFile { path: PathBuf },
    #[error("{path} would be a writable disk of `{second}` while `{first}` also uses it")]
    Shared {
        path: PathBuf,
        first: String,
        second: String,
    },
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeError + use<> {
    let path = path.to_path_buf();
    move |source| VolumeError::Io { what, path, source }
}

/// `<state-dir>` and what the host keeps in it.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates the directory tree under `root` if missing.
    pub fn create(root: &Path) -> Result<StateDir, VolumeError> {
        let dir = StateDir {
            root: root.to_path_buf(),
        };
        for sub in [dir.logs(), dir.volumes(), dir.run()] {
            std::fs::create_dir_all(&sub).map_err(io_error("creating", &sub))?;
        }
        Ok(dir)
    }

    /// Console captures, `<service>.console`, and the log records services
    /// send over the bus, `<service>.log`.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// State volumes, `<service>.img`.
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// Sockets and the status file of the running node.
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The node's live status for tools (see [`crate::status`]).
    pub fn status_file(&self) -> PathBuf {
        self.run().join("status.json")
    }

    pub fn console_log(&self, service: &str) -> PathBuf {
        self.logs().join(format!("{service}.console"))
    }

    /// The pid file of a service's running VMM.
    pub fn pid_file(&self, service: &str) -> PathBuf {
        self.run().join(format!("{service}.pid"))
    }

    pub fn state_volume(&self, service: &str) -> PathBuf {
        self.volumes().join(format!("{service}.img"))
    }
}

const MIB: u64 = 1 << 20;

/// Makes sure the raw state volume at `path` exists with `size_mib`: a new
/// one is created sparse under a temporary name and renamed into place, so
/// a crash never leaves a half-made volume; a smaller one is grown (sparse,
/// keeping its data); a larger one is refused.
pub fn prepare_state_volume(path: &Path, size_mib: u32) -> Result<(), VolumeError> {
    let want = u64::from(size_mib) * MIB;
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() == want => Ok(()),
        Ok(meta) if meta.len() > want => Err(VolumeError::WouldShrink {
            path: path.to_path_buf(),
            have_mib: meta.len().div_ceil(MIB),
            want_mib: want / MIB,
        }),
        Ok(_) => {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_error("opening", path))?;
            file.set_len(want).map_err(io_error("growing", path))?;
            file.sync_all().map_err(io_error("syncing", path))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let tmp = path.with_extension("img.creating");
            let file = File::create(&tmp).map_err(io_error("creating", &tmp))?;
            file.set_len(want).map_err(io_error("sizing", &tmp))?;
            file.sync_all().map_err(io_error("syncing", &tmp))?;
            std::fs::rename(&tmp, path).map_err(io_error("renaming into", path))?;
            let dir = path.parent().unwrap_or(Path::new("."));
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error("syncing", dir))
        }
        Err(e) => Err(io_error("reading", path)(e)),
    }
}

/// Checks the CONFIG partition image is a regular file.
pub fn check_config_partition(path: &Path) -> Result<(), VolumeError> {
    let meta = std::fs::metadata(path).map_err(io_error("opening", path))?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(VolumeError::ConfigNotAFile {
            path: path.to_path_buf(),
        })
    }
}

/// Refuses a set of per-service disks in which a writable disk resolves
/// (following symlinks and `..`; hard links are not detected) to the same
/// file as any other disk. Read-only disks may be shared among themselves.
pub fn check_disks_distinct<'a>(
    disks: impl IntoIterator<Item = (&'a str, &'a Disk)>,
) -> Result<(), VolumeError> {
    let mut seen: HashMap<PathBuf, (String, bool)> = HashMap::new();
    for (service, disk) in disks {
        let real = disk
            .path
            .canonicalize()
            .map_err(io_error("resolving", &disk.path))?;
        let writable = !disk.role.read_only();
        match seen.get(&real) {
            Some((first, first_writable)) if writable || *first_writable => {
                return Err(VolumeError::Shared {
                    path: real,
                    first: first.clone(),
                    second: service.to_string(),
                });
            }
            Some(_) => {}
            None => {
                seen.insert(real, (service.to_string(), writable));
            }
        }
    }
    Ok(())
}

/// Flushes a state volume to stable storage after its VM stopped.
pub fn flush_volume(path: &Path) -> Result<(), VolumeError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_error("flushing", path))
}

/// The disk list of a service: the CONFIG partition if it asked for it,
/// its state volume if it has one.
pub fn service_disks(config: Option<&Path>, state: Option<&Path>) -> Vec<Disk> {
    let config = config.map(|path| Disk {
        path: path.to_path_buf(),
        role: DiskRole::Config,
    });
    let state = state.map(|path| Disk {
        path: path.to_path_buf(),
        role: DiskRole::State,
    });
    config.into_iter().chain(state).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    #[test]
    fn state_dir_lays_out_its_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::create(&tmp.path().join("node")).unwrap();
        assert!(dir.logs().is_dir() && dir.volumes().is_dir() && dir.run().is_dir());
        assert_eq!(
            dir.state_volume("zedagent"),
            tmp.path().join("node/volumes/zedagent.img")
        );
        assert_eq!(
            dir.console_log("diag"),
            tmp.path().join("node/logs/diag.console")
        );
    }

    #[test]
    fn volumes_are_created_sparse_grown_and_never_shrunk() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.img");
        // A creation that crashed halfway left its temporary file behind.
        std::fs::write(tmp.path().join("a.img.creating"), b"junk").unwrap();
        prepare_state_volume(&path, 8).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 8 * MIB);
        assert!(meta.blocks() * 512 < 8 * MIB, "not sparse");
        assert!(!tmp.path().join("a.img.creating").exists());

        std::fs::write(&path, b"state").unwrap();
        prepare_state_volume(&path, 2).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * MIB);
        assert_eq!(&std::fs::read(&path).unwrap()[..5], b"state");
        prepare_state_volume(&path, 2).unwrap();

        let err = prepare_state_volume(&path, 1).unwrap_err();
        assert!(
            matches!(
                err,
                VolumeError::WouldShrink {
                    have_mib: 2,
                    want_mib: 1,
                    ..
                }
            ),
            "{err}"
        );
        flush_volume(&path).unwrap();
    }

    #[test]
    fn a_writable_disk_is_never_shared() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a.img");
        let config = tmp.path().join("config.img");
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&config, b"").unwrap();
        let link = tmp.path().join("b.img");
        symlink(&a, &link).unwrap();

        let a_disks = service_disks(Some(&config), Some(&a));
        let b_disks = service_disks(Some(&config), Some(&link));
        assert_eq!(a_disks[0].role, DiskRole::Config);
        assert_eq!(a_disks[1].role, DiskRole::State);

        let config_only = service_disks(Some(&config), None);
        let shared_config = a_disks
            .iter()
            .map(|d| ("a", d))
            .chain(config_only.iter().map(|d| ("c", d)));
        assert!(check_disks_distinct(shared_config).is_ok());

        let both = a_disks
            .iter()
            .map(|d| ("a", d))
            .chain(b_disks.iter().map(|d| ("b", d)));
        let err = check_disks_distinct(both).unwrap_err();
        assert!(
            matches!(&err, VolumeError::Shared { first, second, .. } if first == "a" && second == "b"),
            "{err}"
        );

        // The CONFIG partition named as a state volume is refused too.
        let wrong = service_disks(None, Some(&config));
        let mixed = a_disks
            .iter()
            .map(|d| ("a", d))
            .chain(wrong.iter().map(|d| ("x", d)));
        assert!(check_disks_distinct(mixed).is_err());
    }

    #[test]
    fn the_config_partition_must_be_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            check_config_partition(tmp.path()),
            Err(VolumeError::ConfigNotAFile { .. })
        ));
        assert!(check_config_partition(&tmp.path().join("missing")).is_err());
        let img = tmp.path().join("config.img");
        std::fs::write(&img, b"").unwrap();
        assert!(check_config_partition(&img).is_ok());
    }
}
