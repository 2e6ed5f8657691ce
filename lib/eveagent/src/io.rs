//! What the agent needs from the node, as traits the unikernel glue fills:
//! the controller connection ([`Http`]), time ([`Clock`]), the state volume
//! ([`Persist`]), entropy ([`Rng`]) and facts about the machine
//! ([`Platform`]). The device key is [`eve_proto::sign::Signer`], so a
//! TPM-held key plugs in the same way as the software key.

use alloc::string::String;
use alloc::vec::Vec;

pub use eve_proto::info::BootReason;
use eve_proto::info::ZInfoManufacturer;

/// The media type of every EVE API v2 body, in both directions.
pub const MIME_PROTO: &str = "application/x-proto-binary";

/// HTTP method of a device API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET` (only `certs` and `ping`).
    Get,
    /// `POST` (everything else).
    Post,
}

/// One request to the controller. `path` is absolute
/// (`/api/v2/edgedevice/...`); the glue adds the host from the CONFIG
/// partition's `server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Absolute path.
    pub path: String,
    /// Body (empty for `GET`).
    pub body: Vec<u8>,
    /// `Content-Type` to send with a non-empty body.
    pub content_type: &'static str,
    /// Largest response body the agent will look at: the transport should
    /// stop reading and answer [`TransportError::TooLarge`] beyond it, so a
    /// hostile controller cannot exhaust the heap.
    pub max_response: usize,
}

/// A response: status and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Why no response arrived. All of these are retried later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// Name resolution or TCP connect failed.
    Connect,
    /// The TLS handshake or record layer failed (includes certificate
    /// verification of the controller's server certificate).
    Tls,
    /// No complete answer in time.
    Timeout,
    /// The answer was not valid HTTP.
    Protocol,
    /// The body was longer than [`Request::max_response`].
    TooLarge,
}

/// Blocking request/response exchange with the controller (HTTP over TLS in
/// the unikernel). Called from the agent's `poll`, one request at a time.
pub trait Http {
    /// Sends `request` and returns the status and body.
    fn send(&mut self, request: &Request) -> Result<Response, TransportError>;
}

/// Time as the agent sees it.
pub trait Clock {
    /// Monotonic milliseconds since some fixed point (boot). Never goes back.
    fn now_ms(&self) -> u64;
    /// Wall clock, milliseconds since the Unix epoch (for certificate
    /// validity and message timestamps; may be wrong before time sync).
    fn unix_ms(&self) -> u64;
}

/// Why the state volume failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistError {
    /// Reading failed.
    Read,
    /// Writing failed; the previous content of the record is intact.
    Write,
    /// The volume is full.
    Full,
}

/// Named records on the per-service state volume.
///
/// Contract the glue must keep: [`Persist::write`] replaces a record
/// atomically - after a power loss a reader sees either the old or the new
/// bytes, never a mix or a truncation. The agent relies on it for every
/// checkpoint (device key, certificates, UUID, config, log queue).
pub trait Persist {
    /// The record's bytes, `None` if it does not exist.
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, PersistError>;
    /// Atomically replaces (or creates) the record.
    fn write(&mut self, name: &str, data: &[u8]) -> Result<(), PersistError>;
    /// Deletes the record; deleting a missing record is not an error.
    fn remove(&mut self, name: &str) -> Result<(), PersistError>;
}

/// Cryptographically secure random bytes (key generation, timer jitter).
pub trait Rng {
    /// Fills `buf`.
    fn fill(&mut self, buf: &mut [u8]);
}

/// One EVE image partition as `ZInfoDevSW` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SoftwarePartition {
    /// `IMGA` / `IMGB`.
    pub label: String,
    /// `active`, `inprogress`, `unused`, `updating`.
    pub state: String,
    /// Whether this is the partition we booted from.
    pub activated: bool,
    /// Short version, e.g. `0.1.0`.
    pub short_version: String,
    /// Long version (build details).
    pub long_version: String,
}

