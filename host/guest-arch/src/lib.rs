//! A guest's architecture, the accelerator QEMU runs it with, and the
//! QEMU arguments every guest shares.
//!
//! The host launches nodes, xtask builds and boots images, the test harness
//! boots guests: all three name arches and pick KVM or TCG the same way,
//! from this one crate.
#![forbid(unsafe_code)]

mod accel;
mod arch;
mod qemu;

pub use accel::{ACCEL_ENV, Accel, AccelChoice, AccelProbe, choose_accel};
pub use arch::Arch;
pub use qemu::{QEMU_HEADLESS_ARGS, qemu_cpu};
