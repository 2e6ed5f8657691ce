//! EVE's deferred queue for event-driven reports (info): a message stays
//! until the controller accepts it, retried with backoff; a newer message
//! about the same object replaces the queued one (only the latest state
//! matters); it is dropped only when the controller refuses it for good.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use crate::backoff::Backoff;
use crate::io::Rng;

/// Whether a status means "do not send this again": 4xx other than
/// 408 (timeout) and 429 (rate limit), which are transient.
pub fn non_retryable(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

/// One queued report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// What it describes (`device`, `app/<uuid>`, ...): one per key.
    pub key: String,
    /// Request path.
    pub path: String,
    /// Signed body.
    pub body: Vec<u8>,
    /// Not before this monotonic time.
    pub due_ms: u64,
    backoff: Backoff,
}

/// The queue, bounded by `max_items` (the oldest is dropped beyond it).
#[derive(Debug)]
pub struct DeferredQueue {
    items: VecDeque<Deferred>,
    max_items: usize,
}

/// What became of a message after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; removed.
    Sent,
    /// Refused for good; removed.
    Dropped,
    /// Kept, retried after backoff.
    Retry,
}

impl DeferredQueue {
    /// An empty queue.
    pub fn new(max_items: usize) -> Self {
        Self {
            items: VecDeque::new(),
            max_items,
        }
    }

    /// Queues a message, replacing one with the same key. Returns `true`
    /// if an unrelated old message had to be dropped to stay bounded.
    pub fn push(&mut self, key: String, path: String, body: Vec<u8>, now_ms: u64) -> bool {
        self.items.retain(|d| d.key != key);
        self.items.push_back(Deferred {
            key,
            path,
            body,
            due_ms: now_ms,
            backoff: Backoff::default(),
        });
        if self.items.len() > self.max_items {
            self.items.pop_front();
            return true;
        }
        false
    }

    /// The first message that is due.
    pub fn due(&self, now_ms: u64) -> Option<&Deferred> {
        self.items.iter().find(|d| d.due_ms <= now_ms)
    }

    /// When the next message is due.
    pub fn next_due(&self) -> Option<u64> {
        self.items.iter().map(|d| d.due_ms).min()
    }

    /// Records the result of sending the message with `key`: `status` is
    /// `None` for a transport failure.
    pub fn settle(
        &mut self,
        key: &str,
        status: Option<u16>,
        now_ms: u64,
        rng: &mut dyn Rng,
    ) -> Outcome {
        let Some(pos) = self.items.iter().position(|d| d.key == key) else {
            return Outcome::Sent;
        };
        match status {
            Some(s) if (200..300).contains(&s) => {
                self.items.remove(pos);
                Outcome::Sent
            }
            Some(s) if non_retryable(s) => {
                self.items.remove(pos);
                Outcome::Dropped
            }
            _ => {
                let item = &mut self.items[pos];
                item.due_ms = now_ms + item.backoff.fail(rng);
                Outcome::Retry
            }
        }
    }

    /// Queued messages.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;
    use std::vec;

    struct Zero;
    impl Rng for Zero {
        fn fill(&mut self, buf: &mut [u8]) {
            buf.fill(0);
        }
    }

    #[test]
    fn replaces_by_key_retries_and_drops_only_on_4xx() {
        let mut q = DeferredQueue::new(2);
        q.push("device".into(), "/i".into(), vec![1], 0);
        q.push("device".into(), "/i".into(), vec![2], 0);
        assert_eq!(q.len(), 1);
        assert_eq!(q.due(0).unwrap().body, [2]);
        assert_eq!(q.settle("device", None, 10, &mut Zero), Outcome::Retry);
        assert!(q.due(10).is_none());
        assert_eq!(q.next_due(), Some(10 + 500));
        assert_eq!(
            q.settle("device", Some(503), 510, &mut Zero),
            Outcome::Retry
        );
        assert_eq!(
            q.settle("device", Some(429), 510, &mut Zero),
            Outcome::Retry
        );
        assert_eq!(q.settle("device", Some(201), 900, &mut Zero), Outcome::Sent);
        assert!(q.is_empty());
        q.push("a".into(), "/i".into(), vec![], 0);
        assert_eq!(q.settle("a", Some(400), 0, &mut Zero), Outcome::Dropped);
        q.push("a".into(), "/i".into(), vec![], 0);
        q.push("b".into(), "/i".into(), vec![], 0);
        assert!(q.push("c".into(), "/i".into(), vec![], 0));
        assert_eq!(q.due(0).unwrap().key, "b");
    }
}
