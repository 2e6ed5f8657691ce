//! The hardware watchdog: the host pets the Linux watchdog device
//! (`/dev/watchdog`) only while every service is healthy, so a crash loop
//! or a hung host ends in a hardware reset, recorded as the next boot's
//! reason.
//!
//! Petting is one byte written to the device, at most once per pet
//! interval, from the supervisor's own loop ([`crate::node::Node::run_watched`]):
//! a host whose loop stops (hung, deadlocked, killed) stops petting too.
//! The host sets the timeout when it opens the device (`WDIOC_SETTIMEOUT`,
//! through the `watchdogdev` crate, which holds the unsafe ioctls this
//! crate forbids; [`DEFAULT_TIMEOUT_SECS`] as EVE runs it) and pets at a
//! third of the timeout in force ([`pet_interval`]), so two pets may be
//! late before the reset.
//!
//! How the next boot knows the reset was the watchdog's: before it stops
//! petting, the host records in the boot record (`targets::power`) that a
//! watchdog reset is expected and why (`End::Unwatched`, written
//! atomically), so the reset that follows reads as `WATCHDOG_PID` (a
//! service crash-looping) or `WATCHDOG_HUNG` (one crash-looping by
//! hanging) rather than a power failure. A host that hung writes nothing;
//! for it the driver's own flag (`bootstatus` in sysfs, `WDIOF_CARDRESET`,
//! which i6300esb sets after its reset) turns the power failure the record
//! suggests into `WATCHDOG_HUNG` ([`reset_reported`]). A clean stop of the
//! host writes the magic `V` before closing, so the driver stops the
//! timer; any other close leaves it running.

mod health;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use health::{Unhealthy, unhealthy};

use watchdogdev::{QueryError, SetTimeoutError, WDIOF_CARDRESET};

use crate::supervisor::Status;
use crate::targets::PowerSwitch;
use crate::targets::power::RecordError;

/// The timeout the host asks for: EVE runs watchdog(8) with no
/// `watchdog-timeout` (`pkg/watchdog`), so the daemon's default of 60 s.
pub const DEFAULT_TIMEOUT_SECS: u32 = 60;

/// How often the device is petted while the node is healthy when its
/// timeout is unknown (a driver that does not say): well inside any
/// driver's timeout, as EVE's watchdog(8) pets (`interval = 1`).
pub const UNKNOWN_TIMEOUT_PET_INTERVAL: Duration = Duration::from_secs(1);

/// The pet interval for a timeout of `timeout_secs`: a third of it, at
/// least a second.
pub fn pet_interval(timeout_secs: u32) -> Duration {
    (Duration::from_secs(timeout_secs.into()) / 3).max(UNKNOWN_TIMEOUT_PET_INTERVAL)
}

/// Why the watchdog device could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("opening the watchdog {path}: {source}")]
pub struct OpenError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Something the caller should say about the watchdog.
#[derive(Debug)]
pub enum Change {
    /// Petting stopped: the machine resets after the driver's timeout
    /// unless the node is healthy again first. `recorded` is the failure
    /// to record the reason, if any (the reset then reads as a power
    /// failure).
    Stopped {
        why: Unhealthy,
        recorded: Result<(), RecordError>,
    },
    /// Every service is healthy again: petting resumed.
    Resumed { recorded: Result<(), RecordError> },
    /// A pet failed (said once until one succeeds again).
    PetFailed(io::Error),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Stopped { why, recorded } => {
                write!(f, "{why}: watchdog no longer petted, the machine resets")?;
                if let Err(e) = recorded {
                    write!(f, " (reason not recorded: {e})")?;
                }
                Ok(())
            }
            Change::Resumed { recorded } => {
                write!(f, "every service healthy again: watchdog petted")?;
                if let Err(e) = recorded {
                    write!(f, " (not recorded: {e})")?;
                }
                Ok(())
            }
            Change::PetFailed(e) => write!(f, "petting the watchdog: {e}"),
        }
    }
}

/// What the driver said when the host opened the device.
#[derive(Debug)]
pub struct Armed {
    /// The driver's name for the device (`WDIOC_GETSUPPORT`).
    pub identity: Result<String, QueryError>,
    /// The timeout asked for.
    pub asked_secs: u32,
    /// The timeout the driver set, which may differ from the one asked.
    pub set: Result<u32, SetTimeoutError>,
    /// The timeout in force (`WDIOC_GETTIMEOUT`, read back).
    pub in_force: Result<u32, QueryError>,
}

