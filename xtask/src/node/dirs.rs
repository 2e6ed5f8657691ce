//! Where a node started by xtask keeps its files: `target/<prefix>-<arch>/`,
//! one session at a time (two `cargo xtask qemu` in one checkout would
//! wipe each other's controller and the node's state).

use std::path::{Path, PathBuf};

use eve_host::lock::{DirLock, HOST_LOCK_FILE, LockError};
use harness::Arch;

/// The lock file a session holds in its directory.
const SESSION_LOCK_FILE: &str = "xtask.lock";

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
    /// The dev node's disk (`cargo xtask qemu --disk`).
    pub fn disk(&self) -> PathBuf {
        self.root.join("disk.img")
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

    /// Takes these directories for one session, for as long as the lock
    /// lives; refuses, naming the holder, while another has them.
    pub fn lock(&self) -> Result<DirLock, String> {
        DirLock::acquire(&self.root, SESSION_LOCK_FILE).map_err(|e| match e {
            LockError::Held { dir, holder } => format!(
                "{} is in use by {holder}: stop that node first (Ctrl-C there)",
                dir.display()
            ),
            other => other.to_string(),
        })
    }

    /// Removes the node's state and its disk, unless a host runs on it (one started by
    /// hand, or left by a session that was killed).
    pub(super) fn remove_state(&self) -> Result<(), String> {
        let state = self.state();
        let _host_lock = DirLock::acquire(&state, HOST_LOCK_FILE).map_err(|e| e.to_string())?;
        // The disk's base OS partitions and the state are one device's.
        match std::fs::remove_file(self.disk()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("removing {}: {e}", self.disk().display()));
            }
            _ => {}
        }
        remove_dir(&state)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> NodeDirs {
        let root = std::env::temp_dir().join(format!("xtask-dirs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        NodeDirs { root }
    }

    #[test]
    fn one_session_at_a_time() {
        let dirs = scratch("session");
        let held = dirs.lock().unwrap();
        let refused = dirs.lock().err().unwrap();
        assert!(
            refused.contains(&format!("is in use by process {}", std::process::id())),
            "{refused}"
        );
        drop(held);
        drop(dirs.lock().expect("free again"));
        std::fs::remove_dir_all(&dirs.root).unwrap();
    }

    #[test]
    fn the_state_of_a_running_host_is_not_wiped() {
        let dirs = scratch("state");
        let volume = dirs.state().join("volumes/zedagent.img");
        std::fs::create_dir_all(volume.parent().unwrap()).unwrap();
        std::fs::write(&volume, b"state").unwrap();
        let host = DirLock::acquire(&dirs.state(), HOST_LOCK_FILE).unwrap();
        let refused = dirs.remove_state().err().unwrap();
        assert!(refused.contains("is in use by process"), "{refused}");
        assert!(volume.exists(), "nothing was removed");
        drop(host);
        dirs.remove_state().unwrap();
        assert!(!dirs.state().exists());
        std::fs::remove_dir_all(&dirs.root).unwrap();
    }
}
