//! The idle test service: a service with next to nothing to do, so tests
//! and `cargo xtask bench idle` can check and measure that a service
//! sleeps while it waits. Everything runs on one `runtime::poll::PollLoop`.
//!
//! Command-line parameters:
//! - `tick-ms=N` (default 1000): a periodic timer, the only work a plain
//!   idle service has; how late each tick fires is kept.
//! - `run-s=S` (default 10): stop after S seconds, print the summary
//!   (`idletest: N ticks ...`) and exit.
//! - `sleep-ms=N` with `sleeps=K` (default 1): K one-shot timers in a row,
//!   each N ms after the previous one fired; each prints
//!   `@@ metric timer_late_us L`. One that fires early fails the run.
//! - `echo-on=PORT`: bring the network up and echo every TCP connection
//!   on PORT, one at a time, until the run ends.
//! - `unexpected`: send this CPU interrupts nothing handles
//!   (`hal::irq::raise_unexpected`) before idling, and check 100 ms later
//!   that they were counted and the service still runs on time:
//!   `PASS unexpected: ...` or `FAIL unexpected: ...`.
//!
//! The summary ends with the interrupt counters (`hal::irq::stats`).
//!
//! `idletest: idling` is printed once everything is set up and the service
//! has nothing to do until its next timer or packet: the moment the host
//! starts measuring.
#![no_std]
#![no_main]

extern crate alloc;

mod echo;

use alloc::rc::Rc;
use core::{cell::RefCell, time::Duration};

use hal::clock::Instant;
use net::Stack;
use runtime::poll::{Control, PollLoop};

use echo::EchoServer;

runtime::entry!("idletest", main);

const ADDRESS_WAIT: Duration = Duration::from_secs(20);

/// What the run saw, for the summary.
#[derive(Default)]
struct Record {
    ticks: u32,
    worst_tick_late: Duration,
    failed: bool,
}

/// How long after raising unexpected interrupts they are checked.
const UNEXPECTED_CHECK: Duration = Duration::from_millis(100);

fn param<T: core::str::FromStr>(name: &str, default: T) -> T {
    runtime::cmdline()
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> i32 {
    let tick = Duration::from_millis(param("tick-ms", 1000));
    let run = Duration::from_secs(param("run-s", 10));
    let record = Rc::new(RefCell::new(Record::default()));
    let echo = match runtime::cmdline().get("echo-on") {
        None => None,
        Some(port) => match start_echo(port) {
            Ok(echo) => Some(Rc::new(RefCell::new(echo))),
            Err(why) => {
                log::error!("FAIL echo: {why}");
                return runtime::status(false);
            }
        },
    };
    let mut poll = PollLoop::new();
    let ticks = record.clone();
    let mut next_tick = Instant::now().saturating_add(tick);
    poll.every(tick, move |_| {
        let now = Instant::now();
        let mut r = ticks.borrow_mut();
        r.ticks += 1;
        r.failed |= now < next_tick;
        r.worst_tick_late = r
            .worst_tick_late
            .max(now.saturating_duration_since(next_tick));
        next_tick = next_tick.saturating_add(tick);
    });
    if let Some(sleep) = runtime::cmdline()
        .get("sleep-ms")
        .and_then(|v| v.parse().ok())
    {
        let sleep = Duration::from_millis(sleep);
        chain_sleeps(&mut poll, sleep, param("sleeps", 1), record.clone());
    }
    if runtime::cmdline().has_flag("unexpected") {
        check_unexpected(&mut poll, record.clone());
    }
    if let Some(echo) = &echo {
        let echo = echo.clone();
        poll.poller(move |ctl| {
            let mut echo = echo.borrow_mut();
            let progress = echo.poll();
            if let Some(at) = echo.poll_at() {
                ctl.wake_by(at);
            }
            progress
        });
    }
    let summary = record.clone();
    let served = echo.clone();
    poll.after(run, move |ctl| {
        let r = summary.borrow();
        let (connections, bytes) = served
            .as_ref()
            .map_or((0, 0), |e| e.borrow().served());
        let irq = hal::irq::stats();
        log::info!(
            "idletest: {} ticks, worst tick lateness {} us, {connections} connections, {bytes} bytes echoed; interrupts: {} timer, {} device, {} spurious, {} unexpected",
            r.ticks,
            r.worst_tick_late.as_micros(),
            irq.timer,
            irq.device,
            irq.spurious,
            irq.unexpected,
        );
        ctl.stop(runtime::status(!r.failed));
    });
    log::info!("idletest: idling");
    poll.run()
}

/// Raises interrupts nothing handles now, and checks on a timer that they
/// were counted (which also shows the service survived them).
fn check_unexpected(poll: &mut PollLoop<'_>, record: Rc<RefCell<Record>>) {
    let odd = |s: hal::irq::InterruptStats| s.unexpected + s.spurious;
    let before = hal::irq::stats();
    let sent = hal::irq::raise_unexpected();
    poll.after(UNEXPECTED_CHECK, move |_| {
        let after = hal::irq::stats();
        let counted = odd(after) - odd(before);
        if sent > 0 && counted >= u64::from(sent) {
            log::info!(
                "PASS unexpected: sent {sent}, counted {} unexpected (last {:?}) and {} spurious",
                after.unexpected - before.unexpected,
                after.last_unexpected,
                after.spurious - before.spurious
            );
        } else {
            log::error!("FAIL unexpected: sent {sent}, counted {counted}");
            record.borrow_mut().failed = true;
        }
    });
}

/// `count` one-shot timers, each `sleep` after the previous one fired.
fn chain_sleeps(poll: &mut PollLoop<'_>, sleep: Duration, count: u32, record: Rc<RefCell<Record>>) {
    if count == 0 {
        return;
    }
    // Taken before the loop takes its own: lateness may read a few
    // microseconds high here, never low.
    let deadline = Instant::now().saturating_add(sleep);
    poll.after(sleep, one_sleep(deadline, sleep, count - 1, record));
}

fn one_sleep<'a>(
    deadline: Instant,
    sleep: Duration,
    left: u32,
    record: Rc<RefCell<Record>>,
) -> impl FnMut(&mut Control<'a>) + 'a {
    move |ctl| {
        let now = Instant::now();
        if now < deadline {
            log::error!(
                "FAIL sleep: woke {} us early",
                deadline.saturating_duration_since(now).as_micros()
            );
            record.borrow_mut().failed = true;
        }
        metric(
            "timer_late_us",
            now.saturating_duration_since(deadline).as_micros(),
        );
        if left > 0 {
            // The loop schedules from its own clock, `ctl.now()`.
            let next = ctl.now().saturating_add(sleep);
            ctl.after(sleep, one_sleep(next, sleep, left - 1, record.clone()));
        }
    }
}

fn start_echo(port: &str) -> Result<EchoServer, alloc::string::String> {
    use alloc::format;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let mut stack = Stack::from_boot(runtime::boot_info()).map_err(|e| format!("{e}"))?;
    let config = stack
        .wait_for_address(ADDRESS_WAIT)
        .map_err(|e| format!("address: {e}"))?;
    log::info!("idletest: address {}", config.address);
    EchoServer::new(stack, port).map_err(|e| format!("listen on {port}: {e}"))
}

fn metric(name: &str, value: u128) {
    hal::console::print(format_args!("{}{name} {value}\n", guest_abi::METRIC_MARKER));
}
