//! App domains: the host starts, stops, watches and measures each app's
//! VM (a unikernel, a Linux VM, or a container in the shim VM).
//!
//! domainmgr decides what runs; the host runs it, admitting each domain
//! against the memory and CPUs the node keeps for apps, and never takes a
//! path from a service: a domain's disks are host volumes named as the
//! `volumes` target names them (`<uuid>.<generation>`), which the host
//! resolves to its own files and checks (ready, and of a form the kind
//! can boot).
//!
//! # For the services that use domains
//!
//! - A domain is known by its app instance's UUID. [`Start`] answers once
//!   QEMU runs the guest (or why not: admission with the MiB needed and
//!   free, a volume not ready, QEMU's own words).
//! - The host watches what it started: a domain that crashes or reboots
//!   itself is started again after a backoff (a crash loop backs off up
//!   to ten minutes); [`DomainInfo::boot_count`] counts those boots and
//!   [`DomainInfo::end`] says how the last boot ended. A guest that
//!   powers itself off stays off.
//! - [`Stop`] stops a domain (the power button, then power-off after
//!   `timeout_secs`), answers how it ended, and forgets it; stopping a
//!   domain that already ended answers that end.
//! - [`Usage`] measures a running domain's QEMU; [`Console`] reads its
//!   console from an offset, a bounded chunk per call, for log forwarding.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

crate::target! {
    /// The host's app domains.
    pub struct Domains = "domains", version 1, error DomainError;
    /// Admits and starts a domain; answers once QEMU runs it.
    Start = "start": StartRequest => DomainInfo, timeout core::time::Duration::from_secs(60);
    /// Stops a domain (graceful, then power-off) and forgets it.
    Stop = "stop": StopRequest => StopAnswer, timeout core::time::Duration::from_secs(
        MAX_STOP_SECS as u64 + 20
    );
    /// One domain the host holds.
    Status = "status": DomainRef => DomainInfo;
    /// Every domain the host holds.
    List = "list": Empty => DomainList;
    /// A running domain's CPU and memory.
    Usage = "usage": DomainRef => DomainUsage;
    /// A chunk of a domain's console.
    Console = "console": ConsoleRequest => ConsoleChunk;
}

/// The longest graceful stop a caller may ask for, seconds.
pub const MAX_STOP_SECS: u32 = 120;
/// The most console bytes one call answers.
pub const MAX_CONSOLE_CHUNK: u32 = 64 * 1024;

/// A request without parameters.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Empty {}

/// What runs in a domain (the numbers of `topics::DomainKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DomainKind {
    Unspecified = 0,
    /// The first disk's file is a PVH ELF (x86_64) or arm64 Image.
    Unikernel = 1,
    /// UEFI boots the first disk.
    LinuxVm = 2,
    /// The first disk is a container volume, run in the host's shim VM.
    Container = 3,
}

/// One disk: a host volume.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Disk {
    /// `<uuid>.<generation>`, as the `volumes` target names it.
    #[prost(string, tag = "1")]
    pub host_volume: String,
    #[prost(bool, tag = "2")]
    pub readonly: bool,
}

/// A host loopback port forwarded to the app's TCP port.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct PortMap {
    #[prost(uint32, tag = "1")]
    pub host_port: u32,
    #[prost(uint32, tag = "2")]
    pub app_port: u32,
}

/// A domain to start.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StartRequest {
    /// The app instance's UUID (canonical lowercase form).
    #[prost(string, tag = "1")]
    pub uuid: String,
    /// For the logs.
    #[prost(string, tag = "2")]
    pub display_name: String,
    #[prost(enumeration = "DomainKind", tag = "3")]
    pub kind: i32,
    /// Guest RAM, KiB (rounded up to MiB).
    #[prost(uint64, tag = "4")]
    pub memory_kib: u64,
    #[prost(uint32, tag = "5")]
    pub vcpus: u32,
    /// In boot order.
    #[prost(message, repeated, tag = "6")]
    pub disks: Vec<Disk>,
    /// Appended to a unikernel's or the shim's kernel command line.
    #[prost(string, tag = "7")]
    pub extra_args: String,
    /// Cloud-init user data (a NoCloud seed disk); empty for none.
    #[prost(bytes = "vec", tag = "8")]
    pub user_data: Vec<u8>,
    /// Forwards of the domain's one user-mode NIC, when it has no
    /// [`StartRequest::nics`].
    #[prost(message, repeated, tag = "9")]
    pub port_maps: Vec<PortMap>,
    /// NICs on the host's port switch, in index order (0, 1, ...): NIC
    /// `i` is carried by the `ports` target's port `<uuid>.<i>`, which
    /// zedrouter attaches. When there are any, the domain has these
    /// only, and no user-mode NIC.
    #[prost(message, repeated, tag = "10")]
    pub nics: Vec<Nic>,
}

