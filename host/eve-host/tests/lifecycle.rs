//! `eve-host run` as a process, on a real node of one selftest VM (QEMU,
//! TCG) with a TPM grant, so the host also runs swtpm:
//!
//! - a host whose standard output and error are closed under it (run as
//!   `eve-host run ... | tee log`, then Ctrl-C killed `tee`) still stops
//!   cleanly, leaving no QEMU and no swtpm behind;
//! - a second host on the same state directory refuses at once, names the
//!   first, and leaves its VM alone.

use std::{
    io::{BufRead, BufReader, Lines, Read},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
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

/// A node of one hanging selftest VM with a TPM grant, in a fresh
/// directory.
struct TestNode {
    images: PathBuf,
    manifest: PathBuf,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNode {
    fn new() -> TestNode {
        let image = build_service("selftest", Arch::X86_64, Profile::Release)
            .unwrap_or_else(|e| panic!("building selftest: {e}"));
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("node.toml");
        std::fs::write(
            &manifest,
            r#"[node]
name = "lifecycle"
arch = "x86_64"

[[service]]
name = "hanger"
image = "selftest"
ram_mib = 32
cmdline = "selftest.mode=hang"
bus.call.tpm = ["sign"]
"#,
        )
        .unwrap();
        TestNode {
            images: image.parent().expect("image directory").to_path_buf(),
            manifest,
            state: dir.path().join("state"),
            _dir: dir,
        }
    }

    /// Starts `eve-host run` on it with both outputs piped.
    fn start_host(&self) -> Child {
        Command::new(EVE_HOST)
            .args(["run", "--accel", "tcg", "--manifest"])
            .arg(&self.manifest)
            .arg("--images")
            .arg(&self.images)
            .arg("--state-dir")
            .arg(&self.state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting eve-host run")
    }

    /// Reads status lines until the VM runs, then returns the pids of its
    /// QEMU and of swtpm.
    fn wait_running(
        &self,
        status_lines: &mut Lines<BufReader<ChildStdout>>,
        until: Instant,
    ) -> (u32, u32) {
        loop {
            match status_lines.next() {
                Some(Ok(line)) if line.starts_with("hanger: running") => break,
                Some(Ok(_)) => {}
                other => panic!("eve-host ended before its VM ran: {other:?}"),
            }
        }
        (
            pid_from(&self.state.join("run/hanger.pid"), until),
            pid_from(&self.state.join("swtpm.pid"), until),
        )
    }
}

impl Drop for TestNode {
    /// Whatever a failed test left running under this node's pid files.
    fn drop(&mut self) {
        for pid_file in [
            self.state.join("run/hanger.pid"),
            self.state.join("swtpm.pid"),
        ] {
            let _ = eve_host::orphans::reap(&pid_file);
        }
    }
}

/// SIGTERM, then its exit status.
fn stop(host: &mut Child, until: Instant) -> ExitStatus {
    let pid = Pid::from_raw(host.id() as i32).expect("a pid");
    kill_process(pid, Signal::TERM).expect("sending SIGTERM");
    loop {
        if let Some(status) = host.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < until,
            "eve-host did not stop after SIGTERM"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_host_with_its_output_closed_still_stops_every_vm_and_swtpm() {
    let node = TestNode::new();
    let until = Instant::now() + PATIENCE;
    let mut host = node.start_host();
    let mut leftovers = Leftovers(vec![host.id()]);
    let mut status_lines = BufReader::new(host.stdout.take().unwrap()).lines();
    // Its log stays unread in the pipe (a few lines) until it is closed.
    let host_log = host.stderr.take().unwrap();
    let (vm, swtpm) = node.wait_running(&mut status_lines, until);
    leftovers.0.extend([vm, swtpm]);
    assert!(running(vm) && running(swtpm));

    drop(status_lines);
    drop(host_log);
    let status = stop(&mut host, until);
    assert!(
        status.success(),
        "eve-host died writing to its closed output: {status}"
    );
    assert!(!running(vm), "QEMU {vm} outlived the host");
    assert!(!running(swtpm), "swtpm {swtpm} outlived the host");
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.state.join("run/status.json")).unwrap())
            .unwrap();
    assert_eq!(status["running"], false, "the clean stop ran: {status}");
    assert_eq!(status["services"][0]["last_end"], "stopped by the host");
}

#[test]
fn a_second_host_on_a_held_state_directory_refuses_and_names_the_first() {
    let node = TestNode::new();
    let until = Instant::now() + PATIENCE;
    let mut first = node.start_host();
    let mut leftovers = Leftovers(vec![first.id()]);
    let mut status_lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let first_log = first.stderr.take().unwrap();
    let (vm, swtpm) = node.wait_running(&mut status_lines, until);
    leftovers.0.extend([vm, swtpm]);

    let mut second = node.start_host();
    leftovers.0.push(second.id());
    let refused = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < until,
            "the second host runs on the first one's state directory"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let mut said = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    let mut started = String::new();
    second
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut started)
        .unwrap();
    assert!(!refused.success(), "{said}");
    assert!(
        said.contains(&format!(
            "{} is in use by process {} (",
            node.state.display(),
            first.id()
        )) && said.contains("eve-host run"),
        "the refusal names the running host: {said}"
    );
    assert!(started.is_empty(), "it started nothing: {started}");
    assert!(running(vm), "the first host's VM was stopped as an orphan");
    assert!(running(swtpm), "the first host's swtpm was stopped");
    assert!(node.state.join("run/hanger.bus").exists());

    drop(first_log);
    let status = stop(&mut first, until);
    assert!(status.success(), "{status}");
    assert!(!running(vm) && !running(swtpm));
}