/// Facts reported in `ZInfoDevice`. The glue fills them from the HAL and
/// the host; a change is reported to the controller at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceFacts {
    /// Machine architecture as EVE names it (`x86_64`, `aarch64`).
    pub machine_arch: String,
    /// CPU architecture string.
    pub cpu_arch: String,
    /// Platform / hypervisor (`qemu-microvm`, ...).
    pub platform: String,
    /// Number of CPUs.
    pub ncpu: u32,
    /// Memory in MiB (EVE reports megabytes).
    pub memory_mb: u64,
    /// Persistent storage in MiB.
    pub storage_mb: u64,
    /// Boot time, Unix milliseconds.
    pub boot_unix_ms: u64,
    /// Why the previous boot ended (EVE's `lastRebootReason`).
    pub last_reboot_reason: String,
    /// Why this boot happened, as EVE classifies it (`last_boot_reason`).
    pub boot_reason: BootReason,
    /// When it ended, Unix milliseconds (0: unknown).
    pub last_reboot_unix_ms: u64,
    /// Boots since the node was installed.
    pub restart_counter: u32,
    /// Host name.
    pub host_name: String,
    /// Manufacturer, for `ZInfoManufacturer`.
    pub manufacturer: String,
    /// Product name.
    pub product_name: String,
    /// Product version.
    pub product_version: String,
    /// The hardware's serial number; empty when the hardware does not say.
    pub serial: String,
    /// The system UUID (SMBIOS); empty when the hardware does not say.
    pub product_uuid: String,
    /// Firmware vendor, version and release date.
    pub bios_vendor: String,
    pub bios_version: String,
    pub bios_release_date: String,
    /// The device tree's `compatible` strings, comma separated.
    pub compatible: String,
    /// Image partitions.
    pub partitions: Vec<SoftwarePartition>,
}

impl DeviceFacts {
    /// These facts with what the host knows of the device (the bus topic
    /// `@device-facts`) in place of what a service VM sees of itself: the
    /// device's CPUs, memory, storage, hardware and boot time, as EVE
    /// reports them. What the host does not know stays as it was.
    pub fn with_host(mut self, host: &topics::facts::Facts) -> DeviceFacts {
        fn take(ours: &mut String, theirs: &str) {
            if !theirs.is_empty() {
                *ours = String::from(theirs);
            }
        }
        if host.cpu_count > 0 {
            self.ncpu = host.cpu_count;
        }
        if host.memory_bytes > 0 {
            self.memory_mb = host.memory_bytes >> 20;
        }
        if host.storage_bytes > 0 {
            self.storage_mb = host.storage_bytes >> 20;
        }
        if host.boot_unix_ms > 0 {
            self.boot_unix_ms = host.boot_unix_ms;
        }
        take(&mut self.machine_arch, &host.machine_arch);
        take(&mut self.cpu_arch, &host.machine_arch);
        take(&mut self.host_name, &host.host_name);
        take(&mut self.manufacturer, &host.manufacturer);
        take(&mut self.product_name, &host.product_name);
        take(&mut self.product_version, &host.product_version);
        take(&mut self.serial, &host.serial);
        take(&mut self.product_uuid, &host.product_uuid);
        take(&mut self.bios_vendor, &host.bios_vendor);
        take(&mut self.bios_version, &host.bios_version);
        take(&mut self.bios_release_date, &host.bios_release_date);
        take(&mut self.compatible, &host.compatible);
        self
    }

    /// `ZInfoManufacturer` as EVE fills it from the same facts; `serial`
    /// stands in where the hardware has none (the serial the device
    /// registered with). Its `UUID` is the system's (SMBIOS), never the
    /// device's: empty when the hardware does not say.
    pub fn manufacturer_info(&self, serial: &str) -> ZInfoManufacturer {
        ZInfoManufacturer {
            manufacturer: self.manufacturer.clone(),
            product_name: self.product_name.clone(),
            version: self.product_version.clone(),
            serial_number: String::from(if self.serial.is_empty() {
                serial
            } else {
                &self.serial
            }),
            uuid: self.product_uuid.clone(),
            compatible: self.compatible.clone(),
            bios_vendor: self.bios_vendor.clone(),
            bios_version: self.bios_version.clone(),
            bios_release_date: self.bios_release_date.clone(),
        }
    }
}

/// One network interface's cumulative counters since boot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceCounters {
    /// Interface name.
    pub name: String,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Send drops.
    pub tx_drops: u64,
    /// Receive drops.
    pub rx_drops: u64,
}

