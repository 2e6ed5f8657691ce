//! `eve-host` as a program: checks manifests, and runs a real node of
//! selftest VMs under QEMU (TCG), one of which panics on purpose, on the
//! arch given with `--arch` rather than the manifest's.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use eve_host::orphans::running;
use harness::{Arch, Profile, build_service};
use rustix::process::{Pid, Signal, kill_process};

const EVE_HOST: &str = env!("CARGO_BIN_EXE_eve-host");

#[test]
fn check_prints_the_default_node() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nodes/default.toml");
    let out = Command::new(EVE_HOST)
        .args(["check", "--manifest"])
        .arg(&manifest)
        .output()
        .expect("running eve-host check");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("node default (x86_64)"), "{text}");
    assert!(text.contains("zedagent: image zedagent"), "{text}");
    assert!(text.contains("diag: image diag"), "{text}");
}

#[test]
fn check_refuses_a_bad_manifest_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.toml");
    std::fs::write(
        &manifest,
        "[node]\nname = \"n\"\narch = \"x86_64\"\n\n[[service]]\nname = \"a\"\nimage = \"selftest\"\nram_mib = 0\n",
    )
    .unwrap();
    let out = Command::new(EVE_HOST)
        .args(["check", "--manifest"])
        .arg(&manifest)
        .output()
        .expect("running eve-host check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 8: service `a`: ram_mib 0 must be at least 16"),
        "{err}"
    );
}

#[test]
fn check_refuses_two_publishers_of_one_topic_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("two.toml");
    std::fs::write(
        &manifest,
        r#"[node]
name = "n"
arch = "x86_64"

[[service]]
name = "zedagent"
image = "zedagent"
ram_mib = 64
bus.publish = ["onboard-status"]

[[service]]
name = "diag"
image = "diag"
ram_mib = 32
bus.publish = ["diag-report", "onboard-status"]
"#,
    )
    .unwrap();
    let out = Command::new(EVE_HOST)
        .args(["check", "--manifest"])
        .arg(&manifest)
        .output()
        .expect("running eve-host check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "line 15: service `diag`: publishes topic `onboard-status` already published by service `zedagent` (line 9)"
        ),
        "{err}"
    );
}

/// Waits for a stdout line satisfying `want`, failing with everything
/// seen so far.
fn wait_for(
    lines: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    until: Instant,
    what: &str,
    want: impl Fn(&str) -> bool,
) {
    if seen.iter().any(|l| want(l)) {
        return;
    }
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = want(&line);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(_) => panic!("no status line for {what}; got:\n{}", seen.join("\n")),
        }
    }
}

/// Starts `eve-host run` (TCG, x86_64) and reads its status lines and its
/// log as they come.
fn start_host(
    manifest: &Path,
    images: &Path,
    state: &Path,
) -> (
    std::process::Child,
    mpsc::Receiver<String>,
    thread::JoinHandle<String>,
) {
    let mut host = Command::new(EVE_HOST)
        .args(["run", "--accel", "tcg", "--arch", "x86_64", "--manifest"])
        .arg(manifest)
        .arg("--images")
        .arg(images)
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting eve-host run");
    let stdout = host.stdout.take().unwrap();
    let mut stderr = host.stderr.take().unwrap();
    let host_log = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (host, lines, host_log)
}

#[test]
fn a_host_killed_outright_has_its_vms_stopped_by_the_next_one() {
    let image = build_service("selftest", Arch::X86_64, Profile::Release)
        .unwrap_or_else(|e| panic!("building selftest: {e}"));
    let images = image.parent().expect("image directory");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("node.toml");
    std::fs::write(
        &manifest,
        r#"[node]
name = "orphans"
arch = "x86_64"

[[service]]
name = "hanger"
image = "selftest"
ram_mib = 32
cmdline = "selftest.mode=hang"
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let until = Instant::now() + Duration::from_secs(120);

    let (mut first, lines, _) = start_host(&manifest, images, &state);
    let mut seen = Vec::new();
    wait_for(&lines, &mut seen, until, "the VM running", |l| {
        l.starts_with("hanger: running")
    });
    // QEMU writes its pid file before the guest runs, and a QEMU whose
    // guest prints to a host that is gone ends: the host is killed once
    // the guest has printed all it prints before it hangs, its boot-timer
    // stamp of `main`.
    let console = state.join("logs/hanger.console");
    let main_stamp = format!("{}main ", guest_abi::BOOT_TIMER_MARKER);
    while !std::fs::read_to_string(&console).is_ok_and(|text| text.contains(&main_stamp)) {
        assert!(Instant::now() < until, "the guest never reached main");
        thread::sleep(Duration::from_millis(20));
    }
    let pid_file = state.join("run/hanger.pid");
    let vm: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < until, "QEMU wrote no pid file");
        thread::sleep(Duration::from_millis(20));
    };
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(running(vm), "QEMU {vm} outlived the host");

    let (mut second, lines, host_log) = start_host(&manifest, images, &state);
    let mut seen = Vec::new();
    wait_for(&lines, &mut seen, until, "the new VM running", |l| {
        l.starts_with("hanger: running")
    });
    let stopped = !running(vm);
    let pid = Pid::from_raw(second.id() as i32).expect("a pid");
    kill_process(pid, Signal::TERM).expect("sending SIGTERM");
    let status = second.wait().unwrap();
    let host_log = host_log.join().unwrap();
    assert!(stopped, "QEMU {vm} still runs:\n{host_log}");
    assert!(status.success(), "{status}\n{host_log}");
    assert!(
        host_log.contains(&format!(
            "stopped process {vm} that a previous host left running"
        )),
        "{host_log}"
    );
}

