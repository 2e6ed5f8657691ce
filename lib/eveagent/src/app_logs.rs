//! Apps' console lines for the controller's per-app `newlogs` path, in the
//! form EVE's newlogd uploads them: per app, gzip members of
//! newline-separated `LogEntry` JSON lines (the same encoding as device
//! logs, [`crate::logs::json_line`]), each app's lines numbered by their
//! own `msgid` from 1, severity `info` (newlogd's default for a console
//! line, which carries no level), and the app's name in the gzip header's
//! name field where device batches carry their metadata in the comment. A
//! batch stays under EVE's 50,000-byte upload limit.
//!
//! Memory is bounded: each app's unsealed text is at most one batch, at
//! most [`MAX_APPS`] apps are followed, and sealed batches beyond the
//! queue's byte bound are dropped oldest first. Every line that does not
//! reach the controller is counted ([`AppLogCounters`]): dropped by the
//! bound, refused for good by the controller, lost before zedagent saw it
//! (domainmgr's `dropped`, or items of `app-logs` that left the window
//! before zedagent took them).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use topics::AppLogBatch;

use crate::gzip;
use crate::identity::{canonical_uuid, valid_uuid};
use crate::logs::{Level, LogRecord, MAX_BATCH_TEXT, json_line};

/// Apps whose lines are followed at once; lines of more are dropped (and
/// counted).
pub const MAX_APPS: usize = 64;

/// One sealed batch of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppBatch {
    /// The app instance's UUID.
    pub app: String,
    /// Lines inside.
    pub lines: u32,
    /// The gzip member.
    pub gzip: Vec<u8>,
}

/// What happened to apps' lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppLogCounters {
    /// Lines taken from `app-logs`.
    pub input_lines: u64,
    /// Lines lost before zedagent took them (domainmgr's count).
    pub lost_before: u64,
    /// `app-logs` items missed (they left the bus window first).
    pub missed_items: u64,
    /// Lines dropped on the device: the queue's bound, or too many apps.
    pub bound_dropped: u64,
    /// Lines in batches the controller refused for good.
    pub refused: u64,
    /// Lines cut by domainmgr for length (still sent, shortened).
    pub truncated: u64,
    /// Lines of items whose app UUID is not a UUID (it names the upload
    /// path, so it is never used as it came).
    pub bad_app: u64,
}

#[derive(Debug, Clone, Default)]
struct OpenLines {
    name: String,
    text: String,
    lines: u32,
    /// When the oldest unsealed line came (monotonic ms).
    since_ms: Option<u64>,
    next_msgid: u64,
}

/// The queue of apps' log batches, oldest first across apps.
#[derive(Debug, Clone)]
pub struct AppLogQueue {
    apps: BTreeMap<String, OpenLines>,
    sealed: VecDeque<AppBatch>,
    sealed_bytes: usize,
    max_sealed_bytes: usize,
    /// The `app-logs` run and the next sequence expected.
    expected: Option<(u32, u64)>,
    counters: AppLogCounters,
}

impl AppLogQueue {
    /// A queue keeping at most `max_sealed_bytes` of sealed batches.
    pub fn new(max_sealed_bytes: usize) -> AppLogQueue {
        AppLogQueue {
            apps: BTreeMap::new(),
            sealed: VecDeque::new(),
            sealed_bytes: 0,
            max_sealed_bytes,
            expected: None,
            counters: AppLogCounters::default(),
        }
    }

    /// Takes one `app-logs` item, received at `now_ms` (monotonic) and
    /// `now_unix`; an app's open lines that would outgrow a batch are
    /// sealed first.
    pub fn push(&mut self, item: &AppLogBatch, now_ms: u64, now_unix: u32) {
        if let Some((run, next)) = self.expected
            && run == item.run
            && item.sequence > next
        {
            self.counters.missed_items += item.sequence - next;
        }
        self.expected = Some((item.run, item.sequence.saturating_add(1)));
        let count = item.lines.len() as u64;
        self.counters.input_lines += count;
        self.counters.lost_before += item.dropped;
        self.counters.truncated += u64::from(item.truncated);
        if count == 0 {
            return;
        }
        if !valid_uuid(&item.app_uuid) {
            self.counters.bad_app += count;
            return;
        }
        let app = canonical_uuid(&item.app_uuid);
        if !self.apps.contains_key(&app) && !self.make_room() {
            self.counters.bound_dropped += count;
            return;
        }
        let mut open = self.apps.remove(&app).unwrap_or(OpenLines {
            next_msgid: 1,
            ..Default::default()
        });
        open.name.clone_from(&item.display_name);
        for line in &item.lines {
            let record = LogRecord {
                level: Level::Info,
                source: app.clone(),
                content: line.text.clone(),
                unix_ms: line.unix_ms,
                filename: String::new(),
                function: String::new(),
            };
            let json = json_line(&record, open.next_msgid);
            open.next_msgid += 1;
            if open.text.len() + json.len() > MAX_BATCH_TEXT {
                self.seal_one(&app, &mut open, now_unix);
            }
            open.text.push_str(&json);
            open.lines += 1;
            open.since_ms.get_or_insert(now_ms);
        }
        self.apps.insert(app, open);
    }

