//! What the host knows of the device it runs on, for the broker topic
//! [`topics::DeviceFacts`]. A service VM sees only its own small machine
//! (zedagent's is 64 MiB and one vCPU); the controller wants the device's,
//! which EVE reads from the same places: the kernel's CPU and memory
//! counts, SMBIOS through `/sys/class/dmi/id`, the device tree on boards,
//! the boot time, and the size of the filesystem holding the node's state
//! (EVE's persist partition).
//!
//! Every source is optional: what cannot be read (a VM without SMBIOS, a
//! serial only root may read) is left empty rather than failing the node.

use std::{
    fs,
    path::{Path, PathBuf},
};

use topics::facts::Facts;

/// Where the kernel shows what it knows; other roots let tests give a
/// machine of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactSources {
    /// `/proc`.
    pub proc: PathBuf,
    /// `/sys`.
    pub sys: PathBuf,
}

impl Default for FactSources {
    fn default() -> Self {
        FactSources {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
        }
    }
}

/// The facts of this machine, with `state_dir`'s filesystem as storage.
pub fn gather(state_dir: &Path) -> Facts {
    gather_from(&FactSources::default(), state_dir)
}

/// The facts as `sources` show them.
pub fn gather_from(sources: &FactSources, state_dir: &Path) -> Facts {
    let dmi = |name: &str| text(&sources.sys.join("class/dmi/id").join(name));
    let device_tree = sources.proc.join("device-tree");
    let (storage_bytes, storage_free_bytes) = storage(state_dir);
    Facts {
        cpu_count: cpu_count(sources),
        memory_bytes: memory_bytes(&sources.proc),
        storage_bytes,
        storage_free_bytes,
        machine_arch: rustix::system::uname()
            .machine()
            .to_string_lossy()
            .into_owned(),
        manufacturer: dmi("sys_vendor"),
        product_name: or_else(dmi("product_name"), || {
            device_tree_strings(&device_tree.join("model"))
        }),
        product_version: dmi("product_version"),
        serial: or_else(dmi("product_serial"), || {
            device_tree_strings(&device_tree.join("serial-number"))
        }),
        product_uuid: dmi("product_uuid"),
        bios_vendor: dmi("bios_vendor"),
        bios_version: dmi("bios_version"),
        bios_release_date: dmi("bios_date"),
        compatible: device_tree_strings(&device_tree.join("compatible")),
        boot_unix_ms: boot_unix_ms(&sources.proc),
        host_name: text(&sources.proc.join("sys/kernel/hostname")),
        host_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// A one-line file, trimmed; empty if it cannot be read.
fn text(path: &Path) -> String {
    fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

fn or_else(first: String, second: impl FnOnce() -> String) -> String {
    if first.is_empty() { second() } else { first }
}

/// A device-tree property of NUL-terminated strings, joined with `,`.
fn device_tree_strings(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// CPUs online (`/sys/devices/system/cpu/online`, e.g. `0-3,6`), else the
/// processors of `/proc/cpuinfo`.
fn cpu_count(sources: &FactSources) -> u32 {
    let online = text(&sources.sys.join("devices/system/cpu/online"));
    let from_ranges = online
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|range| match range.split_once('-') {
            Some((first, last)) => last
                .parse::<u32>()
                .ok()
                .zip(first.parse::<u32>().ok())
                .and_then(|(last, first)| last.checked_sub(first))
                .map(|span| span + 1),
            None => range.parse::<u32>().ok().map(|_| 1),
        })
        .sum::<Option<u32>>();
    match from_ranges {
        Some(count) if count > 0 => count,
        _ => {
            let cpuinfo = fs::read_to_string(sources.proc.join("cpuinfo")).unwrap_or_default();
            let processors = cpuinfo
                .lines()
                .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
                .count();
            u32::try_from(processors).unwrap_or(u32::MAX)
        }
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn memory_bytes(proc: &Path) -> u64 {
    fs::read_to_string(proc.join("meminfo"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map_or(0, |kib| kib.saturating_mul(1024))
}

/// `btime` of `/proc/stat` (seconds since the epoch), in milliseconds.
fn boot_unix_ms(proc: &Path) -> u64 {
    fs::read_to_string(proc.join("stat"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(0, |s| s.saturating_mul(1000))
}

/// Size and free space of the filesystem holding `dir`, in bytes.
fn storage(dir: &Path) -> (u64, u64) {
    match rustix::fs::statvfs(dir) {
        Ok(fs) => (
            fs.f_blocks.saturating_mul(fs.f_frsize),
            fs.f_bavail.saturating_mul(fs.f_frsize),
        ),
        Err(_) => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, contents: &[u8]) {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    #[test]
    fn a_pc_is_read_from_smbios_and_the_kernel() {
        let root = tempfile::tempdir().unwrap();
        let sources = FactSources {
            proc: root.path().join("proc"),
            sys: root.path().join("sys"),
        };
        write(root.path(), "sys/devices/system/cpu/online", b"0-3,6,8-9\n");
        write(
            root.path(),
            "proc/meminfo",
            b"MemTotal:       24576000 kB\nMemFree:  1 kB\n",
        );
        write(root.path(), "proc/stat", b"cpu  1 2 3\nbtime 1700000000\n");
        write(root.path(), "proc/sys/kernel/hostname", b"edge-7\n");
        for (name, value) in [
            ("sys_vendor", "Supermicro"),
            ("product_name", "SYS-E100"),
            ("product_version", "1.02"),
            ("product_serial", "S1234"),
            ("product_uuid", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            ("bios_vendor", "AMI"),
            ("bios_version", "2.1"),
            ("bios_date", "03/04/2024"),
        ] {
            write(
                root.path(),
                &format!("sys/class/dmi/id/{name}"),
                format!("{value}\n").as_bytes(),
            );
        }
        let facts = gather_from(&sources, root.path());
        assert_eq!(facts.cpu_count, 7);
        assert_eq!(facts.memory_bytes, 24_576_000 * 1024);
        assert_eq!(facts.boot_unix_ms, 1_700_000_000_000);
        assert_eq!(facts.host_name, "edge-7");
        assert_eq!(facts.manufacturer, "Supermicro");
        assert_eq!(facts.product_name, "SYS-E100");
        assert_eq!(facts.product_version, "1.02");
        assert_eq!(facts.serial, "S1234");
        assert_eq!(facts.product_uuid, "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
        assert_eq!(
            (
                facts.bios_vendor.as_str(),
                facts.bios_version.as_str(),
                facts.bios_release_date.as_str()
            ),
            ("AMI", "2.1", "03/04/2024")
        );
        assert!(facts.compatible.is_empty());
        assert!(facts.storage_bytes > 0 && facts.storage_free_bytes <= facts.storage_bytes);
        assert_eq!(facts.host_version, env!("CARGO_PKG_VERSION"));
        assert!(!facts.machine_arch.is_empty());
    }

    #[test]
    fn a_board_is_read_from_its_device_tree() {
        let root = tempfile::tempdir().unwrap();
        let sources = FactSources {
            proc: root.path().join("proc"),
            sys: root.path().join("sys"),
        };
        write(
            root.path(),
            "proc/cpuinfo",
            b"processor\t: 0\nBogoMIPS\t: 108\n\nprocessor\t: 1\n\nprocessor\t: 2\n",
        );
        write(
            root.path(),
            "proc/device-tree/model",
            b"Raspberry Pi 4 Model B Rev 1.4\0",
        );
        write(
            root.path(),
            "proc/device-tree/compatible",
            b"raspberrypi,4-model-b\0brcm,bcm2711\0",
        );
        write(
            root.path(),
            "proc/device-tree/serial-number",
            b"10000000abcdef01\0",
        );
        let facts = gather_from(&sources, root.path());
        assert_eq!(facts.cpu_count, 3, "from /proc/cpuinfo");
        assert_eq!(facts.product_name, "Raspberry Pi 4 Model B Rev 1.4");
        assert_eq!(facts.compatible, "raspberrypi,4-model-b,brcm,bcm2711");
        assert_eq!(facts.serial, "10000000abcdef01");
        assert!(facts.manufacturer.is_empty());
    }

    #[test]
    fn nothing_readable_gives_empty_facts_not_an_error() {
        let root = tempfile::tempdir().unwrap();
        let sources = FactSources {
            proc: root.path().join("none"),
            sys: root.path().join("none"),
        };
        let facts = gather_from(&sources, &root.path().join("missing"));
        assert_eq!(
            (facts.cpu_count, facts.memory_bytes, facts.storage_bytes),
            (0, 0, 0)
        );
        assert!(facts.serial.is_empty() && facts.product_name.is_empty());
    }

    #[test]
    fn this_machine_has_cpus_memory_and_a_boot_time() {
        let dir = tempfile::tempdir().unwrap();
        let facts = gather(dir.path());
        assert!(facts.cpu_count >= 1, "{facts:?}");
        assert!(facts.memory_bytes > 0, "{facts:?}");
        assert!(facts.boot_unix_ms > 0, "{facts:?}");
        assert!(facts.storage_bytes > 0, "{facts:?}");
    }
}
