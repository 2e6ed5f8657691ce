//! `cargo xtask`: the one entry point for building, running, testing and
//! benchmarking. See `cargo xtask --help`.
#![forbid(unsafe_code)]

mod admin;
mod apidiff;
mod appsbench;
mod appsnodebench;
mod appsnodestages;
mod bench;
mod contentbench;
mod controller;
mod deps;
mod fleetbench;
mod fuzz;
mod idlebench;
mod image;
mod imagebench;
mod netbench;
mod newservice;
mod node;
mod nodebench;
mod output;
mod procfs;
mod qemu;
mod registry;
mod status;
mod test;
mod updatebench;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use harness::{Accel, Arch, Machine, Profile};

#[derive(Parser)]
#[command(about = "Build, run, test and benchmark the EVE unikernels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build service and app images for an arch (both when omitted).
    Build {
        #[arg(long)]
        arch: Option<Arch>,
        #[arg(long)]
        release: bool,
        /// Services or apps to build (all when omitted).
        services: Vec<String>,
    },
    /// Without a service: build and run the whole node (every service of
    /// the manifest under eve-host) against our controller on loopback,
    /// with a live status, until Ctrl-C. With one: build that service and
    /// boot it in QEMU with its console on this terminal.
    Qemu {
        /// x86_64 or aarch64 (default: the manifest's for the node,
        /// x86_64 for one service).
        #[arg(long)]
        arch: Option<Arch>,
        /// QEMU machine (microvm or q35 on x86_64, virt on aarch64).
        #[arg(long)]
        machine: Option<Machine>,
        /// kvm or tcg; detected when omitted (also EVE_ACCEL).
        #[arg(long)]
        accel: Option<Accel>,
        /// Build without optimisation.
        #[arg(long)]
        debug: bool,
        /// The node manifest (node only).
        #[arg(long, default_value_os_t = node::default_manifest())]
        manifest: std::path::PathBuf,
        /// Reuse this controller data directory instead of a fresh one
        /// (node only).
        #[arg(long)]
        controller: Option<std::path::PathBuf>,
        /// Boot the node from a dev disk with the image's GPT layout
        /// (target/node-ARCH/disk.img, v1.0 on IMGA), so base OS updates
        /// run: a reboot the host asks for boots again on the loader's
        /// choice of IMGA or IMGB (node only).
        #[arg(long)]
        disk: bool,
        /// LABEL=INTERFACE: bridge the node's device port LABEL (eth1 in
        /// the default node) with a Linux network interface, so switch
        /// network instances on it reach that network (root; node only;
        /// repeatable).
        #[arg(long = "device-port", value_name = "LABEL=INTERFACE")]
        device_ports: Vec<String>,
        /// One service to boot alone (selftest, nettest, diag, ...).
        service: Option<String>,
        /// Extra kernel command-line words.
        #[arg(last = true)]
        cmdline: Vec<String>,
    },
    /// Host unit tests and every QEMU integration test on both arches.
    Test,
    /// Install what running the unikernels needs (QEMU, Rust targets).
    Deps,
    /// Fuzz the hostile-input parsers for a bounded time (nightly).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Targets to run (all when omitted).
        targets: Vec<String>,
    },
    /// Create a service: services/NAME (a crate on the runtime's service
    /// loop: Hello, heartbeats, a timer, a subscription) and its stanza in
    /// the node manifest.
    NewService {
        /// The service's name (and its crate's and image's).
        name: String,
        /// The manifest to add it to.
        #[arg(long, default_value_os_t = node::default_manifest())]
        manifest: std::path::PathBuf,
        /// The workspace to add it to (default: this one).
        #[arg(long, default_value_os_t = harness::workspace_root())]
        workspace: std::path::PathBuf,
    },
    /// Measure and print a table.
    Bench {
        #[command(subcommand)]
        what: bench::Bench,
    },
    /// List every difference between our .proto files and an eve-api checkout.
    ApiDiff(apidiff::Args),
    /// A node's disk image (EFI loader, IMGA/IMGB, CONFIG, PERSIST) and its update artifact.
    Image(image::Args),
    /// A local container registry on 127.0.0.1:PORT holding
    /// busybox-httpd:latest for ARCH (docker://10.0.2.2:PORT/... from a
    /// node), until Ctrl-C.
    Registry {
        /// The image's arch (default x86_64).
        #[arg(long, default_value = "x86_64")]
        arch: Arch,
        /// The loopback port to serve on.
        #[arg(long, default_value_t = 5000)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Build {
            arch,
            release,
            services,
        } => build(arch, release, &services),
        Command::Qemu {
            arch,
            machine,
            accel,
            debug,
            manifest,
            controller,
            disk,
            device_ports,
            service,
            cmdline,
        } => match service {
            Some(_) if disk => Err("--disk applies to the whole node: name no service".into()),
            Some(_) if !device_ports.is_empty() => {
                Err("--device-port applies to the whole node: name no service".into())
            }
            Some(service) => qemu::run(
                arch.unwrap_or(Arch::X86_64),
                machine,
                accel,
                debug,
                &service,
                &cmdline,
            ),
            None if machine.is_some() || debug || !cmdline.is_empty() => Err(
                "--machine, --debug and a command line apply to one service: \
                 name it (cargo xtask qemu [OPTIONS] SERVICE)"
                    .into(),
            ),
            None => node::run(node::NodeOptions {
                arch,
                accel,
                manifest,
                controller,
                disk,
                device_ports,
            }),
        },
        Command::Test => test::run(),
        Command::Deps => deps::ensure().and_then(|()| deps::ensure_content_servers()),
        Command::Fuzz { seconds, targets } => fuzz::run(&targets, seconds),
        Command::NewService {
            name,
            manifest,
            workspace,
        } => newservice::create(&workspace, &name, &manifest).map(|created| {
            println!(
                "created {} and its stanza in {}
build it: cargo xtask build {name}
boot it alone: cargo xtask qemu {name}
smoke test: cargo test -p harness --test services",
                created.crate_dir.display(),
                created.manifest.display()
            )
        }),
        Command::Bench { what } => bench::run(what),
        Command::ApiDiff(args) => apidiff::run(args),
        Command::Image(args) => image::run(&args).map(|report| report.print()),
        Command::Registry { arch, port } => registry::run(arch, port),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            output::warn(format_args!("xtask: {message}"));
            ExitCode::FAILURE
        }
    }
}

