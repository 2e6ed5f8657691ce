//! When a service that ended starts again: exponential backoff that resets
//! after a stable run, and crash-loop detection. Pure: time comes in as
//! arguments.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use crate::{
    end::End,
    manifest::{RestartMode, RestartPolicy},
};

/// What to do after a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Start it again after this delay.
    Restart { after: Duration },
    /// Leave it stopped.
    Stay,
}

/// The restart history of one service.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    /// Restarts since the last stable run: the backoff exponent.
    streak: u32,
    /// Ends within the crash-loop window.
    recent: VecDeque<Instant>,
    crash_loop: bool,
}

impl RestartTracker {
    pub fn new(policy: RestartPolicy) -> RestartTracker {
        RestartTracker {
            policy,
            streak: 0,
            recent: VecDeque::new(),
            crash_loop: false,
        }
    }

    /// Whether the service is in a crash loop: at least `crash_loop_count`
    /// ends within `crash_loop_window`. It stays reported until a run
    /// lasts `stable_after`.
    pub fn in_crash_loop(&self) -> bool {
        self.crash_loop
    }

    /// Records that a run started at `started` ended at `now` with `end`.
    /// A failure of the host's own is no end of the guest's: it is not
    /// counted, and not restarted, since a restart cannot fix it.
    pub fn ended(&mut self, started: Instant, now: Instant, end: &End) -> Verdict {
        if end.is_host_failure() {
            return Verdict::Stay;
        }
        if now.saturating_duration_since(started) >= self.policy.stable_after {
            self.streak = 0;
            self.recent.clear();
            self.crash_loop = false;
        }
        self.recent.push_back(now);
        while let Some(&first) = self.recent.front() {
            if now.saturating_duration_since(first) > self.policy.crash_loop_window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.policy.crash_loop_count as usize {
            self.crash_loop = true;
        }
        let restart = match self.policy.mode {
            RestartMode::Always => true,
            RestartMode::OnFailure => !end.is_clean(),
            RestartMode::Never => false,
        };
        if !restart || *end == End::Stopped {
            return Verdict::Stay;
        }
        let after = if self.crash_loop {
            self.policy.max_backoff
        } else {
            self.backoff()
        };
        self.streak = self.streak.saturating_add(1);
        Verdict::Restart { after }
    }

    /// `initial * 2^streak`, capped at `max`.
    fn backoff(&self) -> Duration {
        let factor = 1u32.checked_shl(self.streak.min(31)).unwrap_or(u32::MAX);
        self.policy
            .initial_backoff
            .saturating_mul(factor)
            .min(self.policy.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash() -> End {
        End::Exited {
            status: 101,
            panic: Some("x: boom".into()),
        }
    }

    fn clean() -> End {
        End::Exited {
            status: 0,
            panic: None,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn after(verdict: Verdict) -> Duration {
        match verdict {
            Verdict::Restart { after } => after,
            Verdict::Stay => panic!("expected a restart"),
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_stable_run() {
        let mut t = RestartTracker::new(RestartPolicy {
            crash_loop_count: 100,
            ..RestartPolicy::default()
        });
        let t0 = Instant::now();
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..9 {
            let started = now;
            now += ms(10);
            let d = after(t.ended(started, now, &crash()));
            delays.push(d.as_millis());
            now += d;
        }
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        let started = now;
        now += Duration::from_secs(31);
        assert_eq!(after(t.ended(started, now, &crash())), ms(500));
    }

    #[test]
    fn a_crash_loop_is_reported_and_restarted_at_the_cap() {
        let mut t = RestartTracker::new(RestartPolicy::default());
        let t0 = Instant::now();
        let mut now = t0;
        let mut looped = Vec::new();
        for _ in 0..5 {
            let started = now;
            now += ms(100);
            let verdict = t.ended(started, now, &crash());
            looped.push(t.in_crash_loop());
            if t.in_crash_loop() {
                assert_eq!(after(verdict), Duration::from_secs(30));
            }
            now += ms(200);
        }
        assert_eq!(looped, [false, false, false, false, true]);
        // A stable run clears it.
        let started = now;
        now += Duration::from_secs(40);
        assert_eq!(after(t.ended(started, now, &crash())), ms(500));
        assert!(!t.in_crash_loop());
    }

    #[test]
    fn ends_spread_wider_than_the_window_are_no_loop() {
        let mut t = RestartTracker::new(RestartPolicy {
            stable_after: Duration::from_secs(3600),
            ..RestartPolicy::default()
        });
        let mut now = Instant::now();
        for _ in 0..10 {
            let started = now;
            now += Duration::from_secs(20);
            t.ended(started, now, &crash());
            assert!(!t.in_crash_loop());
        }
    }

    #[test]
    fn restart_modes() {
        let now = Instant::now();
        let mut never = RestartTracker::new(RestartPolicy {
            mode: RestartMode::Never,
            ..RestartPolicy::default()
        });
        assert_eq!(never.ended(now, now, &crash()), Verdict::Stay);
        let mut on_failure = RestartTracker::new(RestartPolicy {
            mode: RestartMode::OnFailure,
            ..RestartPolicy::default()
        });
        assert_eq!(on_failure.ended(now, now, &clean()), Verdict::Stay);
        assert!(matches!(
            on_failure.ended(now, now, &crash()),
            Verdict::Restart { .. }
        ));
        let mut always = RestartTracker::new(RestartPolicy::default());
        assert!(matches!(
            always.ended(now, now, &clean()),
            Verdict::Restart { .. }
        ));
        assert_eq!(always.ended(now, now, &End::Stopped), Verdict::Stay);
    }

    #[test]
    fn host_failures_are_neither_restarted_nor_counted() {
        let mut t = RestartTracker::new(RestartPolicy::default());
        let now = Instant::now();
        let host = End::HostFailed {
            reason: "bus socket /s/run/a.bus is gone".into(),
        };
        for _ in 0..10 {
            assert_eq!(t.ended(now, now, &host), Verdict::Stay);
        }
        assert!(!t.in_crash_loop());
        assert_eq!(
            after(t.ended(now, now, &crash())),
            ms(500),
            "no backoff built up"
        );
    }
}