impl Armed {
    /// The pet interval for the timeout in force, or the safe one.
    pub fn pet_interval(&self) -> Duration {
        match (&self.in_force, &self.set) {
            (Ok(secs), _) | (Err(_), Ok(secs)) => pet_interval(*secs),
            (Err(_), Err(_)) => UNKNOWN_TIMEOUT_PET_INTERVAL,
        }
    }
}

impl fmt::Display for Armed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.identity {
            Ok(identity) => write!(f, "{identity:?}")?,
            Err(e) => write!(f, "identity unknown ({e})")?,
        }
        match &self.set {
            Ok(_) => {}
            Err(e) => write!(f, ", timeout {} s not set: {e}", self.asked_secs)?,
        }
        match &self.in_force {
            Ok(secs) => write!(f, ", timeout {secs} s")?,
            Err(e) => write!(f, ", timeout unknown ({e})")?,
        }
        write!(f, ", petted every {:?}", self.pet_interval())
    }
}

/// A watchdog device the host pets while the node is healthy.
pub struct Watchdog<D: Write> {
    device: D,
    switch: PowerSwitch,
    pet_interval: Duration,
    next_pet: Option<Instant>,
    stopped_for: Option<Unhealthy>,
    pet_failing: bool,
}

impl Watchdog<File> {
    /// Opens the device at `path`, which starts its timer, and sets its
    /// timeout to `timeout_secs`; petted at a third of the timeout the
    /// driver then says is in force.
    pub fn open(
        path: &Path,
        switch: PowerSwitch,
        timeout_secs: u32,
    ) -> Result<(Watchdog<File>, Armed), OpenError> {
        let device = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| OpenError {
                path: path.to_path_buf(),
                source,
            })?;
        let armed = Armed {
            identity: watchdogdev::info(&device).map(|info| info.identity),
            asked_secs: timeout_secs,
            set: watchdogdev::set_timeout(&device, timeout_secs),
            in_force: watchdogdev::timeout(&device),
        };
        let interval = armed.pet_interval();
        Ok((Watchdog::new(device, switch, interval), armed))
    }
}

impl<D: Write> Watchdog<D> {
    /// A watchdog on an open `device`, petted every `pet_interval`;
    /// `switch` keeps the boot record.
    pub fn new(device: D, switch: PowerSwitch, pet_interval: Duration) -> Watchdog<D> {
        Watchdog {
            device,
            switch,
            pet_interval,
            next_pet: None,
            stopped_for: None,
            pet_failing: false,
        }
    }

    /// Called every turn of the supervisor's loop at `now` with every
    /// service's status: pets the device if they are all healthy and a
    /// pet is due, or records the coming reset and stops petting.
    pub fn watch(&mut self, now: Instant, statuses: &[Status]) -> Option<Change> {
        if let Some(why) = unhealthy(statuses) {
            if self.stopped_for.is_some() {
                return None;
            }
            // Recorded before the last pet is missed: the reset cannot
            // come before the record is durable.
            let recorded = self.switch.expect_watchdog_reset(why.reason());
            self.stopped_for = Some(why.clone());
            return Some(Change::Stopped { why, recorded });
        }
        let mut change = self.stopped_for.take().map(|_| Change::Resumed {
            recorded: self.switch.watched_again(),
        });
        if self.next_pet.is_none_or(|due| now >= due) {
            match self.pet() {
                Ok(()) => {
                    self.next_pet = Some(now + self.pet_interval);
                    self.pet_failing = false;
                }
                Err(e) if !self.pet_failing => {
                    self.pet_failing = true;
                    change = change.or(Some(Change::PetFailed(e)));
                }
                Err(_) => {}
            }
        }
        change
    }

    fn pet(&mut self) -> io::Result<()> {
        self.device.write_all(b"\0")?;
        self.device.flush()
    }

    /// The clean stop: the magic `V` tells the driver to stop the timer
    /// when the device closes, here.
    pub fn close(mut self) -> io::Result<D> {
        self.device.write_all(b"V")?;
        self.device.flush()?;
        Ok(self.device)
    }
}

/// Whether the driver of the watchdog device `device` (`/dev/watchdog`,
/// `/dev/watchdogN`) says it reset the machine: its `bootstatus` under
/// `class_dir` (`/sys/class/watchdog`) has `WDIOF_CARDRESET`. False when
/// the driver does not say.
pub fn reset_reported(class_dir: &Path, device: &Path) -> bool {
    let name = match device.file_name().and_then(|n| n.to_str()) {
        // The legacy node is the first watchdog's.
        Some("watchdog") => "watchdog0",
        Some(name) => name,
        None => return false,
    };
    std::fs::read_to_string(class_dir.join(name).join("bootstatus"))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .is_some_and(|status| status & WDIOF_CARDRESET != 0)
}
