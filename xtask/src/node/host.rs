//! The node's host as a child process: `eve-host run` started for the
//! session, its stdout (status lines) and stderr (its log) read by threads,
//! the log copied to a file, and what matters sent on as [`HostEvent`]s.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use guest_abi::{Marker, parse_marker};
use harness::Accel;

use super::build::BuiltNode;
use crate::controller;

/// How long `eve-host` gets to stop its VMs after SIGTERM (it gives each
/// VM 10 s itself) before it is killed.
const HOST_STOP_GRACE: Duration = Duration::from_secs(30);

/// What the host says, as it says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// A status line (stdout): `service: state, restarts N...`.
    Status { line: String, at: Instant },
    /// A service's boot-timer stamp.
    Stamp {
        service: String,
        stage: String,
        at: Instant,
    },
    /// A service's measurement.
    Metric {
        service: String,
        name: String,
        value: u64,
        at: Instant,
    },
    /// A line of the host itself (not a guest console line).
    Note(String),
}

/// One line of the host's log (stderr), sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine<'a> {
    /// `[service] <marker>` from a guest console.
    Marker {
        service: &'a str,
        marker: Marker<'a>,
    },
    /// Any other guest console line.
    Console,
    /// The host's own words (`eve-host: ...`, `[service] host: ...`,
    /// `[service] vmm: ...`).
    Note,
}

/// Sorts one line of the host's log.
pub fn classify_log_line(line: &str) -> LogLine<'_> {
    let Some((service, text)) = line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    else {
        return LogLine::Note;
    };
    if text.starts_with("host: ") || text.starts_with("vmm: ") {
        return LogLine::Note;
    }
    match parse_marker(text) {
        Some(marker) => LogLine::Marker { service, marker },
        None => LogLine::Console,
    }
}

/// The dev node's disk and the partition the loader chose
/// (`harness::devdisk`).
#[derive(Debug, Clone)]
pub struct DiskBoot {
    pub disk: PathBuf,
    pub slot: String,
}

/// A running `eve-host`: its stdout and stderr are read by threads, its
/// log copied to a file, and what matters sent as [`HostEvent`]s.
pub struct HostProcess {
    child: Child,
    /// Just before the host was started.
    pub started: Instant,
    pub events: Receiver<HostEvent>,
    /// The disk and partition it booted from, if any.
    pub boot: Option<DiskBoot>,
    stopped: bool,
}

impl HostProcess {
    /// Starts `eve-host run`, its log appended to `log`; with `boot`, on
    /// that disk from that partition.
    pub fn start(
        built: &BuiltNode,
        state_dir: &Path,
        config_part: &Path,
        accel: Option<Accel>,
        log: &Path,
        boot: Option<DiskBoot>,
    ) -> Result<HostProcess, String> {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new(&built.host_binary);
        command
            .arg("run")
            .arg("--manifest")
            .arg(&built.manifest_path)
            .args(["--arch", built.arch.name()])
            .arg("--images")
            .arg(&built.images)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--config-part")
            .arg(config_part);
        if let Some(accel) = accel {
            command.args(["--accel", accel.name()]);
        }
        if let Some(shim) = &built.shim {
            command
                .arg("--shim-kernel")
                .arg(&shim.kernel)
                .arg("--shim-initrd")
                .arg(&shim.initrd);
        }
        for bridge in &built.device_ports {
            command.args(["--device-port", bridge]);
        }
        if let Some(boot) = &boot {
            command
                .arg("--disk")
                .arg(&boot.disk)
                .args(["--booted-slot", &boot.slot]);
        }
        // Its own process group: a Ctrl-C reaches only xtask, which stops
        // the host and then the controller, in that order.
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("{}: {e}", built.host_binary.display()))?;
        let (tx, events) = mpsc::channel();
        let stdout = child.stdout.take().ok_or("eve-host stdout")?;
        let stderr = child.stderr.take().ok_or("eve-host stderr")?;
        let status_tx = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = Instant::now();
                if status_tx.send(HostEvent::Status { line, at }).is_err() {
                    break;
                }
            }
        });
        let log_file = Mutex::new(log_file);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let at = Instant::now();
                if let Ok(mut file) = log_file.lock() {
                    let _ = writeln!(file, "{line}");
                }
                let event = match classify_log_line(&line) {
                    LogLine::Marker {
                        service,
                        marker: Marker::BootTimer { stage, .. },
                    } => HostEvent::Stamp {
                        service: service.to_owned(),
                        stage: stage.to_owned(),
                        at,
                    },
                    LogLine::Marker {
                        service,
                        marker: Marker::Metric { name, value },
                    } => HostEvent::Metric {
                        service: service.to_owned(),
                        name: name.to_owned(),
                        value,
                        at,
                    },
                    LogLine::Marker { .. } | LogLine::Console => continue,
                    LogLine::Note => HostEvent::Note(line),
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Ok(HostProcess {
            child,
            started,
            events,
            boot,
            stopped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The host's exit status if it has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then wait for the host to stop its VMs (killing it if it
    /// takes too long). Returns whether it stopped on its own.
    pub fn stop(&mut self) -> bool {
        if self.stopped {
            return true;
        }
        self.stopped = true;
        controller::stop_child(&mut self.child, HOST_STOP_GRACE)
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The service a host note says joined the bus (`[name] host: bus
/// connected`).
pub fn bus_connected_note(line: &str) -> Option<&str> {
    line.strip_prefix('[')?
        .strip_suffix("] host: bus connected")
}

/// The service a status line is about.
pub fn status_line_service(line: &str) -> Option<&str> {
    line.split_once(": ").map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_log_lines_are_sorted() {
        assert_eq!(
            classify_log_line("[zedagent] @@ boot-timer registered 123"),
            LogLine::Marker {
                service: "zedagent",
                marker: Marker::BootTimer {
                    stage: "registered",
                    guest_ns: 123
                }
            }
        );
        assert_eq!(
            classify_log_line("[zedagent] @@ metric heap_high_water 4096"),
            LogLine::Marker {
                service: "zedagent",
                marker: Marker::Metric {
                    name: "heap_high_water",
                    value: 4096
                }
            }
        );
        assert_eq!(
            classify_log_line("[diag] [1.000] diag INFO: hello"),
            LogLine::Console
        );
        assert_eq!(
            classify_log_line("[diag] host: bus connected"),
            LogLine::Note
        );
        assert_eq!(classify_log_line("[diag] vmm: qemu: error"), LogLine::Note);
        assert_eq!(classify_log_line("eve-host: node default"), LogLine::Note);
        assert_eq!(
            status_line_service("diag: running, restarts 0"),
            Some("diag")
        );
    }
}
