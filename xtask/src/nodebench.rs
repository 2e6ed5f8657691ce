//! `cargo xtask bench node` and `cargo xtask bench onboard`: a whole node
//! against our controller on loopback, fresh state every run.
//!
//! Times are taken on the host as lines arrive from `eve-host`: its status
//! lines (a service's `running` line comes as its QEMU is started), the
//! boot-timer stamps services print on their consoles, `status.json`, and
//! the controller's admin API (polled).

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use harness::{Accel, Arch};

use crate::bench::{cell, summarize};
use crate::node::{
    BuiltNode, ControllerDir, HostEvent, NodeDirs, Session, bus_connected_note, status_line_service,
};
use crate::procfs::{Memory, children, memory};
use crate::status::{NodeStatus, parse_host_line};

/// EVE's control plane, for comparison: RAM budget and root filesystem.
const EVE_RAM_BUDGET: &str = "650-800 MB";
const EVE_ROOTFS: &str = "290 MB";
/// How often the controller's device list is asked for.
const ADMIN_POLL: Duration = Duration::from_millis(250);
/// How long a run waits for zedagent to say it is onboarded once the
/// controller has registered it.
const ONBOARD_REPORT_WAIT: Duration = Duration::from_secs(10);
/// How long `bench onboard` waits for the heap metric after the last stage.
const METRIC_WAIT: Duration = Duration::from_secs(3);

/// The service that onboards: the one whose image is zedagent.
const AGENT_IMAGE: &str = "zedagent";

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.2} MiB", bytes as f64 / f64::from(1u32 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn file_size(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// What one `bench node` run saw.
struct NodeRun {
    running: Option<Duration>,
    on_bus: Option<Duration>,
    registered: Option<Duration>,
    onboarded: Option<Duration>,
    host: Option<Memory>,
    /// The host's children: service VMs by service name, helpers (swtpm)
    /// by program.
    children: Vec<(String, Memory)>,
}

/// Whether the controller lists a device yet.
fn device_registered(session: &Session) -> Result<bool, String> {
    let devices = session.admin.get("/api/v1/devices")?;
    Ok(devices.as_array().is_some_and(|d| !d.is_empty()))
}

