//! The thin Linux host of a node: reads the node manifest, launches every
//! service unikernel in its own VM, wires its devices and bus channel, and
//! supervises it (restarts with backoff, crash and hang reports).
//!
//! Seams for what plugs in later: [`bus::BusAttach`] receives each VM's
//! bus connection, [`heartbeat::HeartbeatBoard`] is fed the services'
//! heartbeats, [`vmm::Vmm`] is the VMM (QEMU today).
#![forbid(unsafe_code)]

pub mod accel;
mod arch;
pub mod bus;
pub mod console;
pub mod end;
pub mod heartbeat;
pub mod manifest;
pub mod node;
pub mod qemu;
pub mod supervisor;
pub mod vfio;
pub mod vmm;
pub mod volumes;

pub use arch::Arch;
