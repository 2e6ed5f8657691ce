//! `domains run`: runs app domains from JSON specs until SIGTERM, Ctrl-C
//! or SIGHUP, restarting crashed ones with backoff, and says what happens
//! to each on stdout. For trying apps by hand before a node's domainmgr
//! drives them, and for tests that need a host to kill.

#![forbid(unsafe_code)]

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use domains::{
    DomainSpec, Domains, End, NodeResources,
    retry::{BootRetry, Decision, RetryPolicy},
};

#[derive(Parser)]
#[command(about = "Run app domains (unikernel, Linux VM, container) under QEMU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start every spec and keep them running until told to stop.
    Run {
        /// One directory per domain (pid file, QMP socket, console).
        #[arg(long)]
        root: PathBuf,
        /// Memory for apps, MiB (default: this machine's less --reserve-mib).
        #[arg(long)]
        memory_mib: Option<u64>,
        /// Memory kept for the host and its services, MiB.
        #[arg(long, default_value_t = 1024)]
        reserve_mib: u64,
        /// Seconds a guest gets to power down before it is powered off.
        #[arg(long, default_value_t = 30)]
        stop_timeout_s: u64,
        /// Domain specs (JSON).
        specs: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let Command::Run {
        root,
        memory_mib,
        reserve_mib,
        stop_timeout_s,
        specs,
    } = Cli::parse().command;
    match run(
        root,
        memory_mib,
        reserve_mib,
        Duration::from_secs(stop_timeout_s),
        &specs,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("domains: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    root: PathBuf,
    memory_mib: Option<u64>,
    reserve_mib: u64,
    stop_timeout: Duration,
    paths: &[PathBuf],
) -> Result<(), String> {
    let mut specs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let spec: DomainSpec =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        specs.push(spec);
    }
    let mut node = NodeResources::of_this_host(reserve_mib).map_err(|e| e.to_string())?;
    if let Some(memory_mib) = memory_mib {
        node.memory_mib = memory_mib;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    let (mut domains, reaped) = Domains::open(&root, node).map_err(|e| e.to_string())?;
    for r in reaped {
        println!(
            "domains: stopped pid {} left by a previous host ({})",
            r.pid,
            r.pid_file.display()
        );
    }
    let clock = Instant::now();
    let mut retries: Vec<(DomainSpec, BootRetry)> = Vec::new();
    for spec in specs {
        start(&mut domains, &spec);
        retries.push((spec, BootRetry::new(RetryPolicy::default())));
    }
    while !stop.load(Ordering::Relaxed) {
        for ended in domains.poll() {
            println!("domains: {} {}", ended.name, ended.end);
            if let End::Crashed(crash) = &ended.end {
                for line in crash.console.iter().chain(&crash.vmm) {
                    println!("domains: {} | {line}", ended.name);
                }
            }
            if matches!(ended.end, End::Crashed(_) | End::Rebooted)
                && let Some((_, retry)) = retries.iter_mut().find(|(s, _)| s.name == ended.name)
            {
                match retry.failed(clock.elapsed(), ended.up_for) {
                    Decision::RetryAt(at) => println!(
                        "domains: {} starts again in {:.1} s",
                        ended.name,
                        at.saturating_sub(clock.elapsed()).as_secs_f64()
                    ),
                    Decision::GiveUp { failures } => {
                        println!("domains: {} gave up after {failures} failures", ended.name)
                    }
                }
            }
        }
        for (spec, retry) in &mut retries {
            if retry.due(clock.elapsed()) {
                retry.started();
                start(&mut domains, spec);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for result in domains.stop_all(stop_timeout) {
        match result {
            Ok(ended) => println!("domains: {} {}", ended.name, ended.end),
            Err(e) => println!("domains: {e}"),
        }
    }
    Ok(())
}

fn start(domains: &mut Domains, spec: &DomainSpec) {
    match domains.start(spec.clone()) {
        Ok(domain) => println!(
            "domains: {} started (pid {}, {})",
            domain.name(),
            domain.pid(),
            domain.accel()
        ),
        Err(e) => println!("domains: {} refused: {e}", spec.name),
    }
}
