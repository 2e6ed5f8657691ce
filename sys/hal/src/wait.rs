//! Waiting without spinning.
//!
//! [`wait_until`] is how a service waits for time or for a device: it arms
//! the wake-up timer and sleeps the CPU (`hlt`, `wfi`), and returns at the
//! deadline, or as soon as a device interrupt arrives, including one that
//! arrived while the service was busy: it is still pending when the service
//! goes to sleep, so that sleep ends at once. Between sleeps it runs the
//! idle hook (the node bus: heartbeats, queued log records, arriving
//! frames), so a service's link to the host lives however long it waits.

use core::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use spin::Once;

use crate::{arch, clock::Instant, irq};

/// The longest sleep of [`crate::idle`] and [`crate::relax`], whose
/// callers check a deadline the HAL does not know: their timed work is at
/// most this late (device interrupts still end the sleep at once). Each
/// wake costs a TCG guest about 0.2 ms of host CPU, so a loop on this tick
/// costs about 0.2 % of a core; one that calls [`wait_until`] with its
/// deadline costs nothing while it waits.
pub const IDLE_TICK: Duration = Duration::from_millis(100);
/// The longest sleep while some device cannot interrupt (a transport
/// without a known line): it is polled at least this often.
pub const POLL_TICK: Duration = Duration::from_millis(10);
/// The longest sleep otherwise: the idle hook runs at least this often,
/// which keeps the bus's one-second heartbeats flowing.
const HOOK_EVERY: Duration = Duration::from_millis(500);
/// A wait whose deadline is always already due never sleeps; it still
/// runs the idle hook, at most this often.
const HOOK_BUSY_EVERY: Duration = Duration::from_millis(5);

static IDLE_HOOK: Once<fn()> = Once::new();
/// Set while the hook runs, so a wait inside it does not run it again.
static IN_HOOK: AtomicBool = AtomicBool::new(false);
/// When the hook last ran, in nanoseconds since boot.
static HOOK_RAN_AT: AtomicU64 = AtomicU64::new(0);
/// Unexpected plus spurious interrupts already logged.
static ODD_REPORTED: AtomicU64 = AtomicU64::new(0);

/// Sets what every wait runs between sleeps (once; later calls are
/// ignored). The runtime keeps the node bus alive with it, so a service
/// stuck in a long network wait still sends heartbeats and logs.
pub fn set_idle_hook(hook: fn()) {
    IDLE_HOOK.call_once(|| hook);
}

/// Sleeps until `deadline`, or until a device interrupt (even one that
/// came before the call and is still pending), whichever is first; `None`
/// waits for an interrupt alone. Never spins (unless the machine has no
/// interrupt controller we can drive). Runs the idle hook after every
/// sleep, and on the way in at most every 5 ms (a wait whose deadline is
/// always due still keeps the bus alive, and what was queued just before
/// a long sleep goes out first).
///
/// A device interrupt only says that something may have happened:
/// callers poll their devices after it returns and wait again.
pub fn wait_until(deadline: Option<Instant>) {
    let seen = irq::device_count();
    run_hook(false);
    loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return;
        }
        let longest = if irq::polling_devices() {
            POLL_TICK
        } else {
            HOOK_EVERY
        };
        let cap = now.saturating_add(longest);
        arch::sleep_until(deadline.map_or(cap, |d| d.min(cap)));
        run_hook(irq::available());
        report_odd_interrupts();
        if irq::device_count() != seen {
            return;
        }
    }
}

/// Runs the idle hook: always after a real sleep, else at most every
/// [`HOOK_BUSY_EVERY`].
fn run_hook(slept: bool) {
    let Some(hook) = IDLE_HOOK.get() else {
        return;
    };
    let now = Instant::now().as_nanos();
    let busy_every = HOOK_BUSY_EVERY.as_nanos() as u64;
    if !slept && now.saturating_sub(HOOK_RAN_AT.load(Ordering::Relaxed)) < busy_every {
        return;
    }
    if IN_HOOK.swap(true, Ordering::Acquire) {
        return;
    }
    HOOK_RAN_AT.store(now, Ordering::Relaxed);
    hook();
    IN_HOOK.store(false, Ordering::Release);
}

/// Logs interrupts that should not happen, as they are noticed (handlers
/// cannot log: they only count).
fn report_odd_interrupts() {
    let stats = irq::stats();
    let odd = stats.unexpected + stats.spurious;
    if odd > ODD_REPORTED.swap(odd, Ordering::Relaxed) {
        log::warn!(
            "hal: ignored {} unexpected (last {:?}) and {} spurious interrupts so far",
            stats.unexpected,
            stats.last_unexpected,
            stats.spurious
        );
    }
}