/// One disk's usage and cumulative I/O since boot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskCounters {
    /// Disk name.
    pub name: String,
    /// Mount path (or volume name).
    pub mount_path: String,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Reads.
    pub read_count: u64,
    /// Writes.
    pub write_count: u64,
    /// Size, MiB.
    pub total_mb: u64,
    /// Used, MiB.
    pub used_mb: u64,
    /// Free, MiB.
    pub free_mb: u64,
}

/// Values for one `ZMetricMsg`: cumulative counters, never deltas (the
/// controller computes rates).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceMetrics {
    /// Total memory, MiB.
    pub memory_mb: u32,
    /// Memory used by the engine itself, MiB.
    pub used_eve_mb: u32,
    /// Memory allocated to apps, MiB.
    pub allocated_apps_mb: u32,
    /// CPU time used since boot, nanoseconds.
    pub cpu_total_ns: u64,
    /// The interface the controller is reached through (EVE's management
    /// port): it names the counters of controller requests.
    pub management_interface: String,
    /// Network interfaces.
    pub interfaces: Vec<InterfaceCounters>,
    /// Disks.
    pub disks: Vec<DiskCounters>,
}

/// The machine, as far as the agent reports on it.
pub trait Platform {
    /// The hardware serial (SMBIOS / device tree); empty when unknown.
    fn hardware_serial(&self) -> String;
    /// Current facts for `ZInfoDevice`.
    fn device_facts(&self) -> DeviceFacts;
    /// Current counters for `ZMetricMsg`.
    fn device_metrics(&self) -> DeviceMetrics;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> DeviceFacts {
        DeviceFacts {
            machine_arch: String::from("x86_64"),
            ncpu: 1,
            memory_mb: 63,
            storage_mb: 8,
            boot_unix_ms: 5,
            host_name: String::from("vm"),
            manufacturer: String::from("QEMU"),
            product_name: String::from("eve-rs microvm node"),
            ..DeviceFacts::default()
        }
    }

    #[test]
    fn the_host_s_facts_replace_what_the_vm_sees() {
        let host = topics::facts::Facts {
            cpu_count: 16,
            memory_bytes: 32 << 30,
            storage_bytes: 1 << 40,
            machine_arch: String::from("aarch64"),
            manufacturer: String::from("Supermicro"),
            product_name: String::from("SYS-E100"),
            product_version: String::from("1.02"),
            serial: String::from("S1234"),
            product_uuid: String::from("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            bios_vendor: String::from("AMI"),
            bios_version: String::from("2.1"),
            bios_release_date: String::from("03/04/2024"),
            compatible: String::from("vendor,board"),
            boot_unix_ms: 1_700_000_000_000,
            host_name: String::from("edge-7"),
            ..Default::default()
        };
        let facts = vm().with_host(&host);
        assert_eq!(
            (facts.ncpu, facts.memory_mb, facts.storage_mb),
            (16, 32 << 10, 1 << 20)
        );
        assert_eq!(facts.machine_arch, "aarch64");
        assert_eq!(facts.cpu_arch, "aarch64");
        assert_eq!(facts.boot_unix_ms, 1_700_000_000_000);
        assert_eq!(facts.host_name, "edge-7");
        let minfo = facts.manufacturer_info("soft-1");
        assert_eq!(minfo.manufacturer, "Supermicro");
        assert_eq!(minfo.product_name, "SYS-E100");
        assert_eq!(minfo.version, "1.02");
        assert_eq!(minfo.serial_number, "S1234");
        assert_eq!(minfo.uuid, "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
        assert_eq!(minfo.bios_vendor, "AMI");
        assert_eq!(minfo.bios_version, "2.1");
        assert_eq!(minfo.bios_release_date, "03/04/2024");
        assert_eq!(minfo.compatible, "vendor,board");
    }

    #[test]
    fn what_the_host_does_not_know_stays() {
        let facts = vm().with_host(&topics::facts::Facts::default());
        assert_eq!(facts, vm());
        let minfo = facts.manufacturer_info("soft-1");
        assert_eq!(minfo.serial_number, "soft-1");
        assert_eq!(minfo.uuid, "", "not the device's UUID");
        assert_eq!(minfo.manufacturer, "QEMU");
    }
}
