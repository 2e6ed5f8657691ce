//! volumemgr: content trees and volumes, as EVE's volumemgr.
//!
//! It follows zedagent's `content-tree-config`, `volume-config` and
//! `content-settings` tables and the downloader's `download-status`, and
//! runs `contentmgr::Manager` against the host's blob store and volumes
//! (the `blobs` operations on volumemgr's side: expect, references, read,
//! list, collect; and the `volumes` target). It publishes what to download
//! (`download-request`) and what it sees: `content-tree-status`,
//! `volume-status`, `blob-status` and `content-usage`, which zedagent
//! reports to the controller.
//!
//! It follows domainmgr's `domain-status` too: a host volume a domain
//! lists among its disks is never deleted (a purge's old generation stays
//! until the domain runs on the new one), and none is deleted before that
//! table is synchronized. A manifest that does not grant the subscription
//! leaves the table never synchronized: volumes are still built and
//! reported, but replaced and unconfigured ones are kept (each logged once)
//! rather than deleted under a domain volumemgr cannot see.
//!
//! It reconciles after every change it hears of, every second while
//! something moves (downloads, builds) and every ten seconds otherwise.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod host;
mod publish;

use core::cell::{Cell, RefCell};
use core::time::Duration;

use contentmgr::Manager;
use hal::clock::Instant;
use runtime::service::Service;
use topics::{ContentSettings, ContentTreeConfig, DomainStatus, DownloadStatus, VolumeConfig};

use host::BusHost;
use publish::Published;

runtime::entry!("volumemgr", main);

/// How often it reconciles while something moves.
const BUSY: Duration = Duration::from_secs(1);
/// How often it reconciles otherwise.
const IDLE: Duration = Duration::from_secs(10);
/// The shortest wait between two timed rounds (a change runs one at once).
const SOON: Duration = Duration::from_millis(50);

/// The node's guests' arch: an OCI index is resolved to its image.
const ARCH: &str = if cfg!(target_arch = "aarch64") {
    "aarch64"
} else {
    "x86_64"
};

fn main() -> i32 {
    let manager = RefCell::new(Manager::new(ARCH));
    let changed = Cell::new(true);
    let mut published = Published::default();
    let mut service = Service::new();
    service.on::<ContentTreeConfig>(|_, uuid, change| {
        manager.borrow_mut().set_tree(uuid, change.current());
        changed.set(true);
    });
    service.on_synchronized::<ContentTreeConfig>(|_| {
        manager.borrow_mut().trees_synchronized();
        changed.set(true);
    });
    service.on::<VolumeConfig>(|_, uuid, change| {
        manager.borrow_mut().set_volume(uuid, change.current());
        changed.set(true);
    });
    service.on_synchronized::<VolumeConfig>(|_| {
        manager.borrow_mut().volumes_synchronized();
        changed.set(true);
    });
    service.on::<ContentSettings>(|_, _, change| {
        if let Some(settings) = change.current() {
            manager.borrow_mut().set_settings(settings);
            changed.set(true);
        }
    });
    service.on::<DownloadStatus>(|_, key, change| {
        manager.borrow_mut().set_download(key, change.current());
        changed.set(true);
    });
    service.on::<DomainStatus>(|_, key, change| {
        manager.borrow_mut().set_domain(key, change.current());
        changed.set(true);
    });
    service.on_synchronized::<DomainStatus>(|_| {
        manager.borrow_mut().domains_synchronized();
        changed.set(true);
    });
    let mut busy = true;
    let mut last = Instant::now();
    service.repeat_on_change(Duration::ZERO, |_| {
        let due = if busy { BUSY } else { IDLE };
        if changed.get() || last.elapsed() >= due {
            changed.set(false);
            last = Instant::now();
            let mut manager = manager.borrow_mut();
            match manager.reconcile(&mut BusHost, runtime::unix_seconds()) {
                Ok(done) => {
                    busy = done.busy;
                    if manager.ready() {
                        published.update(&manager);
                    }
                }
                Err(e) => {
                    log::warn!("the host did not answer: {e}; trying again");
                    busy = true;
                }
            }
        }
        // A change runs the round at once (`repeat_on_change`).
        SOON.max(due.saturating_sub(last.elapsed()))
    });
    service.run()
}
