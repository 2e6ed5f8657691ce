//! baseosmgr: base OS updates, as EVE's baseosmgr.
//!
//! It follows zedagent's `base-os-config` (the config's `BaseOS`),
//! volumemgr's `content-tree-status` (the base OS image is a content tree
//! of the config, fetched and verified as every other) and zedagent's
//! `onboard-status` (a trial boot is confirmed once the controller
//! answers a config request), asks the host's `partitions` target where
//! the partitions stand, lets `baseos::Manager` decide, runs the one step
//! it says on the host, and publishes both partitions as `ZInfoDevSw` in
//! `base-os-status` for zedagent's `swList`. The trial's test window is
//! the config item `timer.test.baseimage.update` (zedagent's
//! `config-items`, EVE's 600 s until it has spoken), and nodeagent's
//! `node-status` holds the start of updates in maintenance mode. A trial
//! is committed once that window has passed since the controller's first
//! answer (EVE's rule); the window is measured on the node's clock and its
//! start saved, so a restart of baseosmgr does not begin it again.
//!
//! A reboot (into the update, or back out of a trial that never reached
//! the controller) is the host's `power.reboot`, with the reason the next
//! boot reports (`update` or `fallback`); it is asked for once per run.
//! Failed versions and the `retry_update` counter seen are kept on the
//! state volume (`runtime::saved`), so neither a restart nor a reboot forgets
//! them.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use core::cell::{Cell, RefCell};
use core::time::Duration;

use baseos::{Action, Content, Desired, Manager, Memory, report};
use hal::clock::Instant;
use hostops::partitions::{self, Empty, PartitionRef, PartitionsStatus, WriteRequest};
use hostops::power::{self, PowerRequest};
use runtime::saved::SavedRecord;
use runtime::service::{self, Service};
use topics::baseos::SwList;
use topics::content::ContentTreeState;
use topics::{
    BaseOsConfig, BaseOsStatus, ConfigItems, ContentTreeStatus, NodeStatus, OnboardStatus,
};

runtime::entry!("baseosmgr", main);

/// How often it looks at the partitions.
const PERIOD: Duration = Duration::from_secs(5);
/// Seconds a trial boot gets to reach the controller until zedagent's
/// `config-items` say otherwise (EVE's default
/// `timer.test.baseimage.update`).
const TEST_WINDOW: u64 = 600;

/// Seconds on the node's clock: since the host started this boot, not
/// reset by a restart of baseosmgr (`runtime::node_clock`).
fn now() -> u64 {
    runtime::node_clock::now_s()
}

/// What it has heard on the bus.
struct Heard {
    desired: Option<Desired>,
    trees: BTreeMap<String, ContentTreeState>,
    controller_reached: bool,
    /// `timer.test.baseimage.update`, seconds.
    test_window: u64,
    /// Maintenance mode, as nodeagent decides it.
    maintenance: bool,
}

/// Asks the host to reboot the node, once per run: the host stops every
/// service (this one too) after recording `reason`.
fn reboot(reason: baseos::BootReason, requested: &mut bool) {
    if *requested {
        return;
    }
    match service::call::<power::Reboot>(&PowerRequest {
        reason: reason as i32,
    }) {
        Ok(_) => {
            log::info!("base OS: rebooting ({reason:?})");
            *requested = true;
        }
        Err(e) => log::warn!("base OS: the host did not reboot: {e}"),
    }
}

/// Runs `action` on the host; a failure of the version's own (too large,
/// another version inside) stops that version until a retry.
fn run(manager: &mut Manager, action: &Action, version: &str, rebooting: &mut bool) {
    let result = match action {
        Action::Nothing => Ok(()),
        Action::Write { digest, version } => service::call::<partitions::Write>(&WriteRequest {
            digest: digest.clone(),
            version: version.clone(),
        })
        .map(|p| log::info!("base OS {version} written into {}", p.label)),
        Action::TryOnce { label } => service::call::<partitions::TryOnce>(&PartitionRef {
            label: label.clone(),
        })
        .map(|_| log::info!("{label} will be tried on the next boot")),
        Action::Commit => service::call::<partitions::Commit>(&Empty {})
            .map(|_| log::info!("the controller answered: the booted base OS is committed")),
        Action::Reboot { reason } => {
            reboot(*reason, rebooting);
            Ok(())
        }
    };
    match result {
        Ok(()) => {}
        Err(service::CallError::Failed(error)) => {
            log::warn!("base OS {version}: {error}");
            manager.fail(version, &error.to_string());
        }
        Err(e) => log::warn!("base OS: the host did not answer: {e}"),
    }
}