/// A NIC on the host's port switch.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Nic {
    /// Its index in the domain: with the UUID, the port's name.
    #[prost(uint32, tag = "1")]
    pub index: u32,
    /// `xx:xx:xx:xx:xx:xx`, unicast: the address zedrouter expects.
    #[prost(string, tag = "2")]
    pub mac: String,
}

/// A domain, by its app instance's UUID.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DomainRef {
    #[prost(string, tag = "1")]
    pub uuid: String,
}

/// Stops a domain.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StopRequest {
    #[prost(string, tag = "1")]
    pub uuid: String,
    /// How long the guest has to power down before it is powered off (at
    /// most [`MAX_STOP_SECS`]).
    #[prost(uint32, tag = "2")]
    pub timeout_secs: u32,
}

/// Whether a domain's QEMU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RunState {
    Unspecified = 0,
    /// QEMU runs the guest.
    Running = 1,
    /// It ended and the host starts it again at [`DomainInfo::retry_unix`].
    Retrying = 2,
    /// It ended and stays so ([`DomainInfo::end`] says how).
    Ended = 3,
}

/// How a boot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EndReason {
    /// It has not ended.
    None = 0,
    /// Stopped by the host: the guest powered down when asked.
    Stopped = 1,
    /// Stopped by the host: powered off after the timeout.
    PoweredOff = 2,
    /// The guest powered itself off.
    Halted = 3,
    /// The guest reset itself.
    Rebooted = 4,
    /// The guest or its VMM crashed.
    Crashed = 5,
    /// A retry could not start it again.
    StartFailed = 6,
}

/// A domain as the host holds it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DomainInfo {
    #[prost(string, tag = "1")]
    pub uuid: String,
    #[prost(enumeration = "RunState", tag = "2")]
    pub state: i32,
    /// How the last boot ended.
    #[prost(enumeration = "EndReason", tag = "3")]
    pub end: i32,
    /// Why, in the host's words (a crash's reason and last console line).
    #[prost(string, tag = "4")]
    pub end_detail: String,
    /// When the running (or last) boot started, Unix seconds.
    #[prost(uint64, tag = "5")]
    pub boot_unix: u64,
    /// Boots since [`Start`], retries included.
    #[prost(uint32, tag = "6")]
    pub boot_count: u32,
    /// When the next retry is due (Retrying), Unix seconds.
    #[prost(uint64, tag = "7")]
    pub retry_unix: u64,
    /// When the last boot ended, Unix seconds.
    #[prost(uint64, tag = "8")]
    pub end_unix: u64,
    /// The host volumes it runs with.
    #[prost(string, repeated, tag = "9")]
    pub disks: Vec<String>,
}

/// Every domain the host holds.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DomainList {
    #[prost(message, repeated, tag = "1")]
    pub domains: Vec<DomainInfo>,
}

/// How a stop went.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StopAnswer {
    /// Stopped or PoweredOff, or how it had ended before.
    #[prost(enumeration = "EndReason", tag = "1")]
    pub end: i32,
    #[prost(string, tag = "2")]
    pub end_detail: String,
    /// From the power button to QEMU's exit, milliseconds.
    #[prost(uint64, tag = "3")]
    pub took_ms: u64,
}

/// A running domain's use of the host.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct DomainUsage {
    /// CPU time of its QEMU (guest and VMM), nanoseconds.
    #[prost(uint64, tag = "1")]
    pub cpu_ns: u64,
    /// Its QEMU's resident and proportional set sizes, KiB.
    #[prost(uint64, tag = "2")]
    pub rss_kib: u64,
    #[prost(uint64, tag = "3")]
    pub pss_kib: u64,
    /// Guest RAM the guest has touched, KiB.
    #[prost(uint64, tag = "4")]
    pub guest_ram_kib: u64,
    /// Guest RAM it was given, KiB.
    #[prost(uint64, tag = "5")]
    pub memory_kib: u64,
    /// Seconds since this boot started.
    #[prost(uint64, tag = "6")]
    pub up_secs: u64,
}

