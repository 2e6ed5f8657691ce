//! The supervisor against a fake VMM and a fake clock.

use std::{
    collections::{HashMap, HashSet},
    io::{Cursor, Read},
    path::Path,
    sync::Mutex,
};

use super::*;
use crate::{
    Accel, Arch,
    heartbeat::HeartbeatBoard,
    manifest::RestartMode,
    vmm::{Disk, LaunchError, VmmExit},
};

#[derive(Default)]
struct FakeState {
    exit: Option<VmmExit>,
    terminated: bool,
    killed: bool,
    /// Ignores `terminate`.
    stubborn: bool,
}

#[derive(Default)]
struct World {
    launches: Vec<String>,
    /// The command line of each launch, in order.
    cmdlines: Vec<String>,
    failing: HashSet<String>,
    stubborn: HashSet<String>,
    /// What the next VM of a service prints.
    consoles: HashMap<String, Vec<u8>>,
    /// What the VMM of a service's next VM says about it.
    diagnostics: HashMap<String, Vec<u8>>,
    vms: Vec<(String, Arc<Mutex<FakeState>>)>,
}

#[derive(Clone, Default)]
struct FakeVmm(Arc<Mutex<World>>);

impl FakeVmm {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    fn current(&self, service: &str) -> Arc<Mutex<FakeState>> {
        let world = self.world();
        let (_, state) = world
            .vms
            .iter()
            .rev()
            .find(|(name, _)| name == service)
            .expect("a VM of that service");
        state.clone()
    }

    /// Ends the current VM of `service`.
    fn exit(&self, service: &str, exit: VmmExit) {
        self.current(service).lock().unwrap().exit = Some(exit);
    }

    fn launches_of(&self, service: &str) -> usize {
        self.world()
            .launches
            .iter()
            .filter(|n| *n == service)
            .count()
    }
}

struct FakeVm {
    state: Arc<Mutex<FakeState>>,
    console: Option<Vec<u8>>,
    diagnostics: Option<Vec<u8>>,
    pid: u32,
}

impl Vmm for FakeVmm {
    type Vm = FakeVm;

    fn launch(&self, spec: &VmSpec) -> Result<FakeVm, LaunchError> {
        let mut world = self.world();
        world.launches.push(spec.name.clone());
        world.cmdlines.push(spec.cmdline.clone());
        if world.failing.contains(&spec.name) {
            return Err(LaunchError::VmmMissing {
                binary: "fake-vmm".into(),
            });
        }
        let state = Arc::new(Mutex::new(FakeState {
            stubborn: world.stubborn.contains(&spec.name),
            ..FakeState::default()
        }));
        world.vms.push((spec.name.clone(), state.clone()));
        let pid = 1000 + world.launches.len() as u32;
        Ok(FakeVm {
            state,
            console: Some(world.consoles.remove(&spec.name).unwrap_or_default()),
            diagnostics: world.diagnostics.remove(&spec.name),
            pid,
        })
    }
}

impl Vm for FakeVm {
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn take_console(&mut self) -> Option<Box<dyn Read + Send>> {
        self.console
            .take()
            .map(|bytes| Box::new(Cursor::new(bytes)) as Box<dyn Read + Send>)
    }

    fn take_diagnostics(&mut self) -> Option<Box<dyn Read + Send>> {
        self.diagnostics
            .take()
            .map(|bytes| Box::new(Cursor::new(bytes)) as Box<dyn Read + Send>)
    }

    fn try_wait(&mut self) -> std::io::Result<Option<VmmExit>> {
        Ok(self.state.lock().unwrap().exit)
    }

    fn terminate(&mut self) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap();
        state.terminated = true;
        if !state.stubborn && state.exit.is_none() {
            state.exit = Some(VmmExit::Failed {
                code: Some(0),
                signal: None,
            });
        }
        Ok(())
    }

    fn kill(&mut self) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap();
        state.killed = true;
        state.exit = Some(VmmExit::Failed {
            code: None,
            signal: Some(9),
        });
        Ok(())
    }
}

#[derive(Default)]
struct Notes(Mutex<Vec<String>>);

