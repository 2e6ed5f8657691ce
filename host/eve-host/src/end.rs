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
    /// The VMM ran but failed before the guest printed anything (a bad
    /// argument, a resource it could not get); `message` is the VMM's own.
    StartFailed { message: String },
    /// The host could not run it for a reason of its own (an image, a
    /// volume or a bus socket missing, no VMM installed): no restart can
    /// help until that is fixed.
    HostFailed { reason: String },
    /// The host stopped it on shutdown.
    Stopped,
}

impl End {
    /// A clean, successful exit: the only end `restart = "on-failure"`
    /// does not restart.
    pub fn is_clean(&self) -> bool {
        matches!(self, End::Exited { status: 0, .. })
    }

    /// The host's own failure, not the guest's.
    pub fn is_host_failure(&self) -> bool {
        matches!(self, End::HostFailed { .. })
    }

    /// Decides the end of a run the VM itself finished. The guest's
    /// `@@ exit` marker is the status; where the VMM carries one too
    /// (x86_64 `isa-debug-exit`, the low byte only) they must agree. A VMM
    /// that failed before the guest printed anything is a start failure.
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
            (VmmExit::PoweredOffOrFailed { status, .. }, Some(m)) if m & 0xff == status => {
                exited(m)
            }
            (VmmExit::PoweredOffOrFailed { code, .. }, _) => failed(Some(code), None, console),
            (VmmExit::Failed { code, signal }, _) => failed(code, signal, console),
        }
    }
}

/// The end of a VMM that failed: at start if it exited with an error before
/// the guest printed anything, otherwise under a running guest.
fn failed(code: Option<i32>, signal: Option<i32>, console: &ConsoleSummary) -> End {
    let vmm_message = console.last_vmm_line.clone();
    let how = match (code, signal) {
        (_, Some(signal)) => format!("the VMM was killed by signal {signal}"),
        (Some(0), None) => {
            "the VM reset without the guest reporting an exit (triple fault?)".into()
        }
        (Some(code), None) if !console.guest_spoke => {
            return End::StartFailed {
                message: vmm_message.unwrap_or_else(|| {
                    format!("the VMM exited with code {code} before the guest printed anything, and said nothing")
                }),
            };
        }
        (Some(code), None) => format!("the VMM exited with code {code}"),
        (None, None) => "the VMM ended".into(),
    };
    let detail = match vmm_message {
        Some(line) => format!("{how}: {line}"),
        None => how,
    };
    End::Died { detail }
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
            End::StartFailed { message } => write!(f, "failed to start: {message}"),
            End::HostFailed { reason } => write!(f, "the host could not start it: {reason}"),
            End::Stopped => write!(f, "stopped by the host"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a guest that ran printed.
    fn console(marker: Option<i32>, panic: Option<&str>) -> ConsoleSummary {
        ConsoleSummary {
            guest_spoke: true,
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

    /// A VMM that failed before the guest printed anything, saying `said`.
    fn silent(said: Option<&str>) -> ConsoleSummary {
        ConsoleSummary {
            last_vmm_line: said.map(str::to_string),
            ..ConsoleSummary::default()
        }
    }

    #[test]
    fn a_vmm_error_before_the_guest_spoke_is_a_start_failure_in_its_words() {
        let said = "qemu-system-x86_64: -chardev socket,id=bus,path=/s/run/zedagent.bus: \
                    Failed to connect to '/s/run/zedagent.bus': No such file or directory";
        // QEMU on x86_64 exits 1 for this, as for a guest's status 0.
        let end = End::decide(
            VmmExit::PoweredOffOrFailed { status: 0, code: 1 },
            &silent(Some(said)),
        );
        assert_eq!(
            end,
            End::StartFailed {
                message: said.into()
            }
        );
        assert_eq!(end.to_string(), format!("failed to start: {said}"));
        assert!(!end.is_clean());
        let end = End::decide(
            VmmExit::Failed {
                code: Some(1),
                signal: None,
            },
            &silent(None),
        );
        assert_eq!(
            end.to_string(),
            "failed to start: the VMM exited with code 1 before the guest printed anything, and said nothing"
        );
    }

    #[test]
    fn exit_code_1_is_a_clean_exit_only_with_the_guests_marker() {
        let exit = VmmExit::PoweredOffOrFailed { status: 0, code: 1 };
        assert!(End::decide(exit, &console(Some(0), None)).is_clean());
        let end = End::decide(exit, &console(None, None));
        assert_eq!(end.to_string(), "died: the VMM exited with code 1");
        let end = End::decide(exit, &console(Some(7), None));
        assert!(matches!(end, End::Died { .. }), "{end}");
    }

    #[test]
    fn signals_and_resets_are_deaths_even_before_the_guest_spoke() {
        let end = End::decide(
            VmmExit::Failed {
                code: None,
                signal: Some(9),
            },
            &silent(None),
        );
        assert_eq!(end.to_string(), "died: the VMM was killed by signal 9");
        let end = End::decide(
            VmmExit::Failed {
                code: Some(0),
                signal: None,
            },
            &silent(None),
        );
        assert!(matches!(end, End::Died { .. }), "{end}");
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
