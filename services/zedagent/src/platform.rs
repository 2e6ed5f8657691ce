//! What the agent reports about the machine: read from the boot data, the
//! clocks, the heap and the state volume, never made up, and replaced by
//! what the host knows of the device (`@device-facts`) once it has said:
//! the device is the host, not this VM. Until then, what a unikernel
//! cannot know (a manufacturer's name) says where it runs instead.

use alloc::{format, rc::Rc, string::String, vec};
use core::cell::RefCell;

use eveagent::io::{
    BootReason, DeviceFacts, DeviceMetrics, DiskCounters, Platform, SoftwarePartition,
};
use hal::clock::Instant;
use topics::facts::Facts;

pub struct Machine {
    /// The host's serial for the device (`serial=` on the command line, from
    /// the node manifest; SMBIOS or the device tree on a board).
    pub serial: String,
    /// Boots of this device, counted on the state volume.
    pub restart_counter: u32,
    /// The state volume's size in MiB.
    pub storage_mb: u64,
    /// The host's facts about the device, as the bus last delivered them.
    pub host: Rc<RefCell<Option<Facts>>>,
    /// The host's record of this boot, when it gave one.
    pub boot: Option<hostops::power::BootRecord>,
}

fn ram_mb() -> u64 {
    runtime::boot_info()
        .ram
        .iter()
        .map(|span| span.end.saturating_sub(span.start))
        .sum::<u64>()
        >> 20
}

impl Platform for Machine {
    fn hardware_serial(&self) -> String {
        self.serial.clone()
    }

    fn device_facts(&self) -> DeviceFacts {
        let platform = runtime::boot_info().platform.name();
        let vm = DeviceFacts {
            machine_arch: String::from(hal::ARCH),
            cpu_arch: String::from(hal::ARCH),
            platform: format!("qemu-{platform}"),
            ncpu: 1,
            memory_mb: ram_mb(),
            storage_mb: self.storage_mb,
            boot_unix_ms: hal::clock::wall_clock_at_boot().map_or(0, |s| s * 1000),
            last_reboot_reason: String::new(),
            // Without the host's boot record only the first boot is known.
            boot_reason: if self.restart_counter == 1 {
                BootReason::First
            } else {
                BootReason::Unknown
            },
            last_reboot_unix_ms: 0,
            restart_counter: self.restart_counter,
            host_name: self.serial.clone(),
            manufacturer: String::from("QEMU"),
            product_name: format!("eve-rs {platform} node"),
            partitions: vec![SoftwarePartition {
                label: String::from("IMGA"),
                state: String::from("active"),
                activated: true,
                short_version: String::from(env!("CARGO_PKG_VERSION")),
                long_version: format!("eve-rs zedagent {}", env!("CARGO_PKG_VERSION")),
            }],
            ..DeviceFacts::default()
        };
        let mut facts = match self.host.borrow().as_ref() {
            Some(host) => vm.with_host(host),
            None => vm,
        };
        if let Some(record) = &self.boot {
            crate::bootreason::apply(record, &mut facts);
        }
        facts
    }

    fn device_metrics(&self) -> DeviceMetrics {
        let heap = runtime::heap_stats();
        let memory_mb = match self.host.borrow().as_ref() {
            Some(host) if host.memory_bytes > 0 => host.memory_bytes >> 20,
            _ => ram_mb(),
        };
        DeviceMetrics {
            memory_mb: u32::try_from(memory_mb).unwrap_or(u32::MAX),
            used_eve_mb: u32::try_from(heap.used >> 20).unwrap_or(u32::MAX),
            allocated_apps_mb: 0,
            // One vCPU that polls: busy for all of its uptime.
            cpu_total_ns: Instant::now().as_nanos(),
            // The one NIC, the uplink, named as EVE names a first port.
            management_interface: String::from("eth0"),
            interfaces: vec![],
            disks: vec![DiskCounters {
                name: String::from("state"),
                mount_path: String::from("/persist"),
                total_mb: self.storage_mb,
                ..DiskCounters::default()
            }],
        }
    }
}