impl HostLog for Notes {
    fn console_line(&self, _: &str, _: &str) {}
    fn vmm_line(&self, _: &str, _: &str) {}
    fn note(&self, service: &str, message: &str) {
        self.0.lock().unwrap().push(format!("{service}: {message}"));
    }
    fn bus_record(&self, _: &str, _: &str) {}
}

struct Node {
    vmm: FakeVmm,
    heartbeats: Arc<HeartbeatBoard>,
    notes: Arc<Notes>,
    sup: Supervisor<FakeVmm>,
    t0: Instant,
    dir: tempfile::TempDir,
}

/// A service whose image exists in `dir`.
fn setup(dir: &Path, name: &str, policy: RestartPolicy, heartbeat: Option<u64>) -> ServiceSetup {
    let image = dir.join("image");
    std::fs::write(&image, b"image").unwrap();
    ServiceSetup {
        spec: VmSpec::new(name, Arch::X86_64, Accel::Tcg, image),
        policy,
        heartbeat_timeout: heartbeat.map(Duration::from_secs),
        console_log: dir.join(format!("{name}.console")),
    }
}

fn node(services: impl FnOnce(&Path) -> Vec<ServiceSetup>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let vmm = FakeVmm::default();
    let heartbeats = Arc::new(HeartbeatBoard::default());
    let notes = Arc::new(Notes::default());
    let t0 = Instant::now();
    let sup = Supervisor::new(
        vmm.clone(),
        services(dir.path()),
        heartbeats.clone(),
        notes.clone(),
        t0,
    );
    Node {
        vmm,
        heartbeats,
        notes,
        sup,
        t0,
        dir,
    }
}

fn at(n: &Node, ms: u64) -> Instant {
    n.t0 + Duration::from_millis(ms)
}

const PANIC_CONSOLE: &[u8] =
    b"booting\npanic in a: selftest asked to panic at src/main.rs:22:21\n@@ exit 101\n";

#[test]
fn a_crash_is_reported_and_restarted_with_backoff() {
    let mut n = node(|d| vec![setup(d, "a", RestartPolicy::default(), None)]);
    n.vmm
        .world()
        .consoles
        .insert("a".into(), PANIC_CONSOLE.to_vec());
    let started = n.sup.step(at(&n, 0));
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].state, State::Running { pid: Some(1001) });
    assert_eq!(started[0].to_string(), "a: running (pid 1001), restarts 0");
    assert!(n.sup.step(at(&n, 10)).is_empty(), "nothing changed");

    n.vmm.exit("a", VmmExit::PoweredOff { status: Some(101) });
    let crashed = n.sup.step(at(&n, 20));
    assert_eq!(crashed.len(), 1);
    let status = &crashed[0];
    assert_eq!(
        status.state,
        State::Restarting {
            after: Duration::from_millis(500)
        }
    );
    assert_eq!(
        status.last_end,
        Some(End::Exited {
            status: 101,
            panic: Some("a: selftest asked to panic at src/main.rs:22:21".into())
        })
    );
    assert_eq!(
        status.to_string(),
        "a: restarting in 0.5 s, restarts 0, last end: panicked (status 101): a: selftest asked to panic at src/main.rs:22:21"
    );

    assert!(n.sup.step(at(&n, 500)).is_empty(), "backoff not over yet");
    assert_eq!(n.vmm.launches_of("a"), 1);
    let restarted = n.sup.step(at(&n, 520));
    assert_eq!(restarted[0].state, State::Running { pid: Some(1002) });
    assert_eq!(restarted[0].restarts, 1);
    assert_eq!(n.vmm.launches_of("a"), 2);

    let console = std::fs::read_to_string(n.dir.path().join("a.console")).unwrap();
    assert!(
        console.contains("----- a: start 1 -----\nbooting\npanic in a:"),
        "{console}"
    );
    assert!(console.contains("----- a: start 2 -----"), "{console}");
}

