//! The `power` target: reboot and shut down the node, and why it booted
//! (see `hostops::power` for the operations).
//!
//! The host keeps one boot record per node ([`record`], in the state
//! directory). [`PowerSwitch::begin`], at the host's start, reads how the
//! previous boot ended and records this one as running; a `reboot` or
//! `shutdown` call records its reason durably first and only then sets
//! the host's stop flag, so the node stops as on SIGTERM (every service,
//! then every app domain) and `eve-host run` ends with
//! [`EXIT_REBOOT`] or [`EXIT_SHUTDOWN`]. As the node image's PID 1, the
//! init then reboots or powers off the machine; elsewhere (the dev node)
//! whoever started the host decides what a reboot means.

pub mod record;

use std::error::Error;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use eve_broker::{RpcError, RpcHandler};
use hostops::power::{
    BootReason, BootReasonOf, BootRecord, Empty, Power, PowerError, PowerErrorCode, PowerRequest,
    Reboot, Shutdown,
};
use hostops::{Operation, Target, TargetSpec};

use super::{HostTarget, Refused, TargetContext, serve};
use record::{End, Record, RecordFile};

/// `eve-host run`'s exit status when a service asked for a reboot.
pub const EXIT_REBOOT: u8 = 3;
/// `eve-host run`'s exit status when a service asked for a shutdown.
pub const EXIT_SHUTDOWN: u8 = 4;

/// How a host run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Stopped from outside (a signal).
    Stopped,
    /// A service asked for a reboot.
    Reboot(BootReason),
    /// A service asked for a shutdown.
    Shutdown(BootReason),
}

impl Ending {
    /// `eve-host run`'s exit status for it.
    pub fn exit_status(self) -> u8 {
        match self {
            Ending::Stopped => 0,
            Ending::Reboot(_) => EXIT_REBOOT,
            Ending::Shutdown(_) => EXIT_SHUTDOWN,
        }
    }
}

/// Why the boot record could not be kept.
#[derive(Debug, thiserror::Error)]
#[error("the boot record {path}: {source}")]
pub struct RecordError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

struct Switch {
    file: RecordFile,
    record: Mutex<Record>,
    stop: Arc<AtomicBool>,
}

/// This boot's record and the host's stop flag, shared by the `power`
/// target and `eve-host run`.
#[derive(Clone)]
pub struct PowerSwitch {
    inner: Arc<Switch>,
}

