//! How a domain ended and why, from everything QEMU and the guest left:
//! QEMU's exit status, QMP's `SHUTDOWN` reason, the guest's console
//! (panic lines, our `@@ exit N` marker) and QEMU's stderr. A pure
//! function, so every case is tested without a VM.

use std::fmt;

/// Our guests' exit marker (`sys/guest-abi`, and the shim's app exit).
const EXIT_MARKER: &str = "@@ exit ";
/// How many trailing lines of the console and of QEMU's stderr a crash
/// report carries.
const TAIL_LINES: usize = 10;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The host stopped it: the guest powered down when asked
    /// (`graceful`), or it did not within the timeout and was powered off.
    Stopped {
        graceful: bool,
    },
    /// The guest powered off by itself with nothing wrong said.
    Halted,
    /// The guest reset itself (a reboot); `-no-reboot` ends QEMU so the
    /// host decides whether to start it again.
    Rebooted,
    Crashed(Crash),
}

/// Why a domain crashed, in a sentence, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    pub reason: String,
    /// The guest's exit status, when it gave one.
    pub status: Option<i32>,
    /// The last console lines of this boot.
    pub console: Vec<String>,
    /// The last lines QEMU wrote on its stderr during this boot.
    pub vmm: Vec<String>,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Stopped { graceful: true } => f.write_str("stopped (the guest powered down)"),
            End::Stopped { graceful: false } => {
                f.write_str("stopped (powered off: the guest did not power down in time)")
            }
            End::Halted => f.write_str("halted by the guest"),
            End::Rebooted => f.write_str("rebooted by the guest"),
            End::Crashed(crash) => write!(f, "crashed: {}", crash.reason),
        }
    }
}

/// Everything known once QEMU has exited.
#[derive(Debug, Clone, Default)]
pub struct Evidence<'a> {
    /// Whether the host asked it to stop, and whether the guest obeyed
    /// before the timeout.
    pub stop: Option<bool>,
    /// The guest writes its status to `isa-debug-exit` (x86_64 unikernel).
    pub debug_exit: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// QMP `SHUTDOWN` reason.
    pub shutdown_reason: Option<&'a str>,
    pub guest_panicked: bool,
    /// This boot's console output.
    pub console: &'a str,
    /// This boot's QEMU stderr.
    pub vmm_log: &'a str,
}

/// Reads the evidence.
pub fn classify(e: &Evidence) -> End {
    if let Some(graceful) = e.stop {
        return End::Stopped { graceful };
    }
    let panic_line = panic_line(e.console);
    let marker_status = exit_marker(e.console);
    let crash = |reason: String, status: Option<i32>| {
        End::Crashed(Crash {
            reason,
            status,
            console: tail(e.console),
            vmm: tail(e.vmm_log),
        })
    };
    let with_panic = |what: String| match &panic_line {
        Some(line) => format!("{what}: {line}"),
        None => what,
    };
    if let Some(signal) = e.signal {
        return crash(format!("the VMM was killed by signal {signal}"), None);
    }
    // isa-debug-exit: QEMU exits (status << 1) | 1.
    if e.debug_exit
        && let Some(code) = e.exit_code
        && code % 2 == 1
        && e.shutdown_reason.is_none()
    {
        let status = code >> 1;
        // Exit code 1 is also QEMU's own failure: the marker tells.
        if status == 0 && (marker_status == Some(0) || code != 1) {
            return End::Halted;
        }
        if status == 0 {
            return crash(vmm_failure(code, e.vmm_log), None);
        }
        return crash(
            with_panic(format!("the app exited with status {status}")),
            Some(status),
        );
    }
    if e.guest_panicked {
        return crash(
            with_panic("the guest kernel panicked".into()),
            marker_status,
        );
    }
    match e.shutdown_reason {
        Some("guest-shutdown") => match marker_status {
            Some(0) | None if panic_line.is_none() => End::Halted,
            Some(status) => crash(
                with_panic(format!("the app exited with status {status}")),
                Some(status),
            ),
            None => crash(with_panic("the guest powered off".into()), None),
        },
        Some("guest-reset") => match &panic_line {
            Some(line) => crash(format!("the guest reset after: {line}"), marker_status),
            None => End::Rebooted,
        },
        Some("guest-panic") => crash(with_panic("the guest panicked".into()), marker_status),
        Some(other) => crash(format!("QEMU stopped the VM ({other})"), marker_status),
        None => crash(
            vmm_failure(e.exit_code.unwrap_or(-1), e.vmm_log),
            marker_status,
        ),
    }
}

fn vmm_failure(code: i32, vmm_log: &str) -> String {
    match vmm_log.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => format!("the VMM failed (exit code {code}): {}", line.trim()),
        None => format!("the VMM failed (exit code {code})"),
    }
}

/// The first line that says the guest panicked: our runtime's (`panic in
/// <app>: ...`), Linux's (`Kernel panic - not syncing: ...`), or the
/// shim's own failure (`shim-init: failed: ...`).
pub fn panic_line(console: &str) -> Option<String> {
    const PATTERNS: [&str; 3] = [
        "panic in ",
        "Kernel panic - not syncing",
        "shim-init: failed:",
    ];
    console.lines().find_map(|line| {
        PATTERNS
            .iter()
            .find_map(|p| line.find(p).map(|at| line[at..].trim_end().to_string()))
    })
}

