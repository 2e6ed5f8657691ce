//! The thin Linux host of a node: reads the node manifest, launches every
//! service unikernel in its own VM, wires its devices and bus channel, and
//! supervises it (restarts with backoff, crash and hang reports).
//!
//! Seams: [`bus::BusAttach`] receives each VM's bus connection and
//! [`heartbeat::Heartbeats`] tells the supervisor when each service last
//! beat; the node's [`eve_broker::Broker`] is both ([`nodebus`]), with
//! the host operation targets ([`targets`]: the TPM today) behind it.
//! [`vmm::Vmm`] is the VMM (QEMU today). [`status`] keeps
//! `<state-dir>/run/status.json` for tools.
#![forbid(unsafe_code)]

pub mod bus;
pub mod console;
pub mod deviceports;
pub mod end;
pub mod facts;
pub mod heartbeat;
pub mod init;
pub mod lock;
pub mod manifest;
pub mod node;
pub mod nodebus;
pub use orphans;
pub mod qemu;
pub mod servicelog;
pub mod status;
pub mod stdio;
pub mod supervisor;
pub mod targets;
pub mod vfio;
pub mod vmm;
pub mod volumes;
pub mod watchdog;

pub use guest_arch::{Accel, AccelChoice, Arch};