    /// Whether another app fits: forgets an app with nothing open when
    /// [`MAX_APPS`] are followed.
    fn make_room(&mut self) -> bool {
        if self.apps.len() < MAX_APPS {
            return true;
        }
        let idle = self
            .apps
            .iter()
            .find(|(_, o)| o.lines == 0)
            .map(|(k, _)| k.clone());
        idle.is_some_and(|k| self.apps.remove(&k).is_some())
    }

    fn seal_one(&mut self, app: &str, open: &mut OpenLines, now_unix: u32) {
        if open.lines == 0 {
            return;
        }
        let gzip = gzip::compress_named(open.text.as_bytes(), open.name.as_bytes(), now_unix);
        self.sealed_bytes += gzip.len();
        self.sealed.push_back(AppBatch {
            app: String::from(app),
            lines: open.lines,
            gzip,
        });
        open.text.clear();
        open.lines = 0;
        open.since_ms = None;
        while self.sealed_bytes > self.max_sealed_bytes {
            let Some(old) = self.sealed.pop_front() else {
                break;
            };
            self.sealed_bytes -= old.gzip.len();
            self.counters.bound_dropped += u64::from(old.lines);
        }
    }

    /// Seals every app's open lines queued at or before `before_ms`.
    pub fn seal_older(&mut self, before_ms: u64, now_unix: u32) {
        let apps: Vec<String> = self
            .apps
            .iter()
            .filter(|(_, o)| o.since_ms.is_some_and(|t| t <= before_ms))
            .map(|(k, _)| k.clone())
            .collect();
        for app in apps {
            if let Some(mut open) = self.apps.remove(&app) {
                self.seal_one(&app, &mut open, now_unix);
                self.apps.insert(app, open);
            }
        }
    }

    /// When the oldest open line came (monotonic ms).
    pub fn oldest_open_ms(&self) -> Option<u64> {
        self.apps.values().filter_map(|o| o.since_ms).min()
    }

    /// The batch to upload next.
    pub fn front(&self) -> Option<&AppBatch> {
        self.sealed.front()
    }

    /// Removes the front batch (sent).
    pub fn pop_front(&mut self) -> Option<AppBatch> {
        let b = self.sealed.pop_front()?;
        self.sealed_bytes -= b.gzip.len();
        Some(b)
    }

    /// Removes the front batch, refused for good by the controller.
    pub fn refuse_front(&mut self) {
        if let Some(b) = self.pop_front() {
            self.counters.refused += u64::from(b.lines);
        }
    }

    /// Sealed batches waiting.
    pub fn sealed_batches(&self) -> usize {
        self.sealed.len()
    }

    pub fn counters(&self) -> AppLogCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::io::Read;
    use std::prelude::rust_2024::*;

    use topics::AppLogLine;

    const A: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    const B: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b";

    fn item(app: &str, seq: u64, texts: &[&str]) -> AppLogBatch {
        AppLogBatch {
            app_uuid: app.into(),
            display_name: "web".into(),
            lines: texts
                .iter()
                .map(|t| AppLogLine {
                    unix_ms: 1_700_000_000_250,
                    text: (*t).into(),
                })
                .collect(),
            run: 9,
            sequence: seq,
            ..Default::default()
        }
    }

    fn gunzip(gz: &[u8]) -> (String, Option<Vec<u8>>) {
        let mut d = flate2::read::GzDecoder::new(gz);
        let mut s = String::new();
        d.read_to_string(&mut s).unwrap();
        let name = d.header().unwrap().filename().map(<[u8]>::to_vec);
        (s, name)
    }

