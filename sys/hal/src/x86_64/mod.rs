//! x86_64: 16550 UART, TSC calibrated against CPUID or the PIT, CMOS RTC,
//! `isa-debug-exit`, PVH start info, PCI (port I/O) and microvm MMIO, the
//! local APIC and I/O APICs for interrupts.

mod apic;
mod boot;
mod clock;
mod interrupts;
mod ioapic;
mod pci;
mod port;
mod rtc;
mod serial;

use alloc::vec::Vec;

use bootinfo::layout::Span;
use virtio_drivers::transport::SomeTransport;

use crate::startup::{BootInfo, Line, MmioWindow, Platform};

pub use boot::early_init;
pub use clock::{counter, counter_frequency};
pub use interrupts::{interrupts_available, raise_unexpected, sleep_until};
pub use rtc::rtc_unix_seconds;
pub use serial::serial_write;

/// The architecture's name as services report it.
pub const ARCH: &str = "x86_64";

/// RAM the boot page tables map write-back: 1 MiB (above the legacy BIOS
/// area) to 3 GiB (where the uncached MMIO mapping starts).
pub const MAPPED_RAM: Span = Span {
    start: 0x10_0000,
    end: 0xc000_0000,
};

/// microvm's virtio-mmio windows: 0xfeb00000 + i * 0x200.
const MICROVM_MMIO_BASE: u64 = 0xfeb0_0000;
const MICROVM_MMIO_WINDOWS: u64 = 24;
/// microvm (with ACPI, QEMU's default) wires window i to GSI 24 + i, on its
/// second I/O APIC.
const MICROVM_MMIO_FIRST_GSI: u32 = 24;

/// Powers off through QEMU's `isa-debug-exit`; halts where there is none.
pub fn power_off(status: i32) -> ! {
    // The device takes the low byte; statuses above 255 are not ours.
    let code = u32::try_from(status).unwrap_or(guest_abi::EXIT_FAILURE as u32) & 0xff;
    // SAFETY: writing to the debug-exit port has no effect on memory; where
    // the device is absent the write is ignored.
    unsafe { port::outl(guest_abi::DEBUG_EXIT_PORT, code) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

pub fn exception_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error",
        "debug",
        "NMI",
        "breakpoint",
        "overflow",
        "bound range",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor segment overrun",
        "invalid TSS",
        "segment not present",
        "stack fault",
        "general protection fault",
        "page fault",
        "reserved exception 15",
        "x87 floating point",
        "alignment check",
        "machine check",
        "SIMD floating point",
        "virtualization exception",
        "control protection",
        "reserved exception 22",
        "reserved exception 23",
        "reserved exception 24",
        "reserved exception 25",
        "reserved exception 26",
        "reserved exception 27",
        "hypervisor injection",
        "VMM communication",
        "security exception",
        "reserved exception 31",
    ];
    usize::try_from(vector)
        .ok()
        .and_then(|v| NAMES.get(v))
        .copied()
        .unwrap_or("unknown exception")
}

/// 64 random bits from RDSEED, else RDRAND, or `None` if the CPU has
/// neither or they keep failing.
pub fn hw_random() -> Option<u64> {
    use core::arch::x86_64::{__cpuid, __cpuid_count};

    #[target_feature(enable = "rdseed")]
    fn rdseed() -> Option<u64> {
        let mut value = 0;
        (core::arch::x86_64::_rdseed64_step(&mut value) == 1).then_some(value)
    }
    #[target_feature(enable = "rdrand")]
    fn rdrand() -> Option<u64> {
        let mut value = 0;
        (core::arch::x86_64::_rdrand64_step(&mut value) == 1).then_some(value)
    }

    let has_rdrand = __cpuid(1).ecx & (1 << 30) != 0;
    let has_rdseed = __cpuid(0).eax >= 7 && __cpuid_count(7, 0).ebx & (1 << 18) != 0;
    // Both may transiently fail; Intel advises a bounded retry.
    for _ in 0..32 {
        // SAFETY: each instruction is used only when CPUID reports it.
        if has_rdseed && let Some(v) = unsafe { rdseed() } {
            return Some(v);
        }
        // SAFETY: as above.
        if has_rdrand && let Some(v) = unsafe { rdrand() } {
            return Some(v);
        }
        if !has_rdseed && !has_rdrand {
            return None;
        }
    }
    None
}

/// virtio devices: PCI on a PC, the fixed MMIO windows on microvm.
pub fn virtio_transports(info: &BootInfo) -> Vec<SomeTransport<'static>> {
    match info.platform {
        Platform::Pc => pci::virtio_transports(),
        Platform::Microvm | Platform::Virt => info
            .mmio_windows
            .iter()
            .filter_map(|window| {
                let base = window.base as usize;
                // SAFETY: these are the machine's virtio-mmio windows, used
                // by nothing else; empty windows read as no device.
                let transport = unsafe { crate::virtio::probe_mmio(base) }?;
                match window.line {
                    Some(line) => interrupts::attach_mmio_device(base, line.number),
                    None => crate::irq::device_without_interrupt(),
                }
                Some(transport)
            })
            .collect(),
    }
}

fn microvm_windows() -> impl Iterator<Item = MmioWindow> {
    (0..MICROVM_MMIO_WINDOWS as u32).map(|i| MmioWindow {
        base: MICROVM_MMIO_BASE + u64::from(i) * crate::virtio::MMIO_WINDOW as u64,
        line: Some(Line {
            number: MICROVM_MMIO_FIRST_GSI + i,
            edge: false,
        }),
    })
}
