//! `cargo xtask qemu` without a service: the whole node, as a device runs
//! it. Builds every service image of the manifest and the host
//! ([`build`]), starts our controller on loopback and makes the device's
//! factory CONFIG partition (the controller's address and root
//! certificate, an onboarding certificate the controller was told to
//! expect, a soft serial: [`provision`]), starts `eve-host` ([`host`]) and
//! shows the node's status ([`view`]) until Ctrl-C ([`stop`]).
//!
//! The benchmarks start nodes the same way ([`Session`]).

mod build;
mod dirs;
mod host;
mod provision;
mod session;
mod stop;
mod view;

use std::path::PathBuf;

use harness::{Accel, Arch};

pub use build::{BuiltNode, build};
pub use dirs::NodeDirs;
pub use host::{HostEvent, bus_connected_note, status_line_service};
pub use session::{ControllerDir, Session};
pub use stop::on_signals;
use view::View;

/// The default node manifest.
pub fn default_manifest() -> PathBuf {
    harness::workspace_root().join("nodes/default.toml")
}

/// Options of `cargo xtask qemu` for the whole node.
pub struct NodeOptions {
    pub arch: Option<Arch>,
    pub accel: Option<Accel>,
    pub manifest: PathBuf,
    /// Reuse this controller data directory instead of a fresh one.
    pub controller: Option<PathBuf>,
    /// Boot from the dev node's disk (`harness::devdisk`): the host runs
    /// with `--disk`/`--booted-slot` and a reboot it asks for (exit
    /// status 3) boots again, on the loader's choice of partition.
    pub disk: bool,
    /// `LABEL=INTERFACE`: device ports the host bridges (`eve-host run
    /// --device-port`).
    pub device_ports: Vec<String>,
}

/// Runs the node until SIGINT, SIGTERM or SIGHUP.
pub fn run(options: NodeOptions) -> Result<(), String> {
    crate::deps::ensure()?;
    let arch = match options.arch {
        Some(arch) => arch,
        None => build::manifest_arch(&options.manifest)?,
    };
    let dirs = NodeDirs::new("node", arch);
    // Before anything is built or wiped: another session may run this node.
    let lock = dirs.lock()?;
    // Container apps need the shim VM; without it (its Debian kernel
    // could not be had) the node still runs VMs and unikernels.
    let mut built = build(&options.manifest, Some(arch))?;
    built.device_ports = options.device_ports.clone();
    if let Err(e) = built.add_shim() {
        eprintln!("xtask: this node runs no container apps: {e}");
    }
    let stop = stop::on_signals()?;
    let controller_dir = options
        .controller
        .clone()
        .map_or(ControllerDir::Fresh, ControllerDir::Reuse);
    let mut session = Session::start_locked(
        &built,
        &dirs,
        lock,
        controller_dir,
        options.accel,
        options.disk,
    )?;
    let mut view = View::stdout();
    view.say(format_args!(
        "node {} ({}), manifest {}",
        built.manifest.node.name,
        built.arch,
        built.manifest_path.display()
    ));
    view.say(format_args!(
        "controller: device API https://{}, admin API https://{} (token {}), data in {}",
        session.controller.device_api,
        session.controller.admin_api,
        session.controller.token,
        session.controller_dir.display()
    ));
    view.say(format_args!(
        "device: soft serial {}, CONFIG partition {}, state in {}",
        session.identity.serial,
        dirs.config_part().display(),
        session.state_dir.display()
    ));
    view.say(format_args!(
        "logs: host {}, consoles {}/logs/; Ctrl-C stops the node",
        dirs.host_log().display(),
        session.state_dir.display()
    ));
    if let Some(disk) = &session.disk {
        view.say(format_args!(
            "disk: {}, booted from {}",
            disk.path().display(),
            session.booted_slot().unwrap_or_default()
        ));
    }
    let result = view::watch(&mut view, &mut session, &built, &dirs, &stop);
    view.say(format_args!("stopping the node..."));
    let host_clean = stop::stop(session);
    view.say(format_args!(
        "node and controller stopped{}",
        if host_clean {
            ""
        } else {
            " (eve-host had to be killed)"
        }
    ));
    result
}
