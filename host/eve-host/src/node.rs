//! A running node: everything the manifest asks for, prepared and checked
//! before the first VM starts (images, state volumes, the CONFIG
//! partition, passthrough devices, bus sockets), then supervised until
//! asked to stop.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    Accel, AccelChoice, Arch,
    bus::{BusAttach, BusError, BusSockets},
    console::HostLog,
    heartbeat::Heartbeats,
    manifest::{Manifest, Service},
    orphans::{self, ReapError, Reaped},
    status::StatusFile,
    supervisor::{ServiceSetup, Status, Supervisor},
    vfio::{VfioError, VfioRoots},
    vmm::{NetSpec, VmSpec, Vmm},
    volumes::{
        StateDir, VolumeError, check_config_partition, check_disks_distinct, prepare_state_volume,
        service_disks,
    },
};

/// How often the node looks at its VMs, sockets and the stop flag.
const TICK: Duration = Duration::from_millis(50);

/// Where a node's files are.
#[derive(Debug, Clone)]
pub struct NodePaths {
    /// Service images: `<image>` (ELF) on x86_64, `<image>.img` (arm64
    /// Image) on aarch64, as `cargo xtask build` leaves them in
    /// `target/guest/<target>/<profile>/`.
    pub images: PathBuf,
    /// Volumes, console logs and sockets of the node.
    pub state_dir: PathBuf,
    /// The CONFIG partition image, for services that ask for it.
    pub config_part: Option<PathBuf>,
}

