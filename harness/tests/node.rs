//! The whole node, driven from the host the way a user runs it:
//! `cargo xtask qemu` builds the services, the host and the controller,
//! provisions a CONFIG partition and starts the node. The node must
//! onboard; then zedagent's VM is killed, and the host must restart it and
//! the device come back under the same UUID; Ctrl-C must stop it all.
//!
//! xtask runs through [`harness::xtask_command`]: the xtask that runs the
//! tests, building into `target/guest`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use harness::Arch;
use serde_json::Value;
use topics::onboard::{Phase, Report};
use topics::{OnboardStatus, Topic};

/// Building everything from scratch on a 2-core machine takes minutes.
const FIRST_ONBOARD: Duration = Duration::from_secs(1800);
const RECOVERY: Duration = Duration::from_secs(120);

struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), "INT");
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status();
}

impl Node {
    fn start(arch: Arch) -> Node {
        let mut child = harness::xtask_command()
            .arg("qemu")
            .args(["--arch", arch.name()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cargo xtask qemu starts");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Node {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`.
    fn line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(Duration::from_secs(1))) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => panic!(
                    "no line with {needle:?}; xtask printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Polls the host's status file until `done` holds.
    fn until(&mut self, status: &Path, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            if let Some(value) = std::fs::read_to_string(status)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .filter(|v| done(v))
            {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "status never got there; last status {:?}; xtask printed:\n{}",
                std::fs::read_to_string(status).ok(),
                self.seen.join("\n")
            );
            thread::sleep(Duration::from_millis(500));
        }
    }
}

/// zedagent's onboarding report in the status file, read with its type.
fn onboard_status(status: &Value) -> Option<Report> {
    serde_json::from_value(status["tables"][OnboardStatus::NAME][OnboardStatus::KEY].clone()).ok()
}

fn running(report: &Option<Report>) -> bool {
    report
        .as_ref()
        .is_some_and(|r| r.phase() == Phase::Running && !r.uuid.is_empty())
}

fn zedagent(status: &Value) -> Value {
    status["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "zedagent"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn node_onboards_and_recovers(arch: Arch) {
    let mut node = Node::start(arch);
    let state_line = node.line("state in ", FIRST_ONBOARD);
    let state_dir = PathBuf::from(
        state_line
            .rsplit("state in ")
            .next()
            .expect("a path")
            .trim(),
    );
    let status_path = state_dir.join("run/status.json");
    let onboarded = node.until(&status_path, FIRST_ONBOARD, |s| running(&onboard_status(s)));
    let before = onboard_status(&onboarded);
    let uuid = before.as_ref().expect("a report").uuid.clone();
    let pid = zedagent(&onboarded)["pid"].as_u64().expect("zedagent runs");
    // Pull the plug on zedagent's VM alone.
    signal(u32::try_from(pid).expect("pid"), "KILL");
    let recovered = node.until(&status_path, RECOVERY, |s| {
        let agent = zedagent(s);
        let report = onboard_status(s);
        agent["restarts"].as_u64().unwrap_or(0) >= 1
            && agent["state"] == "running"
            && report != before
            && running(&report)
    });
    assert_eq!(
        onboard_status(&recovered).map(|r| r.uuid),
        Some(uuid),
        "the device came back under another UUID"
    );
    let diag = recovered["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "diag"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        diag["state"], "running",
        "diag did not keep running: {diag}"
    );
    signal(node.child.id(), "INT");
    node.line("node and controller stopped", RECOVERY);
    let status = node.child.wait().expect("xtask exits");
    assert!(status.success(), "cargo xtask qemu ended with {status}");
}

#[test]
fn x86_64_node_onboards_and_recovers_from_a_killed_service() {
    node_onboards_and_recovers(Arch::X86_64);
}

#[test]
fn aarch64_node_onboards_and_recovers_from_a_killed_service() {
    node_onboards_and_recovers(Arch::Aarch64);
}
