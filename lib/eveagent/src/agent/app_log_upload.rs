//! Apps' logs and flow logs: what domainmgr publishes in `app-logs` goes
//! to each app's `apps/instanceid/<app>/newlogs` (see
//! [`crate::app_logs`]), zedrouter's `flow-log` messages to `flowlog` (see
//! [`crate::flow_logs`]). Both are uploaded only once the device has its
//! UUID, one exchange at a time like every other.

use eve_proto::flowlog::FlowMessage;
use topics::AppLogBatch;

use crate::app_logs::AppLogCounters;
use crate::flow_logs::FlowCounters;
use crate::io::Response;
use crate::queue::non_retryable;

use super::Agent;
use super::log_upload::FAST_SEAL_AGE_MS;

/// Age at which an app's open lines are sealed into a batch when the
/// fast upload schedule is off: EVE moves an app's log file to upload
/// after a time limit, not only when it is full.
const APP_SEAL_AGE_MS: u64 = 60_000;

impl Agent {
    /// Takes one `app-logs` item from domainmgr.
    pub fn app_logs(&mut self, item: &AppLogBatch) {
        let (now, unix) = (self.now(), (self.unix_ms() / 1000) as u32);
        self.app_logs.push(item, now, unix);
    }

    /// Takes one `flow-log` message from zedrouter; a full queue drops it
    /// (counted, as EVE).
    pub fn flow_message(&mut self, msg: &FlowMessage) {
        if !self.flows.push(msg) {
            log::warn!(target: super::SOURCE, "flow log queue full: a message dropped");
        }
    }

    /// What became of apps' log lines.
    pub fn app_log_counters(&self) -> AppLogCounters {
        self.app_logs.counters()
    }

    /// What became of flow messages.
    pub fn flow_counters(&self) -> FlowCounters {
        self.flows.counters()
    }

    fn app_seal_age_ms(&self) -> u64 {
        if self.settings.log_fast_upload {
            FAST_SEAL_AGE_MS
        } else {
            APP_SEAL_AGE_MS
        }
    }

    /// When apps' open lines are next to be sealed.
    pub(super) fn app_log_seal_due(&self) -> Option<u64> {
        self.app_logs
            .oldest_open_ms()
            .map(|t| t + self.app_seal_age_ms())
    }

    /// Seals apps' lines that have waited long enough.
    pub(super) fn maintain_app_logs(&mut self, now: u64) {
        if self.app_log_seal_due().is_some_and(|t| now >= t) {
            let before = now.saturating_sub(self.app_seal_age_ms());
            self.app_logs
                .seal_older(before, (self.unix_ms() / 1000) as u32);
        }
    }

    /// Whether an app batch is to be sent now.
    pub(super) fn app_logs_due(&self, now: u64) -> bool {
        now >= self.timers.app_logs_ms && self.app_logs.front().is_some()
    }

    /// Whether a flow message is to be sent now.
    pub(super) fn flows_due(&self, now: u64) -> bool {
        now >= self.timers.flows_ms && !self.flows.is_empty()
    }

    /// When an upload of either is next due, if anything waits.
    pub(super) fn app_uploads_wake(&self) -> Option<u64> {
        let apps = self.app_logs.front().map(|_| self.timers.app_logs_ms);
        let flows = (!self.flows.is_empty()).then_some(self.timers.flows_ms);
        apps.into_iter().chain(flows).min()
    }

    /// The answer to an app's `newlogs`; `None` when there was none.
    pub(super) fn on_app_logs(&mut self, resp: Option<Response>) {
        let now = self.now();
        match resp.map(|r| r.status) {
            Some(status) if (200..300).contains(&status) => {
                if let Some(b) = self.app_logs.pop_front() {
                    self.counters.app_log_lines_sent += u64::from(b.lines);
                    self.counters.app_log_bytes_sent += b.gzip.len() as u64;
                    self.counters.app_log_batches_sent += 1;
                }
                self.app_log_backoff.reset();
                self.timers.app_logs_ms = now;
            }
            Some(status) if non_retryable(status) => {
                self.app_logs.refuse_front();
                self.unexpected("app newlogs", status);
                self.timers.app_logs_ms = now;
            }
            other => {
                if let Some(status) = other {
                    self.unexpected("app newlogs", status);
                }
                self.timers.app_logs_ms = now + self.app_log_backoff.fail(&mut *self.deps.rng);
            }
        }
    }

    /// The answer to `flowlog`; `None` when there was none.
    pub(super) fn on_flowlog(&mut self, resp: Option<Response>) {
        let now = self.now();
        match resp.map(|r| r.status) {
            Some(status) if (200..300).contains(&status) => {
                self.flows.sent();
                self.timers.flows_ms = now;
            }
            other => {
                let refused = other.is_some_and(non_retryable);
                if let Some(status) = other {
                    self.unexpected("flowlog", status);
                }
                self.timers.flows_ms = now + self.flows.failed(refused);
            }
        }
    }
}
