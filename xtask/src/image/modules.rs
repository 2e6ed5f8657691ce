//! The kernel modules a node image carries: drivers for its disks and
//! uplink on the machines it is meant for, ext4 for PERSIST, KVM, the
//! watchdog; each with the modules it depends on (read from its own
//! `.modinfo`, as `depmod` does), listed so that dependencies load first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use harness::Arch;

use super::elf;

/// Modules for every node, by the names `modprobe` takes.
const COMMON: &[&str] = &[
    // Disks: virtio (QEMU), SATA, NVMe, USB sticks, SCSI disks.
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "ahci",
    "nvme",
    "sd_mod",
    "usb_storage",
    "uas",
    "xhci_pci",
    "ehci_pci",
    // Uplinks: virtio (QEMU) and common Intel NICs.
    "virtio_net",
    "e1000",
    "e1000e",
    "igb",
    // PERSIST: ext4 asks the crypto API for crc32c, not a module.
    "ext4",
    "crc32c_generic",
    // Hardware TPMs behind the host (firmware-described ones).
    "tpm_crb",
];

/// Modules for one arch.
fn for_arch(arch: Arch) -> &'static [&'static str] {
    match arch {
        // KVM, crc32c in SSE 4.2, and QEMU's i6300esb watchdog.
        Arch::X86_64 => &[
            "kvm_intel",
            "kvm_amd",
            "crc32c_intel",
            "i6300esb",
            "tpm_tis",
        ],
        // virtio-mmio (QEMU virt), generic host controllers, the
        // Raspberry Pi 4's SD card, PCIe (USB 3), Ethernet, SPI TPMs and
        // watchdog (bcm2835_wdt), and the i6300esb watchdog: virt has no
        // watchdog of its own, and QEMU's i6300esb model sits on virt's
        // PCIe as on a PC's.
        Arch::Aarch64 => &[
            "virtio_mmio",
            "xhci_plat_hcd",
            "sdhci_iproc",
            "pcie_brcmstb",
            "genet",
            "broadcom",
            "tpm_tis_spi",
            "bcm2835_wdt",
            "i6300esb",
        ],
    }
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module files under `modules` (`lib/modules/<release>`) by name.
fn index(modules: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![modules.join("kernel")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                found.insert(normalize(stem), path);
            }
        }
    }
    found
}

/// The modules to load, in load order, as paths relative to `modules`,
/// with the names asked for that this kernel does not have (built in or
/// absent).
pub fn select(modules: &Path, arch: Arch) -> Result<(Vec<PathBuf>, Vec<String>), String> {
    let all = index(modules);
    let builtin = std::fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    let builtin: BTreeSet<String> = builtin
        .lines()
        .filter_map(|l| Path::new(l).file_stem()?.to_str().map(normalize))
        .collect();
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    let mut missing = Vec::new();
    for name in COMMON.iter().chain(for_arch(arch)) {
        let name = normalize(name);
        if all.contains_key(&name) {
            visit(&name, &all, &mut done, &mut order, 0)?;
        } else if !builtin.contains(&name) {
            missing.push(name);
        }
    }
    let relative = order
        .into_iter()
        .map(|p: PathBuf| p.strip_prefix(modules).map(Path::to_path_buf).unwrap_or(p))
        .collect();
    Ok((relative, missing))
}

/// Depth-first: dependencies before the module.
fn visit(
    name: &str,
    all: &BTreeMap<String, PathBuf>,
    done: &mut BTreeSet<String>,
    order: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<(), String> {
    if done.contains(name) {
        return Ok(());
    }
    if depth > 64 {
        return Err(format!("module dependencies loop through {name}"));
    }
    let Some(path) = all.get(name) else {
        // Depends on something built in.
        return Ok(());
    };
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let info = elf::modinfo(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    for (key, value) in &info {
        if key == "depends" {
            for dep in value.split(',').filter(|d| !d.is_empty()) {
                visit(&normalize(dep), all, done, order, depth + 1)?;
            }
        }
    }
    done.insert(name.to_string());
    order.push(path.clone());
    Ok(())
}
