//! The log queue's side of the agent: records queued for upload, sealed
//! into gzip batches, saved on the state volume at a bounded rate, and
//! uploaded to `newlogs` on EVE's schedules.

use alloc::string::String;

use crate::io::Response;
use crate::logs::{Level, LogRecord, batch_metadata};
use crate::queue::non_retryable;

use super::{Agent, REC_LOG_QUEUE, SOURCE};

/// Shortest spacing of the writes that save unsealed log lines. Lines not
/// yet written are lost on power loss, and every write is a statestore
/// commit that rewrites the whole snapshot: 5 s puts at most the last 5 s
/// of lines at risk for at most one commit per 5 s while the node logs.
const LOG_PERSIST_MIN_MS: u64 = 5_000;
/// Average write rate those writes keep under: when the controller is
/// away the queue grows (up to [`super::MAX_LOG_QUEUE_BYTES`]) and so does every
/// commit, so the spacing grows with the record (1 MiB: about 2 minutes)
/// instead of wearing the disk; lines are still saved at every seal.
const LOG_PERSIST_BYTES_PER_S: u64 = 8 << 10;
/// EVE's fast upload schedule (`newlog.allow.fastupload`): a batch is
/// sealed when its oldest line is this old...
pub(super) const FAST_SEAL_AGE_MS: u64 = 10_000;
/// ...and uploads are tried this often.
pub(super) const FAST_UPLOAD_INTERVAL_MS: u64 = 3_000;

fn to_level(level: Level) -> log::Level {
    match level {
        Level::Trace => log::Level::Trace,
        Level::Debug => log::Level::Debug,
        Level::Info => log::Level::Info,
        Level::Warning => log::Level::Warn,
        Level::Error | Level::Fatal | Level::Panic => log::Level::Error,
    }
}

/// Interval of log uploads by backlog, after EVE's loguploader: a larger
/// backlog is sent faster.
fn backlog_interval_ms(batches: usize) -> u64 {
    match batches {
        0..5 => 90_000,
        5..25 => 45_000,
        25..50 => 30_000,
        _ => 15_000,
    }
}

impl Agent {
    /// Logs locally through `log` and queues the record for upload.
    pub(super) fn note(&mut self, level: Level, content: String) {
        log::log!(target: SOURCE, to_level(level), "{content}");
        let record = LogRecord {
            level,
            source: String::from(SOURCE),
            content,
            unix_ms: self.unix_ms(),
            filename: String::new(),
            function: String::new(),
        };
        self.log(record);
    }

    /// Queues a log record of any service for upload; records less severe
    /// than `debug.default.remote.loglevel` are not uploaded.
    pub fn log(&mut self, record: LogRecord) {
        if record.level < self.settings.remote_log_level {
            return;
        }
        let meta = self.log_metadata();
        let now_unix = (self.unix_ms() / 1000) as u32;
        let sealed = self.logs.push(&record, &meta, now_unix);
        if self.logs.open_lines() == 1 {
            self.log_open_since_ms = Some(self.now());
        }
        if sealed {
            self.persist_logs();
        } else {
            self.log_dirty = true;
        }
    }

    pub(super) fn log_metadata(&self) -> String {
        let facts = self.last_facts.as_ref();
        let active = facts.and_then(|f| f.partitions.iter().find(|p| p.activated));
        batch_metadata(
            self.uuid.as_deref().unwrap_or(""),
            active.map_or("", |p| p.label.as_str()),
            active.map_or("", |p| p.short_version.as_str()),
        )
    }

    /// Writes the log queue, sealed batches and open lines. After a
    /// failure the lines stay marked, for the next write in
    /// [`Agent::maintain_logs`].
    fn persist_logs(&mut self) {
        let rec = self.logs.encode();
        self.log_persisted = Some((self.now(), rec.len()));
        self.log_dirty = false;
        if !self.write(REC_LOG_QUEUE, &rec) {
            self.log_dirty = true;
        }
    }

    /// Seals the open log lines into a batch and writes the queue.
    pub(super) fn seal_logs(&mut self) {
        let meta = self.log_metadata();
        if self.logs.seal(&meta, (self.unix_ms() / 1000) as u32) {
            self.log_open_since_ms = None;
            self.persist_logs();
        }
    }

    /// When the unsealed log lines are next to be written, if they changed:
    /// [`LOG_PERSIST_MIN_MS`] after the last write, or longer for a large
    /// record (see [`LOG_PERSIST_BYTES_PER_S`]).
    pub(super) fn log_persist_due(&self) -> Option<u64> {
        if !self.log_dirty {
            return None;
        }
        Some(self.log_persisted.map_or(0, |(at, len)| {
            at + LOG_PERSIST_MIN_MS.max(len as u64 * 1000 / LOG_PERSIST_BYTES_PER_S)
        }))
    }

    /// When the open batch must be sealed on the fast schedule.
    pub(super) fn log_seal_due(&self) -> Option<u64> {
        if !self.settings.log_fast_upload {
            return None;
        }
        self.log_open_since_ms.map(|t| t + FAST_SEAL_AGE_MS)
    }

    /// Seals and writes the log queue when due, whatever the phase.
    pub(super) fn maintain_logs(&mut self, now: u64) {
        if self.log_seal_due().is_some_and(|t| now >= t) {
            self.seal_logs();
        }
        if self.log_persist_due().is_some_and(|t| now >= t) {
            self.persist_logs();
        }
    }

    /// Upload interval: EVE's fast schedule, or by backlog.
    pub(super) fn log_interval_ms(&self) -> u64 {
        if self.settings.log_fast_upload {
            FAST_UPLOAD_INTERVAL_MS
        } else {
            backlog_interval_ms(self.logs.sealed_batches())
        }
    }

    pub(super) fn on_logs(&mut self, resp: Response) {
        let now = self.now();
        if (200..300).contains(&resp.status) {
            if let Some(b) = self.logs.pop_front() {
                self.counters.log_lines_sent += u64::from(b.lines);
                self.counters.log_bytes_sent += b.gzip.len() as u64;
            }
            self.log_backoff.reset();
            self.counters.log_batches_sent += 1;
            self.last_log_sent_unix_ms = Some(self.unix_ms());
            self.persist_logs();
            self.timers.logs_ms = now + self.log_interval_ms();
        } else if non_retryable(resp.status) {
            if let Some(b) = self.logs.pop_front() {
                self.logs.count_refused(b.lines);
            }
            self.counters.log_batches_dropped += 1;
            self.persist_logs();
            self.unexpected("newlogs", resp.status);
            self.timers.logs_ms = now + self.log_interval_ms();
        } else {
            self.unexpected("newlogs", resp.status);
            self.timers.logs_ms = now + self.log_backoff.fail(&mut *self.deps.rng);
        }
    }
}