impl std::fmt::Debug for PowerSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerSwitch")
            .field("record", &self.record())
            .finish()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl PowerSwitch {
    /// Records a new boot in `state_dir`, its reason decided from how the
    /// previous one ended; `stop` is the flag that stops the node.
    pub fn begin(state_dir: &Path, stop: Arc<AtomicBool>) -> Result<PowerSwitch, RecordError> {
        PowerSwitch::begin_after(state_dir, stop, false)
    }

    /// [`PowerSwitch::begin`] on a machine whose watchdog driver says
    /// (`watchdog_reset`) whether it reset the machine: a previous boot
    /// that ended while running was then a hung host, not a power failure.
    pub fn begin_after(
        state_dir: &Path,
        stop: Arc<AtomicBool>,
        watchdog_reset: bool,
    ) -> Result<PowerSwitch, RecordError> {
        let file = RecordFile::in_state_dir(state_dir);
        let error = |source| RecordError {
            path: file.path().display().to_string(),
            source,
        };
        let previous = file.read().map_err(error)?;
        let record = Record::next(previous, unix_now(), watchdog_reset);
        file.write(&record).map_err(error)?;
        Ok(PowerSwitch {
            inner: Arc::new(Switch {
                file,
                record: Mutex::new(record),
                stop,
            }),
        })
    }

    /// This boot as recorded.
    pub fn record(&self) -> Record {
        *self.locked()
    }

    fn locked(&self) -> MutexGuard<'_, Record> {
        self.inner
            .record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `end` as this boot's, durably, then in `record`.
    fn end_with(&self, record: &mut Record, end: End) -> std::io::Result<()> {
        let next = Record { end, ..*record };
        self.inner.file.write(&next)?;
        *record = next;
        Ok(())
    }

    fn record_error(&self, source: std::io::Error) -> RecordError {
        RecordError {
            path: self.inner.file.path().display().to_string(),
            source,
        }
    }

    /// Records `end` and stops the node; refused while a reboot or
    /// shutdown is already under way.
    fn request(&self, end: End) -> Result<(), PowerError> {
        let mut record = self.locked();
        if !matches!(record.end, End::Running | End::Unwatched(_)) {
            return Err(PowerError {
                code: PowerErrorCode::Stopping as i32,
                detail: format!("{:?}", record.end),
            });
        }
        self.end_with(&mut record, end).map_err(|e| PowerError {
            code: PowerErrorCode::Storage as i32,
            detail: e.to_string(),
        })?;
        self.inner.stop.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Records, before the host stops petting the hardware watchdog, that
    /// the reset to come is the watchdog's, for `reason`; nothing changes
    /// once a reboot or shutdown is under way (its own end is recorded).
    pub fn expect_watchdog_reset(&self, reason: BootReason) -> Result<(), RecordError> {
        self.replace_running(End::Unwatched(reason))
    }

    /// Records that the host pets the watchdog again: this boot is
    /// running as before.
    pub fn watched_again(&self) -> Result<(), RecordError> {
        self.replace_running(End::Running)
    }

    /// Records `end` in place of a running (or unwatched) end.
    fn replace_running(&self, end: End) -> Result<(), RecordError> {
        let mut record = self.locked();
        if !matches!(record.end, End::Running | End::Unwatched(_)) || record.end == end {
            return Ok(());
        }
        self.end_with(&mut record, end)
            .map_err(|e| self.record_error(e))
    }

    /// How this run ends, recorded: a stop nobody asked for through the
    /// target is recorded as such, so the next boot does not take it for
    /// a power failure.
    pub fn finish(&self) -> Result<Ending, RecordError> {
        let mut record = self.locked();
        match record.end {
            End::Reboot(reason) => Ok(Ending::Reboot(reason)),
            End::Shutdown(reason) => Ok(Ending::Shutdown(reason)),
            End::Running | End::Stopped | End::Unwatched(_) => {
                self.end_with(&mut record, End::Stopped)
                    .map_err(|e| self.record_error(e))?;
                Ok(Ending::Stopped)
            }
        }
    }
}

/// The power target.
pub struct PowerTarget {
    switch: PowerSwitch,
}

/// Opens the target on the host's switch.
pub fn open(
    context: &TargetContext<'_>,
) -> Result<Arc<dyn HostTarget>, Box<dyn Error + Send + Sync>> {
    Ok(Arc::new(PowerTarget::new(context.power.clone())))
}

/// A request's reason, which must be one of EVE's.
fn reason(request: &PowerRequest) -> Result<BootReason, Refused<PowerError>> {
    BootReason::try_from(request.reason)
        .map_err(|_| Refused::BadRequest(format!("no boot reason {}", request.reason)))
}

impl PowerTarget {
    pub fn new(switch: PowerSwitch) -> PowerTarget {
        PowerTarget { switch }
    }

    fn stop(&self, caller: &str, end: End) -> Result<Empty, Refused<PowerError>> {
        log::warn!("power: {caller} asks for {end:?}; stopping the node");
        self.switch.request(end).map_err(Refused::Failed)?;
        Ok(Empty {})
    }
}

impl RpcHandler for PowerTarget {
    fn call(&self, caller: &str, operation: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        match operation {
            Reboot::NAME => {
                serve::<Reboot>(request, |r| self.stop(caller, End::Reboot(reason(&r)?)))
            }
            Shutdown::NAME => {
                serve::<Shutdown>(request, |r| self.stop(caller, End::Shutdown(reason(&r)?)))
            }
            BootReasonOf::NAME => serve::<BootReasonOf>(request, |_| {
                let r = self.switch.record();
                Ok(BootRecord {
                    reason: r.reason as i32,
                    boot_time_unix: r.boot_time,
                    previous_boot_time_unix: r.previous_boot_time,
                    boots: r.boots,
                })
            }),
            other => Err(RpcError::BadRequest(format!(
                "power has no operation {other}"
            ))),
        }
    }
}

impl HostTarget for PowerTarget {
    fn spec(&self) -> &'static TargetSpec {
        &Power::SPEC
    }

    fn describe(&self) -> String {
        let r = self.switch.record();
        format!("boot {} ({:?})", r.boots, r.reason)
    }
}

#[cfg(test)]
mod tests {
    use hostops::power::PowerErrorCode;
    use prost::Message;

    use super::*;

    fn reboot(target: &PowerTarget, reason: BootReason) -> Result<Vec<u8>, RpcError> {
        let request = PowerRequest {
            reason: reason as i32,
        };
        target.call("baseosmgr", Reboot::NAME, &request.encode_to_vec())
    }

