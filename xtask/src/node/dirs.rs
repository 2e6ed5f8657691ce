//! Where a node started by xtask keeps its files: `target/<prefix>-<arch>/`.

use std::path::{Path, PathBuf};

use harness::Arch;

/// Where a node started by xtask keeps its files.
#[derive(Debug, Clone)]
pub struct NodeDirs {
    pub root: PathBuf,
}

impl NodeDirs {
    /// `target/<prefix>-<arch>`.
    pub fn new(prefix: &str, arch: Arch) -> NodeDirs {
        NodeDirs {
            root: harness::workspace_root().join(format!("target/{prefix}-{arch}")),
        }
    }
    pub fn controller(&self) -> PathBuf {
        self.root.join("controller")
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn config_part(&self) -> PathBuf {
        self.root.join("config.img")
    }
    pub fn host_log(&self) -> PathBuf {
        self.root.join("eve-host.log")
    }
    /// The root certificate of the controller the state belongs to.
    pub(super) fn state_owner(&self) -> PathBuf {
        self.root.join("controller-root.pem")
    }
    pub(super) fn identity_file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// Removes `dir` and everything in it; a missing one is fine.
pub(super) fn remove_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}
