//! `flow-log`: the engine's flow messages as they are made, on the bus
//! under `<run>-<sequence>` keys, the oldest withdrawn beyond
//! `topics::FlowLog::WINDOW` (see the topic).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;

use appnet::Engine;
use runtime::service;
use topics::FlowLog;

/// The keys on the bus, oldest first.
pub struct FlowPublisher {
    run: u32,
    next: u64,
    keys: VecDeque<String>,
}

impl FlowPublisher {
    /// `run` tells this run's keys from a previous one's.
    pub fn new(run: u32) -> FlowPublisher {
        FlowPublisher {
            run,
            next: 0,
            keys: VecDeque::new(),
        }
    }

    /// Publishes the messages the engine made since the last call.
    pub fn publish(&mut self, engine: &mut Engine) {
        for message in engine.take_flow_messages() {
            let key = format!("{:08x}-{:08}", self.run, self.next);
            self.next += 1;
            match service::publish::<FlowLog>(&key, &message) {
                Ok(()) => self.keys.push_back(key),
                Err(e) => log::warn!("publishing flow records {key}: {e}"),
            }
        }
        while self.keys.len() > FlowLog::WINDOW {
            if let Some(old) = self.keys.pop_front()
                && let Err(e) = service::unpublish::<FlowLog>(&old)
            {
                log::warn!("withdrawing flow records {old}: {e}");
            }
        }
    }
}
