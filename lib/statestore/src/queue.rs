//! A bounded FIFO queue kept in one record.
//!
//! zedagent keeps log batches and unsent info messages across reboots, and
//! the queue must never outgrow the volume: pushing into a full queue drops
//! the oldest items and counts them, so the controller can be told how much
//! was lost.
//!
//! Record encoding (little-endian): `dropped: u64, count: u32`, then per item
//! from oldest to newest `len: u32, bytes`.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use wirebytes::Reader;

use crate::StoreError;

/// How large a queue may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most items kept.
    pub max_items: usize,
    /// Most item bytes kept (the sum of the items' lengths).
    pub max_bytes: usize,
}

/// A FIFO of byte strings within [`QueueLimits`].
///
/// Read it with `Store::queue`, change it, and stage it with
/// `Store::put_queue`; it persists at the next commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedQueue {
    items: VecDeque<Vec<u8>>,
    item_bytes: usize,
    dropped: u64,
    limits: QueueLimits,
}

impl BoundedQueue {
    /// An empty queue.
    pub fn new(limits: QueueLimits) -> Self {
        BoundedQueue {
            items: VecDeque::new(),
            item_bytes: 0,
            dropped: 0,
            limits,
        }
    }

    /// Appends `item`, first dropping the oldest items until it fits.
    /// Returns how many were dropped.
    pub fn push(&mut self, item: &[u8]) -> Result<usize, StoreError> {
        if item.len() > self.limits.max_bytes || self.limits.max_items == 0 {
            return Err(StoreError::QueueItemTooLarge);
        }
        let mut dropped_now = 0;
        while self.items.len() >= self.limits.max_items
            || self.item_bytes + item.len() > self.limits.max_bytes
        {
            self.drop_oldest();
            dropped_now += 1;
        }
        self.item_bytes += item.len();
        self.items.push_back(item.to_vec());
        Ok(dropped_now)
    }

    /// The oldest item.
    pub fn front(&self) -> Option<&[u8]> {
        self.items.front().map(Vec::as_slice)
    }

    /// Removes and returns the oldest item (sent, not dropped).
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let item = self.items.pop_front()?;
        self.item_bytes -= item.len();
        Some(item)
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sum of the queued items' lengths.
    pub fn item_bytes(&self) -> usize {
        self.item_bytes
    }

    /// Items dropped for room since the queue was created.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Items from oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.items.iter().map(Vec::as_slice)
    }

    fn drop_oldest(&mut self) {
        if self.pop().is_some() {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        12 + self.items.len() * 4 + self.item_bytes
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.dropped.to_le_bytes());
        out.extend_from_slice(&(self.items.len() as u32).to_le_bytes());
        for item in &self.items {
            out.extend_from_slice(&(item.len() as u32).to_le_bytes());
            out.extend_from_slice(item);
        }
        out
    }

    /// Decodes a record under `limits`; a queue stored under larger limits
    /// loses its oldest items (counted as dropped) to fit them.
    pub(crate) fn decode(bytes: &[u8], limits: QueueLimits) -> Option<Self> {
        let mut reader = Reader::new(bytes);
        let dropped = reader.le_u64().ok()?;
        let count = reader.le_u32().ok()?;
        let mut items = VecDeque::new();
        let mut item_bytes = 0usize;
        for _ in 0..count {
            // The record bounds every item: no limit of its own.
            let item = reader.le_u32_prefixed(usize::MAX).ok()?;
            item_bytes += item.len();
            items.push_back(item.to_vec());
        }
        reader.finish().ok()?;
        let mut queue = BoundedQueue {
            items,
            item_bytes,
            dropped,
            limits,
        };
        while queue.items.len() > limits.max_items || queue.item_bytes > limits.max_bytes {
            queue.drop_oldest();
        }
        Some(queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QueueLimits = QueueLimits {
        max_items: 3,
        max_bytes: 10,
    };

    #[test]
    fn fifo_order_and_item_limit() {
        let mut queue = BoundedQueue::new(LIMITS);
        for item in [b"a", b"b", b"c"] {
            assert_eq!(queue.push(item), Ok(0));
        }
        assert_eq!(queue.push(b"d"), Ok(1));
        assert_eq!(queue.dropped(), 1);
        assert_eq!(queue.pop().as_deref(), Some(&b"b"[..]));
        assert_eq!(queue.front(), Some(&b"c"[..]));
        assert_eq!(queue.len(), 2);
    }

    #[test]
    fn byte_limit_drops_as_many_as_needed() {
        let mut queue = BoundedQueue::new(LIMITS);
        queue.push(b"1234").unwrap();
        queue.push(b"5678").unwrap();
        assert_eq!(queue.push(b"abcdefgh"), Ok(2));
        assert_eq!(queue.item_bytes(), 8);
        assert_eq!(
            queue.push(b"this is too long"),
            Err(StoreError::QueueItemTooLarge)
        );
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn popping_is_not_dropping() {
        let mut queue = BoundedQueue::new(LIMITS);
        queue.push(b"x").unwrap();
        queue.pop().unwrap();
        assert_eq!(queue.pop(), None);
        assert_eq!(queue.dropped(), 0);
        assert!(queue.is_empty());
    }

    #[test]
    fn encoding_round_trips_and_refuses_damage() {
        let mut queue = BoundedQueue::new(LIMITS);
        queue.push(b"one").unwrap();
        queue.push(b"").unwrap();
        queue.push(b"three").unwrap();
        queue.push(b"4").unwrap();
        let bytes = queue.encode();
        assert_eq!(bytes.len(), queue.encoded_len());
        assert_eq!(BoundedQueue::decode(&bytes, LIMITS), Some(queue));
        for len in 0..bytes.len() {
            assert_eq!(BoundedQueue::decode(&bytes[..len], LIMITS), None);
        }
    }

    #[test]
    fn decoding_under_smaller_limits_drops_the_oldest() {
        let mut queue = BoundedQueue::new(LIMITS);
        for item in [b"a", b"b", b"c"] {
            queue.push(item).unwrap();
        }
        let smaller = QueueLimits {
            max_items: 1,
            max_bytes: 10,
        };
        let shrunk = BoundedQueue::decode(&queue.encode(), smaller).unwrap();
        assert_eq!(shrunk.iter().collect::<Vec<_>>(), [&b"c"[..]]);
        assert_eq!(shrunk.dropped(), 2);
    }
}
