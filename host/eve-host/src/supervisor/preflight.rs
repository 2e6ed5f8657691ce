//! What the host itself must provide before a VM can start: the image, the
//! volumes, the bus socket and the directory of the pid file. Checked
//! before every launch, and again after a start failure, so that a failure
//! that is the host's (a socket removed under it, a volume it cannot open)
//! is reported as the host's rather than restarted as a guest crash.

use std::{
    fs::OpenOptions,
    io,
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
};

use crate::vmm::VmSpec;

/// Why the host cannot start a VM.
#[derive(Debug, thiserror::Error)]
pub enum HostFault {
    #[error("image {path} cannot be read: {source}")]
    Image { path: PathBuf, source: io::Error },
    #[error("{role} volume {path} cannot be opened: {source}")]
    Volume {
        role: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("bus socket {path} is gone (removed under the running host?)")]
    BusSocketGone { path: PathBuf },
    #[error("bus socket {path} is no longer a socket")]
    BusSocketReplaced { path: PathBuf },
    #[error("directory {path} of the VM's pid file is gone")]
    PidDirectoryGone { path: PathBuf },
}

/// Checks that everything `spec` names on the host is there and usable.
pub fn check(spec: &VmSpec) -> Result<(), HostFault> {
    OpenOptions::new()
        .read(true)
        .open(&spec.kernel)
        .map_err(|source| HostFault::Image {
            path: spec.kernel.clone(),
            source,
        })?;
    for disk in &spec.disks {
        OpenOptions::new()
            .read(true)
            .write(!disk.role.read_only())
            .open(&disk.path)
            .map_err(|source| HostFault::Volume {
                role: disk.role.serial(),
                path: disk.path.clone(),
                source,
            })?;
    }
    if let Some(socket) = &spec.bus_socket {
        match std::fs::symlink_metadata(socket) {
            Ok(meta) if meta.file_type().is_socket() => {}
            Ok(_) => {
                return Err(HostFault::BusSocketReplaced {
                    path: socket.clone(),
                });
            }
            Err(_) => {
                return Err(HostFault::BusSocketGone {
                    path: socket.clone(),
                });
            }
        }
    }
    if let Some(dir) = spec.pid_file.as_deref().and_then(Path::parent)
        && !dir.is_dir()
    {
        return Err(HostFault::PidDirectoryGone {
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;
    use crate::{
        Accel, Arch,
        vmm::{Disk, DiskRole},
    };

    /// A VM whose every host-side part exists, in `dir`.
    fn complete(dir: &Path) -> (VmSpec, UnixListener) {
        let kernel = dir.join("image");
        std::fs::write(&kernel, b"image").unwrap();
        let mut spec = VmSpec::new("a", Arch::X86_64, Accel::Tcg, kernel);
        for (name, role) in [("config.img", DiskRole::Config), ("a.img", DiskRole::State)] {
            let path = dir.join(name);
            std::fs::write(&path, b"").unwrap();
            spec.disks.push(Disk { path, role });
        }
        let socket = dir.join("a.bus");
        let listener = UnixListener::bind(&socket).unwrap();
        spec.bus_socket = Some(socket);
        spec.pid_file = Some(dir.join("a.pid"));
        (spec, listener)
    }

    #[test]
    fn a_complete_vm_passes() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, _listener) = complete(dir.path());
        check(&spec).unwrap();
    }

    #[test]
    fn each_missing_part_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, _listener) = complete(dir.path());
        let socket = spec.bus_socket.clone().unwrap();
        std::fs::remove_file(&socket).unwrap();
        assert_eq!(
            check(&spec).unwrap_err().to_string(),
            format!(
                "bus socket {} is gone (removed under the running host?)",
                socket.display()
            )
        );
        std::fs::write(&socket, b"").unwrap();
        assert!(matches!(
            check(&spec),
            Err(HostFault::BusSocketReplaced { .. })
        ));

        let volume = &spec.disks[1].path;
        std::fs::remove_file(volume).unwrap();
        let err = check(&spec).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "state volume {} cannot be opened",
                volume.display()
            )),
            "{err}"
        );

        std::fs::remove_file(&spec.kernel).unwrap();
        assert!(matches!(check(&spec), Err(HostFault::Image { .. })));
    }

    #[test]
    fn the_pid_files_directory_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spec, _listener) = complete(dir.path());
        spec.pid_file = Some(dir.path().join("run/a.pid"));
        assert!(matches!(
            check(&spec),
            Err(HostFault::PidDirectoryGone { .. })
        ));
    }
}
