//! A session: our controller on loopback, the device provisioned for it,
//! and the node's host talking to it. The benchmarks start nodes the same
//! way.

use std::path::PathBuf;

use eve_host::lock::DirLock;
use harness::Accel;
use harness::provision::OnboardIdentity;

use super::build::BuiltNode;
use super::dirs::{NodeDirs, remove_dir};
use super::host::HostProcess;
use super::provision::provision;
use crate::admin::AdminClient;
use crate::controller::{self, Group, LocalController};
use crate::status::NodeStatus;

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
        Session::start_locked(built, dirs, dirs.lock()?, controller_dir, accel)
    }

    /// Starts the controller, provisions the device for it and starts the
    /// host, in directories `lock` holds ([`NodeDirs::lock`]).
    pub fn start_locked(
        built: &BuiltNode,
        dirs: &NodeDirs,
        lock: DirLock,
        controller_dir: ControllerDir,
        accel: Option<Accel>,
    ) -> Result<Session, String> {
        let (controller, admin, controller_dir) = start_controller(dirs, controller_dir)?;
        let identity = provision(dirs, &controller, &admin)?;
        let host = HostProcess::start(
            built,
            &dirs.state(),
            &dirs.config_part(),
            accel,
            &dirs.host_log(),
        )?;
        Ok(Session {
            host,
            controller,
            admin,
            identity,
            controller_dir,
            state_dir: dirs.state(),
            _lock: lock,
        })
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
