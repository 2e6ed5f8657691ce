//! The Raspberry Pi 4 variant. The Pi has no UEFI: its EEPROM boot loader
//! reads `autoboot.txt` from the first FAT partition, which names the
//! partition to boot, and a second one for a "tryboot" (a reboot with
//! `reboot "0 tryboot"` sets a one-shot flag the firmware clears before it
//! starts). That is the Pi's own A/B, used here instead of GPT attributes:
//!
//! | # | name | what |
//! |---|---|---|
//! | 1 | RPIBOOT | FAT16: `autoboot.txt` (IMGA normally, IMGB on a tryboot) |
//! | 2 | IMGA | FAT32: firmware, device tree, `config.txt`, kernel, initrd, active |
//! | 3 | IMGB | the same size, empty until an update writes it |
//! | 4 | CONFIG, 9 P3 | as on every EVE disk |
//!
//! An update writes IMGB and reboots with the tryboot flag; if the new
//! system commits, `autoboot.txt` is rewritten to swap the two numbers;
//! if it does not, the next ordinary boot is IMGA again. The partitions
//! are GPT "basic data", the type the Pi boot loader looks for. Built and
//! checked here (layout and files), untested on a Pi.

use std::path::Path;

use gptab::types;

use super::debian::Kernel;
use super::{disk, fat, part};

const MIB: u64 = 1 << 20;
/// The autoboot partition: one small file.
const AUTOBOOT_BYTES: u64 = 4 * MIB;
/// The device tree of the Raspberry Pi 4 Model B.
const DEVICE_TREE: &str = "bcm2711-rpi-4-b.dtb";

/// `autoboot.txt`: IMGA (2) normally, IMGB (3) on a tryboot, and the
/// tryboot switch made between partitions rather than files.
pub const AUTOBOOT: &str = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n";

/// `config.txt` of a base OS: a 64-bit kernel with its initramfs and the
/// Pi 4's device tree from Debian's kernel, the serial console on.
pub const CONFIG_TXT: &str = "\
# An EVE base OS. autoboot.txt on partition 1 chooses between IMGA and IMGB.
arm_64bit=1
kernel=kernel8.img
initramfs initrd followkernel
device_tree=bcm2711-rpi-4-b.dtb
enable_uart=1
";

/// The kernel command line: the console comes from the device tree.
pub const CMDLINE_TXT: &str = "panic=10 quiet\n";

/// The firmware files the Pi 4 boots with.
const FIRMWARE: [&str; 2] = ["start4.elf", "fixup4.dat"];

/// A base OS volume for the Pi 4: what IMGA holds, and the update
/// artifact.
pub fn base_os(
    firmware: &Path,
    kernel: &Kernel,
    vmlinuz: &[u8],
    initrd: &[u8],
    release: &str,
) -> Result<Vec<u8>, String> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let start = read(&firmware.join(FIRMWARE[0]))?;
    let fixup = read(&firmware.join(FIRMWARE[1]))?;
    let dtb = read(
        &kernel
            .root
            .join("usr/lib")
            .join(format!("linux-image-{}", kernel.release))
            .join("broadcom")
            .join(DEVICE_TREE),
    )?;
    let files: [(&str, &[u8]); 8] = [
        (FIRMWARE[0], &start),
        (FIRMWARE[1], &fixup),
        (DEVICE_TREE, &dtb),
        ("config.txt", CONFIG_TXT.as_bytes()),
        ("cmdline.txt", CMDLINE_TXT.as_bytes()),
        ("kernel8.img", vmlinuz),
        ("initrd", initrd),
        ("eve-release", release.as_bytes()),
    ];
    // FAT32 (what the Pi firmware reads reliably) starts at 33 MiB.
    let bytes = fat::bytes_needed(&files).max(34 * MIB).div_ceil(MIB) * MIB;
    fat::volume(bytes, "EVE", fat::Kind::Fat32, &files)
}

/// Partitions 1 to 3 of the Pi 4 layout, IMGA holding `base_os`.
pub fn boot_partitions(base_os: Vec<u8>, slot: u64) -> Result<Vec<disk::Part>, String> {
    let autoboot = fat::volume(
        AUTOBOOT_BYTES,
        "RPIBOOT",
        fat::Kind::Fat16,
        &[("autoboot.txt", AUTOBOOT.as_bytes())],
    )?;
    Ok(vec![
        part(1, "RPIBOOT", types::BASIC_DATA, 0, AUTOBOOT_BYTES, autoboot)?,
        part(2, "IMGA", types::BASIC_DATA, 0, slot, base_os)?,
        part(3, "IMGB", types::BASIC_DATA, 0, slot, Vec::new())?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoboot_switches_partitions_on_tryboot() {
        let lines: Vec<&str> = AUTOBOOT.lines().collect();
        assert_eq!(
            lines,
            [
                "[all]",
                "tryboot_a_b=1",
                "boot_partition=2",
                "[tryboot]",
                "boot_partition=3"
            ]
        );
        // The Pi firmware reads at most 512 bytes of it.
        assert!(AUTOBOOT.len() <= 512);
        assert!(CONFIG_TXT.contains("initramfs initrd followkernel"));
        assert!(CONFIG_TXT.contains(&format!("device_tree={DEVICE_TREE}")));
    }
}
