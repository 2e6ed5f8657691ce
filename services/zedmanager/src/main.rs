//! zedmanager: app instances, as EVE's zedmanager.
//!
//! It follows zedagent's `app-instance-config` (and `volume-config` and
//! `content-tree-config`, which say what each volume holds: the first
//! volume's format decides a container), volumemgr's `volume-status` and
//! domainmgr's `domain-status`, and runs `appmgr::Manager`, publishing the
//! domain each app should have (`domain-config`, for domainmgr) and each
//! app's state (`app-status`, eve-api `ZInfoApp`, which zedagent reports).
//! Apps' interfaces on the config's network instances
//! (`network-instance-config`) go to zedrouter (`app-network-config`),
//! whose report of them (`app-network-status`) is `ZInfoApp.network`.
//! While nodeagent's `node-status` says the controller's `shutdown` was
//! acted on, every app is halted as with `activate=false` and none starts
//! (EVE's shutdown: the node stays on until a reboot).
//! It makes no host calls: decisions only.
//!
//! It reconciles once after each burst of changes it hears of and sleeps
//! otherwise; nothing it decides depends on the clock alone.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod publish;

use core::cell::{Cell, RefCell};
use core::time::Duration;

use appmgr::Manager;
use runtime::service::Service;
use topics::{
    AppInstanceConfig, AppNetworkStatus, ContentTreeConfig, DomainStatus, NetworkInstanceConfig,
    NodeStatus, VolumeConfig, VolumeStatus,
};

use publish::Published;

runtime::entry!("zedmanager", main);

/// How soon it publishes again when the bus refused part of its view.
const RETRY: Duration = Duration::from_secs(1);

fn main() -> i32 {
    let manager = RefCell::new(Manager::new());
    let changed = Cell::new(false);
    let mut published = Published::default();
    let mut service = Service::new();
    service.on::<AppInstanceConfig>(|_, key, change| {
        manager.borrow_mut().set_app(key, change.current());
        changed.set(true);
    });
    service.on_synchronized::<AppInstanceConfig>(|_| {
        manager.borrow_mut().apps_synchronized();
        changed.set(true);
    });
    service.on::<VolumeConfig>(|_, key, change| {
        manager
            .borrow_mut()
            .set_volume_config(key, change.current());
        changed.set(true);
    });
    service.on_synchronized::<VolumeConfig>(|_| {
        manager.borrow_mut().volumes_synchronized();
        changed.set(true);
    });
    service.on::<ContentTreeConfig>(|_, key, change| {
        manager.borrow_mut().set_tree_config(key, change.current());
        changed.set(true);
    });
    service.on_synchronized::<ContentTreeConfig>(|_| {
        manager.borrow_mut().trees_synchronized();
        changed.set(true);
    });
    service.on::<NetworkInstanceConfig>(|_, key, change| {
        manager
            .borrow_mut()
            .set_network_instance(key, change.current());
        changed.set(true);
    });
    service.on_synchronized::<NetworkInstanceConfig>(|_| {
        manager.borrow_mut().instances_synchronized();
        changed.set(true);
    });
    service.on::<AppNetworkStatus>(|_, key, change| {
        manager
            .borrow_mut()
            .set_app_network_state(key, change.current());
        changed.set(true);
    });
    service.on::<VolumeStatus>(|_, key, change| {
        manager.borrow_mut().set_volume_state(key, change.current());
        changed.set(true);
    });
    service.on::<DomainStatus>(|_, key, change| {
        manager.borrow_mut().set_domain_state(key, change.current());
        changed.set(true);
    });
    service.on::<NodeStatus>(|_, _, change| {
        let shut_down = change.current().is_some_and(|n| n.apps_shut_down);
        manager.borrow_mut().set_apps_shut_down(shut_down);
        changed.set(true);
    });
    // Runs after every turn of the loop, so after each burst of bus
    // changes; the loop sleeps while it reports no progress.
    service.poller(|ctl| {
        if !changed.replace(false) {
            return false;
        }
        let mut manager = manager.borrow_mut();
        if !manager.ready() {
            return false;
        }
        manager.reconcile(runtime::unix_seconds());
        if !published.update(&manager) {
            changed.set(true);
            ctl.wake_by(ctl.now().saturating_add(RETRY));
        }
        false
    });
    service.run()
}
