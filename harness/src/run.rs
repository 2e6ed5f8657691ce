//! Running a guest: console captured and timestamped, a hard timeout, and
//! the end decided from the guest's exit marker and QEMU's status.

use std::{
    fmt,
    io::Read,
    process::Stdio,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use guest_abi::{EXIT_PANIC, Marker, debug_exit_status, parse_marker};

use crate::{Arch, Guest};

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The guest powered off with this status.
    Exited(i32),
    /// Still running at the timeout; killed.
    TimedOut,
    /// QEMU ended without the guest reporting an exit (a triple fault, a
    /// QEMU error, a kill), with QEMU's own status.
    Died(Option<i32>),
}

/// A boot-timer stamp: the guest's own time at `stage`, and when the host
/// saw the line, from spawning QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub stage: String,
    pub guest: Duration,
    pub host: Duration,
}

/// What happened in one run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub end: End,
    /// Everything the guest printed (and QEMU's stderr, after it).
    pub console: String,
    /// From spawning QEMU to the first console byte.
    pub first_byte: Option<Duration>,
    /// From spawning QEMU to its exit (or the kill).
    pub total: Duration,
    pub stamps: Vec<Stamp>,
    /// `@@ metric` values, in the order printed.
    pub metrics: Vec<(String, u64)>,
    /// The command that ran, for failure reports.
    pub command_line: String,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.end == End::Exited(0)
    }

    /// The guest's panic line, if it panicked.
    pub fn panic_message(&self) -> Option<&str> {
        if self.end != End::Exited(EXIT_PANIC) {
            return None;
        }
        self.console
            .lines()
            .find_map(|l| l.trim_end_matches('\r').strip_prefix("panic in "))
    }

    /// The last value of metric `name`.
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.metrics
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// The guest's boot-timer stamp for `stage`.
    pub fn stamp(&self, stage: &str) -> Option<&Stamp> {
        self.stamps.iter().find(|s| s.stage == stage)
    }

    /// Panics with the console log unless the guest exited 0.
    pub fn assert_success(&self) {
        assert!(self.succeeded(), "guest did not succeed:\n{self}");
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "end: {:?} after {:?}", self.end, self.total)?;
        writeln!(f, "command: {}", self.command_line)?;
        writeln!(f, "----- console -----")?;
        writeln!(f, "{}", self.console)?;
        write!(f, "-------------------")
    }
}

/// Why a guest could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{binary} not found: run `cargo xtask deps` (or install QEMU) first")]
    QemuMissing { binary: &'static str },
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: &'static str,
        source: std::io::Error,
    },
}

enum Chunk {
    Bytes(Vec<u8>, Duration),
    Closed,
}

/// A guest that is running: its console can be watched while the test
/// talks to it, then [`Running::finish`] waits for the end.
pub struct Running {
    child: std::process::Child,
    chunks: mpsc::Receiver<Chunk>,
    reader: thread::JoinHandle<()>,
    err_reader: thread::JoinHandle<String>,
    started: Instant,
    deadline: Instant,
    arch: Arch,
    command_line: String,
    console: Vec<u8>,
    line: Vec<u8>,
    lines: Vec<String>,
    stamps: Vec<Stamp>,
    metrics: Vec<(String, u64)>,
    marker_exit: Option<i32>,
    first_byte: Option<Duration>,
    closed: bool,
}

impl Guest {
    /// Boots the guest and waits for it to power off, die or time out.
    pub fn run(&self) -> Result<Outcome, RunError> {
        Ok(self.spawn()?.finish())
    }

    /// Boots the guest and returns at once.
    pub fn spawn(&self) -> Result<Running, RunError> {
        let binary = self.machine.arch().qemu();
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => RunError::QemuMissing { binary },
            _ => RunError::Spawn { binary, source },
        })?;
        let (tx, chunks) = mpsc::channel();
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx
                            .send(Chunk::Bytes(buf[..n].to_vec(), started.elapsed()))
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(Chunk::Closed);
        });
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let err_reader = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(Running {
            child,
            chunks,
            reader,
            err_reader,
            started,
            deadline: started + self.timeout,
            arch: self.machine.arch(),
            command_line: self.command_line(),
            console: Vec::new(),
            line: Vec::new(),
            lines: Vec::new(),
            stamps: Vec::new(),
            metrics: Vec::new(),
            marker_exit: None,
            first_byte: None,
            closed: false,
        })
    }
}

