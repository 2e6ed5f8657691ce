//! Retry timing: EVE's exponential backoff (1 s doubling to 10 min) with
//! jitter, and the config poll's random interval in [0.3 T, T].

use crate::io::Rng;

/// First retry delay.
pub const BACKOFF_MIN_MS: u64 = 1_000;
/// Longest retry delay.
pub const BACKOFF_MAX_MS: u64 = 600_000;

/// A uniformly random value in `lo..=hi` (`lo` when `hi <= lo`).
pub fn between(rng: &mut dyn Rng, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        return lo;
    }
    let mut b = [0u8; 8];
    rng.fill(&mut b);
    // The modulo bias is below 2^-40 for spans under 2^24 ms (4.6 hours).
    lo + u64::from_le_bytes(b) % (hi - lo + 1)
}

/// Consecutive failures of one operation and the delay they earn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Number of failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before the next try:
    /// the nominal delay doubles from 1 s up to 10 min, and the actual delay
    /// is drawn from its upper half so that a fleet restarted together does
    /// not retry in lock step.
    pub fn fail(&mut self, rng: &mut dyn Rng) -> u64 {
        let nominal = BACKOFF_MIN_MS
            .saturating_mul(1u64 << self.failures.min(20))
            .min(BACKOFF_MAX_MS);
        self.failures = self.failures.saturating_add(1);
        between(rng, nominal / 2, nominal)
    }

    /// Records a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The delay to the next periodic poll with period `period_ms`: uniform in
/// [0.3 T, T], as EVE's config timer, so devices drift apart.
pub fn poll_delay(rng: &mut dyn Rng, period_ms: u64) -> u64 {
    between(rng, period_ms * 3 / 10, period_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u64);
    impl Rng for Counter {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
                *b = (self.0 >> 33) as u8;
            }
        }
    }

    #[test]
    fn backoff_doubles_within_bounds_and_caps() {
        let mut rng = Counter(7);
        let mut b = Backoff::default();
        let mut nominal = BACKOFF_MIN_MS;
        for _ in 0..30 {
            let d = b.fail(&mut rng);
            assert!(d >= nominal / 2 && d <= nominal, "{d} vs {nominal}");
            nominal = (nominal * 2).min(BACKOFF_MAX_MS);
        }
        assert_eq!(b.failures(), 30);
        b.reset();
        assert!(b.fail(&mut rng) <= BACKOFF_MIN_MS);
    }

    #[test]
    fn poll_delay_stays_in_range() {
        let mut rng = Counter(1);
        for _ in 0..1000 {
            let d = poll_delay(&mut rng, 60_000);
            assert!((18_000..=60_000).contains(&d));
        }
        assert_eq!(between(&mut rng, 5, 5), 5);
        assert_eq!(between(&mut rng, 9, 3), 9);
    }
}