/// Why a node could not be started.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "service `{service}`: image {path} not found (build it: cargo xtask build --arch {arch} {image})"
    )]
    ImageMissing {
        service: String,
        image: String,
        arch: Arch,
        path: PathBuf,
    },
    #[error("service `{service}` needs the CONFIG partition: pass --config-part <image>")]
    ConfigPartitionRequired { service: String },
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Vfio(#[from] VfioError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("stopping a VM a previous host left running: {0}")]
    Orphan(#[from] ReapError),
}

/// The image file of `image` for `arch` in `dir`.
pub fn image_path(dir: &Path, image: &str, arch: Arch) -> PathBuf {
    match arch {
        Arch::X86_64 => dir.join(image),
        Arch::Aarch64 => dir.join(format!("{image}.img")),
    }
}

/// A node ready to run: every check passed, volumes exist, sockets listen.
pub struct Node {
    setups: Vec<ServiceSetup>,
    sockets: BusSockets,
    reaped: Vec<Reaped>,
}

impl Node {
    /// Checks and prepares everything `manifest` needs on this host.
    pub fn prepare(
        manifest: &Manifest,
        paths: &NodePaths,
        accel: &AccelChoice,
        vfio: &VfioRoots,
    ) -> Result<Node, NodeError> {
        let arch = manifest.node.arch;
        for service in &manifest.services {
            let path = image_path(&paths.images, &service.image, arch);
            if !path.is_file() {
                return Err(NodeError::ImageMissing {
                    service: service.name.clone(),
                    image: service.image.clone(),
                    arch,
                    path,
                });
            }
            if service.devices.config && paths.config_part.is_none() {
                return Err(NodeError::ConfigPartitionRequired {
                    service: service.name.clone(),
                });
            }
        }
        if let Some(config) = &paths.config_part {
            check_config_partition(config)?;
        }
        let passthrough = if manifest.services.iter().any(|s| !s.devices.pci.is_empty()) {
            vfio.validate_node(
                manifest
                    .services
                    .iter()
                    .map(|s| (s.name.as_str(), s.devices.pci.as_slice())),
            )?
        } else {
            Default::default()
        };
        let state_dir = StateDir::create(&paths.state_dir)?;
        // Before anything binds a socket or opens a volume: VMs of a host
        // that died hold both.
        let mut reaped = Vec::new();
        for service in &manifest.services {
            reaped.extend(orphans::reap(&state_dir.pid_file(&service.name))?);
        }
        let sockets = BusSockets::bind(
            &state_dir.run(),
            manifest.services.iter().map(|s| s.name.as_str()),
        )?;
        let mut setups = Vec::new();
        for service in &manifest.services {
            let state = match service.devices.state_mib {
                Some(mib) => {
                    let path = state_dir.state_volume(&service.name);
                    prepare_state_volume(&path, mib)?;
                    Some(path)
                }
                None => None,
            };
            let config = paths
                .config_part
                .as_deref()
                .filter(|_| service.devices.config);
            let mut spec = vm_spec(service, arch, accel.accel, &paths.images);
            spec.disks = service_disks(config, state.as_deref());
            spec.bus_socket = sockets.path(&service.name).map(Path::to_path_buf);
            spec.trunk = service
                .devices
                .trunk
                .then(|| crate::targets::ports::trunk_socket(&state_dir.run()));
            crate::deviceports::give(&mut spec, &state_dir.run(), &service.devices.device_ports);
            spec.monitor = crate::targets::ports::wants_monitor(&service.bus.call)
                .then(|| crate::targets::ports::monitor_socket(&state_dir.run(), &service.name));
            spec.passthrough = passthrough.get(&service.name).cloned().unwrap_or_default();
            spec.pid_file = Some(state_dir.pid_file(&service.name));
            setups.push(ServiceSetup {
                spec,
                policy: service.restart,
                heartbeat_timeout: service.bus.heartbeat_timeout,
                console_log: state_dir.console_log(&service.name),
            });
        }
        check_disks_distinct(
            setups
                .iter()
                .flat_map(|s| s.spec.disks.iter().map(move |d| (s.name(), d))),
        )?;
        Ok(Node {
            setups,
            sockets,
            reaped,
        })
    }

    /// VMs a previous host left running, stopped while preparing.
    pub fn reaped(&self) -> &[Reaped] {
        &self.reaped
    }

    /// The VM of each service, as it will be launched.
    pub fn setups(&self) -> &[ServiceSetup] {
        &self.setups
    }

    /// Runs the node until `stop` is set (even once every service has
    /// stopped for good: the host stays up to report them), then stops
    /// every VM (killing those still running after `grace`) and returns.
    /// Every state change goes to `report`, and to the status file if
    /// there is one.
    pub fn run<V: Vmm>(
        self,
        vmm: V,
        seams: Seams,
        stop: &AtomicBool,
        grace: Duration,
        report: impl FnMut(&Status),
    ) {
        self.run_watched(vmm, seams, stop, grace, report, |_, _| {});
    }

    /// [`Node::run`], calling `watch` with the time and every service's
    /// status on each turn of the supervisor's loop (the hardware
    /// watchdog's petting: a loop that stops turning stops it too).
    pub fn run_watched<V: Vmm>(
        self,
        vmm: V,
        mut seams: Seams,
        stop: &AtomicBool,
        grace: Duration,
        mut report: impl FnMut(&Status),
        mut watch: impl FnMut(Instant, &[Status]),
    ) {
        let mut supervisor = Supervisor::new(
            vmm,
            self.setups,
            seams.heartbeats,
            seams.log.clone(),
            Instant::now(),
        );
        let mut stopping = false;
        let mut status_failing = false;
        loop {
            let now = Instant::now();
            if !stopping && stop.load(Ordering::SeqCst) {
                stopping = true;
                supervisor
                    .begin_shutdown(now, grace)
                    .iter()
                    .for_each(&mut report);
            }
            supervisor.step(now).iter().for_each(&mut report);
            match self.sockets.accept_pending(seams.bus.as_ref()) {
                Ok(connected) => {
                    for service in connected {
                        seams.log.note(&service, "bus connected");
                    }
                }
                Err(e) => seams
                    .log
                    .note("node", &format!("accepting bus connections: {e}")),
            }
            if stopping && supervisor.is_stopped() {
                break;
            }
            let statuses = supervisor.statuses();
            watch(now, &statuses);
            if let Some(status) = &mut seams.status {
                let written = status.update(now, &statuses);
                note_status_write(seams.log.as_ref(), status, &mut status_failing, written);
            }
            thread::sleep(TICK);
        }
        if let Some(status) = &mut seams.status {
            let written = status
                .finish(Instant::now(), &supervisor.statuses())
                .map(|()| true);
            note_status_write(seams.log.as_ref(), status, &mut status_failing, written);
        }
    }
}

/// Reports a status file that cannot be written once, not every tick,
/// and once more when it can be again.
fn note_status_write(
    log: &dyn HostLog,
    status: &StatusFile,
    failing: &mut bool,
    written: std::io::Result<bool>,
) {
    match written {
        Err(e) if !*failing => {
            *failing = true;
            log.note("node", &format!("writing {}: {e}", status.path().display()));
        }
        Ok(true) if *failing => {
            *failing = false;
            log.note(
                "node",
                &format!("{} written again", status.path().display()),
            );
        }
        _ => {}
    }
}

/// What plugs into a running node: the bus side, the heartbeat source,
/// the host log and the status file for tools.
pub struct Seams {
    pub bus: Arc<dyn BusAttach>,
    pub heartbeats: Arc<dyn Heartbeats>,
    pub log: Arc<dyn HostLog>,
    pub status: Option<StatusFile>,
}

fn vm_spec(service: &Service, arch: Arch, accel: Accel, images: &Path) -> VmSpec {
    let mut spec = VmSpec::new(
        service.name.clone(),
        arch,
        accel,
        image_path(images, &service.image, arch),
    );
    // The guest says Hello on the bus with the name the broker knows it by
    // (an image can run as several services).
    spec.cmdline = if service.cmdline.is_empty() {
        format!("service={}", service.name)
    } else {
        format!("service={} {}", service.name, service.cmdline)
    };
    spec.ram_mib = service.ram_mib;
    spec.vcpus = service.vcpus;
    spec.net = service.devices.net.as_ref().map(|uplink| NetSpec {
        host_forward: uplink.host_forward.clone(),
        guest_forward: uplink.guest_forward.clone(),
        restrict: false,
    });
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::DiskRole;

    const MANIFEST: &str = r#"[node]
name = "n"
arch = "aarch64"

[[service]]
name = "agent"
image = "zedagent"
ram_mib = 48
cmdline = "log=debug"
[service.devices]
net = true
config = true
state_mib = 1
[service.bus]
heartbeat_timeout_s = 30

[[service]]
name = "diag"
image = "diag"
ram_mib = 32
[service.devices]
config = true
trunk = true
[service.bus]
call.ports = ["attach", "forward"]
"#;

    fn tcg() -> AccelChoice {
        AccelChoice {
            accel: Accel::Tcg,
            reason: "test".into(),
        }
    }

    fn paths(dir: &Path) -> NodePaths {
        let images = dir.join("images");
        std::fs::create_dir_all(&images).unwrap();
        for image in ["zedagent.img", "diag.img"] {
            std::fs::write(images.join(image), b"image").unwrap();
        }
        let config = dir.join("config.img");
        std::fs::write(&config, b"").unwrap();
        NodePaths {
            images,
            state_dir: dir.join("state"),
            config_part: Some(config),
        }
    }

    #[test]
    fn a_node_is_prepared_from_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest::parse(MANIFEST).unwrap();
        let paths = paths(dir.path());
        let node = Node::prepare(&manifest, &paths, &tcg(), &VfioRoots::default()).unwrap();
        let agent = &node.setups()[0];
        assert_eq!(agent.spec.kernel, paths.images.join("zedagent.img"));
        assert_eq!(agent.spec.cmdline, "service=agent log=debug");
        assert_eq!(agent.spec.ram_mib, 48);
        assert!(agent.spec.net.is_some());
        assert_eq!(agent.heartbeat_timeout, Some(Duration::from_secs(30)));
        let roles: Vec<_> = agent.spec.disks.iter().map(|d| d.role).collect();
        assert_eq!(roles, [DiskRole::Config, DiskRole::State]);
        let volume = &agent.spec.disks[1].path;
        assert_eq!(std::fs::metadata(volume).unwrap().len(), 1 << 20);
        let socket = agent.spec.bus_socket.clone().unwrap();
        assert!(socket.exists());
        let diag = &node.setups()[1];
        assert_eq!(diag.spec.disks.len(), 1);
        assert!(diag.spec.net.is_none());
        assert_eq!(
            diag.spec.trunk.as_deref(),
            Some(paths.state_dir.join("run/ports/trunk.sock").as_path())
        );
        assert_eq!(agent.spec.trunk, None);
        assert_eq!(
            diag.spec.monitor.as_deref(),
            Some(paths.state_dir.join("run/ports/diag.qmp").as_path()),
            "a service that may forward gets a monitor"
        );
        assert_eq!(agent.spec.monitor, None);
        assert_eq!(diag.console_log, paths.state_dir.join("logs/diag.console"));
        drop(node);
        assert!(!socket.exists(), "sockets go with the node");
    }

    #[test]
    fn what_is_missing_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest::parse(MANIFEST).unwrap();
        let mut paths = paths(dir.path());
        paths.config_part = None;
        let err = Node::prepare(&manifest, &paths, &tcg(), &VfioRoots::default())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "service `agent` needs the CONFIG partition: pass --config-part <image>"
        );
        let config = dir.path().join("config.img");
        paths.config_part = Some(config);
        std::fs::remove_file(paths.images.join("diag.img")).unwrap();
        let err = Node::prepare(&manifest, &paths, &tcg(), &VfioRoots::default())
            .err()
            .unwrap();
        assert!(
            matches!(&err, NodeError::ImageMissing { service, .. } if service == "diag"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("cargo xtask build --arch aarch64 diag"),
            "{err}"
        );
    }

    #[test]
    fn image_names_follow_the_build_layout() {
        let dir = Path::new("/t");
        assert_eq!(image_path(dir, "diag", Arch::X86_64), Path::new("/t/diag"));
        assert_eq!(
            image_path(dir, "diag", Arch::Aarch64),
            Path::new("/t/diag.img")
        );
    }
}