impl Running {
    /// QEMU's process id, e.g. to read its CPU time while the guest runs.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Takes console output for up to `wait`; false once the console closed.
    fn pump(&mut self, wait: Duration) -> bool {
        if self.closed {
            return false;
        }
        match self.chunks.recv_timeout(wait) {
            Ok(Chunk::Bytes(bytes, at)) => {
                self.first_byte.get_or_insert(at);
                for &b in &bytes {
                    if b == b'\n' {
                        let text = String::from_utf8_lossy(&self.line).replace('\r', "");
                        note_line(
                            &text,
                            at,
                            &mut self.stamps,
                            &mut self.metrics,
                            &mut self.marker_exit,
                        );
                        self.lines.push(text);
                        self.line.clear();
                    } else {
                        self.line.push(b);
                    }
                }
                self.console.extend_from_slice(&bytes);
                true
            }
            Ok(Chunk::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.closed = true;
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => true,
        }
    }

    /// Like [`Running::wait_for_line`], for tests and tools that cannot go
    /// on without the line: panics naming `needle` and `timeout` if it
    /// does not come.
    pub fn expect_line(&mut self, needle: &str, timeout: Duration) -> String {
        match self.wait_for_line(needle, timeout) {
            Some(line) => line,
            None => panic!("no console line with {needle:?} within {timeout:?}"),
        }
    }

    /// Waits until the guest prints a line containing `needle`, returning
    /// the line; `None` if the guest ends or `timeout` passes first.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            if let Some(line) = self.lines[seen..].iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            seen = self.lines.len();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.pump(left.min(Duration::from_millis(50))) {
                return None;
            }
        }
    }

    /// Pulls the plug: kills QEMU at once (no flush, no shutdown), as a
    /// power cut would, and reports what the guest printed.
    pub fn kill(mut self) -> Outcome {
        let _ = self.child.kill();
        self.finish()
    }

    /// Waits for the guest to end (killing it at its timeout).
    pub fn finish(mut self) -> Outcome {
        let mut timed_out = false;
        loop {
            let wait = self.deadline.saturating_duration_since(Instant::now());
            if !self.pump(wait.min(Duration::from_millis(50))) {
                break;
            }
            if Instant::now() >= self.deadline {
                timed_out = true;
                let _ = self.child.kill();
                break;
            }
        }
        let tail = String::from_utf8_lossy(&self.line).replace('\r', "");
        note_line(
            &tail,
            self.started.elapsed(),
            &mut self.stamps,
            &mut self.metrics,
            &mut self.marker_exit,
        );
        let status = self.child.wait().ok();
        let total = self.started.elapsed();
        let _ = self.reader.join();
        let stderr_text = self.err_reader.join().unwrap_or_default();
        let mut console = String::from_utf8_lossy(&self.console).replace('\r', "");
        if !stderr_text.trim().is_empty() {
            console.push_str("\n[qemu stderr]\n");
            console.push_str(&stderr_text);
        }
        let code = status.and_then(|s| s.code());
        let end = if timed_out {
            End::TimedOut
        } else {
            decide_end(self.arch, self.marker_exit, code)
        };
        Outcome {
            end,
            console,
            first_byte: self.first_byte,
            total,
            stamps: self.stamps,
            metrics: self.metrics,
            command_line: self.command_line,
        }
    }
}

fn note_line(
    text: &str,
    at: Duration,
    stamps: &mut Vec<Stamp>,
    metrics: &mut Vec<(String, u64)>,
    exit: &mut Option<i32>,
) {
    match parse_marker(text) {
        Some(Marker::Metric { name, value }) => metrics.push((name.to_string(), value)),
        Some(Marker::Exit(status)) => *exit = Some(status),
        Some(Marker::BootTimer { stage, guest_ns }) => stamps.push(Stamp {
            stage: stage.to_string(),
            guest: Duration::from_nanos(guest_ns),
            host: at,
        }),
        None => {}
    }
}

/// The guest's exit marker decides; on x86_64 QEMU's `isa-debug-exit`
/// status must agree with it, or the marker was printed but the power-off
/// went wrong.
fn decide_end(arch: Arch, marker: Option<i32>, qemu_code: Option<i32>) -> End {
    match (arch, marker) {
        (_, None) => End::Died(qemu_code),
        (Arch::Aarch64, Some(status)) if qemu_code == Some(0) => End::Exited(status),
        (Arch::X86_64, Some(status))
            if qemu_code.and_then(debug_exit_status) == Some(status & 0xff) =>
        {
            End::Exited(status)
        }
        (_, Some(_)) => End::Died(qemu_code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_decided_from_marker_and_status() {
        assert_eq!(decide_end(Arch::X86_64, Some(0), Some(1)), End::Exited(0));
        assert_eq!(
            decide_end(Arch::X86_64, Some(101), Some(203)),
            End::Exited(101)
        );
        assert_eq!(
            decide_end(Arch::X86_64, Some(0), Some(3)),
            End::Died(Some(3))
        );
        assert_eq!(decide_end(Arch::X86_64, None, Some(0)), End::Died(Some(0)));
        assert_eq!(decide_end(Arch::Aarch64, Some(1), Some(0)), End::Exited(1));
        assert_eq!(
            decide_end(Arch::Aarch64, Some(0), Some(1)),
            End::Died(Some(1))
        );
        assert_eq!(decide_end(Arch::Aarch64, None, None), End::Died(None));
    }
}
