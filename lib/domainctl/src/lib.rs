//! domainmgr's logic, portable and host-tested (the service drives it on
//! the bus; tests drive it against a fake host).
//!
//! [`Manager`] is level-triggered: it holds zedmanager's `domain-config`
//! and what it did about each domain, and [`Manager::reconcile`] brings
//! the host's `domains` target towards the config, leaving each domain's
//! `DomainState` to publish:
//!
//! - A domain with `activate` runs; one without is stopped (`HALTING`,
//!   then `HALTED`). A domain removed from the config is stopped and
//!   forgotten (its state withdrawn).
//! - A `restart_counter` greater than the one the state follows restarts
//!   the running domain once; the state then follows the new counter. A
//!   new `purge_counter` restarts it on its (new) disks.
//! - States are eve-api `ZSwState`s: `BOOTING` while it starts (and while
//!   the host waits to start it again after a crash, with the crash in
//!   `error`), `RUNNING` with the boot time and count, `HALTING`,
//!   `HALTED`, `ERROR` with the host's words (admission says what was
//!   needed and free) when a start failed; a failed start is tried again
//!   after [`START_RETRY_SECS`].
//! - Until the config is synchronized, domains the host runs that the
//!   config does not (yet) hold are left alone: a restarted domainmgr
//!   adopts the running domains instead of stopping them.
//!
//! [`Manager::metrics`] measures the running domains for `app-metrics`;
//! [`Manager::console_lines`] reads their consoles as log lines, which
//! [`AppLogBatcher`] turns into `app-logs` items.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod applog;
mod console;
mod manager;
mod metrics;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use hostops::domains::{
    ConsoleChunk, DomainError, DomainInfo, DomainUsage, StartRequest, StopAnswer,
};

pub use applog::AppLogBatcher;
pub use console::{CONSOLE_CHUNK, ConsoleLine, MAX_LINE};
pub use manager::{Manager, Reconciled, START_RETRY_SECS, STOP_TIMEOUT_SECS};

/// The host's `domains` operations domainmgr uses.
pub trait Host {
    fn start(&mut self, request: &StartRequest) -> Result<DomainInfo, HostError>;
    fn stop(&mut self, uuid: &str, timeout_secs: u32) -> Result<StopAnswer, HostError>;
    fn list(&mut self) -> Result<Vec<DomainInfo>, HostError>;
    fn usage(&mut self, uuid: &str) -> Result<DomainUsage, HostError>;
    /// At most `max_bytes` of the domain's console from `offset`.
    fn console(
        &mut self,
        uuid: &str,
        offset: u64,
        max_bytes: u32,
    ) -> Result<ConsoleChunk, HostError>;
}

/// Why a host operation did not answer.
#[derive(Debug, Clone, PartialEq)]
pub enum HostError {
    /// The domains target's typed error.
    Domain(DomainError),
    /// No answer, refused by the bus, or an answer that made no sense.
    Call(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Domain(e) => write!(f, "{e}"),
            HostError::Call(why) => f.write_str(why),
        }
    }
}