    fn boot_reason(target: &PowerTarget) -> BootRecord {
        let answer = target.call("zedagent", BootReasonOf::NAME, &[]).unwrap();
        BootRecord::decode(answer.as_slice()).unwrap()
    }

    #[test]
    fn boots_are_recorded_with_their_reasons_across_host_runs() {
        let dir = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let first = PowerTarget::new(PowerSwitch::begin(dir.path(), stop.clone()).unwrap());
        let record = boot_reason(&first);
        assert_eq!(record.reason(), BootReason::First);
        assert_eq!((record.boots, record.previous_boot_time_unix), (1, 0));
        assert!(!stop.load(Ordering::SeqCst));
        reboot(&first, BootReason::Update).unwrap();
        assert!(stop.load(Ordering::SeqCst), "the node stops");
        let err = reboot(&first, BootReason::RebootCmd).unwrap_err();
        assert!(
            matches!(&err, RpcError::Failed { error, .. }
                if PowerError::decode(error.as_slice()).unwrap().code() == PowerErrorCode::Stopping),
            "{err:?}"
        );
        assert_eq!(
            first.switch.finish().unwrap(),
            Ending::Reboot(BootReason::Update)
        );
        assert_eq!(
            Ending::Reboot(BootReason::Update).exit_status(),
            EXIT_REBOOT
        );

        // The next run: an update boot, which then ends without the host
        // stopping (power lost).
        let second = PowerSwitch::begin(dir.path(), Arc::new(AtomicBool::new(false))).unwrap();
        let record = PowerTarget::new(second.clone());
        let answer = boot_reason(&record);
        assert_eq!(answer.reason(), BootReason::Update);
        assert_eq!(answer.boots, 2);
        assert_eq!(
            answer.previous_boot_time_unix,
            boot_reason(&first).boot_time_unix
        );
        drop(second);
        let third = PowerSwitch::begin(dir.path(), Arc::new(AtomicBool::new(false))).unwrap();
        assert_eq!(third.record().reason, BootReason::PowerFail);
        assert_eq!(third.finish().unwrap(), Ending::Stopped);
        let fourth = PowerSwitch::begin(dir.path(), Arc::new(AtomicBool::new(false))).unwrap();
        assert_eq!(fourth.record().reason, BootReason::Unknown);
        let shut = PowerTarget::new(fourth.clone());
        let request = PowerRequest {
            reason: BootReason::RebootCmd as i32,
        };
        shut.call("zedagent", Shutdown::NAME, &request.encode_to_vec())
            .unwrap();
        assert_eq!(fourth.finish().unwrap().exit_status(), EXIT_SHUTDOWN);
        let fifth = PowerSwitch::begin(dir.path(), Arc::new(AtomicBool::new(false))).unwrap();
        assert_eq!(fifth.record().reason, BootReason::PoweroffCmd);
        assert_eq!(fifth.record().boots, 5);
    }

    #[test]
    fn a_request_that_cannot_be_recorded_does_not_stop_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let target = PowerTarget::new(PowerSwitch::begin(dir.path(), stop.clone()).unwrap());
        // The record's directory replaced by a file: no write can succeed.
        let power_dir = dir.path().join("power");
        std::fs::remove_dir_all(&power_dir).unwrap();
        std::fs::write(&power_dir, b"").unwrap();
        let err = reboot(&target, BootReason::Update).unwrap_err();
        assert!(
            matches!(&err, RpcError::Failed { error, .. }
                if PowerError::decode(error.as_slice()).unwrap().code() == PowerErrorCode::Storage),
            "{err:?}"
        );
        assert!(!stop.load(Ordering::SeqCst));
        assert!(matches!(
            reboot(&target, BootReason::Update),
            Err(RpcError::Failed { .. })
        ));
    }

    #[test]
    fn unknown_reasons_and_operations_are_bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let target = PowerTarget::new(PowerSwitch::begin(dir.path(), stop.clone()).unwrap());
        let request = PowerRequest { reason: 77 };
        assert!(matches!(
            target.call("baseosmgr", Reboot::NAME, &request.encode_to_vec()),
            Err(RpcError::BadRequest(_))
        ));
        assert!(matches!(
            target.call("baseosmgr", Reboot::NAME, &[0xff]),
            Err(RpcError::BadRequest(_))
        ));
        assert!(matches!(
            target.call("baseosmgr", "halt", &[]),
            Err(RpcError::BadRequest(_))
        ));
        assert!(!stop.load(Ordering::SeqCst));
    }
}
