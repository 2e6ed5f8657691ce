//! zedmanager's logic, portable and host-tested (the service drives it on
//! the bus; tests drive it with scripted volume and domain states and a
//! fake clock).
//!
//! [`Manager`] is level-triggered, as EVE's zedmanager: it holds the
//! config's apps (`app-instance-config`), volumes and content trees (what
//! each volume holds), volumemgr's `volume-status` and domainmgr's
//! `domain-status`, and [`Manager::reconcile`] decides the domain each app
//! should have (`domain-config`) and the state to report (`app-status`,
//! eve-api `ZInfoApp`).
//!
//! - An app's config is checked first ([`plan`]): UUID, memory, vcpus,
//!   volumes, kind, user data, port maps, interfaces on network instances
//!   ([`network`]). A bad one is that app's `ERROR` with text; the others
//!   go on.
//! - Each app on network instances is published for zedrouter
//!   (`app-network-config`, [`Manager::app_networks`]) as soon as its
//!   config checks, and its `ZInfoApp.network` is what zedrouter reports
//!   of its interfaces (`app-network-status`).
//! - An app waits until every volume of its `volumeRefList` has a host
//!   volume, reporting the least advanced volume's state (`INITIAL`,
//!   `DOWNLOAD_STARTED`, `LOADED`, `CREATING_VOLUME`, ...) as EVE does;
//!   then its domain is published with the disks in drive order, and the
//!   app is `BOOTING`, `RUNNING`, `HALTING` or `HALTED` by domainmgr's
//!   report against `activate`.
//! - A bumped `restart` counter is passed on once (`RESTARTING` until the
//!   domain runs under it); a bumped `purge` counter is `PURGING`: the
//!   domain runs on the old disks while volumemgr builds the new
//!   generations, is halted once they are ready, then given them and
//!   started (make-before-break).
//! - A change of a running app's interfaces is applied as EVE's
//!   zedmanager applies it ([`netchange`]): ACL changes (port maps
//!   included) at once, through zedrouter; another number of adapters,
//!   or an adapter's MAC, static address or network instance, only with
//!   a bumped `purge` counter (the domain is given the new NICs as it
//!   starts on the new disks); without one the app reports "Need purge
//!   due to ... but not a purgeCmd" and runs on as it was.
//! - An app removed from the config loses its domain and its report.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod manager;
mod netchange;
pub mod network;
pub mod plan;
mod report;
pub mod uuid;

pub use manager::Manager;
