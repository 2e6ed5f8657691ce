//! Where a domain's files live: `<root>/<name>/`, one directory per
//! domain, so a host that starts after a killed one finds every QEMU it
//! left by its pid file.

use std::path::{Path, PathBuf};

/// A domain's directory and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainDir {
    path: PathBuf,
}

/// The longest unix socket path Linux accepts (`sun_path` less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

impl DomainDir {
    pub fn new(root: &Path, name: &str) -> DomainDir {
        DomainDir {
            path: root.join(name),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// QEMU's `-pidfile`, which the reaper matches against its command line.
    pub fn pid_file(&self) -> PathBuf {
        self.path.join("qemu.pid")
    }

    pub fn qmp_socket(&self) -> PathBuf {
        self.path.join("qmp.sock")
    }

    /// The guest's console, appended across boots.
    pub fn console(&self) -> PathBuf {
        self.path.join("console.log")
    }

    /// QEMU's own messages (its stderr), appended across boots.
    pub fn vmm_log(&self) -> PathBuf {
        self.path.join("vmm.log")
    }

    /// This domain's UEFI variable store, kept across boots as a PC keeps
    /// its NVRAM.
    pub fn uefi_vars(&self) -> PathBuf {
        self.path.join("uefi-vars.fd")
    }

    /// The cloud-init NoCloud seed, written at each start.
    pub fn seed(&self) -> PathBuf {
        self.path.join("seed.img")
    }

    /// The container's blobs as one disk, written at each start.
    pub fn blobs(&self) -> PathBuf {
        self.path.join("blobs.tar")
    }
}
