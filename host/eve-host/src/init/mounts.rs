//! The file systems a node needs before anything runs: the kernel's
//! (`/proc`, `/sys`, `/dev`), scratch space (`/run`, `/tmp`), and PERSIST.

use std::fs;
use std::io;
use std::path::Path;

use rustix::mount::{MountFlags, mount};

use super::say;

/// Mounts the kernel's and scratch file systems; returns what failed (a
/// node can limp on without some of them, and says so).
pub fn early() -> Vec<String> {
    let table: [(&str, &str, &str, MountFlags); 5] = [
        (
            "proc",
            "/proc",
            "proc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        ),
        (
            "sysfs",
            "/sys",
            "sysfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        ),
        ("devtmpfs", "/dev", "devtmpfs", MountFlags::NOSUID),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
        ),
    ];
    let mut failed = Vec::new();
    for (source, target, fs_type, flags) in table {
        let done = fs::create_dir_all(target)
            .and_then(|()| mount(source, target, fs_type, flags, None).map_err(io::Error::from));
        match done {
            Ok(()) => {}
            // devtmpfs is mounted on /dev by the kernel when configured so.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {}
            Err(e) => failed.push(format!("{target}: {e}")),
        }
    }
    failed
}

/// Where the node's state went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// The PERSIST partition, mounted.
    Partition,
    /// Memory, because of the reason given: the state is lost at reboot.
    Memory(String),
}

/// Mounts PERSIST (ext4) on `target`, or a tmpfs there if it cannot.
pub fn persist(device: Option<&Path>, target: &Path) -> Persist {
    if let Err(e) = fs::create_dir_all(target) {
        return Persist::Memory(format!("{}: {e}", target.display()));
    }
    let reason = match device {
        None => String::from("no P3 partition"),
        Some(device) => match mount(device, target, "ext4", MountFlags::NOATIME, None) {
            Ok(()) => return Persist::Partition,
            Err(e) => format!("mounting {} as ext4: {e}", device.display()),
        },
    };
    if let Err(e) = mount("tmpfs", target, "tmpfs", MountFlags::NOSUID, None) {
        say(format_args!("persist: tmpfs on {}: {e}", target.display()));
    }
    Persist::Memory(reason)
}