#[test]
fn one_service_dying_leaves_the_others_alone() {
    let mut n = node(|d| {
        vec![
            setup(d, "a", RestartPolicy::default(), None),
            setup(d, "b", RestartPolicy::default(), None),
        ]
    });
    n.sup.step(at(&n, 0));
    n.vmm.exit(
        "a",
        VmmExit::Failed {
            code: None,
            signal: Some(11),
        },
    );
    let changed = n.sup.step(at(&n, 10));
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].service, "a");
    assert_eq!(
        changed[0].last_end.as_ref().unwrap().to_string(),
        "died: the VMM was killed by signal 11"
    );
    let statuses = n.sup.statuses();
    assert_eq!(statuses[1].state, State::Running { pid: Some(1002) });
    assert_eq!(n.vmm.launches_of("b"), 1);
}

#[test]
fn a_silent_service_is_stopped_as_hung_and_restarted() {
    let mut n = node(|d| {
        vec![
            setup(d, "beat", RestartPolicy::default(), Some(10)),
            setup(d, "quiet", RestartPolicy::default(), None),
        ]
    });
    n.sup.step(at(&n, 0));
    n.heartbeats.record_heartbeat("beat", at(&n, 5_000));
    assert!(n.sup.step(at(&n, 14_000)).is_empty(), "heard 9 s ago");
    let hung = n.sup.step(at(&n, 15_500));
    assert_eq!(hung.len(), 1);
    assert_eq!(hung[0].state, State::Stopping);
    assert!(n.vmm.current("beat").lock().unwrap().terminated);

    let ended = n.sup.step(at(&n, 15_600));
    assert_eq!(
        ended[0].last_end,
        Some(End::Hung {
            silent_for: Duration::from_millis(10_500)
        })
    );
    assert!(matches!(ended[0].state, State::Restarting { .. }));
    assert!(
        n.notes.0.lock().unwrap()[0].starts_with("beat: no heartbeat for 10.5 s"),
        "{:?}",
        n.notes.0.lock().unwrap()
    );
    // The service without a timeout is never hung, however long it runs.
    assert!(
        n.sup
            .step(at(&n, 3_600_000))
            .iter()
            .all(|s| s.service == "beat")
    );
    assert_eq!(n.vmm.launches_of("quiet"), 1);
}

#[test]
fn a_restarted_service_gets_a_fresh_heartbeat_grace() {
    let mut n = node(|d| vec![setup(d, "a", RestartPolicy::default(), Some(10))]);
    n.sup.step(at(&n, 0));
    n.heartbeats.record_heartbeat("a", at(&n, 1_000));
    n.vmm.exit("a", VmmExit::PoweredOff { status: Some(1) });
    n.sup.step(at(&n, 2_000));
    n.sup.step(at(&n, 2_500));
    assert_eq!(n.vmm.launches_of("a"), 2);
    // The old heartbeat is from the previous run: the grace counts from
    // the restart, not from it.
    assert!(n.sup.step(at(&n, 12_000)).is_empty());
    assert_eq!(n.sup.step(at(&n, 12_600))[0].state, State::Stopping);
}

#[test]
fn a_stubborn_hung_vm_is_killed_after_the_grace() {
    let mut n = node(|d| vec![setup(d, "a", RestartPolicy::default(), Some(1))]);
    n.vmm.world().stubborn.insert("a".into());
    n.sup.step(at(&n, 0));
    n.sup.step(at(&n, 2_000));
    assert!(n.sup.step(at(&n, 3_000)).is_empty());
    assert!(!n.vmm.current("a").lock().unwrap().killed);
    n.sup
        .step(at(&n, 2_000 + HUNG_KILL_GRACE.as_millis() as u64));
    assert!(n.vmm.current("a").lock().unwrap().killed);
    let ended = n.sup.step(at(&n, 7_100));
    assert!(matches!(ended[0].last_end, Some(End::Hung { .. })));
}

#[test]
fn a_missing_vmm_is_the_hosts_failure_and_not_retried() {
    let mut n = node(|d| vec![setup(d, "a", RestartPolicy::default(), None)]);
    n.vmm.world().failing.insert("a".into());
    let failed = n.sup.step(at(&n, 0));
    assert_eq!(
        failed[0].to_string(),
        "a: stopped, restarts 0, last end: the host could not start it: fake-vmm not found: install QEMU (cargo xtask deps)"
    );
    assert!(!failed[0].crash_loop);
    n.vmm.world().failing.clear();
    assert!(n.sup.step(at(&n, 600_000)).is_empty(), "never retried");
    assert_eq!(n.vmm.launches_of("a"), 1);
    let notes = n.notes.0.lock().unwrap();
    assert!(
        notes[0].ends_with("not restarted until the host is fixed and the node restarted"),
        "{notes:?}"
    );
}

