//! x86_64 early start: interrupt table, then the PVH start info turned
//! into a [`BootInfo`], then the interrupt controllers.

use bootinfo::{
    layout::Span,
    pvh::{self, MAX_CMDLINE_LEN, MEMMAP_ENTRY_LEN, MemoryKind, START_INFO_LEN},
};

use super::{interrupts, pci};
use crate::{
    power,
    startup::{BootInfo, MAX_RAM_REGIONS, Platform},
};

/// A `'static` view of boot data the loader left in identity-mapped memory.
///
/// # Safety
/// `[paddr, paddr + len)` must be mapped memory that nothing writes for the
/// rest of the guest's life (we keep it out of the heap).
unsafe fn loader_bytes(paddr: u64, len: usize) -> &'static [u8] {
    // SAFETY: per the caller.
    unsafe { core::slice::from_raw_parts(paddr as usize as *const u8, len) }
}

fn fail(what: &str, error: impl core::fmt::Display) -> ! {
    crate::println!("boot: {what}: {error}");
    power::exit(guest_abi::EXIT_FAILURE)
}

pub fn early_init(start_info_paddr: usize) -> BootInfo {
    interrupts::install_idt();
    let start_info_paddr = start_info_paddr as u64;
    if start_info_paddr == 0 {
        fail(
            "start info",
            "the loader passed none (not booted through PVH?)",
        );
    }
    // SAFETY: PVH puts start_info in low RAM, which the heap never uses
    // (it starts at 1 MiB and is also kept clear of this range below).
    let start_info = unsafe { loader_bytes(start_info_paddr, START_INFO_LEN) };
    let info = pvh::StartInfo::parse(start_info).unwrap_or_else(|e| fail("start info", e));

    let mut boot = BootInfo {
        cmdline: "",
        ram: heapless::Vec::new(),
        reserved: heapless::Vec::new(),
        mmio_windows: heapless::Vec::new(),
        platform: if pci::host_bridge_present() {
            Platform::Pc
        } else {
            Platform::Microvm
        },
    };
    let reserve = |boot: &mut BootInfo, start: u64, len: usize| {
        if let Some(span) = Span::from_len(start, len as u64) {
            let _ = boot.reserved.push(span);
        }
    };
    reserve(&mut boot, start_info_paddr, START_INFO_LEN);

    if info.cmdline_paddr != 0 {
        // SAFETY: the loader's command line; the window stays in low RAM
        // and is reserved from the heap.
        let window = unsafe { loader_bytes(info.cmdline_paddr, MAX_CMDLINE_LEN) };
        boot.cmdline = pvh::cmdline(window).unwrap_or_else(|e| fail("command line", e));
        let len = boot.cmdline.len() + 1;
        reserve(&mut boot, info.cmdline_paddr, len);
    }

    let entries = info.memmap_entries.min(pvh::MAX_MEMMAP_ENTRIES as u32);
    if info.memmap_paddr != 0 && entries != 0 {
        let len = entries as usize * MEMMAP_ENTRY_LEN;
        // SAFETY: the loader's memory map, `entries` (bounded) records long.
        let table = unsafe { loader_bytes(info.memmap_paddr, len) };
        reserve(&mut boot, info.memmap_paddr, len);
        let regions = pvh::memmap(table, entries).unwrap_or_else(|e| fail("memory map", e));
        for region in regions.filter(|r| r.kind == MemoryKind::Ram) {
            if boot.ram.len() < MAX_RAM_REGIONS
                && let Some(span) = Span::from_len(region.start, region.len)
            {
                let _ = boot.ram.push(span);
            }
        }
    }
    if boot.ram.is_empty() {
        fail("memory map", "no RAM reported (PVH start info version 0?)");
    }
    if boot.platform == Platform::Microvm {
        for window in super::microvm_windows() {
            let _ = boot.mmio_windows.push(window);
        }
    }
    interrupts::init();
    boot
}
