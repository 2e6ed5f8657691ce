//! What every guest's QEMU command line shares, whoever launches it (the
//! host's VMM backend, the test harness).

use crate::{Accel, Arch};

/// The CPU model for `arch` under `accel`.
pub fn qemu_cpu(arch: Arch, accel: Accel) -> &'static str {
    match (accel, arch) {
        (Accel::Kvm, _) => "host",
        // `max` gives TCG guests RDRAND/RDSEED.
        (Accel::Tcg, Arch::X86_64) => "max",
        // A real core; cheaper to emulate than `max` (no pointer auth).
        (Accel::Tcg, Arch::Aarch64) => "cortex-a72",
    }
}

/// A headless guest: no default devices or user config, the console on
/// stdio, no monitor, no reboot (a triple fault ends QEMU), and modern
/// virtio-mmio (the legacy interface is QEMU's default).
pub const QEMU_HEADLESS_ARGS: &[&str] = &[
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-monitor",
    "none",
    "-no-reboot",
    "-global",
    "virtio-mmio.force-legacy=false",
];