#[test]
fn a_missing_bus_socket_is_the_hosts_failure_and_no_vm_is_started() {
    let mut n = node(|d| {
        let mut a = setup(d, "a", RestartPolicy::default(), None);
        a.spec.bus_socket = Some(d.join("run/a.bus"));
        vec![a, setup(d, "b", RestartPolicy::default(), None)]
    });
    let changed = n.sup.step(at(&n, 0));
    let socket = n.dir.path().join("run/a.bus");
    assert_eq!(
        changed[0].last_end,
        Some(End::HostFailed {
            reason: format!(
                "bus socket {} is gone (removed under the running host?)",
                socket.display()
            )
        })
    );
    assert_eq!(changed[0].state, State::Stopped);
    assert_eq!(n.vmm.launches_of("a"), 0, "QEMU is not asked to try");
    assert_eq!(changed[1].state, State::Running { pid: Some(1001) });
}

/// What QEMU on x86_64 says and does when its bus socket is gone.
const SOCKET_ERROR: &str = "qemu-system-x86_64: -chardev socket,id=bus,path=/s/run/a.bus: Failed to connect to '/s/run/a.bus': No such file or directory";

#[test]
fn a_vm_that_fails_to_start_is_reported_in_the_vmms_words_and_retried() {
    let mut n = node(|d| vec![setup(d, "a", RestartPolicy::default(), None)]);
    n.vmm
        .world()
        .diagnostics
        .insert("a".into(), format!("{SOCKET_ERROR}\n").into_bytes());
    n.sup.step(at(&n, 0));
    // Exit code 1: what QEMU also exits with for a guest's status 0.
    n.vmm
        .exit("a", VmmExit::PoweredOffOrFailed { status: 0, code: 1 });
    let failed = n.sup.step(at(&n, 10));
    assert_eq!(
        failed[0].last_end,
        Some(End::StartFailed {
            message: SOCKET_ERROR.into()
        })
    );
    assert!(
        !failed[0].to_string().contains("exited cleanly"),
        "{}",
        failed[0]
    );
    assert!(matches!(failed[0].state, State::Restarting { .. }));
    let console = std::fs::read_to_string(n.dir.path().join("a.console")).unwrap();
    assert!(
        console.contains(&format!("[vmm] {SOCKET_ERROR}")),
        "{console}"
    );
}

#[test]
fn a_start_failure_over_something_the_host_lost_is_the_hosts() {
    let mut n = node(|d| {
        let mut a = setup(d, "a", RestartPolicy::default(), None);
        a.spec.bus_socket = Some(d.join("a.bus"));
        vec![a]
    });
    let socket = n.dir.path().join("a.bus");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    n.vmm
        .world()
        .diagnostics
        .insert("a".into(), format!("{SOCKET_ERROR}\n").into_bytes());
    n.sup.step(at(&n, 0));
    // Removed between the check and QEMU's connect.
    std::fs::remove_file(&socket).unwrap();
    n.vmm
        .exit("a", VmmExit::PoweredOffOrFailed { status: 0, code: 1 });
    let failed = n.sup.step(at(&n, 10));
    assert_eq!(failed[0].state, State::Stopped);
    assert_eq!(
        failed[0].last_end.as_ref().unwrap().to_string(),
        format!(
            "the host could not start it: bus socket {} is gone (removed under the running host?) (the VMM said: {SOCKET_ERROR})",
            socket.display()
        )
    );
}

