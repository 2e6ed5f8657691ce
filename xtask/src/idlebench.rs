//! `cargo xtask bench idle`: what an idle node costs the host, and how fast
//! a sleeping service wakes.
//!
//! - The node: the default node (`cargo xtask qemu`'s) against our
//!   controller on loopback; once zedagent reports it onboarded and a
//!   settling pause has passed, the CPU time of every process of the node
//!   (each service's QEMU, swtpm, eve-host) over the window, as a share of
//!   one core. Our controller is not part of the node and is not counted.
//! - Wake-up: the `idletest` service alone on each machine: its QEMU's CPU
//!   share with nothing but a 1 s timer, how late 100 ms timers fire, and
//!   the round trip of one byte through a TCP echo after the guest has had
//!   time to fall asleep.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use harness::cpu::CpuSample;
use harness::{Accel, Arch, Device, Guest, Machine, Profile, UserNet, build_service};

use crate::bench::{cell, summarize};
use crate::node::{ControllerDir, NodeDirs, Session};
use crate::procfs::children;

/// Options of `cargo xtask bench idle`.
#[derive(Args)]
pub struct IdleArgs {
    /// The node's arch (the manifest's when omitted).
    #[arg(long)]
    arch: Option<Arch>,
    #[arg(long, default_value_os_t = crate::node::default_manifest())]
    manifest: std::path::PathBuf,
    /// Seconds of idle node measured.
    #[arg(long, default_value_t = 30)]
    window_s: u64,
    /// Seconds the node may take to onboard.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Measure only the idle node or only the wake-up of a lone service.
    #[arg(long)]
    only: Option<Part>,
}

/// The two halves of the benchmark.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Node,
    Wake,
}

/// Pause after onboarding before measuring, so the first info and metrics
/// reports and the log backlog are not counted as idle.
const SETTLE: Duration = Duration::from_secs(10);
/// Timer samples per machine, and how long each sleeps.
const SLEEPS: u32 = 20;
const SLEEP_MS: u64 = 100;
/// Echo round trips per machine, and the pause before each, long enough
/// for the guest to go back to sleep.
const ROUND_TRIPS: usize = 20;
const ECHO_PAUSE: Duration = Duration::from_millis(300);
/// How long the lone idle service is measured for.
const SERVICE_WINDOW: Duration = Duration::from_secs(10);

pub fn run(args: IdleArgs) -> Result<(), String> {
    crate::deps::ensure()?;
    if args.only != Some(Part::Wake) {
        node(&args)?;
        println!();
    }
    if args.only != Some(Part::Node) {
        wake_up()?;
    }
    Ok(())
}

fn percent(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.2}", s * 100.0))
}

fn node(args: &IdleArgs) -> Result<(), String> {
    let built = crate::node::build(&args.manifest, args.arch)?;
    let dirs = NodeDirs::new("bench-idle", built.arch);
    let session = Session::start(&built, &dirs, ControllerDir::Fresh, None)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    while !session.status_file().is_some_and(|s| s.onboarded()) {
        if Instant::now() >= deadline {
            session.stop();
            return Err(format!(
                "the node did not onboard in {} s; its log: {}",
                args.timeout_s,
                dirs.host_log().display()
            ));
        }
        thread::sleep(Duration::from_millis(200));
    }
    thread::sleep(SETTLE);
    let host = session.host.pid();
    let mut processes = vec![("eve-host".to_owned(), host)];
    processes.extend(children(host));
    let before: Vec<Option<CpuSample>> = processes
        .iter()
        .map(|(_, pid)| CpuSample::take(*pid))
        .collect();
    thread::sleep(Duration::from_secs(args.window_s));
    let shares: Vec<Option<f64>> = processes
        .iter()
        .zip(&before)
        .map(|((_, pid), before)| CpuSample::take(*pid)?.share_since(before.as_ref()?))
        .collect();
    session.stop();
    let services: Vec<&str> = built.service_names().collect();
    println!(
        "idle node {} on {}: CPU over {} s, from {} s after zedagent reported onboarded, in % of one core",
        built.manifest.node.name,
        built.arch,
        args.window_s,
        SETTLE.as_secs()
    );
    println!();
    println!("| process | CPU % |");
    println!("|---|---|");
    let mut total = 0.0;
    for ((name, _), share) in processes.iter().zip(&shares) {
        total += share.unwrap_or(0.0);
        let label = if services.contains(&name.as_str()) {
            format!("{name} (QEMU)")
        } else {
            name.clone()
        };
        println!("| {label} | {} |", percent(*share));
    }
    println!("| **whole node** | **{:.2}** |", total * 100.0);
    Ok(())
}

