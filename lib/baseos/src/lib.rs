//! What baseosmgr decides, as pure functions of what it knows, so that
//! every case is a host test with a fake clock and scripted content.
//!
//! baseosmgr gets the configured base OS (`EdgeDevConfig.baseos`, eve-api
//! `BaseOS`: a content tree, a version, `activate`, `retry_update`), the
//! state of that content tree (downloaded and verified by the
//! downloader and volumemgr into the host's blob store), and the two
//! partitions as the host's `partitions` target reports them. From those,
//! [`Manager::decide`] says the one next step ([`Action`]) and what each
//! partition looks like to the controller ([`SlotReport`], turned into
//! eve-api `ZInfoDevSw` by [`report::dev_sw`]).
//!
//! The content tree is fetched as every content tree of the config is
//! (zedagent's `content-tree-config`, volumemgr, the downloader); its
//! state comes from volumemgr's `content-tree-status`
//! ([`Content::of_tree`]).
//!
//! The update goes as EVE's: wait for the content, write it into the
//! partition that did not boot, mark that one to be tried once, reboot;
//! on the trial boot, commit once the controller is reached, or give up
//! after the test window and reboot back into the old partition. A
//! version that failed is not tried again until the controller raises
//! `retry_update.counter` above the one the node last saw.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod decide;
pub mod memory;
pub mod report;

pub use decide::{Action, Content, Decision, Desired, Manager, SlotReport};
pub use hostops::power::BootReason;
pub use memory::Memory;