/// The status in the last `@@ exit N` line.
pub fn exit_marker(console: &str) -> Option<i32> {
    console
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(EXIT_MARKER)?.trim().parse().ok())
}

fn tail(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(end: End) -> String {
        match end {
            End::Crashed(c) => c.reason,
            other => panic!("not a crash: {other:?}"),
        }
    }

    #[test]
    fn host_stops_are_stops_whatever_qemu_says() {
        let e = Evidence {
            stop: Some(false),
            signal: Some(9),
            ..Evidence::default()
        };
        assert_eq!(classify(&e), End::Stopped { graceful: false });
        let e = Evidence {
            stop: Some(true),
            shutdown_reason: Some("guest-shutdown"),
            ..Evidence::default()
        };
        assert_eq!(classify(&e), End::Stopped { graceful: true });
    }

    #[test]
    fn x86_unikernel_statuses_come_from_debug_exit() {
        let console = "[0.1] hello-http INFO: up\npanic in hello-http: boom at src/main.rs:9:5\n@@ exit 101\n";
        let e = Evidence {
            debug_exit: true,
            exit_code: Some(203),
            console,
            ..Evidence::default()
        };
        let end = classify(&e);
        let End::Crashed(crash) = &end else { panic!() };
        assert_eq!(crash.status, Some(101));
        assert_eq!(
            crash.reason,
            "the app exited with status 101: panic in hello-http: boom at src/main.rs:9:5"
        );
        assert_eq!(crash.console.last().unwrap(), "@@ exit 101");
        let ok = Evidence {
            debug_exit: true,
            exit_code: Some(1),
            console: "@@ exit 0\n",
            ..Evidence::default()
        };
        assert_eq!(classify(&ok), End::Halted);
        let failed = Evidence {
            debug_exit: true,
            exit_code: Some(1),
            vmm_log: "qemu-system-x86_64: -kernel /x: No such file\n",
            ..Evidence::default()
        };
        assert_eq!(
            reason(classify(&failed)),
            "the VMM failed (exit code 1): qemu-system-x86_64: -kernel /x: No such file"
        );
    }

    #[test]
    fn guest_shutdowns_read_the_console() {
        let halted = Evidence {
            exit_code: Some(0),
            shutdown_reason: Some("guest-shutdown"),
            console: "reboot: Power down\n",
            ..Evidence::default()
        };
        assert_eq!(classify(&halted), End::Halted);
        let app_failed = Evidence {
            shutdown_reason: Some("guest-shutdown"),
            console: "httpd: bind: Address in use\n@@ exit 1\n",
            ..halted.clone()
        };
        assert_eq!(
            reason(classify(&app_failed)),
            "the app exited with status 1"
        );
        let aarch64_panic = Evidence {
            shutdown_reason: Some("guest-shutdown"),
            console: "panic in hello-http: crash requested at src/main.rs:1:1\n@@ exit 101\n",
            ..halted.clone()
        };
        assert!(
            reason(classify(&aarch64_panic))
                .starts_with("the app exited with status 101: panic in")
        );
        let shim = Evidence {
            shutdown_reason: Some("guest-shutdown"),
            console: "shim-init: failed: layer sha256:ab: not gzip\n@@ exit 125\n",
            ..halted
        };
        assert_eq!(
            reason(classify(&shim)),
            "the app exited with status 125: shim-init: failed: layer sha256:ab: not gzip"
        );
    }

    #[test]
    fn resets_are_reboots_unless_the_kernel_panicked() {
        let reboot = Evidence {
            exit_code: Some(0),
            shutdown_reason: Some("guest-reset"),
            console: "reboot: Restarting system\n",
            ..Evidence::default()
        };
        assert_eq!(classify(&reboot), End::Rebooted);
        let panic = Evidence {
            console: "[ 2.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n",
            ..reboot.clone()
        };
        assert_eq!(
            reason(classify(&panic)),
            "the guest reset after: Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"
        );
        let pvpanic = Evidence {
            guest_panicked: true,
            shutdown_reason: Some("guest-panic"),
            ..reboot
        };
        assert_eq!(reason(classify(&pvpanic)), "the guest kernel panicked");
    }

    #[test]
    fn vmm_deaths_say_what_killed_it() {
        let killed = Evidence {
            signal: Some(9),
            ..Evidence::default()
        };
        assert_eq!(reason(classify(&killed)), "the VMM was killed by signal 9");
        let failed = Evidence {
            exit_code: Some(1),
            vmm_log: "warning\nqemu-system-aarch64: cannot open disk\n\n",
            ..Evidence::default()
        };
        assert_eq!(
            reason(classify(&failed)),
            "the VMM failed (exit code 1): qemu-system-aarch64: cannot open disk"
        );
    }

    #[test]
    fn markers_and_panic_lines_are_found_anywhere_in_a_line() {
        assert_eq!(exit_marker("x\n@@ exit 3\n@@ exit 4\n"), Some(4));
        assert_eq!(exit_marker("@@ exit nope\n"), None);
        assert_eq!(
            panic_line("[  1.0] Kernel panic - not syncing: VFS\n").as_deref(),
            Some("Kernel panic - not syncing: VFS")
        );
        assert_eq!(panic_line("all fine\n"), None);
        let long: String = (0..30).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail(&long).len(), TAIL_LINES);
    }
}