fn node_run(built: &BuiltNode, dirs: &NodeDirs, timeout: Duration) -> Result<NodeRun, String> {
    let mut session = Session::start(built, dirs, ControllerDir::Fresh, None)?;
    let t0 = session.host.started;
    let names: Vec<&str> = built.service_names().collect();
    let mut run = NodeRun {
        running: None,
        on_bus: None,
        registered: None,
        onboarded: None,
        host: None,
        children: Vec::new(),
    };
    let mut host_lines = BTreeMap::new();
    let mut connected: Vec<String> = Vec::new();
    let mut next_admin = Instant::now();
    let deadline = t0 + timeout;
    loop {
        while let Ok(event) = session.host.events.try_recv() {
            match event {
                HostEvent::Status { line, at } => {
                    if let Some(service) = status_line_service(&line) {
                        host_lines.insert(service.to_owned(), line.clone());
                    }
                    if run.running.is_none()
                        && NodeStatus::from_host_lines(&host_lines)
                            .all_running(names.iter().copied())
                    {
                        run.running = Some(at - t0);
                    }
                }
                HostEvent::Note(line) => {
                    if let Some(service) = bus_connected_note(&line) {
                        connected.push(service.to_owned());
                        if run.on_bus.is_none()
                            && names.iter().all(|n| connected.iter().any(|c| c == n))
                        {
                            run.on_bus = Some(Instant::now() - t0);
                        }
                    }
                }
                HostEvent::Stamp { .. } | HostEvent::Metric { .. } => {}
            }
        }
        let now = Instant::now();
        if let Some(status) = session.status_file() {
            if run.running.is_none() && status.all_running(names.iter().copied()) {
                run.running = Some(now - t0);
            }
            if run.on_bus.is_none() && status.all_on_bus(names.iter().copied()) == Some(true) {
                run.on_bus = Some(now - t0);
            }
            if run.onboarded.is_none() && status.onboarded() {
                run.onboarded = Some(now - t0);
            }
        }
        if run.registered.is_none() && now >= next_admin {
            if device_registered(&session)? {
                run.registered = Some(Instant::now() - t0);
            }
            next_admin = now + ADMIN_POLL;
        }
        if let Some(status) = session.host.exited() {
            return Err(format!(
                "eve-host ended during the benchmark ({status}); its log: {}",
                dirs.host_log().display()
            ));
        }
        let settled = run.running.is_some()
            && match (run.registered, run.onboarded) {
                (Some(_), Some(_)) => true,
                (Some(registered), None) => now - t0 > registered + ONBOARD_REPORT_WAIT,
                _ => false,
            };
        if settled || now >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let pid = session.host.pid();
    run.host = memory(pid);
    run.children = children(pid)
        .into_iter()
        .filter_map(|(name, pid)| Some((name, memory(pid)?)))
        .collect();
    session.stop();
    Ok(run)
}

/// `bench node`: host start to services running and to onboarded, RSS of
/// the host and each service VM, image sizes; beside EVE's budget.
pub fn node(
    runs: usize,
    arch: Option<Arch>,
    manifest: &Path,
    timeout: Duration,
) -> Result<(), String> {
    crate::deps::ensure()?;
    let built = crate::node::build(manifest, arch)?;
    let dirs = NodeDirs::new("bench-node", built.arch);
    let mut results = Vec::new();
    for i in 0..runs {
        eprintln!("xtask: bench node run {}/{runs}", i + 1);
        results.push(node_run(&built, &dirs, timeout)?);
    }
    let times = |pick: fn(&NodeRun) -> Option<Duration>| {
        let samples: Vec<Duration> = results.iter().filter_map(pick).collect();
        let missing = results.len() - samples.len();
        let text = cell(summarize(samples));
        if missing > 0 {
            format!("{text} ({missing} of {} runs never)", results.len())
        } else {
            text
        }
    };
    println!(
        "node {} on {}, {runs} runs, fresh controller and state each run; median (min-max) in ms from eve-host exec",
        built.manifest.node.name, built.arch
    );
    println!();
    println!(
        "| every service running | every service on the bus | device registered (controller) | onboarded (zedagent's report) |"
    );
    println!("|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} |",
        times(|r| r.running),
        times(|r| r.on_bus),
        times(|r| r.registered),
        times(|r| r.onboarded)
    );
    println!();
    let last = results.last().ok_or("no runs")?;
    println!(
        "memory when the last run settled (onboarded, or at its end), and image sizes; EVE's control plane beside"
    );
    println!();
    println!("| process | RSS MiB | peak RSS MiB | guest RAM MiB | image |");
    println!("|---|---|---|---|---|");
    let (mut rss, mut peak, mut images) = (0, 0, 0);
    if let Some(host) = last.host {
        rss += host.rss_kib;
        peak += host.hwm_kib;
        println!(
            "| eve-host | {} | {} | - | - |",
            mib(host.rss_kib),
            mib(host.hwm_kib)
        );
    }
    for service in &built.manifest.services {
        let file = &built
            .image_files
            .iter()
            .find(|(name, _)| *name == service.name)
            .ok_or("image of a service missing")?
            .1;
        let bytes = file_size(file)?;
        images += bytes;
        let vm = last.children.iter().find(|(name, _)| *name == service.name);
        let (now, high) = vm.map_or(("-".to_owned(), "-".to_owned()), |(_, m)| {
            rss += m.rss_kib;
            peak += m.hwm_kib;
            (mib(m.rss_kib), mib(m.hwm_kib))
        });
        println!(
            "| {} (QEMU) | {now} | {high} | {} | {} |",
            service.name,
            service.ram_mib,
            size(bytes)
        );
    }
    let services: Vec<&str> = built.service_names().collect();
    for (helper, m) in last
        .children
        .iter()
        .filter(|(name, _)| !services.contains(&name.as_str()))
    {
        rss += m.rss_kib;
        peak += m.hwm_kib;
        println!(
            "| {helper} | {} | {} | - | - |",
            mib(m.rss_kib),
            mib(m.hwm_kib)
        );
    }
    println!(
        "| **total** | **{}** | **{}** | | **{}** |",
        mib(rss),
        mib(peak),
        size(images)
    );
    println!(
        "| EVE control plane (budget) | {EVE_RAM_BUDGET} | | | {EVE_ROOTFS} root filesystem |"
    );
    Ok(())
}

/// What one `bench onboard` run saw, from zedagent's QEMU start.
struct OnboardRun {
    stages: BTreeMap<String, Duration>,
    heap_high_water: Option<u64>,
    vm: Option<Memory>,
    restarted: bool,
}

/// zedagent's stages, in order, as its boot-timer stamps name them.
const STAGES: [(&str, &str); 3] = [
    ("registered", "QEMU exec to registered"),
    ("config", "to first config applied"),
    ("info", "to first info accepted"),
];

fn onboard_run(
    built: &BuiltNode,
    dirs: &NodeDirs,
    agent: &str,
    timeout: Duration,
) -> Result<OnboardRun, String> {
    let mut session = Session::start(built, dirs, ControllerDir::Fresh, Some(Accel::Tcg))?;
    let deadline = session.host.started + timeout;
    let mut exec: Option<Instant> = None;
    let mut run = OnboardRun {
        stages: BTreeMap::new(),
        heap_high_water: None,
        vm: None,
        restarted: false,
    };
    let mut done_at: Option<Instant> = None;
    loop {
        match session.host.events.recv_timeout(Duration::from_millis(50)) {
            Ok(HostEvent::Status { line, at }) => {
                if let Some(status) = parse_host_line(&line).filter(|s| s.name == agent) {
                    if status.is_running() && exec.is_none() {
                        exec = Some(at);
                    }
                    run.restarted |= status.restarts > 0;
                }
            }
            Ok(HostEvent::Stamp { service, stage, at }) if service == agent => {
                if let Some(exec) = exec {
                    run.stages.entry(stage).or_insert(at - exec);
                }
            }
            Ok(HostEvent::Metric {
                service,
                name,
                value,
                ..
            }) if service == agent && name == "heap_high_water" => {
                run.heap_high_water = Some(run.heap_high_water.unwrap_or(0).max(value));
            }
            _ => {}
        }
        if let Some(status) = session.host.exited() {
            return Err(format!(
                "eve-host ended during the benchmark ({status}); its log: {}",
                dirs.host_log().display()
            ));
        }
        let now = Instant::now();
        if done_at.is_none() && STAGES.iter().all(|(s, _)| run.stages.contains_key(*s)) {
            done_at = Some(now);
        }
        let waited =
            done_at.is_some_and(|d| run.heap_high_water.is_some() || now - d > METRIC_WAIT);
        if waited || now >= deadline {
            break;
        }
    }
    run.vm = children(session.host.pid())
        .into_iter()
        .find(|(name, _)| name == agent)
        .and_then(|(_, pid)| memory(pid));
    session.stop();
    Ok(run)
}

/// `bench onboard`: zedagent's QEMU exec to registered, to its first
/// config applied and its first info accepted (median of `runs`, TCG),
/// its heap high-water mark, its VM's peak RSS and its image size.
pub fn onboard(
    runs: usize,
    arch: Option<Arch>,
    manifest: &Path,
    timeout: Duration,
) -> Result<(), String> {
    crate::deps::ensure()?;
    let built = crate::node::build(manifest, arch)?;
    let (agent, image) = built
        .manifest
        .services
        .iter()
        .find(|s| s.image == AGENT_IMAGE)
        .and_then(|s| {
            let file = built.image_files.iter().find(|(n, _)| *n == s.name)?;
            Some((s.name.clone(), file.1.clone()))
        })
        .ok_or_else(|| format!("{} has no {AGENT_IMAGE} service", manifest.display()))?;
    let dirs = NodeDirs::new("bench-onboard", built.arch);
    let mut results = Vec::new();
    for i in 0..runs {
        eprintln!("xtask: bench onboard run {}/{runs}", i + 1);
        let run = onboard_run(&built, &dirs, &agent, timeout)?;
        if run.restarted {
            eprintln!(
                "xtask: {agent} restarted during run {}: its times include the restart",
                i + 1
            );
        }
        results.push(run);
    }
    println!(
        "{agent} onboarding on {} under TCG, {runs} runs, fresh controller and state each run; \
         median (min-max) in ms from its QEMU exec (as eve-host reports it) to the stamp's arrival",
        built.arch
    );
    println!();
    let header: Vec<&str> = STAGES.iter().map(|(_, label)| *label).collect();
    println!(
        "| {} | heap high-water | VM peak RSS | image |",
        header.join(" | ")
    );
    println!("|---|---|---|---|---|---|");
    let stages: Vec<String> = STAGES
        .iter()
        .map(|(stage, _)| {
            let samples: Vec<Duration> = results
                .iter()
                .filter_map(|r| r.stages.get(*stage).copied())
                .collect();
            let missing = results.len() - samples.len();
            let text = cell(summarize(samples));
            if missing > 0 {
                format!("{text} ({missing} of {} runs never)", results.len())
            } else {
                text
            }
        })
        .collect();
    let heap = results
        .iter()
        .filter_map(|r| r.heap_high_water)
        .max()
        .map_or("-".to_owned(), size);
    let vm_peak = results
        .iter()
        .filter_map(|r| r.vm.map(|m| m.hwm_kib))
        .max()
        .map_or("-".to_owned(), |kib| format!("{} MiB", mib(kib)));
    println!(
        "| {} | {heap} | {vm_peak} | {} |",
        stages.join(" | "),
        size(file_size(&image)?)
    );
    Ok(())
}
