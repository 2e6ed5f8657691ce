//! Machine entry for our unikernels.
//!
//! This crate holds only what must run before Rust can: the x86_64 PVH
//! entry (32-bit protected mode to long mode) and the aarch64 arm64-Image
//! entry (EL2 to EL1, FP on, MMU on), plus the exception entry stubs and the
//! linker scripts. Both paths zero `.bss`, record the cycle counter at the
//! first instruction (so the guest can measure its own boot), set up a stack
//! and call `hal_boot_entry`, which the `hal` crate defines. The exception
//! stubs report and power off through `hal_exception`; the interrupt stubs
//! save the interrupted state, call `hal_interrupt` (x86_64) or `hal_irq`
//! (aarch64) and return.
//!
//! The per-arch module is chosen here, in one place.
#![no_std]

#[cfg(target_arch = "aarch64")]
#[path = "aarch64/mod.rs"]
mod arch;
#[cfg(target_arch = "x86_64")]
#[path = "x86_64/mod.rs"]
mod arch;

pub use arch::entry_counter;
