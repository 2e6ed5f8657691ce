//! `cargo xtask`: the one entry point for building, running, testing and
//! benchmarking. See `cargo xtask --help`.

mod bench;
mod controller;
mod deps;
mod qemu;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use harness::{Accel, Arch, Machine, Profile};

/// Services the workspace builds for bare metal.
pub const SERVICES: &[&str] = &["selftest", "nettest", "diag"];
/// Library crates that must also build for both bare-metal targets.
pub const BARE_METAL_LIBS: &[&str] = &[
    "boot",
    "hal",
    "runtime",
    "net",
    "dnswire",
    "evehttp",
    "evetls",
    "evehttps",
    "evebus",
    "blockdev",
    "statestore",
    "configpart",
    "tpmwire",
    "bootinfo",
    "guest-abi",
    "eve-proto",
];

#[derive(Parser)]
#[command(about = "Build, run, test and benchmark the EVE unikernels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build service images for an arch (both when omitted).
    Build {
        #[arg(long)]
        arch: Option<Arch>,
        #[arg(long)]
        release: bool,
        /// Services to build (all when omitted).
        services: Vec<String>,
    },
    /// Build a service and boot it in QEMU with its console on this terminal.
    Qemu {
        #[arg(long, default_value = "x86_64")]
        arch: Arch,
        /// QEMU machine (microvm or q35 on x86_64, virt on aarch64).
        #[arg(long)]
        machine: Option<Machine>,
        /// kvm or tcg; detected when omitted (also EVE_ACCEL).
        #[arg(long)]
        accel: Option<Accel>,
        /// Build without optimisation.
        #[arg(long)]
        debug: bool,
        #[arg(default_value = "selftest")]
        service: String,
        /// Extra kernel command-line words.
        #[arg(last = true)]
        cmdline: Vec<String>,
    },
    /// Host unit tests and every QEMU integration test on both arches.
    Test,
    /// Install what running the unikernels needs (QEMU, Rust targets).
    Deps,
    /// Measure and print a table.
    Bench {
        #[command(subcommand)]
        what: bench::Bench,
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
            service,
            cmdline,
        } => qemu::run(arch, machine, accel, debug, &service, &cmdline),
        Command::Test => test::run(),
        Command::Deps => deps::ensure(),
        Command::Bench { what } => bench::run(what),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn build(arch: Option<Arch>, release: bool, services: &[String]) -> Result<(), String> {
    let profile = if release {
        Profile::Release
    } else {
        Profile::Debug
    };
    let arches = arch.map_or(Arch::ALL.to_vec(), |a| vec![a]);
    let all: Vec<String> = SERVICES.iter().map(|s| s.to_string()).collect();
    let services = if services.is_empty() { &all } else { services };
    for arch in arches {
        for service in services {
            let image =
                harness::build_service(service, arch, profile).map_err(|e| e.to_string())?;
            println!("{arch} {service}: {}", image.display());
        }
    }
    Ok(())
}
