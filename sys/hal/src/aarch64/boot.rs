//! aarch64 early start: the device tree turned into a [`BootInfo`].

use core::sync::atomic::Ordering;

use bootinfo::{
    fdt::{self, FDT_HEADER_LEN, Fdt},
    layout::Span,
};

use super::{PL011_BASE, PL031_BASE, PSCI_USES_SMC};
use crate::{
    power,
    startup::{BootInfo, Platform},
};

/// QEMU virt's RAM base, where loaders put the device tree when they do not
/// pass its address.
const RAM_BASE: usize = 0x4000_0000;

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
    const COMPATIBLES: [&str; 3] = ["virtio,mmio", "arm,pl011", "arm,pl031"];
    let (mut uart, mut rtc) = (None, None);
    let (_, scan) = Fdt::new_scanned(blob, &COMPATIBLES, |index, device| {
        match (index, device.reg) {
            (0, Some(reg)) => {
                let _ = boot.mmio_windows.push(reg.base);
            }
            (1, Some(reg)) => {
                uart.get_or_insert(reg.base);
            }
            (2, Some(reg)) => {
                rtc.get_or_insert(reg.base);
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
    boot
}
