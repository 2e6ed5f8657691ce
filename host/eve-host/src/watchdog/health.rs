//! What "every service is healthy" means to the watchdog: no service in
//! a crash loop (the supervisor's verdict: several ends within its
//! window, hangs included, until a run lasts). A single crash or hang is
//! the supervisor's to restart, not a reason to reset the machine; a
//! service the host cannot start (a missing image, no VMM) is not either,
//! since a reset cannot fix the host.

use std::fmt;

use hostops::power::BootReason;

use crate::end::End;
use crate::supervisor::Status;

/// The service that makes the node unhealthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    pub service: String,
    /// Its last end was a hang (no heartbeat), not a crash.
    pub hung: bool,
}

impl Unhealthy {
    /// The boot reason of the reset this leads to, as EVE's: a hung
    /// service is `WATCHDOG_HUNG`, one that keeps dying `WATCHDOG_PID`.
    pub fn reason(&self) -> BootReason {
        if self.hung {
            BootReason::WatchdogHung
        } else {
            BootReason::WatchdogPid
        }
    }
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.hung { "hangs" } else { "crashes" };
        write!(f, "{} {how} in a loop", self.service)
    }
}

/// The first service in a crash loop; None when every one is healthy.
pub fn unhealthy(statuses: &[Status]) -> Option<Unhealthy> {
    statuses.iter().find(|s| s.crash_loop).map(|s| Unhealthy {
        service: s.service.clone(),
        hung: matches!(s.last_end, Some(End::Hung { .. })),
    })
}
