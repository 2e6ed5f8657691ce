//! A host whose standard output and error are closed under it (run as
//! `eve-host run ... | tee log`, then Ctrl-C killed `tee`) still stops
//! cleanly: a real node of one selftest VM (QEMU, TCG) with a TPM grant,
//! so the host also runs swtpm, has both pipes closed once it runs, is
//! told to stop, and must exit 0 leaving no QEMU and no swtpm behind.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use eve_host::orphans::running;
use harness::{Arch, Profile, build_service};
use rustix::process::{Pid, Signal, kill_process};

const EVE_HOST: &str = env!("CARGO_BIN_EXE_eve-host");
/// A guard against hanging, not a timing target.
const PATIENCE: Duration = Duration::from_secs(120);

/// Kills the processes it holds when the test fails before they are gone.
struct Leftovers(Vec<u32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
    }
}

/// The pid a pid file names, once the process has written it.
fn pid_from(file: &Path, until: Instant) -> u32 {
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < until, "{} never written", file.display());
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_host_with_its_output_closed_still_stops_every_vm_and_swtpm() {
    let image = build_service("selftest", Arch::X86_64, Profile::Release)
        .unwrap_or_else(|e| panic!("building selftest: {e}"));
    let images = image.parent().expect("image directory");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("node.toml");
    std::fs::write(
        &manifest,
        r#"[node]
name = "piped"
arch = "x86_64"

[[service]]
name = "hanger"
image = "selftest"
ram_mib = 32
cmdline = "selftest.mode=hang"
devices.tpm = ["sign"]
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let until = Instant::now() + PATIENCE;
    let mut host = Command::new(EVE_HOST)
        .args(["run", "--accel", "tcg", "--manifest"])
        .arg(&manifest)
        .arg("--images")
        .arg(images)
        .arg("--state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting eve-host run");
    let mut leftovers = Leftovers(vec![host.id()]);
    let mut status_lines = BufReader::new(host.stdout.take().unwrap()).lines();
    // Its log stays unread in the pipe (a few lines) until it is closed.
    let host_log = host.stderr.take().unwrap();
    loop {
        match status_lines.next() {
            Some(Ok(line)) if line.starts_with("hanger: running") => break,
            Some(Ok(_)) => {}
            other => panic!("eve-host ended before its VM ran: {other:?}"),
        }
    }
    let vm = pid_from(&state.join("run/hanger.pid"), until);
    let swtpm = pid_from(&state.join("swtpm.pid"), until);
    leftovers.0.extend([vm, swtpm]);
    assert!(running(vm) && running(swtpm));

    drop(status_lines);
    drop(host_log);
    let pid = Pid::from_raw(host.id() as i32).expect("a pid");
    kill_process(pid, Signal::TERM).expect("sending SIGTERM");
    let status = loop {
        if let Some(status) = host.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < until,
            "eve-host did not stop after SIGTERM"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "eve-host died writing to its closed output: {status}"
    );
    assert!(!running(vm), "QEMU {vm} outlived the host");
    assert!(!running(swtpm), "swtpm {swtpm} outlived the host");
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("run/status.json")).unwrap()).unwrap();
    assert_eq!(status["running"], false, "the clean stop ran: {status}");
    assert_eq!(status["services"][0]["last_end"], "stopped by the host");
}
