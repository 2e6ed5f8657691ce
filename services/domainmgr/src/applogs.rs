//! `app-logs`: the running apps' console lines on the bus under
//! `<run>-<sequence>` keys, the oldest withdrawn beyond
//! `topics::AppLogs::WINDOW` (see the topic); an item that cannot be
//! published is counted in its app's next one.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use domainctl::{AppLogBatcher, ConsoleLine};
use runtime::service;
use topics::AppLogs;

/// The batcher and the keys on the bus, oldest first.
pub struct AppLogPublisher {
    batcher: AppLogBatcher,
    keys: VecDeque<String>,
}

impl AppLogPublisher {
    /// `run` tells this run's keys from a previous one's.
    pub fn new(run: u32) -> AppLogPublisher {
        AppLogPublisher {
            batcher: AppLogBatcher::new(run),
            keys: VecDeque::new(),
        }
    }

    /// Publishes `lines`, read at `unix_ms`.
    pub fn publish(&mut self, lines: Vec<ConsoleLine>, unix_ms: u64) {
        for (key, batch) in self.batcher.batches(lines, unix_ms) {
            match service::publish::<AppLogs>(&key, &batch) {
                Ok(()) => self.keys.push_back(key),
                Err(e) => {
                    log::warn!("publishing app logs {key}: {e}");
                    self.batcher.lost(&batch);
                }
            }
        }
        while self.keys.len() > AppLogs::WINDOW {
            if let Some(old) = self.keys.pop_front()
                && let Err(e) = service::unpublish::<AppLogs>(&old)
            {
                log::warn!("withdrawing app logs {old}: {e}");
            }
        }
    }
}
