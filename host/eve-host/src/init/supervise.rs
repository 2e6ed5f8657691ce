//! PID 1's own job once the node is set up: run `eve-host run` as its
//! child, restart it if it ends, reap every process that ends up as ours
//! (QEMUs and swtpm left by a host that died are reparented to PID 1), and
//! on SIGTERM or SIGINT (Ctrl-Alt-Del) stop the host, sync and power off.
//! A host that ends with the `power` target's exit statuses stopped the
//! node because a service asked: the machine reboots
//! ([`EXIT_REBOOT`]) or powers off ([`EXIT_SHUTDOWN`]) instead.
//! It sleeps on signals in between: nothing polls.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::say;
use crate::targets::power::{EXIT_REBOOT, EXIT_SHUTDOWN};

/// The first pause before restarting a host that ended.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A host that ran this long starts the next restart from the first pause.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The host to run.
pub struct HostCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// The pause before the next restart, after a run of `ran`.
pub fn next_backoff(previous: Duration, ran: Duration) -> Duration {
    if ran >= STABLE_AFTER {
        FIRST_BACKOFF
    } else {
        (previous * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF)
    }
}

fn spawn(host: &HostCommand) -> Option<Pid> {
    match Command::new(&host.program).args(&host.args).spawn() {
        Ok(child) => i32::try_from(child.id()).ok().and_then(Pid::from_raw),
        Err(e) => {
            say(format_args!("cannot start {}: {e}", host.program.display()));
            None
        }
    }
}

/// Runs the host until asked to stop, then powers the machine off.
pub fn run(host: &HostCommand) -> ! {
    let mut signals = match Signals::new([SIGCHLD, SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(e) => {
            say(format_args!("cannot handle signals ({e}); powering off"));
            power_off();
        }
    };
    let mut backoff = Duration::ZERO;
    let mut started = Instant::now();
    let mut running = spawn(host);
    let mut stopping = false;
    loop {
        if running.is_none() && !stopping {
            backoff = next_backoff(backoff, started.elapsed());
            say(format_args!(
                "restarting eve-host in {} s",
                backoff.as_secs()
            ));
            thread::sleep(backoff);
            started = Instant::now();
            running = spawn(host);
            continue;
        }
        if running.is_none() && stopping {
            power_off();
        }
        let Some(signal) = signals.forever().next() else {
            power_off();
        };
        match signal {
            SIGTERM | SIGINT if !stopping => {
                say(format_args!("stopping the node"));
                stopping = true;
                if let Some(pid) = running {
                    let _ = kill_process(pid, Signal::TERM);
                }
            }
            _ => {}
        }
        // Reap everything that ended: the host, and orphans given to us.
        while let Ok(Some((pid, status))) = waitpid(None, WaitOptions::NOHANG) {
            if Some(pid) == running {
                running = None;
                let code = status.exit_status();
                if code == Some(i32::from(EXIT_REBOOT)) {
                    say(format_args!("eve-host asked for a reboot"));
                    finish(rustix::system::RebootCommand::Restart, "rebooting");
                }
                if code == Some(i32::from(EXIT_SHUTDOWN)) {
                    say(format_args!("eve-host asked for a shutdown"));
                    power_off();
                }
                if !stopping {
                    let how = match (status.exit_status(), status.terminating_signal()) {
                        (Some(code), _) => format!("exit status {code}"),
                        (None, Some(signal)) => format!("signal {signal}"),
                        (None, None) => String::from("no status"),
                    };
                    say(format_args!(
                        "eve-host ended ({how}) after {} s",
                        started.elapsed().as_secs()
                    ));
                }
            }
        }
    }
}

/// Writes everything out and powers off: PID 1 may not exit.
fn power_off() -> ! {
    finish(rustix::system::RebootCommand::PowerOff, "powering off")
}

/// Writes everything out and powers off or restarts the machine
/// (`what` says which, on the console).
fn finish(command: rustix::system::RebootCommand, what: &str) -> ! {
    rustix::fs::sync();
    say(format_args!("{what}"));
    let _ = rustix::system::reboot(command);
    // Only reached if the kernel refused; there is nothing left to do.
    loop {
        thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_a_stable_run() {
        let mut b = next_backoff(Duration::ZERO, Duration::ZERO);
        assert_eq!(b, FIRST_BACKOFF);
        for _ in 0..10 {
            b = next_backoff(b, Duration::from_secs(1));
        }
        assert_eq!(b, MAX_BACKOFF);
        assert_eq!(next_backoff(b, STABLE_AFTER), FIRST_BACKOFF);
    }
}