#[test]
fn restart_never_leaves_a_clean_exit_stopped() {
    let policy = RestartPolicy {
        mode: RestartMode::Never,
        ..RestartPolicy::default()
    };
    let mut n = node(|d| vec![setup(d, "once", policy, None)]);
    n.vmm
        .world()
        .consoles
        .insert("once".into(), b"@@ exit 0\n".to_vec());
    n.sup.step(at(&n, 0));
    n.vmm.exit("once", VmmExit::PoweredOff { status: Some(0) });
    let done = n.sup.step(at(&n, 10));
    assert_eq!(
        done[0].to_string(),
        "once: stopped, restarts 0, last end: exited cleanly (status 0)"
    );
    assert!(n.sup.step(at(&n, 100_000)).is_empty());
    assert!(n.sup.is_stopped());
}

#[test]
fn a_crash_loop_is_reported_not_hidden() {
    let mut n = node(|d| vec![setup(d, "a", RestartPolicy::default(), None)]);
    let mut now = 0;
    let mut last = Vec::new();
    for _ in 0..5 {
        n.sup.step(at(&n, now));
        n.vmm.exit("a", VmmExit::PoweredOff { status: Some(1) });
        now += 10;
        last = n.sup.step(at(&n, now));
        match last[0].state {
            State::Restarting { after } => now += after.as_millis() as u64,
            ref other => panic!("unexpected {other:?}"),
        }
    }
    assert!(last[0].crash_loop);
    assert_eq!(
        last[0].state,
        State::Restarting {
            after: Duration::from_secs(30)
        }
    );
    assert!(last[0].to_string().contains("CRASH LOOP"));
    let notes = n.notes.0.lock().unwrap();
    assert_eq!(notes.len(), 1, "reported once on entering: {notes:?}");
    assert!(notes[0].starts_with("a: crash loop: 5 ends within 60 s"));
}

#[test]
fn shutdown_stops_everything_and_cancels_restarts() {
    let never = RestartPolicy {
        mode: RestartMode::Never,
        ..RestartPolicy::default()
    };
    let mut n = node(|d| {
        let mut with_state = setup(d, "a", RestartPolicy::default(), None);
        let volume = d.join("a.img");
        std::fs::write(&volume, b"").unwrap();
        with_state.spec.disks.push(Disk {
            path: volume,
            role: DiskRole::State,
        });
        vec![
            with_state,
            setup(d, "b", RestartPolicy::default(), None),
            setup(d, "c", never, None),
            setup(d, "d", RestartPolicy::default(), None),
        ]
    });
    n.vmm.world().stubborn.insert("b".into());
    n.sup.step(at(&n, 0));
    n.vmm.exit("c", VmmExit::PoweredOff { status: Some(0) });
    n.vmm.exit("d", VmmExit::PoweredOff { status: Some(1) });
    n.sup.step(at(&n, 10));

    let stopping = n.sup.begin_shutdown(at(&n, 20), Duration::from_secs(10));
    let states: Vec<_> = stopping
        .iter()
        .map(|s| (s.service.as_str(), s.state.clone()))
        .collect();
    assert_eq!(
        states,
        [
            ("a", State::Stopping),
            ("b", State::Stopping),
            ("d", State::Stopped)
        ],
        "c had already stopped: not reported again"
    );
    let stopped = n.sup.step(at(&n, 30));
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].service, "a");
    assert_eq!(stopped[0].last_end, Some(End::Stopped));
    assert!(!n.sup.is_stopped(), "b ignores the polite stop");
    n.sup.step(at(&n, 10_020));
    assert!(n.vmm.current("b").lock().unwrap().killed);
    n.sup.step(at(&n, 10_030));
    assert!(n.sup.is_stopped());
    assert_eq!(n.vmm.launches_of("d"), 1, "no restart during shutdown");
}

#[test]
fn a_restarted_service_is_handed_the_node_clock_of_its_restart() {
    let mut n = node(|d| vec![setup(d, "a", RestartPolicy::default(), None)]);
    n.sup.step(at(&n, 0));
    n.vmm.exit("a", VmmExit::PoweredOff { status: Some(101) });
    n.sup.step(at(&n, 7_000));
    n.sup.step(at(&n, 60_000));
    assert_eq!(n.vmm.launches_of("a"), 2);
    let cmdlines = n.vmm.world().cmdlines.clone();
    assert_eq!(cmdlines, ["node.ms=0", "node.ms=60000"]);
}
