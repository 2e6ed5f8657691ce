//! `eve-host`: runs a node from its manifest, or checks a manifest.
#![forbid(unsafe_code)]

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use clap::{Parser, Subcommand};
use eve_host::{
    Accel, Arch,
    console::{HostLog, StderrLog, StderrLogger},
    deviceports::{DevicePortBridges, PortBridgeChoice},
    lock::{DirLock, HOST_LOCK_FILE},
    manifest::Manifest,
    node::{Node, NodePaths, Seams},
    nodebus::{NodeBus, TpmChoice},
    qemu::QemuVmm,
    servicelog::ServiceLogs,
    status::StatusFile,
    stdio::{err_line, out_line},
    targets::{
        BootDisk, ContentOptions, DomainsOptions, ForwardOptions, PowerSwitch, TargetContext,
        power::{EXIT_REBOOT, EXIT_SHUTDOWN, Ending},
    },
    vfio::VfioRoots,
    volumes::StateDir,
    watchdog::{self, Watchdog},
};

/// What the host's libraries (broker, TPM mediator) report about
/// themselves; service log records go through the broker's sink instead.
static LOGGER: StderrLogger = StderrLogger {
    level: log::LevelFilter::Info,
};

#[derive(Parser)]
#[command(about = "Launches, wires and supervises a node's unikernels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at start; boxing clap's flags buys nothing"
)]
enum Command {
    /// Run a node until SIGTERM, Ctrl-C or SIGHUP, or until a service
    /// asks the `power` target for a reboot (exit status 3) or a shutdown
    /// (exit status 4); one status line per state change.
    Run {
        /// The node manifest (format: nodes/default.toml).
        #[arg(long)]
        manifest: PathBuf,
        /// Directory of service images (<image> on x86_64, <image>.img on aarch64).
        #[arg(long)]
        images: PathBuf,
        /// Where the node keeps volumes, logs, sockets, run/status.json and
        /// a software TPM's state.
        #[arg(long)]
        state_dir: PathBuf,
        /// The CONFIG partition image, attached read-only.
        #[arg(long)]
        config_part: Option<PathBuf>,
        /// kvm or tcg; detected when omitted (also EVE_ACCEL).
        #[arg(long)]
        accel: Option<Accel>,
        /// x86_64 or aarch64: run the node on this arch instead of the
        /// manifest's (the same node built for the other arch).
        #[arg(long)]
        arch: Option<Arch>,
        /// The TPM the host owns for services with TPM grants: swtpm (a
        /// software TPM, state in <state-dir>/tpm), device[:PATH] (default
        /// /dev/tpmrm0) or none (their TPM requests are answered Unavailable).
        #[arg(long, default_value_t = TpmChoice::Swtpm)]
        tpm: TpmChoice,
        /// MiB that must stay free on the state directory's filesystem:
        /// content downloads and volume builds that would leave less are
        /// refused (a full disk would stop the node).
        #[arg(long, default_value_t = ContentOptions::default().reserve_bytes >> 20)]
        content_reserve_mib: u64,
        /// The most MiB the blob store may hold; unbounded (but for the
        /// reserve) when omitted.
        #[arg(long)]
        content_capacity_mib: Option<u64>,
        /// MiB app domains may use (guest RAM and their VMMs); this
        /// machine's RAM less 1 GiB when omitted.
        #[arg(long)]
        apps_memory_mib: Option<u64>,
        /// CPUs app domains share; this machine's when omitted.
        #[arg(long)]
        apps_cpus: Option<u32>,
        /// The shim VM's Linux kernel, for container apps (with
        /// --shim-initrd); without both, container apps are refused.
        #[arg(long, requires = "shim_initrd")]
        shim_kernel: Option<PathBuf>,
        /// The shim VM's initramfs (with its init).
        #[arg(long, requires = "shim_kernel")]
        shim_initrd: Option<PathBuf>,
        /// Seconds a VM gets to stop cleanly at shutdown before it is killed.
        #[arg(long, default_value_t = 10)]
        shutdown_grace_s: u64,
        /// The GPT disk (image file or block device) holding the base OS
        /// partitions IMGA and IMGB, for the partitions target; without
        /// it that target answers that the host has no A/B disk.
        #[arg(long)]
        disk: Option<PathBuf>,
        /// IMGA or IMGB: the partition the node booted from (the loader's
        /// `eve.slot=`; the init passes it on).
        #[arg(long, requires = "disk")]
        booted_slot: Option<String>,
        /// The disk's logical block size in bytes (512 or 4096): a block
        /// device says its own, an image file is taken as 512 unless told.
        #[arg(long, requires = "disk")]
        disk_block_size: Option<usize>,
        /// A Linux watchdog device (/dev/watchdog) to pet while every
        /// service is healthy; a crash loop or a hung host then ends in a
        /// hardware reset, the next boot's reason WATCHDOG_PID or
        /// WATCHDOG_HUNG. None when omitted (the init passes it when the
        /// machine has one).
        #[arg(long)]
        watchdog: Option<PathBuf>,
        /// The host address zedrouter's port maps are forwarded on (the
        /// ports target's forwards): loopback unless a board serves its
        /// apps on its LAN.
        #[arg(long, default_value_t = std::net::Ipv4Addr::LOCALHOST)]
        forward_address: std::net::Ipv4Addr,
        /// The lowest host port a service may forward.
        #[arg(long, default_value_t = 1024)]
        forward_lowest_port: u16,
        /// The watchdog's timeout in seconds, set when the host opens it
        /// (EVE's: 60); petted at a third of the timeout in force.
        #[arg(long, requires = "watchdog", default_value_t = watchdog::DEFAULT_TIMEOUT_SECS)]
        watchdog_timeout: u32,
        /// LABEL=INTERFACE: bridge the manifest's device port LABEL (the
        /// outside end of switch network instances on it) with a Linux
        /// network interface (an AF_PACKET socket, the interface made
        /// promiscuous); repeat for more ports. A port not named stays
        /// unbridged: its switch instances reach no network.
        #[arg(long = "device-port", value_name = "LABEL=INTERFACE")]
        device_ports: Vec<PortBridgeChoice>,
    },
    /// Validate a manifest and print the node it describes.
    Check {
        #[arg(long)]
        manifest: PathBuf,
    },
}

