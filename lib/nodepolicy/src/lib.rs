//! What nodeagent decides, as pure functions of what it heard and a clock,
//! so every timer is a host test with a fake clock.
//!
//! nodeagent follows zedagent's controller contact (`onboard-status`),
//! the config's global items (`config-items`), the config itself
//! (`edge-config`: the `reboot` and `shutdown` commands and
//! `maintenance_mode`) and the partitions (the host's `partitions`
//! target), and [`NodeAgent::decide`] answers the one thing to do
//! ([`Action`]) and the node's status for the bus ([`topics::nodestatus::Node`]):
//!
//! - no controller contact for `timer.reboot.no.network` (7 days):
//!   reboot, reason `DISCONNECT`;
//! - a trial base OS (the booted partition `inprogress`) without contact
//!   for `timer.update.fallback.no.network` (300 s): reboot, reason
//!   `FALLBACK`; the trial was never committed, so the loader boots the
//!   other partition (baseosmgr's own `timer.test.baseimage.update`
//!   window gives up a trial that never reached the controller: whichever
//!   fires first reboots, with the same reason);
//! - the controller's `reboot.counter` changed from the one last acted
//!   on: reboot (`REBOOT_CMD`), once;
//! - its `shutdown.counter` changed from the one last acted on: every app
//!   is shut down and the node stays on, as EVE's (no remote power-on);
//!   `node-status` says so (`apps_shut_down`, for zedmanager) until the
//!   node reboots, when the apps run again;
//! - `force.fallback.counter` changed from the one seen: boot the other
//!   partition (`partitions.fallback`, then reboot, reason `FALLBACK`);
//! - maintenance mode: the config item `maintenance.mode` when set, else
//!   `EdgeDevConfig.maintenance_mode`, or by itself when the content
//!   store runs out of room ([`maintenance`]).
//!
//! Counters are acted on when they differ from the one remembered; the
//! first one ever seen is only remembered, as EVE does on a fresh device,
//! so an old command is not replayed on a new node. [`Memory`] is what
//! the service keeps on its state volume.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod decide;
pub mod maintenance;
pub mod memory;

pub use decide::{Action, Decision, Heard, NodeAgent};
pub use hostops::power::BootReason;
pub use memory::Memory;
