//! aarch64 early start: the device tree turned into a [`BootInfo`], and the
//! interrupt controller and timer it describes brought up.

use core::sync::atomic::Ordering;

use bootinfo::{
    fdt::{self, FDT_HEADER_LEN, Fdt},
    layout::Span,
};

use super::{PL011_BASE, PL031_BASE, PSCI_USES_SMC, gic::Gic, interrupts};
use crate::{
    power,
    startup::{BootInfo, Line, MmioWindow, Platform},
};

/// QEMU virt's RAM base, where loaders put the device tree when they do not
/// pass its address.
const RAM_BASE: usize = 0x4000_0000;

/// The nodes boot looks for, by `compatible`; the index tells them apart.
const COMPATIBLES: [&str; 8] = [
    "virtio,mmio",
    "arm,pl011",
    "arm,pl031",
    "arm,gic-v3",
    "arm,cortex-a15-gic",
    "arm,cortex-a7-gic",
    "arm,gic-400",
    "arm,armv8-timer",
];
const VIRTIO: usize = 0;
const UART: usize = 1;
const RTC: usize = 2;
const GIC_V3: usize = 3;
const GIC_V2: core::ops::RangeInclusive<usize> = 4..=6;
const TIMER: usize = 7;
/// In GIC interrupt specifiers: the first cell's type, and where each kind
/// starts among interrupt IDs.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const FIRST_SPI: u32 = 32;
const FIRST_PPI: u32 = 16;
/// The timer node lists the secure, non-secure, virtual and hypervisor
/// timers' interrupts, three cells each: the virtual one is third.
const VIRTUAL_TIMER_CELL: usize = 6;

/// A `<type number flags>` GIC specifier as an interrupt line.
fn gic_line(kind: u32, number: u32, flags: u32) -> Option<Line> {
    let first = match kind {
        GIC_SPI => FIRST_SPI,
        GIC_PPI => FIRST_PPI,
        _ => return None,
    };
    Some(Line {
        number: first.checked_add(number)?,
        // Flags 1 and 2: rising and falling edge; 4 and 8: high and low level.
        edge: flags & 0b11 != 0,
    })
}

fn fail(what: &str, error: impl core::fmt::Display) -> ! {
    crate::println!("boot: {what}: {error}");
    power::exit(guest_abi::EXIT_FAILURE)
}

/// A `'static` view of the device tree.
///
/// # Safety
/// `paddr` must be mapped memory holding at least `FDT_HEADER_LEN` bytes
/// that nothing writes later (we keep it out of the heap).
unsafe fn device_tree(paddr: usize) -> Result<&'static [u8], fdt::FdtError> {
    // SAFETY: per the caller, the header is readable.
    let header = unsafe { core::slice::from_raw_parts(paddr as *const u8, FDT_HEADER_LEN) };
    let len = fdt::total_size(header)?;
    // SAFETY: the loader placed `totalsize` bytes of device tree here;
    // total_size capped it at MAX_FDT_LEN.
    Ok(unsafe { core::slice::from_raw_parts(paddr as *const u8, len) })
}

pub fn early_init(dtb_paddr: usize) -> BootInfo {
    let paddr = if dtb_paddr == 0 { RAM_BASE } else { dtb_paddr };
    // SAFETY: either the loader's device tree pointer or the start of RAM,
    // both mapped by the boot page tables.
    let blob = unsafe { device_tree(paddr) }.unwrap_or_else(|e| fail("device tree", e));

    let mut boot = BootInfo {
        cmdline: "",
        ram: heapless::Vec::new(),
        reserved: heapless::Vec::new(),
        mmio_windows: heapless::Vec::new(),
        platform: Platform::Virt,
    };
    let (mut uart, mut rtc, mut gic, mut timer) = (None, None, None, None);
    let (_, scan) = Fdt::new_scanned(blob, &COMPATIBLES, |index, device| {
        match (index, device.reg) {
            (VIRTIO, Some(reg)) => {
                let line = match device.irq() {
                    [kind, number, flags] => gic_line(*kind, *number, *flags),
                    _ => None,
                };
                let _ = boot.mmio_windows.push(MmioWindow {
                    base: reg.base,
                    line,
                });
            }
            (UART, Some(reg)) => {
                uart.get_or_insert(reg.base);
            }
            (RTC, Some(reg)) => {
                rtc.get_or_insert(reg.base);
            }
            (GIC_V3, Some(reg)) => {
                if let Some(redistributors) = device.second_reg {
                    gic.get_or_insert(Gic::V3 {
                        distributor: reg.base as usize,
                        redistributors: redistributors.base as usize,
                    });
                }
            }
            (i, Some(reg)) if GIC_V2.contains(&i) => {
                if let Some(cpu) = device.second_reg {
                    gic.get_or_insert(Gic::V2 {
                        distributor: reg.base as usize,
                        cpu: cpu.base as usize,
                    });
                }
            }
            (TIMER, _) => {
                let cell = |i| device.interrupt_cell(VIRTUAL_TIMER_CELL + i);
                if let (Some(kind), Some(number), Some(flags)) = (cell(0), cell(1), cell(2)) {
                    timer = gic_line(kind, number, flags).map(|l| l.number);
                }
            }
            _ => {}
        }
    })
    .unwrap_or_else(|e| fail("device tree", e));
    if let Some(base) = uart {
        PL011_BASE.store(base as usize, Ordering::Relaxed);
    }
    if let Some(base) = rtc {
        PL031_BASE.store(base as usize, Ordering::Relaxed);
    }
    PSCI_USES_SMC.store(scan.psci_method == Some("smc"), Ordering::Relaxed);
    boot.cmdline = scan.bootargs.unwrap_or("");
    if let Some(span) = Span::from_len(paddr as u64, blob.len() as u64) {
        let _ = boot.reserved.push(span);
    }
    for region in &scan.memory {
        if let Some(span) = Span::from_len(region.base, region.size) {
            let _ = boot.ram.push(span);
        }
    }
    if boot.ram.is_empty() {
        fail("device tree", "no memory node");
    }
    interrupts::init(gic, timer);
    boot
}