#[test]
fn a_node_restarts_a_panicking_service_and_keeps_the_others() {
    let image = build_service("selftest", Arch::X86_64, Profile::Release)
        .unwrap_or_else(|e| panic!("building selftest: {e}"));
    let images = image.parent().expect("image directory");
    assert_eq!(image.file_name().unwrap(), "selftest");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("node.toml");
    std::fs::write(
        &manifest,
        r#"[node]
name = "test"
arch = "aarch64"

[[service]]
name = "crasher"
image = "selftest"
ram_mib = 32
cmdline = "selftest.mode=panic"
backoff = { initial_ms = 100 }

[[service]]
name = "oneshot"
image = "selftest"
ram_mib = 32
restart = "never"
devices = { state_mib = 1 }
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let (mut host, lines, host_log) = start_host(&manifest, images, &state);
    let until = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(&lines, &mut seen, until, "the crash", |l| {
            l.starts_with("crasher: restarting")
                && l.contains("panicked (status 101): selftest: selftest asked to panic")
        });
        wait_for(&lines, &mut seen, until, "the restart", |l| {
            l.starts_with("crasher: running") && !l.contains("restarts 0")
        });
        wait_for(&lines, &mut seen, until, "the clean exit", |l| {
            l == "oneshot: stopped, restarts 0, last end: exited cleanly (status 0)"
        });
    }));
    let pid = Pid::from_raw(host.id() as i32).expect("a pid");
    kill_process(pid, Signal::TERM).expect("sending SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = host.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = host.kill();
            panic!("eve-host did not stop after SIGTERM");
        }
        thread::sleep(Duration::from_millis(50));
    };
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(status.success(), "eve-host exited with {status}");
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
        seen.push(line);
    }
    assert!(
        seen.iter()
            .any(|l| l.starts_with("crasher: stopped") || l.starts_with("crasher: stopping")),
        "no shutdown status:\n{}",
        seen.join("\n")
    );
    let host_log = host_log.join().unwrap();
    assert!(
        host_log.contains("[crasher] panic in selftest: selftest asked to panic"),
        "{host_log}"
    );
    assert!(
        host_log.contains("[oneshot] host: bus connected"),
        "the VM did not connect its bus port:\n{host_log}"
    );
    assert!(
        host_log.contains("eve-host: node test (x86_64)"),
        "--arch overrides the manifest:\n{host_log}"
    );
    assert!(host_log.contains("eve-host: TPM: not needed"), "{host_log}");
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("run/status.json")).unwrap()).unwrap();
    assert_eq!(status["running"], false, "{status}");
    assert_eq!(status["arch"], "x86_64");
    let services = status["services"].as_array().unwrap();
    assert_eq!(services[0]["name"], "crasher");
    assert!(services[0]["restarts"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(services[1]["state"], "stopped");
    assert_eq!(
        services[1]["last_end"], "exited cleanly (status 0)",
        "{status}"
    );
    let console = std::fs::read_to_string(state.join("logs/crasher.console")).unwrap();
    assert!(console.contains("panic in selftest:"), "{console}");
    assert!(
        console.contains("----- crasher: start 2 -----"),
        "{console}"
    );
    let oneshot = std::fs::read_to_string(state.join("logs/oneshot.console")).unwrap();
    assert!(oneshot.contains("@@ exit 0"), "{oneshot}");
    assert!(oneshot.contains("PASS virtio"), "{oneshot}");
    assert_eq!(
        std::fs::metadata(state.join("volumes/oneshot.img"))
            .unwrap()
            .len(),
        1 << 20
    );
}
