//! A session: our controller on loopback, the device provisioned for it,
//! and the node's host talking to it. The benchmarks start nodes the same
//! way.

use std::fs::File;
use std::path::PathBuf;

use eve_host::lock::DirLock;
use harness::Accel;
use harness::devdisk::{self, DevDisk};
use harness::provision::OnboardIdentity;

use super::build::BuiltNode;
use super::dirs::{NodeDirs, remove_dir};
use super::host::{DiskBoot, HostProcess};
use super::provision::provision;
use crate::admin::AdminClient;
use crate::controller::{self, Group, LocalController};
use crate::status::NodeStatus;

/// The version in the base OS a new dev node disk holds on IMGA.
pub const FIRST_BASE_OS: &str = "1.0";
/// Its base OS volume and the IMG partitions: room for an update's
/// `eve-release` volume, not a real base OS (the dev node runs the
/// build's host and service images).
const BASE_OS_BYTES: u64 = 512 * 1024;
const SLOT_MIB: u64 = 1;

/// Which controller a session talks to.
#[derive(Debug, Clone)]
pub enum ControllerDir {
    /// A new one (new CA, no devices) in the session's directory.
    Fresh,
    /// One whose data directory already exists or is to be kept.
    Reuse(PathBuf),
}

/// A controller and a node host talking to it.
pub struct Session {
    /// Declared before the controller so it stops first.
    pub host: HostProcess,
    pub controller: LocalController,
    pub admin: AdminClient,
    pub identity: OnboardIdentity,
    pub controller_dir: PathBuf,
    pub state_dir: PathBuf,
    /// The dev node's disk when the node boots from one (`--disk`).
    pub disk: Option<DevDisk>,
    accel: Option<Accel>,
    /// The session's hold on its directories; declared last, so it is
    /// released after the host and the controller have stopped.
    _lock: DirLock,
}

impl Session {
    /// Takes the session's directories (refusing while another session
    /// has them), then starts as [`Session::start_locked`].
    pub fn start(
        built: &BuiltNode,
        dirs: &NodeDirs,
        controller_dir: ControllerDir,
        accel: Option<Accel>,
    ) -> Result<Session, String> {
        Session::start_locked(built, dirs, dirs.lock()?, controller_dir, accel, false)
    }

    /// Starts the controller, provisions the device for it and starts the
    /// host, in directories `lock` holds ([`NodeDirs::lock`]); with
    /// `disk`, on the dev node's disk ([`dev_disk`]) from the partition
    /// the loader chooses.
    pub fn start_locked(
        built: &BuiltNode,
        dirs: &NodeDirs,
        lock: DirLock,
        controller_dir: ControllerDir,
        accel: Option<Accel>,
        disk: bool,
    ) -> Result<Session, String> {
        let (controller, admin, controller_dir) = start_controller(dirs, controller_dir)?;
        let identity = provision(dirs, &controller, &admin)?;
        let disk = disk.then(|| dev_disk(dirs)).transpose()?;
        // A new log per session; the boots of one session append to it.
        File::create(dirs.host_log()).map_err(|e| format!("{}: {e}", dirs.host_log().display()))?;
        let host = start_host(built, dirs, accel, disk.as_ref())?;
        Ok(Session {
            host,
            controller,
            admin,
            identity,
            controller_dir,
            state_dir: dirs.state(),
            disk,
            accel,
            _lock: lock,
        })
    }

    /// Boots the node again after its host asked for a reboot: the
    /// loader's choice of partition, then a new host on it. Answers the
    /// partition.
    pub fn reboot(&mut self, built: &BuiltNode, dirs: &NodeDirs) -> Result<String, String> {
        let disk = self
            .disk
            .as_ref()
            .ok_or("the node has no disk to boot from")?;
        self.host = start_host(built, dirs, self.accel, Some(disk))?;
        Ok(self.booted_slot().unwrap_or_default())
    }

    /// The partition the running host booted from.
    pub fn booted_slot(&self) -> Option<String> {
        self.host.boot.as_ref().map(|b| b.slot.clone())
    }

    /// `<state-dir>/run/status.json`, parsed; `None` while the host has not
    /// written it (or is between writes).
    pub fn status_file(&self) -> Option<NodeStatus> {
        let text = std::fs::read_to_string(self.state_dir.join("run/status.json")).ok()?;
        NodeStatus::from_json(&text).ok()
    }

    /// Stops the host (its VMs first), then the controller.
    pub fn stop(mut self) {
        self.host.stop();
    }
}

/// The dev node's disk, `<dirs>/disk.img`: kept across sessions as a
/// device keeps its disk (it goes with the node's state); when missing,
/// made with base OS [`FIRST_BASE_OS`] on IMGA and the CONFIG partition.
fn dev_disk(dirs: &NodeDirs) -> Result<DevDisk, String> {
    let path = dirs.disk();
    if path.exists() {
        return Ok(DevDisk::existing(&path));
    }
    let config = std::fs::read(dirs.config_part())
        .map_err(|e| format!("{}: {e}", dirs.config_part().display()))?;
    let base_os = devdisk::base_os(FIRST_BASE_OS, BASE_OS_BYTES).map_err(|e| e.to_string())?;
    DevDisk::create(&path, &base_os, SLOT_MIB, &config).map_err(|e| e.to_string())
}

/// Starts a host; on a disk, from the partition the loader chooses.
fn start_host(
    built: &BuiltNode,
    dirs: &NodeDirs,
    accel: Option<Accel>,
    disk: Option<&DevDisk>,
) -> Result<HostProcess, String> {
    let boot = disk
        .map(|disk| {
            Ok::<_, String>(DiskBoot {
                disk: disk.path().to_path_buf(),
                slot: disk.boot().map_err(|e| e.to_string())?,
            })
        })
        .transpose()?;
    HostProcess::start(
        built,
        &dirs.state(),
        &dirs.config_part(),
        accel,
        &dirs.host_log(),
        boot,
    )
}

/// Starts the controller `choice` names (a fresh one replaces the last
/// fresh one of these directories) in a process group of its own, so that
/// a Ctrl-C reaches only us and it is stopped after the node.
fn start_controller(
    dirs: &NodeDirs,
    choice: ControllerDir,
) -> Result<(LocalController, AdminClient, PathBuf), String> {
    let dir = match choice {
        ControllerDir::Fresh => {
            remove_dir(&dirs.controller())?;
            dirs.controller()
        }
        ControllerDir::Reuse(dir) => dir,
    };
    let controller = controller::start(&dir, Group::Own)?;
    let admin = controller.admin_client();
    Ok((controller, admin, dir))
}
