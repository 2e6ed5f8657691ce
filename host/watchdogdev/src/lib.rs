//! The Linux watchdog device's ioctls (`linux/watchdog.h`): set and read
//! the timeout, the driver's identity and its boot status.
//!
//! Its own crate because an ioctl is unsafe code and the node host
//! (`eve-host`) forbids it: each call here passes the kernel a value of
//! exactly the type the ioctl's number encodes, so callers get a safe API.
//! Petting and the magic close are plain writes and stay with the host.

use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::ioctl::{Getter, Opcode, Updater, ioctl, opcode};

/// The ioctl group of the watchdog API.
const GROUP: u8 = b'W';

/// `struct watchdog_info`, as the kernel writes it.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawInfo {
    options: u32,
    firmware_version: u32,
    identity: [u8; 32],
}

/// `WDIOC_GETSUPPORT`: `_IOR('W', 0, struct watchdog_info)`.
const GETSUPPORT: Opcode = opcode::read::<RawInfo>(GROUP, 0);
/// `WDIOC_GETBOOTSTATUS`: `_IOR('W', 2, int)`.
const GETBOOTSTATUS: Opcode = opcode::read::<i32>(GROUP, 2);
/// `WDIOC_SETTIMEOUT`: `_IOWR('W', 6, int)`.
const SETTIMEOUT: Opcode = opcode::read_write::<i32>(GROUP, 6);
/// `WDIOC_GETTIMEOUT`: `_IOR('W', 7, int)`.
const GETTIMEOUT: Opcode = opcode::read::<i32>(GROUP, 7);

/// `WDIOF_SETTIMEOUT` in [`Info::options`]: the timeout can be set.
pub const WDIOF_SETTIMEOUT: u32 = 0x0080;
/// `WDIOF_CARDRESET` in [`Info::options`] and the boot status: the last
/// reboot was the watchdog's.
pub const WDIOF_CARDRESET: u32 = 0x0020;

/// What a watchdog driver says of itself (`WDIOC_GETSUPPORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The `WDIOF_*` flags the driver supports.
    pub options: u32,
    pub firmware_version: u32,
    /// The driver's name for the device (`i6300ESB timer` for QEMU's);
    /// the kernel's NUL-padded bytes, lossily as text.
    pub identity: String,
}

/// Why asking the driver something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The file is not a watchdog device (`ENOTTY`, as for a regular file).
    #[error("not a watchdog device")]
    NotAWatchdog,
    /// The driver does not answer this question (`EOPNOTSUPP`).
    #[error("the watchdog driver does not say")]
    Unsupported,
    #[error("watchdog ioctl: {0}")]
    Other(Errno),
}

impl From<Errno> for QueryError {
    fn from(errno: Errno) -> QueryError {
        match errno {
            Errno::NOTTY => QueryError::NotAWatchdog,
            Errno::OPNOTSUPP => QueryError::Unsupported,
            other => QueryError::Other(other),
        }
    }
}

/// Why setting the timeout failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SetTimeoutError {
    /// The file is not a watchdog device (`ENOTTY`).
    #[error("not a watchdog device")]
    NotAWatchdog,
    /// The driver's timeout is fixed (`EOPNOTSUPP`).
    #[error("the watchdog's timeout cannot be set")]
    Fixed,
    /// Outside what the driver can time (`EINVAL`).
    #[error("the watchdog cannot time {0} s")]
    OutOfRange(u32),
    /// More than the API's `int` holds.
    #[error("{0} s is too long a timeout")]
    TooLong(u32),
    #[error("setting the watchdog's timeout: {0}")]
    Other(Errno),
}

/// The driver's identity and options.
pub fn info(device: impl AsFd) -> Result<Info, QueryError> {
    // SAFETY: GETSUPPORT is `_IOR('W', 0, struct watchdog_info)`, and
    // `RawInfo` is that struct (`repr(C)`, three fields of the kernel's
    // types and sizes: 40 bytes), which the kernel fills whole.
    let raw = unsafe { ioctl(device, Getter::<GETSUPPORT, RawInfo>::new()) }?;
    Ok(Info::from(raw))
}

impl From<RawInfo> for Info {
    /// The identity up to its first NUL, or all 32 bytes without one.
    fn from(raw: RawInfo) -> Info {
        let end = raw
            .identity
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw.identity.len());
        Info {
            options: raw.options,
            firmware_version: raw.firmware_version,
            identity: String::from_utf8_lossy(&raw.identity[..end]).into_owned(),
        }
    }
}

/// The `WDIOF_*` flags of the last reboot (`WDIOF_CARDRESET`: the
/// watchdog's).
pub fn boot_status(device: impl AsFd) -> Result<u32, QueryError> {
    // SAFETY: GETBOOTSTATUS is `_IOR('W', 2, int)`; the kernel writes one
    // `int`, which `i32` is on every Linux target.
    let status = unsafe { ioctl(device, Getter::<GETBOOTSTATUS, i32>::new()) }?;
    Ok(status as u32)
}

/// The timeout in seconds the driver runs now.
pub fn timeout(device: impl AsFd) -> Result<u32, QueryError> {
    // SAFETY: GETTIMEOUT is `_IOR('W', 7, int)`; the kernel writes one
    // `int`, which `i32` is on every Linux target.
    let secs = unsafe { ioctl(device, Getter::<GETTIMEOUT, i32>::new()) }?;
    u32::try_from(secs).map_err(|_| QueryError::Other(Errno::RANGE))
}

/// Sets the timeout to `secs` seconds and pets the watchdog (the kernel
/// does both); answers the timeout the driver chose, which may be longer
/// when its timer's steps are coarser.
pub fn set_timeout(device: impl AsFd, secs: u32) -> Result<u32, SetTimeoutError> {
    let mut value = i32::try_from(secs).map_err(|_| SetTimeoutError::TooLong(secs))?;
    // SAFETY: SETTIMEOUT is `_IOWR('W', 6, int)`; the kernel reads and
    // writes back one `int` through the pointer to `value`, an `i32` that
    // lives across the call.
    let result = unsafe { ioctl(device, Updater::<SETTIMEOUT, i32>::new(&mut value)) };
    result.map_err(|errno| match errno {
        Errno::NOTTY => SetTimeoutError::NotAWatchdog,
        Errno::OPNOTSUPP => SetTimeoutError::Fixed,
        Errno::INVAL => SetTimeoutError::OutOfRange(secs),
        other => SetTimeoutError::Other(other),
    })?;
    u32::try_from(value).map_err(|_| SetTimeoutError::Other(Errno::RANGE))
}

#[cfg(test)]
mod tests;
