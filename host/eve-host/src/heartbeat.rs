//! The heartbeat seam: the bus broker records when each service last said
//! it is alive, the supervisor reads it to find hung services.

use std::{collections::HashMap, sync::Mutex, time::Instant};

/// When each service was last heard from.
pub trait Heartbeats: Send + Sync {
    fn last_heartbeat(&self, service: &str) -> Option<Instant>;
}

/// A shared board of heartbeats that a source pushes beats to and the
/// supervisor reads: for sources that do not keep their own record (the
/// node's broker does, and is read directly; tests drive this board).
#[derive(Debug, Default)]
pub struct HeartbeatBoard {
    last: Mutex<HashMap<String, Instant>>,
}

impl HeartbeatBoard {
    /// Notes that `service` was alive `at`; an older time than the one
    /// recorded is ignored, so late deliveries cannot make a service look
    /// staler than it is.
    pub fn record_heartbeat(&self, service: &str, at: Instant) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let entry = last.entry(service.to_string()).or_insert(at);
        if at > *entry {
            *entry = at;
        }
    }
}

impl Heartbeats for HeartbeatBoard {
    fn last_heartbeat(&self, service: &str) -> Option<Instant> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.get(service).copied()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keeps_the_latest_heartbeat_per_service() {
        let board = HeartbeatBoard::default();
        let t0 = Instant::now();
        assert_eq!(board.last_heartbeat("a"), None);
        board.record_heartbeat("a", t0 + Duration::from_secs(2));
        board.record_heartbeat("a", t0 + Duration::from_secs(1));
        board.record_heartbeat("b", t0);
        assert_eq!(board.last_heartbeat("a"), Some(t0 + Duration::from_secs(2)));
        assert_eq!(board.last_heartbeat("b"), Some(t0));
    }
}
