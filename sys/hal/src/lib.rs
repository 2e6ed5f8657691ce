//! The hardware layer our unikernels are written against.
//!
//! Every service sees the same names whatever machine it runs on: a serial
//! console, a monotonic clock and the wall-clock time at boot, power-off with
//! an exit status, the memory map turned into a heap and DMA pages, virtio
//! devices found on PCI or MMIO, and an entropy source. The per-arch modules
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
pub mod power;
pub mod startup;
pub mod virtio;

pub use arch::ARCH;
pub use startup::{BootInfo, Platform};

/// Size of the pages we hand to devices and map with.
pub const PAGE_SIZE: usize = 4096;

/// Lets the CPU know we are spinning (`pause` / `yield`).
pub fn relax() {
    arch::relax();
}

static IDLE_HOOK: spin::Once<fn()> = spin::Once::new();

/// Sets what every blocking wait runs while it spins (once; later calls
/// are ignored). The runtime keeps the node bus alive with it, so a
/// service stuck in a long network wait still sends heartbeats and logs.
pub fn set_idle_hook(hook: fn()) {
    IDLE_HOOK.call_once(|| hook);
}

/// One turn of a blocking wait: the idle hook, then [`relax`].
pub fn idle() {
    if let Some(hook) = IDLE_HOOK.get() {
        hook();
    }
    relax();
}

/// Waits until `deadline` (`None`: no deadline): returns at the deadline,
/// or earlier as soon as any device interrupt (or the timer) fired; never
/// spins. Until the HAL takes interrupts, this is one turn of [`idle`]:
/// it returns at once, early, and the caller's loop polls as before.
pub fn wait_until(deadline: Option<clock::Instant>) {
    if deadline.is_none_or(|d| clock::Instant::now() < d) {
        idle();
    }
}
