//! `cargo xtask bench apps`: each kind of app under `host/domains`, same
//! QEMU, same run: from the start request (the config accepted) to the
//! first HTTP answer on the app's forwarded port, the graceful stop, and
//! the VMM's memory beside the guest's RAM (RSS, PSS, the guest RAM it
//! holds and what is left: the overhead admission charges), against EVE's
//! 370 MB per-app estimate. The target: a unikernel app at least 50 times
//! faster to first answer than the Linux VM app.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use clap::Args;
use domains::{DomainSpec, Domains, KindClass, NodeResources, VmmOverhead};
use harness::{Arch, appassets::apps, workspace_root};

use crate::bench::{cell, summarize};
use evectl::apps::AppKind;

/// Options of `cargo xtask bench apps`.
#[derive(Args)]
pub struct AppsArgs {
    /// Arch of the apps (both when omitted).
    #[arg(long)]
    arch: Option<Arch>,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds an app may take to answer.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Deployments of each kind through a whole node (0: none).
    #[arg(long, default_value_t = 1)]
    node_runs: usize,
}

/// How long one probe waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// When the app first answers on `port`, or an error once it ended or
/// `timeout` passed. QEMU's user-mode networking accepts a forwarded
/// connection at once and retransmits its SYN to a guest that is not up
/// yet with a growing backoff, so one probe at a time measures the
/// backoff (seconds), not the app: a new probe starts every 20 ms (every
/// 250 ms after the first 2 s), each on its own connection, and the first
/// answer wins. Later probes are sparser: each one's pending connection
/// costs QEMU's main loop, which a booting Linux guest under TCG shares.
fn first_answer(
    domains: &mut Domains,
    name: &str,
    port: u16,
    started: Instant,
    timeout: Duration,
) -> Result<Duration, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    loop {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if answers(port) {
                let _ = tx.send(Instant::now());
            }
        });
        let interval = if started.elapsed() < Duration::from_secs(2) {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(250)
        };
        if let Ok(at) = rx.recv_timeout(interval) {
            return Ok(at - started);
        }
        if let Some(ended) = domains.poll().into_iter().next() {
            return Err(format!("{name} ended before answering: {}", ended.end));
        }
        if started.elapsed() > timeout {
            return Err(format!("{name} did not answer within {timeout:?}"));
        }
    }
}

/// EVE's per-app VMM estimate, MB.
const EVE_ESTIMATE_MB: u64 = 370;

struct Run {
    answer: Duration,
    stop: Duration,
    graceful: bool,
    rss_kib: u64,
    pss_kib: u64,
    guest_kib: u64,
}

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

pub(crate) fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
    if stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200")
}

/// The spec of `kind` answering on host port `port`.
fn spec(kind: KindClass, arch: Arch, dir: &Path, port: u16) -> Result<DomainSpec, String> {
    let name = kind.name();
    match kind {
        KindClass::Unikernel => apps::unikernel_app(arch, name, port, ""),
        KindClass::LinuxVm => apps::linux_vm_app(arch, name, &dir.join("vm.qcow2"), port),
        KindClass::Container => apps::container_app(arch, name, &dir.join("image"), port),
    }
    .map_err(|e| e.to_string())
}

