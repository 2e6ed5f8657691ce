//! Boot retry with backoff: after a domain fails to boot or crashes, when
//! to start it again. Pure logic over a time the caller supplies, so it is
//! tested with a fake clock.
//!
//! EVE retries a failed boot every `timer.boot.retry` (600 s). We start
//! sooner and back off to that: the first retry after `first_delay`,
//! doubling up to `max_delay`; a domain that stayed up for `stable_after`
//! has its count reset, so a crash a day is not treated like a crash loop.

use std::time::Duration;

/// The backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    /// EVE's `timer.boot.retry` by default.
    pub max_delay: Duration,
    pub stable_after: Duration,
    /// Give up after this many failures in a row (`None`: never).
    pub max_failures: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(600),
            stable_after: Duration::from_secs(600),
            max_failures: None,
        }
    }
}

/// What to do after an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start again at this time (same clock as `now`).
    RetryAt(Duration),
    /// Stop retrying: `failures` in a row.
    GiveUp { failures: u32 },
}

/// One domain's retry state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootRetry {
    policy: RetryPolicy,
    failures: u32,
    next: Option<Duration>,
}

impl BootRetry {
    pub fn new(policy: RetryPolicy) -> BootRetry {
        BootRetry {
            policy,
            failures: 0,
            next: None,
        }
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The domain failed at `now` after being up for `up_for` (zero when
    /// it never started).
    pub fn failed(&mut self, now: Duration, up_for: Duration) -> Decision {
        if up_for >= self.policy.stable_after {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self
            .policy
            .max_failures
            .is_some_and(|max| self.failures >= max)
        {
            self.next = None;
            return Decision::GiveUp {
                failures: self.failures,
            };
        }
        let doublings = (self.failures - 1).min(31);
        let delay = self
            .policy
            .first_delay
            .saturating_mul(1u32 << doublings)
            .min(self.policy.max_delay);
        let at = now.saturating_add(delay);
        self.next = Some(at);
        Decision::RetryAt(at)
    }

    /// Whether a retry is due at `now`.
    pub fn due(&self, now: Duration) -> bool {
        self.next.is_some_and(|at| now >= at)
    }

    /// The domain was started again (the retry is consumed).
    pub fn started(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock the test moves by hand.
    struct FakeClock(Duration);

    impl FakeClock {
        fn advance(&mut self, by: Duration) -> Duration {
            self.0 += by;
            self.0
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut clock = FakeClock(Duration::ZERO);
        let mut retry = BootRetry::new(RetryPolicy {
            max_delay: 8 * S,
            ..RetryPolicy::default()
        });
        let mut delays = Vec::new();
        for _ in 0..6 {
            let now = clock.advance(S);
            let Decision::RetryAt(at) = retry.failed(now, Duration::ZERO) else {
                panic!("gave up")
            };
            assert!(!retry.due(now), "never early");
            assert!(retry.due(at));
            retry.started();
            assert!(!retry.due(at), "a retry is used once");
            delays.push((at - now).as_secs());
        }
        assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
        assert_eq!(retry.failures(), 6);
    }

    #[test]
    fn a_stable_run_resets_the_backoff() {
        let mut clock = FakeClock(Duration::ZERO);
        let mut retry = BootRetry::new(RetryPolicy::default());
        for _ in 0..4 {
            retry.failed(clock.advance(S), S);
        }
        assert_eq!(retry.failures(), 4);
        let now = clock.advance(3600 * S);
        assert_eq!(retry.failed(now, 3600 * S), Decision::RetryAt(now + S));
        assert_eq!(retry.failures(), 1);
    }

    #[test]
    fn it_gives_up_when_told_to() {
        let mut retry = BootRetry::new(RetryPolicy {
            max_failures: Some(3),
            ..RetryPolicy::default()
        });
        assert!(matches!(
            retry.failed(S, Duration::ZERO),
            Decision::RetryAt(_)
        ));
        assert!(matches!(
            retry.failed(2 * S, Duration::ZERO),
            Decision::RetryAt(_)
        ));
        assert_eq!(
            retry.failed(3 * S, Duration::ZERO),
            Decision::GiveUp { failures: 3 }
        );
        assert!(!retry.due(Duration::MAX));
    }

    #[test]
    fn eves_retry_timer_is_the_default_cap() {
        let mut retry = BootRetry::new(RetryPolicy::default());
        let mut last = Decision::GiveUp { failures: 0 };
        for i in 0..40 {
            last = retry.failed(i * S, Duration::ZERO);
        }
        assert_eq!(last, Decision::RetryAt(39 * S + 600 * S));
    }
}