/// Reads a domain's console.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConsoleRequest {
    #[prost(string, tag = "1")]
    pub uuid: String,
    /// Where to read from, a byte offset in the console file.
    #[prost(uint64, tag = "2")]
    pub offset: u64,
    /// At most this many bytes (capped at [`MAX_CONSOLE_CHUNK`]).
    #[prost(uint32, tag = "3")]
    pub max_bytes: u32,
}

/// A chunk of a console.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConsoleChunk {
    /// The bytes as the guest wrote them.
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
    /// Where the next read starts.
    #[prost(uint64, tag = "2")]
    pub next_offset: u64,
    /// The console file's length now.
    #[prost(uint64, tag = "3")]
    pub size: u64,
}

/// Why a domain operation failed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DomainError {
    #[prost(enumeration = "DomainErrorCode", tag = "1")]
    pub code: i32,
    /// What it is about: the domain's UUID, or a volume's name.
    #[prost(string, tag = "2")]
    pub subject: String,
    /// Admission: MiB the domain needs (guest RAM and its VMM).
    #[prost(uint64, tag = "3")]
    pub needed_mib: u64,
    /// Admission: MiB free for apps.
    #[prost(uint64, tag = "4")]
    pub free_mib: u64,
    /// The host's (or QEMU's) words.
    #[prost(string, tag = "5")]
    pub detail: String,
}

/// The reasons a domain operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DomainErrorCode {
    Unspecified = 0,
    /// The host holds no such domain.
    NotFound = 1,
    /// The node cannot hold it next to the running ones.
    Admission = 2,
    /// The request cannot run (bad UUID, memory, vCPUs, disks, ports).
    BadRequest = 3,
    /// A disk's volume does not exist or is not built yet.
    VolumeNotReady = 4,
    /// The domain is already started (stop it first).
    Exists = 5,
    /// QEMU did not start it.
    StartFailed = 6,
    /// The host failed (its files, or stopping QEMU).
    Host = 7,
    /// This host cannot run the kind (no shim VM configured).
    Unsupported = 8,
    /// The domain is not running (usage).
    NotRunning = 9,
}

impl DomainError {
    /// An error of `code` about `subject`, in the host's words.
    pub fn new(code: DomainErrorCode, subject: &str, detail: &str) -> DomainError {
        DomainError {
            code: code as i32,
            subject: String::from(subject),
            detail: String::from(detail),
            ..Default::default()
        }
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, d) = (&self.subject, &self.detail);
        match self.code() {
            DomainErrorCode::NotFound => write!(f, "no domain {s}"),
            DomainErrorCode::Admission => write!(
                f,
                "{s} does not fit: it needs {} MiB, {} MiB are free for apps: {d}",
                self.needed_mib, self.free_mib
            ),
            DomainErrorCode::BadRequest => write!(f, "{s}: {d}"),
            DomainErrorCode::VolumeNotReady => write!(f, "volume {s} is not ready: {d}"),
            DomainErrorCode::Exists => write!(f, "domain {s} is already started"),
            DomainErrorCode::StartFailed => write!(f, "{s} did not start: {d}"),
            DomainErrorCode::Host => write!(f, "{s}: the host failed: {d}"),
            DomainErrorCode::Unsupported => write!(f, "{s}: {d}"),
            DomainErrorCode::NotRunning => write!(f, "domain {s} is not running"),
            DomainErrorCode::Unspecified => write!(f, "{s}: domain error {}: {d}", self.code),
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
        let spec = Domains::SPEC;
        assert_eq!((spec.name, spec.version), ("domains", 1));
        for name in [
            Start::NAME,
            Stop::NAME,
            Status::NAME,
            List::NAME,
            Usage::NAME,
            Console::NAME,
        ] {
            assert!(spec.serves(name), "{name}");
        }
        assert_eq!(spec.operations.len(), 6);
        assert!(<Stop as Operation>::TIMEOUT.as_secs() > u64::from(MAX_STOP_SECS));
    }

    #[test]
    fn errors_round_trip_and_read_well() {
        let e = DomainError {
            needed_mib: 176,
            free_mib: 100,
            ..DomainError::new(DomainErrorCode::Admission, "app", "2 running")
        };
        let back = DomainError::decode(e.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            format!("{back}"),
            "app does not fit: it needs 176 MiB, 100 MiB are free for apps: 2 running"
        );
        assert!(DomainInfo::decode(&[0x0a, 0x7f][..]).is_err());
    }
}