fn one_run(kind: KindClass, arch: Arch, timeout: Duration) -> Result<Run, String> {
    let dir = workspace_root()
        .join("target/app-bench")
        .join(format!("{}-{arch}", kind.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = free_port()?;
    let spec = spec(kind, arch, &dir, port)?;
    let node = NodeResources {
        memory_mib: 4096,
        cpus: 2,
    };
    let (mut domains, _) = Domains::open(&dir.join("domains"), node).map_err(|e| e.to_string())?;
    let started = Instant::now();
    domains.start(spec).map_err(|e| e.to_string())?;
    let answer = first_answer(&mut domains, kind.name(), port, started, timeout)?;
    let usage = domains.usage(kind.name()).map_err(|e| e.to_string())?;
    let (outcome, _) = domains
        .stop(kind.name(), Duration::from_secs(60))
        .map_err(|e| e.to_string())?;
    Ok(Run {
        answer,
        stop: outcome.took,
        graceful: outcome.graceful,
        rss_kib: usage.rss_kib,
        pss_kib: usage.pss_kib,
        guest_kib: usage.guest_ram_kib,
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn run(args: AppsArgs) -> Result<(), String> {
    let arches = args.arch.map_or(Arch::ALL.to_vec(), |a| vec![a]);
    direct(&args, &arches)?;
    if args.node_runs > 0 {
        through_the_node(&args, &arches)?;
    }
    Ok(())
}

/// Each kind deployed through a whole node: config accepted to RUNNING
/// in the controller's view and to the first answer.
fn through_the_node(args: &AppsArgs, arches: &[Arch]) -> Result<(), String> {
    println!(
        "apps through the whole node (evectl deploy, controller, zedagent, volumemgr, zedmanager, domainmgr), TCG, {} run(s) per kind; times in s from the config accepted: median (min-max)",
        args.node_runs
    );
    println!("| arch | kind | to RUNNING (controller's view) | to first answer |");
    println!("|---|---|---|---|");
    let timeout = Duration::from_secs(args.timeout_s.max(600));
    let mut breakdown = Vec::new();
    for &arch in arches {
        for (kind, runs) in crate::appsnodebench::run(arch, args.node_runs, timeout)? {
            for run in &runs {
                breakdown.push((arch, kind, run.stages.clone()));
            }
            let seconds = |d: Vec<Duration>| {
                let mut s: Vec<f64> = d.iter().map(Duration::as_secs_f64).collect();
                s.sort_by(f64::total_cmp);
                format!("{:.1} ({:.1}-{:.1})", s[s.len() / 2], s[0], s[s.len() - 1])
            };
            println!(
                "| {arch} | {} | {} | {} |",
                crate::appsnodebench::kind_name(kind),
                seconds(runs.iter().map(|r| r.running).collect()),
                seconds(runs.iter().map(|r| r.answer).collect()),
            );
        }
    }
    stage_table(&breakdown);
    Ok(())
}

/// Where each run's time to RUNNING went, s, from the host's log
/// (`appsnodestages`); `-` for a stage the run did not go through.
fn stage_table(runs: &[(Arch, AppKind, Vec<Option<Duration>>)]) {
    use crate::appsnodestages::STAGES;
    let headings: Vec<&str> = STAGES
        .iter()
        .map(|(_, h)| *h)
        .chain(["domain started to RUNNING reported"])
        .collect();
    println!("where the time to RUNNING went, s:");
    println!("| arch | kind | {} |", headings.join(" | "));
    println!("|---|---|{}", "---|".repeat(headings.len()));
    for (arch, kind, stages) in runs {
        let cells: Vec<String> = stages
            .iter()
            .map(|d| d.map_or_else(|| "-".to_owned(), |d| format!("{:.2}", d.as_secs_f64())))
            .collect();
        println!(
            "| {arch} | {} | {} |",
            crate::appsnodebench::kind_name(*kind),
            cells.join(" | ")
        );
    }
}

/// Each kind under `host/domains` directly.
fn direct(args: &AppsArgs, arches: &[Arch]) -> Result<(), String> {
    let timeout = Duration::from_secs(args.timeout_s);
    let measured = VmmOverhead::measured();
    println!(
        "apps under host/domains, TCG, {} run(s) per kind; times in ms: median (min-max)",
        args.runs.max(1)
    );
    println!(
        "| arch | kind | guest RAM MiB | start to first answer | graceful stop | VMM RSS MiB | VMM PSS MiB | guest RAM held MiB | VMM overhead MiB (max) | admission charges MiB | EVE's estimate MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &arch in arches {
        let mut answers_by_kind = Vec::new();
        for kind in KindClass::ALL {
            let mut runs = Vec::new();
            for _ in 0..args.runs.max(1) {
                runs.push(one_run(kind, arch, timeout)?);
            }
            let guest_mib = match kind {
                KindClass::Unikernel => 32,
                KindClass::LinuxVm => 256,
                KindClass::Container => 128,
            };
            let overhead_max = runs
                .iter()
                .map(|r| r.pss_kib.saturating_sub(r.guest_kib))
                .max()
                .unwrap_or(0);
            let last = runs.last().expect("at least one run");
            let graceful = runs.iter().all(|r| r.graceful);
            println!(
                "| {arch} | {} | {guest_mib} | {} | {}{} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {EVE_ESTIMATE_MB} |",
                kind.name(),
                cell(summarize(runs.iter().map(|r| r.answer).collect())),
                cell(summarize(runs.iter().map(|r| r.stop).collect())),
                if graceful { "" } else { " (powered off)" },
                mib(last.rss_kib),
                mib(last.pss_kib),
                mib(last.guest_kib),
                mib(overhead_max),
                measured.of(arch, kind),
            );
            let mut answers: Vec<Duration> = runs.iter().map(|r| r.answer).collect();
            answers.sort();
            answers_by_kind.push((kind, answers[answers.len() / 2]));
        }
        let median = |k: KindClass| {
            answers_by_kind
                .iter()
                .find(|(kind, _)| *kind == k)
                .map(|(_, median)| *median)
        };
        if let (Some(uni), Some(vm), Some(ct)) = (
            median(KindClass::Unikernel),
            median(KindClass::LinuxVm),
            median(KindClass::Container),
        ) {
            println!(
                "{arch}: the unikernel app answers {:.0}x sooner than the Linux VM app (target: 50x) and {:.0}x sooner than the container",
                vm.as_secs_f64() / uni.as_secs_f64(),
                ct.as_secs_f64() / uni.as_secs_f64()
            );
        }
    }
    Ok(())
}