fn wake_up() -> Result<(), String> {
    println!(
        "idletest alone on each machine: its QEMU's CPU with only a 1 s timer over {} s (% of one core); \
         lateness of {SLEEPS} timers of {SLEEP_MS} ms (guest clock); {ROUND_TRIPS} one-byte TCP echo round trips \
         through user-mode networking, each after {} ms of quiet (host clock); median (min-max) in ms",
        SERVICE_WINDOW.as_secs(),
        ECHO_PAUSE.as_millis()
    );
    println!();
    println!("| machine | accel | idle VM CPU % | timer lateness | echo round trip |");
    println!("|---|---|---|---|---|");
    for machine in Machine::ALL {
        let image = build_service("idletest", machine.arch(), Profile::Release)
            .map_err(|e| e.to_string())?;
        let accel = Accel::for_arch(machine.arch());
        let idle = idle_share(machine, &image)?;
        let late = timer_lateness(machine, &image)?;
        let echo = echo_round_trips(machine, &image)?;
        println!(
            "| {machine} | {accel} | {} | {} | {} |",
            percent(idle),
            cell(summarize(late)),
            cell(summarize(echo))
        );
    }
    Ok(())
}

fn idletest(machine: Machine, image: &Path, cmdline: String) -> Guest {
    Guest::new(machine, image.to_path_buf())
        .cmdline(cmdline)
        .timeout(Duration::from_secs(120))
}

/// The share of a core the lone service's QEMU uses once it idles.
fn idle_share(machine: Machine, image: &Path) -> Result<Option<f64>, String> {
    let run_s = SERVICE_WINDOW.as_secs() + 5;
    let guest = idletest(machine, image, format!("tick-ms=1000 run-s={run_s}"));
    let mut running = guest.spawn().map_err(|e| e.to_string())?;
    if running
        .wait_for_line("idletest: idling", Duration::from_secs(60))
        .is_none()
    {
        return Err(format!("idletest never idled:\n{}", running.kill()));
    }
    let before = CpuSample::take(running.pid());
    thread::sleep(SERVICE_WINDOW);
    let after = CpuSample::take(running.pid());
    let outcome = running.finish();
    if !outcome.succeeded() {
        return Err(format!("idletest failed during the benchmark:\n{outcome}"));
    }
    Ok(after.zip(before).and_then(|(a, b)| a.share_since(&b)))
}

fn timer_lateness(machine: Machine, image: &Path) -> Result<Vec<Duration>, String> {
    let run_s = (u64::from(SLEEPS) * SLEEP_MS).div_ceil(1000) + 2;
    let guest = idletest(
        machine,
        image,
        format!("sleep-ms={SLEEP_MS} sleeps={SLEEPS} run-s={run_s}"),
    );
    let outcome = guest.run().map_err(|e| e.to_string())?;
    if !outcome.succeeded() {
        return Err(format!("idletest failed during the benchmark:\n{outcome}"));
    }
    Ok(outcome
        .metrics
        .iter()
        .filter(|(name, _)| name == "timer_late_us")
        .map(|(_, us)| Duration::from_micros(*us))
        .collect())
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("a free port: {e}"))
}

fn echo_round_trips(machine: Machine, image: &Path) -> Result<Vec<Duration>, String> {
    let port = free_port()?;
    let run_s = 30 + (ECHO_PAUSE.as_millis() as u64 * ROUND_TRIPS as u64).div_ceil(1000);
    // virtio-rng: a cortex-a72 has no RNDR, and the stack needs entropy.
    let guest = idletest(machine, image, format!("echo-on=7 run-s={run_s}"))
        .device(Device::VirtioRng)
        .device(Device::UserNet(UserNet {
            host_to_guest: vec![(port, 7)],
            ..UserNet::default()
        }));
    let mut running = guest.spawn().map_err(|e| e.to_string())?;
    if running
        .wait_for_line("idletest: idling", Duration::from_secs(60))
        .is_none()
    {
        return Err(format!("idletest never idled:\n{}", running.kill()));
    }
    let trips = (|| -> Result<Vec<Duration>, String> {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        conn.set_nodelay(true).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut trips = Vec::new();
        for i in 0..ROUND_TRIPS {
            thread::sleep(ECHO_PAUSE);
            let byte = [i as u8];
            let sent = Instant::now();
            conn.write_all(&byte).map_err(|e| format!("send: {e}"))?;
            let mut back = [0u8; 1];
            conn.read_exact(&mut back)
                .map_err(|e| format!("echo {i}: {e}"))?;
            trips.push(sent.elapsed());
            if back != byte {
                return Err(format!("echo {i} came back as {back:?}"));
            }
        }
        Ok(trips)
    })();
    let outcome = running.kill();
    trips.map_err(|e| format!("{e}:\n{outcome}"))
}
