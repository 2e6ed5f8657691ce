//! Which download runs next: a bounded set of active downloads taking
//! turns, each retried with backoff, as pure logic over milliseconds.
//!
//! A unikernel's network stack carries one connection at a time, so
//! downloads do not run side by side: they take turns of bounded length
//! (a turn ends by pausing the download, which resumes with `Range` on its
//! next turn). At most [`Queue::new`]'s `max_active` downloads take turns;
//! the others wait in arrival order, so a long download cannot hold back
//! every other, and a burst of requests cannot spread the link over
//! hundreds of half-done blobs.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::retry::{Backoff, Retrier};

/// Where a download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a place among the active ones.
    Queued,
    /// Taking turns.
    Active,
    /// Failed in a way a retry may fix; not before this time (ms).
    RetryAt(u64),
    /// Finished.
    Done,
    /// Gave up.
    Failed,
}

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The download is complete.
    Done,
    /// Paused at the end of its turn; it goes on at its next one.
    Paused,
    /// It failed.
    Failed {
        /// Whether trying again later can help.
        retryable: bool,
        /// Whether the turn moved bytes before it failed (resets the
        /// backoff: a flaky link that keeps moving keeps going).
        progressed: bool,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    attempt: u32,
    phase: Phase,
    retrier: Retrier,
    /// Arrival order.
    seq: u64,
}

/// The downloads and their turns.
#[derive(Debug, Clone)]
pub struct Queue {
    max_active: usize,
    policy: Backoff,
    entries: BTreeMap<String, Entry>,
    next_seq: u64,
    /// The key that had the last turn (turns go round in arrival order).
    last: Option<u64>,
}

impl Queue {
    /// A queue letting `max_active` downloads (at least one) take turns.
    pub fn new(max_active: usize, policy: Backoff) -> Self {
        Self {
            max_active: max_active.max(1),
            policy,
            entries: BTreeMap::new(),
            next_seq: 0,
            last: None,
        }
    }

