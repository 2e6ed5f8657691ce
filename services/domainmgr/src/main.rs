//! domainmgr: app domains, as EVE's domainmgr.
//!
//! It follows zedmanager's `domain-config` table and runs
//! `domainctl::Manager` against the host's `domains` target (start, stop,
//! list, usage): an activated domain runs, a deactivated one is halted, a
//! bumped restart counter restarts it once, a removed one is stopped and
//! forgotten. It publishes `domain-status` (for zedmanager) and every ten
//! seconds `app-metrics` (the running domains' CPU and memory, for
//! zedagent), and the running apps' console lines in `app-logs` (which
//! zedagent uploads as each app's logs; they are also in its own log). The host restarts a crashed domain itself;
//! domainmgr reports it `BOOTING` with the crash until it runs again.
//!
//! It reconciles after every change it hears of, every second while
//! something moves (a retry pending) and every ten seconds otherwise;
//! between those it sleeps. The consoles are read on each of those rounds
//! and, while one has more than a round's bounded read left (a Linux VM's
//! boot log), again 50 ms later, so a burst is not spread over minutes of
//! idle rounds.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod applogs;
mod host;
mod publish;

use core::cell::{Cell, RefCell};
use core::time::Duration;

use domainctl::Manager;
use hal::clock::Instant;
use runtime::service::Service;
use topics::DomainConfig;

use applogs::AppLogPublisher;
use host::BusHost;
use publish::Published;

runtime::entry!("domainmgr", main);

/// How often it reconciles while something moves.
const BUSY: Duration = Duration::from_secs(1);
/// How often it reconciles otherwise, and measures the running domains.
const IDLE: Duration = Duration::from_secs(10);
/// The shortest wait between two timed rounds, and how soon a console with
/// more unread is read again (a change runs a round at once).
const SOON: Duration = Duration::from_millis(50);

/// Unix milliseconds, as [`now`].
fn now_ms() -> u64 {
    hal::clock::unix_nanos().unwrap_or_else(|| Instant::now().as_nanos()) / 1_000_000
}

/// This run's `app-logs` key prefix: random, or the boot time's low bits
/// without an entropy source (keys then differ from a previous run's as
/// long as the runs start at different times).
fn run_id() -> u32 {
    let mut bytes = [0u8; 4];
    if hal::entropy::fill(&mut bytes, false).is_ok() {
        u32::from_le_bytes(bytes)
    } else {
        now_ms() as u32
    }
}

fn main() -> i32 {
    let manager = RefCell::new(Manager::new());
    let changed = Cell::new(true);
    let published = RefCell::new(Published::default());
    let mut app_logs = AppLogPublisher::new(run_id());
    let mut service = Service::new();
    service.on::<DomainConfig>(|_, uuid, change| {
        let config = change.current();
        manager.borrow_mut().set_config(uuid, config);
        changed.set(true);
    });
    service.on_synchronized::<DomainConfig>(|_| {
        manager.borrow_mut().synchronized();
        changed.set(true);
    });
    let mut busy = true;
    let mut console_behind = false;
    let mut last = Instant::now();
    let mut measured = Instant::now();
    service.repeat_on_change(Duration::ZERO, |_| {
        let due = if busy { BUSY } else { IDLE };
        let round = changed.get() || last.elapsed() >= due;
        if round {
            changed.set(false);
            last = Instant::now();
            let mut manager = manager.borrow_mut();
            let mut progress = |uuid: &str, state: &topics::DomainState| {
                published.borrow_mut().progress(uuid, state);
            };
            match manager.reconcile(&mut BusHost, runtime::unix_seconds(), &mut progress) {
                Ok(done) => {
                    busy = done.busy;
                    if manager.ready() {
                        published.borrow_mut().states(manager.states());
                    }
                }
                Err(e) => {
                    log::warn!("the host did not answer: {e}; trying again");
                    busy = true;
                }
            }
            if measured.elapsed() >= IDLE {
                measured = Instant::now();
                match manager.metrics(&mut BusHost) {
                    Ok(metrics) => published.borrow_mut().metrics(metrics),
                    Err(e) => log::warn!("measuring the domains: {e}"),
                }
            }
        }
        if round || console_behind {
            let mut manager = manager.borrow_mut();
            match manager.console_lines(&mut BusHost) {
                Ok(lines) => {
                    for l in &lines {
                        log::info!("app {} ({}): {}", l.display_name, l.uuid, l.line);
                    }
                    app_logs.publish(lines, now_ms());
                }
                Err(e) => log::warn!("reading the apps' consoles: {e}"),
            }
            console_behind = manager.console_behind();
        }
        // A change runs the round at once (`repeat_on_change`).
        if console_behind {
            SOON
        } else {
            SOON.max(due.saturating_sub(last.elapsed()))
        }
    });
    service.run()
}
