//! Retries with exponential backoff, as pure logic: [`Backoff`] decides
//! the delay after each failure, and [`with_retries`] runs attempts over a
//! [`Clock`], which tests fake.
//!
//! An attempt that made progress (fetched bytes) resets the count: a
//! download on a flaky link keeps going as long as it keeps moving.

/// Time for the blocking retry loop.
pub trait Clock {
    /// Milliseconds on a monotonic clock.
    fn now_ms(&self) -> u64;
    /// Sleeps until `deadline_ms` (a service's clock sleeps, not spins).
    fn sleep_until_ms(&mut self, deadline_ms: u64);
}

/// The backoff policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial_ms: u64,
    /// Longest delay.
    pub max_ms: u64,
    /// Consecutive failures without progress before giving up.
    pub max_failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial_ms: 1_000,
            max_ms: 5 * 60 * 1000,
            max_failures: 8,
        }
    }
}

/// Consecutive failures and the delay they earn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retrier {
    policy: Backoff,
    failures: u32,
}

impl Retrier {
    /// A retrier with no failures yet.
    pub fn new(policy: Backoff) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    /// Consecutive failures without progress so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a failed attempt: the delay before the next one, or `None` to
    /// give up. `random` spreads retries of many devices ("equal jitter":
    /// half the delay fixed, half random).
    pub fn after_failure(&mut self, progressed: bool, random: u32) -> Option<u64> {
        if progressed {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures > self.policy.max_failures {
            return None;
        }
        let shift = (self.failures - 1).min(32);
        let full = self
            .policy
            .initial_ms
            .saturating_mul(1u64 << shift)
            .min(self.policy.max_ms);
        let half = full / 2;
        Some(half + u64::from(random) % (full - half + 1))
    }
}

/// A failed attempt: its error and whether it made progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure<E> {
    /// What went wrong.
    pub error: E,
    /// Whether bytes were fetched before it did.
    pub progressed: bool,
}

/// Runs `attempt` until it succeeds, fails with an error `retryable` says
/// is final, or fails too often without progress; sleeps between attempts
/// on `clock`. `random` supplies jitter.
pub fn with_retries<C: Clock, T, E>(
    clock: &mut C,
    policy: Backoff,
    mut random: impl FnMut() -> u32,
    retryable: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Result<T, Failure<E>>,
) -> Result<T, E> {
    let mut retrier = Retrier::new(policy);
    loop {
        let failure = match attempt() {
            Ok(v) => return Ok(v),
            Err(f) => f,
        };
        if !retryable(&failure.error) {
            return Err(failure.error);
        }
        match retrier.after_failure(failure.progressed, random()) {
            Some(delay) => {
                let deadline = clock.now_ms().saturating_add(delay);
                clock.sleep_until_ms(deadline);
            }
            None => return Err(failure.error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    struct FakeClock {
        now: u64,
        sleeps: Vec<u64>,
    }

    impl Clock for FakeClock {
        fn now_ms(&self) -> u64 {
            self.now
        }
        fn sleep_until_ms(&mut self, deadline: u64) {
            self.sleeps.push(deadline - self.now);
            self.now = deadline;
        }
    }

    const POLICY: Backoff = Backoff {
        initial_ms: 100,
        max_ms: 1000,
        max_failures: 5,
    };

    #[test]
    fn delays_double_to_the_cap_then_give_up() {
        let mut clock = FakeClock {
            now: 0,
            sleeps: Vec::new(),
        };
        let mut calls = 0;
        // random = 0: each delay is its fixed half.
        let r: Result<(), &str> = with_retries(
            &mut clock,
            POLICY,
            || 0,
            |_| true,
            || {
                calls += 1;
                Err(Failure {
                    error: "down",
                    progressed: false,
                })
            },
        );
        assert_eq!(r, Err("down"));
        assert_eq!(calls, 6);
        assert_eq!(clock.sleeps, [50, 100, 200, 400, 500]);
        assert_eq!(clock.now, 1250);
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let mut r = Retrier::new(POLICY);
        assert_eq!(
            r.after_failure(false, u32::MAX),
            Some(50 + (u32::MAX as u64) % 51)
        );
        for random in [0, 1, 77, 1000, u32::MAX] {
            let mut r = Retrier::new(POLICY);
            for _ in 0..3 {
                r.after_failure(false, 0);
            }
            let d = r.after_failure(false, random).unwrap();
            assert!((400..=800).contains(&d), "{d}");
        }
    }

    #[test]
    fn progress_resets_and_final_errors_stop_at_once() {
        let mut clock = FakeClock {
            now: 0,
            sleeps: Vec::new(),
        };
        let mut calls = 0u32;
        let r: Result<u32, &str> = with_retries(
            &mut clock,
            POLICY,
            || 0,
            |_| true,
            || {
                calls += 1;
                // Ten failures, each with progress: never gives up.
                if calls <= 10 {
                    Err(Failure {
                        error: "cut",
                        progressed: true,
                    })
                } else {
                    Ok(calls)
                }
            },
        );
        assert_eq!(r, Ok(11));
        assert!(clock.sleeps.iter().all(|&s| s == 50), "{:?}", clock.sleeps);
        let mut calls = 0;
        let r: Result<(), &str> = with_retries(
            &mut clock,
            POLICY,
            || 0,
            |e| *e != "404",
            || {
                calls += 1;
                Err(Failure {
                    error: "404",
                    progressed: false,
                })
            },
        );
        assert_eq!((r, calls), (Err("404"), 1));
    }
}