/// Where the kernel describes its watchdogs.
const WATCHDOG_CLASS: &str = "/sys/class/watchdog";

/// What `run` needs besides the node's paths.
struct RunOptions {
    accel: Option<Accel>,
    arch: Option<Arch>,
    tpm: TpmChoice,
    content: ContentOptions,
    domains: DomainsOptions,
    grace: Duration,
    disk: Option<BootDisk>,
    watchdog: Option<PathBuf>,
    forwards: ForwardOptions,
    watchdog_timeout: u32,
    device_ports: Vec<PortBridgeChoice>,
}

fn main() -> ExitCode {
    // Started by the kernel as a node image's init (PID 1, no subcommand;
    // a container that runs `eve-host run ...` as PID 1 is not an init).
    let subcommand = std::env::args().nth(1);
    if std::process::id() == 1 && !matches!(subcommand.as_deref(), Some("run" | "check")) {
        eve_host::init::main();
    }
    let result = match Cli::parse().command {
        Command::Check { manifest } => Manifest::load(&manifest)
            .map(|m| out_line(format_args!("{}", m.to_string().trim_end())))
            .map(|()| Ending::Stopped)
            .map_err(|e| format!("{}:\n{e}", manifest.display())),
        Command::Run {
            manifest,
            images,
            state_dir,
            config_part,
            accel,
            arch,
            tpm,
            content_reserve_mib,
            content_capacity_mib,
            apps_memory_mib,
            apps_cpus,
            shim_kernel,
            shim_initrd,
            shutdown_grace_s,
            disk,
            booted_slot,
            disk_block_size,
            watchdog,
            forward_address,
            forward_lowest_port,
            watchdog_timeout,
            device_ports,
        } => run(
            &manifest,
            NodePaths {
                images,
                state_dir,
                config_part,
            },
            RunOptions {
                accel,
                arch,
                tpm,
                content: ContentOptions {
                    reserve_bytes: content_reserve_mib << 20,
                    capacity_bytes: content_capacity_mib.map(|m| m << 20),
                },
                domains: DomainsOptions {
                    memory_mib: apps_memory_mib,
                    cpus: apps_cpus,
                    shim: shim_kernel.zip(shim_initrd),
                    grace: Duration::from_secs(shutdown_grace_s),
                    ..DomainsOptions::default()
                },
                grace: Duration::from_secs(shutdown_grace_s),
                disk: disk.map(|path| BootDisk {
                    path,
                    booted: booted_slot,
                    block_size: disk_block_size,
                }),
                watchdog,
                forwards: ForwardOptions {
                    address: forward_address,
                    lowest_port: forward_lowest_port,
                    ..ForwardOptions::default()
                },
                watchdog_timeout,
                device_ports,
            },
        ),
    };
    match result {
        Ok(Ending::Stopped) => ExitCode::SUCCESS,
        Ok(ending) => ExitCode::from(ending.exit_status()),
        Err(message) => {
            err_line(format_args!("eve-host: {message}"));
            ExitCode::FAILURE
        }
    }
}

