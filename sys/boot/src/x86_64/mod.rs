//! x86_64 entry through the Xen PVH boot ABI.
//!
//! QEMU `-kernel` (any machine type), Firecracker-style VMMs and our own
//! future VMM find the 32-bit entry point in a `XEN_ELFNOTE_PHYS32_ENTRY`
//! note and start it in flat protected mode, paging off, with `%ebx`
//! pointing at `hvm_start_info`. The entry code identity-maps the low 4 GiB
//! with 2 MiB pages (RAM below, MMIO above 3 GiB uncached), enters long mode
//! and calls `hal_boot_entry(start_info_paddr)`.
//!
//! `interrupts.s` holds the interrupt entry stubs (vectors 32-255), which
//! call the HAL's `hal_interrupt(vector)`.

core::arch::global_asm!(include_str!("entry.s"), options(att_syntax));
core::arch::global_asm!(include_str!("interrupts.s"), options(att_syntax));

unsafe extern "C" {
    /// Time stamp counter at the first instruction of the entry code.
    static boot_entry_tsc: u64;
}

/// The raw cycle counter (TSC) read at the first instruction of the guest.
pub fn entry_counter() -> u64 {
    // SAFETY: `boot_entry_tsc` lives in `.data`, is written once by the
    // entry code before any Rust runs and never again.
    unsafe { core::ptr::addr_of!(boot_entry_tsc).read_volatile() }
}
