//! zedrouter's flow records for the controller's `flowlog` path, queued as
//! EVE's zedagent queues them: each eve-api `FlowMessage` (zedrouter
//! batches up to 125 flows of one app interface in one) is one upload; the
//! queue holds at most [`FLOW_QUEUE_CAP`] messages and a message that does
//! not fit is dropped; a failed upload is retried with a truncated
//! exponential backoff (1 s doubling to 128 s), unless the queue is more
//! than 90% full, when the message is dropped instead so newer flows get
//! through. Every dropped message is counted with its flows and DNS
//! requests.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use eve_proto::Message;
use eve_proto::flowlog::FlowMessage;

/// EVE's `flowlogQueueCap`.
pub const FLOW_QUEUE_CAP: usize = 100;
/// Longest retry delay: 2^7 s, as EVE.
const MAX_RETRY_EXP: u32 = 7;

/// Messages, flows and DNS requests, as EVE's `FlowlogCounter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCount {
    pub messages: u64,
    pub flows: u64,
    pub dns_requests: u64,
}

impl FlowCount {
    fn add(&mut self, m: &Queued) {
        self.messages += 1;
        self.flows += u64::from(m.flows);
        self.dns_requests += u64::from(m.dns_requests);
    }
}

/// What became of the flow messages (EVE's `FlowlogMetrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub success: FlowCount,
    pub drops: FlowCount,
    /// Uploads that failed (each retry counts).
    pub failed_attempts: FlowCount,
}

#[derive(Debug, Clone)]
struct Queued {
    encoded: Vec<u8>,
    flows: u32,
    dns_requests: u32,
}

/// The queue of flow messages and the retry state of its front.
#[derive(Debug, Clone, Default)]
pub struct FlowQueue {
    queue: VecDeque<Queued>,
    attempts: u32,
    counters: FlowCounters,
}

impl FlowQueue {
    pub fn new() -> FlowQueue {
        FlowQueue::default()
    }

    /// Queues a message; a full queue drops it (counted). Returns whether
    /// it was queued.
    pub fn push(&mut self, msg: &FlowMessage) -> bool {
        let queued = Queued {
            encoded: msg.encode_to_vec(),
            flows: msg.flows.len() as u32,
            dns_requests: msg.dns_reqs.len() as u32,
        };
        if self.queue.len() >= FLOW_QUEUE_CAP {
            self.counters.drops.add(&queued);
            return false;
        }
        self.queue.push_back(queued);
        true
    }

    /// The encoded message to upload next.
    pub fn front(&self) -> Option<&[u8]> {
        self.queue.front().map(|q| q.encoded.as_slice())
    }

    /// The front message was accepted.
    pub fn sent(&mut self) {
        if let Some(m) = self.queue.pop_front() {
            self.counters.success.add(&m);
        }
        self.attempts = 0;
    }

    /// The front message failed; `refused` when the controller refused it
    /// for good. Returns how long to wait before the next upload (ms): the
    /// retry's backoff, or 0 when the message was dropped.
    pub fn failed(&mut self, refused: bool) -> u64 {
        let Some(m) = self.queue.front() else {
            return 0;
        };
        self.counters.failed_attempts.add(m);
        if refused || self.queue.len() * 100 / FLOW_QUEUE_CAP > 90 {
            if let Some(m) = self.queue.pop_front() {
                self.counters.drops.add(&m);
            }
            self.attempts = 0;
            return 0;
        }
        let delay = 1000u64 << self.attempts.min(MAX_RETRY_EXP);
        self.attempts = self.attempts.saturating_add(1);
        delay
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn counters(&self) -> FlowCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eve_proto::flowlog::{DnsRequest, FlowRecord};
    use std::prelude::rust_2024::*;

    fn msg(flows: usize) -> FlowMessage {
        FlowMessage {
            dev_id: "dev".into(),
            flows: vec![FlowRecord::default(); flows],
            dns_reqs: vec![DnsRequest::default()],
            ..Default::default()
        }
    }

    #[test]
    fn messages_go_one_by_one_and_a_full_queue_drops_counted() {
        let mut q = FlowQueue::new();
        for _ in 0..FLOW_QUEUE_CAP {
            assert!(q.push(&msg(2)));
        }
        assert!(!q.push(&msg(5)));
        assert_eq!(
            q.counters().drops,
            FlowCount {
                messages: 1,
                flows: 5,
                dns_requests: 1
            }
        );
        assert_eq!(FlowMessage::decode(q.front().unwrap()).unwrap(), msg(2));
        q.sent();
        assert_eq!(q.len(), FLOW_QUEUE_CAP - 1);
        assert_eq!(q.counters().success.flows, 2);
    }

    #[test]
    fn failures_back_off_to_128_s_and_a_nearly_full_queue_drops_instead() {
        let mut q = FlowQueue::new();
        q.push(&msg(1));
        let delays: Vec<u64> = (0..10).map(|_| q.failed(false)).collect();
        assert_eq!(
            delays,
            [
                1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 128000, 128000
            ]
        );
        assert_eq!(q.len(), 1);
        assert_eq!(q.counters().failed_attempts.messages, 10);
        q.sent();
        q.push(&msg(1));
        assert_eq!(q.failed(false), 1000, "a success resets the backoff");
        // Refused for good: dropped at once.
        assert_eq!(q.failed(true), 0);
        assert!(q.is_empty());
        assert_eq!(q.counters().drops.messages, 1);
        // Over 90% full: a failed message is dropped, not retried.
        for _ in 0..92 {
            q.push(&msg(1));
        }
        assert_eq!(q.failed(false), 0);
        assert_eq!(q.len(), 91);
        assert_eq!(q.failed(false), 0);
        assert_eq!(q.len(), 90);
        assert_eq!(q.failed(false), 1000);
        assert_eq!(q.failed(false), 2000);
        assert_eq!(q.len(), 90);
        assert_eq!(q.counters().drops.messages, 3);
        assert!(FlowQueue::new().failed(false) == 0);
    }
}
