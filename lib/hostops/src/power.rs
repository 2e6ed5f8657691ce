//! The node's power: reboot and shut down the whole node, and why the
//! node last booted.
//!
//! Services decide that the node must restart (baseosmgr after writing a
//! base OS update, zedagent on a controller's command); only the host can
//! do it, after stopping every service and app domain in order. The host
//! records the reason before it stops, so the next boot can tell an update
//! from a command or a power failure (EVE's `ZInfoDevice.last_boot_reason`).
//!
//! # For the services that use power
//!
//! - [`Reboot`] / [`Shutdown`]: the reason is recorded durably, then the
//!   node stops as on any other stop; the answer comes before the stop
//!   begins, so the caller hears it.
//! - [`BootReasonOf`]: why this boot happened, when it began and when
//!   the previous one did.

use core::fmt;

crate::target! {
    /// The node's power.
    pub struct Power = "power", version 1, error PowerError;
    /// Records the reason and restarts the node.
    Reboot = "reboot": PowerRequest => Empty;
    /// Records the reason and powers the node off.
    Shutdown = "shutdown": PowerRequest => Empty;
    /// Why and when this boot began.
    BootReasonOf = "boot-reason": Empty => BootRecord;
}

/// A request or answer without parameters.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Empty {}

/// Why a boot happened: EVE's `BootReason` (eve-api `info.proto`), the
/// same numbers, so zedagent reports it as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum BootReason {
    Unspecified = 0,
    /// No boot was recorded before on this node's state.
    First = 1,
    /// A reboot a controller or an operator commanded.
    RebootCmd = 2,
    /// Booting a base OS update on trial.
    Update = 3,
    /// Booting the previous base OS after an update failed its trial.
    Fallback = 4,
    /// No controller for too long.
    Disconnect = 5,
    Fatal = 6,
    Oom = 7,
    WatchdogHung = 8,
    WatchdogPid = 9,
    Kernel = 10,
    /// The previous boot ended without the host stopping the node.
    PowerFail = 11,
    /// The previous boot ended with a stop the node did not ask for (a
    /// signal from outside it).
    Unknown = 12,
    VaultFailed = 13,
    /// Powered on again after a commanded shutdown.
    PoweroffCmd = 14,
    ParseFail = 255,
}

/// Why the node is asked to reboot or shut down.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct PowerRequest {
    /// What the next boot reports as its reason (for a shutdown, the boot
    /// after power comes back reports `PoweroffCmd` whatever this says).
    #[prost(enumeration = "BootReason", tag = "1")]
    pub reason: i32,
}

/// This boot, as the host recorded it.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct BootRecord {
    #[prost(enumeration = "BootReason", tag = "1")]
    pub reason: i32,
    /// When this boot's host started, seconds since the Unix epoch.
    #[prost(uint64, tag = "2")]
    pub boot_time_unix: u64,
    /// When the previous boot's host started; 0 on the first boot.
    #[prost(uint64, tag = "3")]
    pub previous_boot_time_unix: u64,
    /// Boots recorded on this node's state, this one included.
    #[prost(uint64, tag = "4")]
    pub boots: u64,
}

/// Why a power operation failed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PowerError {
    #[prost(enumeration = "PowerErrorCode", tag = "1")]
    pub code: i32,
    /// The host's words.
    #[prost(string, tag = "2")]
    pub detail: alloc::string::String,
}

/// The reasons a power operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PowerErrorCode {
    Unspecified = 0,
    /// The reason could not be recorded, so the node does not stop.
    Storage = 1,
    /// A reboot or shutdown is already under way.
    Stopping = 2,
}

impl fmt::Display for PowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code() {
            PowerErrorCode::Storage => write!(f, "recording the reason failed: {}", self.detail),
            PowerErrorCode::Stopping => write!(f, "the node is already stopping: {}", self.detail),
            PowerErrorCode::Unspecified => write!(f, "power error: {}", self.detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use prost::Message;

    use super::*;
    use crate::{Operation, Target};

    #[test]
    fn the_target_lists_every_operation_once() {
        let spec = Power::SPEC;
        assert_eq!((spec.name, spec.version), ("power", 1));
        for name in [Reboot::NAME, Shutdown::NAME, BootReasonOf::NAME] {
            assert!(spec.serves(name), "{name}");
        }
        assert_eq!(spec.operations.len(), 3);
    }

    #[test]
    fn boot_reasons_carry_eves_numbers() {
        assert_eq!(BootReason::Update as i32, 3);
        assert_eq!(BootReason::PowerFail as i32, 11);
        assert_eq!(BootReason::PoweroffCmd as i32, 14);
        assert_eq!(BootReason::ParseFail as i32, 255);
        let request = PowerRequest {
            reason: BootReason::Fallback as i32,
        };
        let back = PowerRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.reason(), BootReason::Fallback);
    }

    #[test]
    fn errors_read_well_and_hostile_bytes_are_refused() {
        let e = PowerError {
            code: PowerErrorCode::Storage as i32,
            detail: "disk full".into(),
        };
        let back = PowerError::decode(e.encode_to_vec().as_slice()).unwrap();
        assert_eq!(format!("{back}"), "recording the reason failed: disk full");
        assert!(BootRecord::decode(&[0x08, 0xff][..]).is_err());
    }
}
