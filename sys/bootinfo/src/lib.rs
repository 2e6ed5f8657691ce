//! Parsers for the boot data a unikernel receives from whatever started it.
//!
//! Every service boots with a handful of blobs handed over by the machine: the
//! Xen PVH `hvm_start_info` block on x86_64, a flattened device tree on
//! aarch64, and a kernel command line on both. Those bytes come from outside
//! our trust boundary (a VMM, a bootloader, or a fuzzer), so this crate treats
//! them as hostile: every parser works on a `&[u8]` or `&str`, every length
//! and offset is checked, every loop is bounded by the input size or a fixed
//! limit, and malformed input is reported as a small `Copy` error rather than
//! a panic. A panic this early would leave a guest dead without a console to
//! say why.
//!
//! The crate is split out of `hal` so that it stays portable: it has no
//! `unsafe`, no dependencies and no architecture code, which means the exact
//! code that runs on bare metal is also exercised by ordinary `cargo test` on
//! the host. Turning physical addresses into slices is the HAL's job; by the
//! time bytes reach this crate they are just bytes.
//!
//! - [`pvh`]: the x86_64 PVH start info, its memory map and command line.
//! - [`fdt`]: the device tree blob, queried for memory, `/chosen` and devices.
//! - [`cmdline`]: the `key=value` command line our services are configured by.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod cmdline;
pub mod fdt;
pub mod layout;
pub mod pvh;

mod bytes;
