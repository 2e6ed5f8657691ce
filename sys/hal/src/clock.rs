//! Monotonic time since the guest's first instruction, and the wall clock.

use core::time::Duration;

use spin::Once;

use crate::arch;

/// The RTC's Unix seconds and the monotonic instant they were read at.
static WALL_CLOCK_READING: Once<Option<(u64, Instant)>> = Once::new();

/// A point on the monotonic clock, in nanoseconds since the boot entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The current time.
    pub fn now() -> Instant {
        Instant(ticks_to_ns(
            arch::counter().wrapping_sub(boot::entry_counter()),
        ))
    }

    /// Nanoseconds since the boot entry.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Time passed since `self`.
    pub fn elapsed(self) -> Duration {
        Instant::now().saturating_duration_since(self)
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Instant {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(ns))
    }
}

/// Converts a raw counter value to nanoseconds at the counter's frequency.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(arch::counter_frequency().max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The raw counter value at `instant`, for the wake-up timers, which count
/// on the same clock.
pub fn instant_to_counter(instant: Instant) -> u64 {
    let ticks =
        u128::from(instant.as_nanos()) * u128::from(arch::counter_frequency()) / 1_000_000_000;
    boot::entry_counter().saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX))
}

/// The raw cycle counter, for measurements finished later with `ticks_to_ns`.
pub fn counter() -> u64 {
    arch::counter()
}

/// Frequency of the counter in Hz (calibrated on first use where needed).
pub fn counter_frequency() -> u64 {
    arch::counter_frequency()
}

/// Unix time in seconds at the guest's first instruction, from the platform
/// RTC (read once, on the first call of this or [`unix_now`]), or `None`
/// when the machine has no RTC we can read.
pub fn wall_clock_at_boot() -> Option<u64> {
    let (seconds, read_at) = wall_clock_reading()?;
    Some(seconds.saturating_sub(read_at.as_nanos() / 1_000_000_000))
}

/// Unix time in seconds now: the RTC is read once and the monotonic clock
/// carries it forward, so repeated calls cost no port or MMIO access.
pub fn unix_now() -> Option<u64> {
    unix_nanos().map(|ns| ns / 1_000_000_000)
}

/// Unix time in nanoseconds now, as [`unix_now`] (whole seconds from the
/// RTC, the rest from the monotonic clock), for log record times.
pub fn unix_nanos() -> Option<u64> {
    let (seconds, read_at) = wall_clock_reading()?;
    let since = Instant::now().saturating_duration_since(read_at).as_nanos();
    Some(
        seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX)),
    )
}

fn wall_clock_reading() -> Option<(u64, Instant)> {
    *WALL_CLOCK_READING.call_once(|| arch::rtc_unix_seconds().map(|s| (s, Instant::now())))
}

/// Converts a civil UTC date and time to Unix seconds, or `None` for an
/// impossible date. RTCs report fields, not seconds.
pub fn unix_seconds(year: u32, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Option<u64> {
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    // Days from civil, counting years from March so leap days come last.
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(hour * 3600 + min * 60 + sec);
    u64::try_from(secs).ok()
}

/// The raw counter at the boot stub's first instruction.
pub fn entry_counter() -> u64 {
    boot::entry_counter()
}
