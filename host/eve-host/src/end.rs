//! How a service's run ended, decided from what the VMM saw and what the
//! guest said on its console.

use std::{fmt, time::Duration};

use guest_abi::{EXIT_EXCEPTION, EXIT_FAILURE, EXIT_PANIC, EXIT_SUCCESS};

use crate::{console::ConsoleSummary, vmm::VmmExit};

/// The end of one run of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The guest powered off with this status; `panic` is its panic line
    /// (`<service>: <message> at <file:line:col>`) if it printed one.
    Exited { status: i32, panic: Option<String> },
    /// The VM ended without the guest reporting how (a reset or triple
    /// fault, a VMM error, a signal), or the two disagreed.
    Died { detail: String },
    /// The host stopped it: silent on the bus for longer than its timeout.
    Hung { silent_for: Duration },
    /// The VM could not be started.
    LaunchFailed { reason: String },
    /// The host stopped it on shutdown.
    Stopped,
}

impl End {
    /// A clean, successful exit: the only end `restart = "on-failure"`
    /// does not restart.
    pub fn is_clean(&self) -> bool {
        matches!(self, End::Exited { status: 0, .. })
    }

    /// Decides the end of a run the VM itself finished. The guest's
    /// `@@ exit` marker is the status; where the VMM carries one too
    /// (x86_64 `isa-debug-exit`, the low byte only) they must agree.
    pub fn decide(exit: VmmExit, console: &ConsoleSummary) -> End {
        let exited = |status| End::Exited {
            status,
            panic: console.panic.clone(),
        };
        match (exit, console.exit_marker) {
            (VmmExit::PoweredOff { status: Some(s) }, Some(m)) if m & 0xff == s => exited(m),
            (VmmExit::PoweredOff { status: Some(s) }, Some(m)) => End::Died {
                detail: format!("the guest printed exit status {m} but powered off with {s}"),
            },
            (VmmExit::PoweredOff { status: Some(s) }, None) => exited(s),
            (VmmExit::PoweredOff { status: None }, Some(m)) => exited(m),
            (VmmExit::PoweredOff { status: None }, None) => End::Died {
                detail: "the guest powered off without reporting a status".into(),
            },
            (VmmExit::Failed { code, signal }, _) => {
                let how = match (code, signal) {
                    (_, Some(signal)) => format!("the VMM was killed by signal {signal}"),
                    (Some(0), None) => {
                        "the VM reset without the guest reporting an exit (triple fault?)".into()
                    }
                    (Some(code), None) => format!("the VMM exited with code {code}"),
                    (None, None) => "the VMM ended".into(),
                };
                let detail = match &console.last_vmm_line {
                    Some(line) => format!("{how}: {line}"),
                    None => how,
                };
                End::Died { detail }
            }
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Exited {
                status,
                panic: Some(panic),
            } => write!(f, "panicked (status {status}): {panic}"),
            End::Exited {
                status,
                panic: None,
            } => match *status {
                EXIT_SUCCESS => write!(f, "exited cleanly (status 0)"),
                EXIT_FAILURE => write!(f, "exited with failure (status 1)"),
                EXIT_PANIC => write!(f, "panicked (status 101)"),
                EXIT_EXCEPTION => write!(f, "took a CPU exception (status 102)"),
                other => write!(f, "exited with status {other}"),
            },
            End::Died { detail } => write!(f, "died: {detail}"),
            End::Hung { silent_for } => write!(
                f,
                "hung: no heartbeat for {:.1} s, stopped",
                silent_for.as_secs_f64()
            ),
            End::LaunchFailed { reason } => write!(f, "failed to launch: {reason}"),
            End::Stopped => write!(f, "stopped by the host"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(marker: Option<i32>, panic: Option<&str>) -> ConsoleSummary {
        ConsoleSummary {
            exit_marker: marker,
            panic: panic.map(str::to_string),
            last_vmm_line: None,
        }
    }

    #[test]
    fn marker_and_vmm_status_agree() {
        let end = End::decide(
            VmmExit::PoweredOff { status: Some(101) },
            &console(Some(101), Some("selftest: boom at a.rs:1:1")),
        );
        assert_eq!(
            end,
            End::Exited {
                status: 101,
                panic: Some("selftest: boom at a.rs:1:1".into())
            }
        );
        assert_eq!(
            end.to_string(),
            "panicked (status 101): selftest: boom at a.rs:1:1"
        );
        // isa-debug-exit keeps the low byte only.
        let end = End::decide(
            VmmExit::PoweredOff { status: Some(0x2c) },
            &console(Some(300), None),
        );
        assert_eq!(
            end,
            End::Exited {
                status: 300,
                panic: None
            }
        );
        assert!(
            End::decide(
                VmmExit::PoweredOff { status: Some(0) },
                &console(Some(0), None)
            )
            .is_clean()
        );
    }

    #[test]
    fn disagreement_or_silence_is_a_death() {
        let end = End::decide(
            VmmExit::PoweredOff { status: Some(1) },
            &console(Some(0), None),
        );
        assert!(matches!(end, End::Died { .. }), "{end}");
        let end = End::decide(VmmExit::PoweredOff { status: None }, &console(None, None));
        assert!(matches!(end, End::Died { .. }), "{end}");
        let mut with_stderr = console(None, None);
        with_stderr.last_vmm_line = Some("qemu: could not open disk".into());
        let end = End::decide(
            VmmExit::Failed {
                code: Some(1),
                signal: None,
            },
            &with_stderr,
        );
        assert_eq!(
            end.to_string(),
            "died: the VMM exited with code 1: qemu: could not open disk"
        );
        let end = End::decide(
            VmmExit::Failed {
                code: None,
                signal: Some(9),
            },
            &console(Some(0), None),
        );
        assert_eq!(end.to_string(), "died: the VMM was killed by signal 9");
    }

    #[test]
    fn aarch64_takes_the_status_from_the_marker() {
        assert_eq!(
            End::decide(
                VmmExit::PoweredOff { status: None },
                &console(Some(1), None)
            ),
            End::Exited {
                status: 1,
                panic: None
            }
        );
    }
}