fn run(
    manifest_path: &std::path::Path,
    paths: NodePaths,
    options: RunOptions,
) -> Result<Ending, String> {
    LOGGER
        .install()
        .map_err(|e| format!("installing the logger: {e}"))?;
    let mut manifest =
        Manifest::load(manifest_path).map_err(|e| format!("{}:\n{e}", manifest_path.display()))?;
    if let Some(arch) = options.arch {
        manifest.node.arch = arch;
    }
    // Before anything in the state directory is touched: a second host
    // there would wipe this one's sockets and stop its VMs as orphans.
    let lock = DirLock::acquire(&paths.state_dir, HOST_LOCK_FILE).map_err(|e| e.to_string())?;
    let choice = guest_arch::choose_accel(manifest.node.arch, options.accel)?;
    err_line(format_args!(
        "eve-host: node {} ({}), accelerator {}: {}",
        manifest.node.name, manifest.node.arch, choice.accel, choice.reason
    ));
    let stop = Arc::new(AtomicBool::new(false));
    // SIGHUP too: a host run from a terminal that closes stops its VMs
    // rather than dying and leaving them.
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("installing the handler for signal {signal}: {e}"))?;
    }
    let node = Node::prepare(&manifest, &paths, &choice, &VfioRoots::default())
        .map_err(|e| e.to_string())?;
    for orphan in node.reaped() {
        err_line(format_args!(
            "eve-host: stopped process {} that a previous host left running ({})",
            orphan.pid,
            orphan.pid_file.display()
        ));
    }
    let state = StateDir::create(&paths.state_dir).map_err(|e| e.to_string())?;
    let watchdog_reset = options
        .watchdog
        .as_deref()
        .is_some_and(|device| watchdog::reset_reported(Path::new(WATCHDOG_CLASS), device));
    let power = PowerSwitch::begin_after(&paths.state_dir, stop.clone(), watchdog_reset)
        .map_err(|e| e.to_string())?;
    let boot = power.record();
    err_line(format_args!(
        "eve-host: boot {} of this node, reason {:?} (previous boot began at {} s since the epoch)",
        boot.boots, boot.reason, boot.previous_boot_time
    ));
    let log: Arc<dyn HostLog> = Arc::new(StderrLog);
    let domains = DomainsOptions {
        arch: manifest.node.arch,
        ..options.domains
    };
    let bus = NodeBus::start_in(
        &manifest,
        &TargetContext {
            state_dir: &paths.state_dir,
            tpm: &options.tpm,
            content: options.content,
            domains: &domains,
            disk: options.disk.as_ref(),
            power: &power,
            forwards: &options.forwards.clone().reserving(&manifest),
        },
        ServiceLogs::new(&state.logs(), log.clone()),
    )
    .map_err(|e| e.to_string())?;
    err_line(format_args!("eve-host: TPM: {}", bus.tpm()));
    // After the bus: the ports target made the sockets' directory.
    let device_ports = DevicePortBridges::start(&manifest, &state.run(), &options.device_ports)
        .map_err(|e| e.to_string())?;
    for (choice, _) in &device_ports.bridges {
        err_line(format_args!(
            "eve-host: device port {} bridged with {}",
            choice.label, choice.interface
        ));
    }
    for failure in &device_ports.failed {
        err_line(format_args!(
            "eve-host: {failure}; the port stays unbridged"
        ));
    }
    for label in &device_ports.unbridged {
        err_line(format_args!(
            "eve-host: device port {label} is not bridged (no --device-port {label}=INTERFACE): \
             switch instances on it reach no network"
        ));
    }
    let broker = bus.broker().clone();
    let status = StatusFile::new(
        &state.status_file(),
        &manifest.node.name,
        manifest.node.arch,
        &bus.tpm().to_string(),
        Arc::new(broker.clone()),
    );
    let seams = Seams {
        bus: Arc::new(broker.clone()),
        heartbeats: Arc::new(broker),
        log,
        status: Some(status),
    };
    // Opened last: its timer runs from here.
    let mut watchdog = options.watchdog.as_deref().and_then(|device| {
        Watchdog::open(device, power.clone(), options.watchdog_timeout)
            .inspect(|(_, armed)| {
                err_line(format_args!(
                    "eve-host: petting the watchdog {} ({armed}) while every service is healthy",
                    device.display()
                ))
            })
            .inspect_err(|e| err_line(format_args!("eve-host: {e}; running without it")))
            .ok()
            .map(|(watchdog, _)| watchdog)
    });
    node.run_watched(
        QemuVmm,
        seams,
        &stop,
        options.grace,
        |status| out_line(format_args!("{status}")),
        |now, statuses| {
            if let Some(change) = watchdog.as_mut().and_then(|w| w.watch(now, statuses)) {
                err_line(format_args!("eve-host: {change}"));
            }
        },
    );
    if let Some(Err(e)) = watchdog.map(Watchdog::close) {
        err_line(format_args!(
            "eve-host: closing the watchdog: {e}; the machine resets"
        ));
    }
    drop(device_ports);
    // Stops the software TPM, if the host started one.
    drop(bus);
    let ending = power.finish().map_err(|e| e.to_string())?;
    // Only now may another host have the state directory.
    drop(lock);
    err_line(format_args!("eve-host: every service stopped"));
    match ending {
        Ending::Stopped => {}
        Ending::Reboot(reason) => err_line(format_args!(
            "eve-host: reboot requested ({reason:?}): exit status {EXIT_REBOOT}"
        )),
        Ending::Shutdown(reason) => err_line(format_args!(
            "eve-host: shutdown requested ({reason:?}): exit status {EXIT_SHUTDOWN}"
        )),
    }
    Ok(ending)
}