fn main() -> i32 {
    let heard = RefCell::new(Heard {
        desired: None,
        trees: BTreeMap::new(),
        controller_reached: false,
        test_window: TEST_WINDOW,
        maintenance: false,
    });
    let changed = Cell::new(true);
    hal::virtio::discover(runtime::boot_info());
    let (mut saved, memory) =
        SavedRecord::<Memory>::open("baseos", "failed versions and the retry counter");
    let mut manager = Manager::restore(TEST_WINDOW, memory);
    let mut rebooting = false;
    let mut published: Option<SwList> = None;
    let mut last = Instant::now();
    let mut unavailable: Option<String> = None;
    let mut service = Service::new();
    service.on::<BaseOsConfig>(|_, _, change| {
        heard.borrow_mut().desired = change.current().and_then(|c| Desired::from_config(&c));
        changed.set(true);
    });
    service.on::<ContentTreeStatus>(|_, uuid, change| {
        let mut heard = heard.borrow_mut();
        match change.current() {
            Some(tree) => heard.trees.insert(String::from(uuid), tree),
            None => heard.trees.remove(uuid),
        };
        changed.set(true);
    });
    service.on::<OnboardStatus>(|_, _, change| {
        if change.current().is_some_and(|r| r.last_config_ms.is_some()) {
            heard.borrow_mut().controller_reached = true;
            changed.set(true);
        }
    });
    service.on::<ConfigItems>(|_, _, change| {
        let items = change.current().unwrap_or_default();
        heard.borrow_mut().test_window = u64::from(items.test_baseimage_update_s);
        changed.set(true);
    });
    service.on::<NodeStatus>(|_, _, change| {
        heard.borrow_mut().maintenance = change.current().is_some_and(|n| n.maintenance_mode);
        changed.set(true);
    });
    service.repeat_on_change(Duration::ZERO, |_| {
        if changed.get() || last.elapsed() >= PERIOD {
            changed.set(false);
            last = Instant::now();
            match service::call::<partitions::Status>(&Empty {}) {
                Ok(disk) => {
                    unavailable = None;
                    step(
                        &mut manager,
                        &heard.borrow(),
                        &disk,
                        &mut published,
                        &mut rebooting,
                    );
                    saved.save(&manager.memory());
                }
                Err(e) => {
                    // A node without an A/B disk says so once, not every period.
                    let why = e.to_string();
                    if unavailable.as_ref() != Some(&why) {
                        log::warn!("base OS: no partitions: {why}");
                        unavailable = Some(why);
                    }
                }
            }
        }
        // A change runs the round at once (`repeat_on_change`).
        PERIOD.saturating_sub(last.elapsed())
    });
    service.run()
}

/// One decision, its step and the status it leaves.
fn step(
    manager: &mut Manager,
    heard: &Heard,
    disk: &PartitionsStatus,
    published: &mut Option<SwList>,
    rebooting: &mut bool,
) {
    let desired = heard.desired.as_ref();
    let tree = desired.and_then(|d| heard.trees.get(&d.content_tree));
    let content = Content::of_tree(tree);
    manager.set_test_window(heard.test_window);
    manager.set_held(heard.maintenance);
    let decision = manager.decide(now(), desired, &content, disk, heard.controller_reached);
    if let Some(d) = desired {
        run(manager, &decision.action, &d.version, rebooting);
    } else if decision.action == Action::Commit {
        run(manager, &decision.action, "", rebooting);
    }
    let list = SwList {
        partitions: decision.slots.iter().map(report::dev_sw).collect(),
    };
    if published.as_ref() != Some(&list) {
        match service::publish::<BaseOsStatus>(BaseOsStatus::KEY, &list) {
            Ok(()) => *published = Some(list),
            Err(e) => log::warn!("publishing the base OS status: {e}"),
        }
    }
}
