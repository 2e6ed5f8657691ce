//! `eve-host`: runs a node from its manifest, or checks a manifest.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use clap::{Parser, Subcommand};
use eve_host::{
    accel::{Accel, choose_accel},
    bus::HoldBus,
    console::StderrLog,
    heartbeat::HeartbeatBoard,
    manifest::Manifest,
    node::{Node, NodePaths, Seams},
    qemu::QemuVmm,
    vfio::VfioRoots,
};

#[derive(Parser)]
#[command(about = "Launches, wires and supervises a node's unikernels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node until SIGTERM or Ctrl-C; one status line per state change.
    Run {
        #[arg(long)]
        manifest: PathBuf,
        /// Directory of service images (<image> on x86_64, <image>.img on aarch64).
        #[arg(long)]
        images: PathBuf,
        /// Where the node keeps volumes, console logs and sockets.
        #[arg(long)]
        state_dir: PathBuf,
        /// The CONFIG partition image, attached read-only.
        #[arg(long)]
        config_part: Option<PathBuf>,
        /// kvm or tcg; detected when omitted (also EVE_ACCEL).
        #[arg(long)]
        accel: Option<Accel>,
        /// Seconds a VM gets to stop cleanly at shutdown before it is killed.
        #[arg(long, default_value_t = 10)]
        shutdown_grace_s: u64,
    },
    /// Validate a manifest and print the node it describes.
    Check {
        #[arg(long)]
        manifest: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Check { manifest } => Manifest::load(&manifest)
            .map(|m| print!("{m}"))
            .map_err(|e| format!("{}:\n{e}", manifest.display())),
        Command::Run {
            manifest,
            images,
            state_dir,
            config_part,
            accel,
            shutdown_grace_s,
        } => run(
            &manifest,
            NodePaths {
                images,
                state_dir,
                config_part,
            },
            accel,
            Duration::from_secs(shutdown_grace_s),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("eve-host: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    manifest_path: &std::path::Path,
    paths: NodePaths,
    accel: Option<Accel>,
    grace: Duration,
) -> Result<(), String> {
    let manifest =
        Manifest::load(manifest_path).map_err(|e| format!("{}:\n{e}", manifest_path.display()))?;
    let choice = choose_accel(manifest.node.arch, accel)?;
    eprintln!(
        "eve-host: node {} ({}), accelerator {}: {}",
        manifest.node.name, manifest.node.arch, choice.accel, choice.reason
    );
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("installing the handler for signal {signal}: {e}"))?;
    }
    let node = Node::prepare(&manifest, &paths, &choice, &VfioRoots::default())
        .map_err(|e| e.to_string())?;
    let seams = Seams {
        bus: Arc::new(HoldBus::default()),
        heartbeats: Arc::new(HeartbeatBoard::default()),
        log: Arc::new(StderrLog),
    };
    node.run(QemuVmm, seams, &stop, grace, |status| println!("{status}"));
    eprintln!("eve-host: every service stopped");
    Ok(())
}