fn build(arch: Option<Arch>, release: bool, names: &[String]) -> Result<(), String> {
    let profile = if release {
        Profile::Release
    } else {
        Profile::Debug
    };
    let arches = arch.map_or(Arch::ALL.to_vec(), |a| vec![a]);
    let apps = harness::layout::apps();
    let all: Vec<String> = harness::layout::services()
        .into_iter()
        .chain(apps.iter().map(|a| a.name.clone()))
        .collect();
    let names = if names.is_empty() { &all } else { names };
    for arch in arches {
        for name in names {
            let linux = apps
                .iter()
                .any(|a| &a.name == name && a.image == harness::layout::AppImage::LinuxStatic);
            let image = if linux {
                harness::appassets::build_linux_program(name, arch, profile)
            } else {
                harness::build_service(name, arch, profile)
            }
            .map_err(|e| e.to_string())?;
            println!("{arch} {name}: {}", image.display());
        }
    }
    Ok(())
}

/// `cargo` (the one running us, if any) in the workspace root.
fn cargo_command() -> std::process::Command {
    let mut command =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(harness::workspace_root());
    command
}

/// Runs cargo with `args`, echoing the command; fails unless it succeeds.
fn cargo(args: &[&str]) -> Result<(), String> {
    output::say(format_args!("xtask: cargo {}", args.join(" ")));
    let status = cargo_command()
        .args(args)
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}
