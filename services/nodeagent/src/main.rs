//! nodeagent: the node's own health, as EVE's nodeagent.
//!
//! It follows zedagent's `onboard-status` (each new config answer is
//! controller contact), `config-items` (the timers, `maintenance.mode`,
//! `force.fallback.counter`) and `edge-config` (the controller's `reboot`
//! and `shutdown` commands and `maintenance_mode`), asks the host's
//! `partitions` target whether this boot is a trial, lets
//! `nodepolicy::NodeAgent` decide, and runs what it says on the host:
//! `power.reboot` (reason `DISCONNECT`, `FALLBACK` or `REBOOT_CMD`),
//! `power.shutdown`, or `partitions.fallback` then `power.reboot`. It
//! publishes `node-status` (maintenance mode, the command counters acted
//! on) for zedagent's `ZInfoDevice` and baseosmgr. The counters acted on
//! are saved on its state volume (`runtime::saved`) before it acts, so each
//! command is acted on once.
//!
//! Its clock is its own uptime: a restart of nodeagent restarts the
//! no-controller timers.
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
use runtime::service::{self, Change, Service};
use topics::configitems::GlobalConfig;
use topics::nodestatus::Node;
use topics::{ConfigItems, EdgeConfig, NodeStatus, OnboardStatus};

runtime::entry!("nodeagent", main);

/// How often it decides when nothing changes.
const PERIOD: Duration = Duration::from_secs(5);

fn value<V>(change: Change<V>) -> Option<V> {
    match change {
        Change::Created(v) | Change::Modified(v) => Some(v),
        Change::Deleted(_) => None,
    }
}

/// Seconds since this VM booted.
fn now() -> u64 {
    Instant::now().as_nanos() / 1_000_000_000
}

/// What it has heard on the bus.
#[derive(Default)]
struct Bus {
    items: Option<GlobalConfig>,
    config: Option<EdgeDevConfig>,
    /// zedagent's last config answer (its clock), to see a new one.
    last_config_ms: Option<u64>,
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
        Action::Shutdown => service::call::<power::Shutdown>(&PowerRequest {
            reason: BootReason::PoweroffCmd as i32,
        })
        .map(|_| log::info!("shutting the node down (controller command)")),
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
    let agent = RefCell::new(NodeAgent::new(now(), memory));
    let mut published: Option<Node> = None;
    let mut last = Instant::now();
    let mut service = Service::new();
    service.on::<OnboardStatus>(|_, _, change| {
        let seen = value(change).and_then(|r| r.last_config_ms);
        let mut bus = bus.borrow_mut();
        if seen.is_some() && seen != bus.last_config_ms {
            agent.borrow_mut().contact(now());
            changed.set(true);
        }
        bus.last_config_ms = seen;
    });
    service.on::<ConfigItems>(|_, _, change| {
        bus.borrow_mut().items = value(change);
        changed.set(true);
    });
    service.on::<EdgeConfig>(|_, _, change| {
        bus.borrow_mut().config = value(change);
        changed.set(true);
    });
    service.repeat_on_change(Duration::ZERO, |_| {
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
        },
    );
    saved.save(&agent.memory());
    let mut status = decision.status;
    if !run(decision.action) {
        agent.stop_failed();
        status.reboot_inprogress = false;
    }
    if published.as_ref() != Some(&status) {
        match service::publish::<NodeStatus>(NodeStatus::KEY, &status) {
            Ok(()) => *published = Some(status),
            Err(e) => log::warn!("publishing the node status: {e}"),
        }
    }
}
