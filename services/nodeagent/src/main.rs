//! nodeagent: the node's own health, as EVE's nodeagent.
//!
//! It follows zedagent's `onboard-status` (each new config answer is
//! controller contact), `config-items` (the timers, `maintenance.mode`,
//! `force.fallback.counter`) and `edge-config` (the controller's `reboot`
//! and `shutdown` commands and `maintenance_mode`), asks the host's
//! `partitions` target whether this boot is a trial, follows volumemgr's
//! `content-usage` (a store out of room is maintenance mode), lets
//! `nodepolicy::NodeAgent` decide, and runs what it says on the host:
//! `power.reboot` (reason `DISCONNECT`, `FALLBACK` or `REBOOT_CMD`), or
//! `partitions.fallback` then `power.reboot`. It publishes `node-status`
//! (maintenance mode, the command counters acted on, and whether the
//! controller's `shutdown` shut the apps down: the node stays on, as EVE's)
//! for zedagent's `ZInfoDevice`, baseosmgr and zedmanager. The counters acted on
//! are saved on its state volume (`runtime::saved`) before it acts, so each
//! command is acted on once.
//!
//! Its clock is the node's (`runtime::node_clock`: the host's time since
//! it started the node, handed to each start of the VM), and the
//! controller's last answer is zedagent's time of it on the same clock, so
//! a restart of nodeagent does not begin the no-controller timers again.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use core::cell::{Cell, RefCell};
use core::time::Duration;

use eve_proto::config::EdgeDevConfig;
use hal::clock::Instant;
use hostops::partitions::{self, Empty, PartitionsStatus};
use hostops::power::{self, PowerRequest};
use nodepolicy::{Action, BootReason, Heard, Memory, NodeAgent};
use runtime::saved::SavedRecord;
use runtime::service::{self, Service};
use topics::configitems::GlobalConfig;
use topics::content::Usage;
use topics::nodestatus::Node;
use topics::{ConfigItems, ContentUsage, EdgeConfig, NodeStatus, OnboardStatus};

runtime::entry!("nodeagent", main);

/// How often it decides when nothing changes.
const PERIOD: Duration = Duration::from_secs(5);

/// Seconds on the node's clock, which a restart of nodeagent does not
/// reset (`runtime::node_clock`).
fn now() -> u64 {
    runtime::node_clock::now_s()
}

/// What it has heard on the bus.
#[derive(Default)]
struct Bus {
    items: Option<GlobalConfig>,
    config: Option<EdgeDevConfig>,
    /// zedagent's last config answer (the node's clock), to see a new one.
    last_config_ms: Option<u64>,
    /// volumemgr's room left on PERSIST, for maintenance mode.
    content_usage: Option<Usage>,
}

fn reboot(reason: BootReason) -> Result<(), service::CallError<power::PowerError>> {
    service::call::<power::Reboot>(&PowerRequest {
        reason: reason as i32,
    })
    .map(|_| log::info!("rebooting the node ({reason:?})"))
}

/// Runs `action` on the host; whether the host took it.
fn run(action: Action) -> bool {
    let result = match action {
        Action::Nothing => return true,
        Action::Reboot { reason } => reboot(reason),
        Action::FallbackAndReboot => match service::call::<partitions::Fallback>(&Empty {}) {
            Ok(_) => reboot(BootReason::Fallback),
            Err(e) => {
                log::warn!("forced fallback refused: {e}");
                return false;
            }
        },
    };
    result
        .inspect_err(|e| log::warn!("the host did not take {action:?}: {e}"))
        .is_ok()
}

fn main() -> i32 {
    let bus = RefCell::new(Bus::default());
    let changed = Cell::new(true);
    hal::virtio::discover(runtime::boot_info());
    let (mut saved, memory) = SavedRecord::<Memory>::open("commands", "the commands acted on");
    // Where its timers stand: a restart continues the node's clock.
    log::info!("started at {} s on the node's clock", now());
    // The controller counts as gone since the node started, not since
    // this run: a crash-looping nodeagent still falls back and reboots.
    let agent = RefCell::new(NodeAgent::new(0, memory));
    let mut published: Option<Node> = None;
    let mut last = Instant::now();
    let mut service = Service::new();
    service.on::<OnboardStatus>(|_, _, change| {
        let seen = change.current().and_then(|r| r.last_config_ms);
        let mut bus = bus.borrow_mut();
        if let Some(ms) = seen.filter(|_| seen != bus.last_config_ms) {
            // zedagent's answer time is on the node's clock too, so a
            // restarted nodeagent learns when the controller last answered.
            agent.borrow_mut().contact(ms / 1000);
            changed.set(true);
        }
        bus.last_config_ms = seen;
    });
    service.on::<ConfigItems>(|_, _, change| {
        bus.borrow_mut().items = change.current();
        changed.set(true);
    });
    service.on::<EdgeConfig>(|_, _, change| {
        bus.borrow_mut().config = change.current();
        changed.set(true);
    });
    service.on::<ContentUsage>(|_, _, change| {
        bus.borrow_mut().content_usage = change.current();
        changed.set(true);
    });
    // Nothing is decided before zedagent's `onboard-status` table is
    // complete: a restarted nodeagent counts the controller as gone since
    // the node started until it hears when it last answered.
    let contact_known = Cell::new(false);
    service.on_synchronized::<OnboardStatus>(|_| {
        contact_known.set(true);
        changed.set(true);
    });
    service.repeat_on_change(Duration::ZERO, |_| {
        if !contact_known.get() {
            // The table's synchronization runs the round at once.
            return PERIOD;
        }
        if changed.get() || last.elapsed() >= PERIOD {
            changed.set(false);
            last = Instant::now();
            let disk = service::call::<partitions::Status>(&Empty {}).ok();
            step(
                &mut agent.borrow_mut(),
                &bus.borrow(),
                disk.as_ref(),
                &mut saved,
                &mut published,
            );
        }
        // A change runs the round at once (`repeat_on_change`).
        PERIOD.saturating_sub(last.elapsed())
    });
    service.run()
}

/// One decision: its counters saved, its action run, its status published.
fn step(
    agent: &mut NodeAgent,
    bus: &Bus,
    disk: Option<&PartitionsStatus>,
    saved: &mut SavedRecord<Memory>,
    published: &mut Option<Node>,
) {
    let decision = agent.decide(
        now(),
        Heard {
            items: bus.items.as_ref(),
            config: bus.config.as_ref(),
            partitions: disk,
            content_usage: bus.content_usage.as_ref(),
        },
    );
    saved.save(&agent.memory());
    let mut status = decision.status;
    if !run(decision.action) {
        agent.stop_failed();
        status.reboot_inprogress = false;
    }
    if status.apps_shut_down && published.as_ref().is_none_or(|p| !p.apps_shut_down) {
        log::info!("shutting every app down (controller command); the node stays on");
    }
    if published.as_ref() != Some(&status) {
        match service::publish::<NodeStatus>(NodeStatus::KEY, &status) {
            Ok(()) => *published = Some(status),
            Err(e) => log::warn!("publishing the node status: {e}"),
        }
    }
}