    /// Adds `key`, or starts it over when its `attempt` changed (the
    /// requester asks again); returns whether it (re)started.
    pub fn offer(&mut self, key: &str, attempt: u32) -> bool {
        if self.entries.get(key).is_some_and(|e| e.attempt == attempt) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            String::from(key),
            Entry {
                attempt,
                phase: Phase::Queued,
                retrier: Retrier::new(self.policy),
                seq,
            },
        );
        true
    }

    /// Forgets `key` (the requester withdrew it).
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Where `key` is.
    pub fn phase(&self, key: &str) -> Option<Phase> {
        let entry = self.entries.get(key)?;
        Some(match entry.phase {
            Phase::Queued if self.active().any(|(k, _)| k == key) => Phase::Active,
            other => other,
        })
    }

    /// The attempt `key` is on.
    pub fn attempt(&self, key: &str) -> Option<u32> {
        self.entries.get(key).map(|e| e.attempt)
    }

    /// The downloads that take turns: the first `max_active` unfinished
    /// ones in arrival order (waiting for a retry included: they keep
    /// their place).
    fn active(&self) -> impl Iterator<Item = (&String, &Entry)> {
        let mut unfinished: Vec<(&String, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| !matches!(e.phase, Phase::Done | Phase::Failed))
            .collect();
        unfinished.sort_by_key(|(_, e)| e.seq);
        unfinished.into_iter().take(self.max_active)
    }

    /// The download whose turn it is at `now_ms`, if any is ready: the
    /// next active one after the last turn's, in arrival order.
    pub fn next(&mut self, now_ms: u64) -> Option<String> {
        let ready: Vec<(u64, String)> = self
            .active()
            .filter(|(_, e)| match e.phase {
                Phase::RetryAt(at) => at <= now_ms,
                _ => true,
            })
            .map(|(k, e)| (e.seq, k.clone()))
            .collect();
        let (seq, key) = match self.last {
            Some(last) => ready
                .iter()
                .find(|(s, _)| *s > last)
                .or_else(|| ready.first())
                .cloned()?,
            None => ready.first().cloned()?,
        };
        self.last = Some(seq);
        Some(key)
    }

    /// Whether another download than `key` is ready for a turn at
    /// `now_ms` (then `key`'s turn should end soon).
    pub fn others_waiting(&self, key: &str, now_ms: u64) -> bool {
        self.active().any(|(k, e)| {
            k != key
                && match e.phase {
                    Phase::RetryAt(at) => at <= now_ms,
                    _ => true,
                }
        })
    }

    /// When the earliest retry is due, if a download waits for one.
    pub fn next_retry(&self) -> Option<u64> {
        self.active()
            .filter_map(|(_, e)| match e.phase {
                Phase::RetryAt(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Records how `key`'s turn ended; `random` spreads retries.
    pub fn finished(&mut self, key: &str, turn: Turn, now_ms: u64, random: u32) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.phase = match turn {
            Turn::Done => Phase::Done,
            Turn::Paused => Phase::Queued,
            Turn::Failed {
                retryable: false, ..
            } => Phase::Failed,
            Turn::Failed {
                retryable: true,
                progressed,
            } => match entry.retrier.after_failure(progressed, random) {
                Some(delay) => Phase::RetryAt(now_ms.saturating_add(delay)),
                None => Phase::Failed,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Backoff = Backoff {
        initial_ms: 100,
        max_ms: 1000,
        max_failures: 2,
    };

    #[test]
    fn active_downloads_take_turns_and_the_rest_wait_their_place() {
        let mut q = Queue::new(2, POLICY);
        for key in ["a", "b", "c"] {
            assert!(q.offer(key, 0));
        }
        assert!(!q.offer("a", 0), "the same attempt again is no news");
        assert_eq!(q.phase("c"), Some(Phase::Queued));
        assert_eq!(q.phase("a"), Some(Phase::Active));
        let turns: Vec<String> = (0..4)
            .map(|_| {
                let k = q.next(0).unwrap();
                q.finished(&k, Turn::Paused, 0, 0);
                k
            })
            .collect();
        assert_eq!(turns, ["a", "b", "a", "b"]);
        assert!(q.others_waiting("a", 0));
        q.finished("a", Turn::Done, 0, 0);
        assert_eq!(q.phase("a"), Some(Phase::Done));
        // c takes a's place.
        assert_eq!(q.phase("c"), Some(Phase::Active));
        let next: Vec<String> = (0..2)
            .map(|_| {
                let k = q.next(0).unwrap();
                q.finished(&k, Turn::Paused, 0, 0);
                k
            })
            .collect();
        assert_eq!(next, ["c", "b"]);
        q.remove("b");
        assert!(!q.others_waiting("c", 0));
    }

    #[test]
    fn failures_back_off_give_up_and_start_over_when_asked_again() {
        let mut q = Queue::new(1, POLICY);
        q.offer("x", 0);
        assert_eq!(q.next(0).as_deref(), Some("x"));
        q.finished(
            "x",
            Turn::Failed {
                retryable: true,
                progressed: false,
            },
            1000,
            0,
        );
        assert_eq!(q.phase("x"), Some(Phase::RetryAt(1050)));
        assert_eq!(q.next(1049), None);
        assert_eq!(q.next_retry(), Some(1050));
        assert_eq!(q.next(1050).as_deref(), Some("x"));
        q.finished(
            "x",
            Turn::Failed {
                retryable: true,
                progressed: false,
            },
            2000,
            0,
        );
        assert_eq!(q.phase("x"), Some(Phase::RetryAt(2100)));
        q.finished(
            "x",
            Turn::Failed {
                retryable: true,
                progressed: false,
            },
            3000,
            0,
        );
        assert_eq!(q.phase("x"), Some(Phase::Failed));
        assert_eq!(q.next(u64::MAX), None);
        // The requester asks again with a new attempt: a fresh start.
        assert!(q.offer("x", 1));
        assert_eq!(
            (q.phase("x"), q.attempt("x")),
            (Some(Phase::Active), Some(1))
        );
        q.finished(
            "x",
            Turn::Failed {
                retryable: false,
                progressed: true,
            },
            0,
            0,
        );
        assert_eq!(q.phase("x"), Some(Phase::Failed));
    }
}
