//! aarch64: PL011 UART, the generic timer, PL031 RTC, PSCI, device tree,
//! virtio-mmio, RNDR, the GIC for interrupts.

mod boot;
mod gic;
mod interrupts;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTVCT_EL0, Readable};
use bootinfo::layout::Span;
use virtio_drivers::transport::SomeTransport;

use crate::startup::BootInfo;

pub use boot::early_init;
pub use interrupts::{interrupts_available, raise_unexpected, sleep_until};

/// The architecture's name as services report it.
pub const ARCH: &str = "aarch64";

/// RAM the boot page tables map as normal memory: 1 GiB to 4 GiB.
pub const MAPPED_RAM: Span = Span {
    start: 0x4000_0000,
    end: 0x1_0000_0000,
};

/// QEMU virt's devices, used until (or unless) the device tree says
/// otherwise.
static PL011_BASE: AtomicUsize = AtomicUsize::new(0x0900_0000);
static PL031_BASE: AtomicUsize = AtomicUsize::new(0x0901_0000);
static PSCI_USES_SMC: AtomicBool = AtomicBool::new(false);

pub fn serial_write(bytes: &[u8]) {
    const FLAG_TX_FULL: u32 = 1 << 5;
    let base = PL011_BASE.load(Ordering::Relaxed);
    for &b in bytes {
        // Bounded wait, so a wedged UART cannot hang the guest.
        for _ in 0..100_000 {
            // SAFETY: base is the PL011's MMIO window (device memory); the
            // flag register at 0x18 is read-only.
            let flags = unsafe { ((base + 0x18) as *const u32).read_volatile() };
            if flags & FLAG_TX_FULL == 0 {
                break;
            }
            core::hint::spin_loop();
        }
        // SAFETY: writing the data register at 0x0 only sends a byte.
        unsafe { (base as *mut u32).write_volatile(u32::from(b)) };
    }
}

pub fn counter() -> u64 {
    CNTVCT_EL0.get()
}

pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// The PL031's data register counts Unix seconds.
pub fn rtc_unix_seconds() -> Option<u64> {
    let base = PL031_BASE.load(Ordering::Relaxed);
    if base == 0 {
        return None;
    }
    // SAFETY: base is the PL031's MMIO window; RTCDR at 0x0 is read-only.
    let seconds = unsafe { (base as *const u32).read_volatile() };
    (seconds != 0).then_some(u64::from(seconds))
}

/// PSCI SYSTEM_OFF. PSCI carries no status: `power::exit` has already
/// printed it for the runner.
pub fn power_off(_status: i32) -> ! {
    const SYSTEM_OFF: u64 = 0x8400_0008;
    // SAFETY: a PSCI call through the conduit the device tree names; on
    // success it does not return, on failure it only returns an error code.
    unsafe {
        if PSCI_USES_SMC.load(Ordering::Relaxed) {
            core::arch::asm!("smc #0", inout("x0") SYSTEM_OFF => _, options(nostack));
        } else {
            core::arch::asm!("hvc #0", inout("x0") SYSTEM_OFF => _, options(nostack));
        }
    }
    loop {
        aarch64_cpu::asm::wfe();
    }
}

pub fn exception_name(kind: u64) -> &'static str {
    const NAMES: [&str; 16] = [
        "synchronous exception (EL1t)",
        "IRQ (EL1t)",
        "FIQ (EL1t)",
        "SError (EL1t)",
        "synchronous exception",
        "IRQ",
        "FIQ",
        "SError",
        "synchronous exception from EL0 (AArch64)",
        "IRQ from EL0 (AArch64)",
        "FIQ from EL0 (AArch64)",
        "SError from EL0 (AArch64)",
        "synchronous exception from EL0 (AArch32)",
        "IRQ from EL0 (AArch32)",
        "FIQ from EL0 (AArch32)",
        "SError from EL0 (AArch32)",
    ];
    usize::try_from(kind)
        .ok()
        .and_then(|k| NAMES.get(k))
        .copied()
        .unwrap_or("unknown exception")
}

/// 64 random bits from RNDR (FEAT_RNG), or `None` without it.
pub fn hw_random() -> Option<u64> {
    let isar0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, id_aa64isar0_el1", out(reg) isar0, options(nomem, nostack))
    };
    if (isar0 >> 60) & 0xf == 0 {
        return None;
    }
    for _ in 0..32 {
        let value: u64;
        let ok: u64;
        // SAFETY: RNDR (s3_3_c2_c4_0) exists per ID_AA64ISAR0_EL1; it sets
        // NZCV.Z on failure, which cset turns into ok = 0.
        unsafe {
            core::arch::asm!(
                "mrs {v}, s3_3_c2_c4_0",
                "cset {ok}, ne",
                v = out(reg) value,
                ok = out(reg) ok,
                options(nomem, nostack),
            )
        };
        if ok == 1 {
            return Some(value);
        }
    }
    None
}

pub fn virtio_transports(info: &BootInfo) -> Vec<SomeTransport<'static>> {
    info.mmio_windows
        .iter()
        .filter_map(|window| {
            let base = window.base as usize;
            // SAFETY: the device tree's virtio-mmio windows, used by nothing
            // else; empty windows read as no device.
            let transport = unsafe { crate::virtio::probe_mmio(base) }?;
            interrupts::attach_mmio_device(base, window.line);
            Some(transport)
        })
        .collect()
}
