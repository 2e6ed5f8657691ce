//! A guest's architecture and the accelerator QEMU runs it with.
//!
//! The host launches nodes, xtask builds and boots images, the test harness
//! boots guests: all three name arches and pick KVM or TCG the same way,
//! from this one crate.
#![forbid(unsafe_code)]

mod accel;
mod arch;

pub use accel::{ACCEL_ENV, Accel, AccelChoice, AccelProbe, choose_accel};
pub use arch::Arch;