    #[test]
    fn lines_become_newlogd_json_per_app_with_the_name_in_the_header() {
        let mut q = AppLogQueue::new(1 << 20);
        q.push(&item(A, 0, &["booting", "listening <80>"]), 10, 1);
        q.push(&item(B, 1, &["other"]), 11, 1);
        q.push(&item(A, 2, &["third"]), 12, 1);
        assert_eq!(q.oldest_open_ms(), Some(10));
        q.seal_older(10, 1);
        assert_eq!(q.sealed_batches(), 1);
        let a = q.pop_front().unwrap();
        assert_eq!((a.app.as_str(), a.lines), (A, 3));
        let (text, name) = gunzip(&a.gzip);
        assert_eq!(name.as_deref(), Some(&b"web"[..]));
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["severity"], "info");
        assert_eq!(lines[0]["source"], A);
        assert_eq!(lines[0]["content"], "booting");
        assert_eq!(lines[0]["msgid"], 1);
        assert_eq!(lines[2]["msgid"], 3);
        assert_eq!(lines[1]["content"], "listening <80>");
        assert!(text.contains("\\u003c80\\u003e"), "escaped as Go does");
        assert_eq!(lines[0]["timestamp"]["seconds"], 1_700_000_000);
        assert_eq!(lines[0]["timestamp"]["nanos"], 250_000_000);
        q.seal_older(u64::MAX, 1);
        let b = q.pop_front().unwrap();
        assert_eq!((b.app.as_str(), b.lines), (B, 1));
        // Numbering goes on per app.
        q.push(&item(A, 3, &["again"]), 20, 1);
        q.seal_older(20, 1);
        let (text, _) = gunzip(&q.pop_front().unwrap().gzip);
        assert!(text.contains("\"msgid\":4"));
        assert_eq!(q.counters().input_lines, 5);
        assert_eq!(q.counters().missed_items, 0);
    }

    #[test]
    fn batches_stay_under_the_upload_limit_and_the_bound_drops_oldest_counted() {
        let mut q = AppLogQueue::new(200_000);
        let mut seed = 7u64;
        let mut total = 0;
        for seq in 0..400 {
            let noise: String = (0..1000)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    char::from(b'!' + ((seed >> 40) % 90) as u8)
                })
                .collect();
            q.push(&item(A, seq, &[&noise]), seq, 1);
            total += 1;
        }
        q.seal_older(u64::MAX, 1);
        let mut sent = 0u64;
        let mut bytes = 0;
        while let Some(b) = q.pop_front() {
            assert!(b.gzip.len() <= crate::logs::MAX_BATCH_GZIP);
            let (text, _) = gunzip(&b.gzip);
            assert_eq!(text.lines().count() as u32, b.lines);
            sent += u64::from(b.lines);
            bytes += b.gzip.len();
        }
        assert!(bytes <= 200_000);
        assert!(q.counters().bound_dropped > 0);
        assert_eq!(sent + q.counters().bound_dropped, total);
    }

    #[test]
    fn losses_are_counted_whatever_their_cause() {
        let mut q = AppLogQueue::new(1 << 20);
        q.push(&item(A, 0, &["a"]), 1, 1);
        // Items 1 and 2 left the window before zedagent took them.
        let mut late = item(A, 3, &["b"]);
        late.dropped = 5;
        late.truncated = 1;
        q.push(&late, 2, 1);
        // A new run of domainmgr starts its numbering again.
        let mut restarted = item(A, 0, &["c"]);
        restarted.run = 10;
        q.push(&restarted, 3, 1);
        let c = q.counters();
        assert_eq!(
            (c.missed_items, c.lost_before, c.truncated, c.input_lines),
            (2, 5, 1, 3)
        );
        q.seal_older(u64::MAX, 1);
        q.refuse_front();
        assert_eq!(q.counters().refused, 3);
        assert!(q.front().is_none());

        // Apps beyond the limit: their lines are dropped and counted,
        // unless a followed app has nothing open.
        let mut q = AppLogQueue::new(1 << 20);
        for i in 0..MAX_APPS {
            q.push(&item(&uuid(i), i as u64, &["x"]), 1, 1);
        }
        q.push(&item(&uuid(1000), 100, &["y", "z"]), 1, 1);
        assert_eq!(q.counters().bound_dropped, 2);
        q.seal_older(u64::MAX, 1);
        q.push(&item(&uuid(1000), 101, &["y"]), 2, 1);
        assert_eq!(q.counters().bound_dropped, 2);
        assert_eq!(q.sealed_batches(), MAX_APPS);

        // A hostile app UUID never names a path.
        let mut q = AppLogQueue::new(1 << 20);
        q.push(&item("../../config?x", 0, &["evil"]), 1, 1);
        q.push(&item(&A.to_uppercase(), 1, &["upper"]), 1, 1);
        q.seal_older(u64::MAX, 1);
        assert_eq!(q.counters().bad_app, 1);
        assert_eq!(q.pop_front().unwrap().app, A);
        assert!(q.front().is_none());
    }

    fn uuid(i: usize) -> String {
        format!("00000000-0000-4000-8000-{i:012}")
    }
}
