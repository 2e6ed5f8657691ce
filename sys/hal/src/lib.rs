//! The hardware layer our unikernels are written against.
//!
//! Every service sees the same names whatever machine it runs on: a serial
//! console, a monotonic clock and the wall-clock time at boot, power-off with
//! an exit status, the memory map turned into a heap and DMA pages, virtio
//! devices found on PCI or MMIO, an entropy source, and waiting: timer and
//! device interrupts that end a sleep ([`wait_until`]). The per-arch modules
//! (`x86_64/`, `aarch64/`) export the same items and are chosen here, in one
//! place; everything outside them is portable.
#![no_std]

extern crate alloc;

#[cfg(target_arch = "aarch64")]
#[path = "aarch64/mod.rs"]
mod arch;
#[cfg(target_arch = "x86_64")]
#[path = "x86_64/mod.rs"]
mod arch;

pub mod block;
pub mod busport;
pub mod clock;
pub mod console;
pub mod entropy;
pub mod irq;
pub mod power;
pub mod startup;
pub mod virtio;
mod wait;

pub use arch::ARCH;
pub use startup::{BootInfo, Platform};
pub use wait::{IDLE_TICK, POLL_TICK, set_idle_hook, wait_until};

/// Size of the pages we hand to devices and map with.
pub const PAGE_SIZE: usize = 4096;

/// One turn of a wait loop that checks a deadline of its own: sleeps until
/// the next interrupt, at most [`IDLE_TICK`], running the idle hook. Loops
/// that know their deadline call [`wait_until`] with it instead and sleep
/// until then.
pub fn idle() {
    wait_until(Some(clock::Instant::now().saturating_add(IDLE_TICK)));
}

/// The same as [`idle`]: wait loops written before the HAL could sleep
/// call this one.
pub fn relax() {
    idle();
}
