//! aarch64 entry as an arm64 Linux `Image`.
//!
//! QEMU `-M virt -kernel` (and U-Boot, and most board loaders) pass the
//! device tree address in `x0` only to images that carry the 64-byte arm64
//! Image header, so the guest starts with one; xtask turns the ELF into a
//! flat image. The entry code drops from EL2 to EL1 if needed, enables
//! FP/SIMD (Rust emits NEON), zeroes `.bss`, installs the exception vectors,
//! turns the MMU on with an identity map (device memory below 1 GiB and at
//! 256 GiB, normal write-back memory for RAM from 1 GiB to 4 GiB) and calls
//! `hal_boot_entry(dtb_paddr)`. Entered at EL2 on a machine with a GICv3,
//! it first lets EL1 use the GIC's system registers. Its vector table sends
//! IRQs to the HAL's `hal_irq`; every other exception is fatal.

core::arch::global_asm!(include_str!("entry.s"));

unsafe extern "C" {
    /// Virtual counter at the first instruction of the entry code.
    static boot_entry_ticks: u64;
}

/// The raw cycle counter (CNTVCT_EL0) read at the first instruction.
pub fn entry_counter() -> u64 {
    // SAFETY: `boot_entry_ticks` lives in `.data`, is written once by the
    // entry code before any Rust runs and never again.
    unsafe { core::ptr::addr_of!(boot_entry_ticks).read_volatile() }
}
