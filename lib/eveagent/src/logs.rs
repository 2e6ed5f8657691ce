//! Log upload in EVE's `newlogs` format: each batch is one gzip member of
//! newline-separated `LogEntry` objects written as EVE's newlogd writes
//! them (Go's `encoding/json` of the generated struct, which Adam parses
//! back the same way), the comment field of the gzip header carrying the
//! device metadata (`devID`, `image`, `eveVersion`). A batch never exceeds
//! EVE's 50,000-byte upload limit, and the queue of batches is bounded:
//! when the controller is away for long, the oldest batches are dropped
//! (and counted) instead of growing without limit.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::gzip;

/// EVE's cap on one log message (memlogd's per-message limit).
pub const MAX_CONTENT: usize = 8192;
/// Uncompressed text per batch. Deflate's worst case adds a few bytes per
/// 64 KiB block, so a batch of this much text always compresses to less
/// than EVE's 50,000-byte upload limit, even when nothing compresses.
pub const MAX_BATCH_TEXT: usize = 48 * 1024;
/// EVE's upper bound for one gzip upload.
pub const MAX_BATCH_GZIP: usize = 50_000;

/// Severity, in EVE's (logrus) names, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warning`
    Warning,
    /// `error`
    Error,
    /// `fatal`
    Fatal,
    /// `panic`
    Panic,
}

impl Level {
    /// The name EVE writes into `LogEntry.severity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Fatal => "fatal",
            Self::Panic => "panic",
        }
    }

    /// Parses a level name as EVE's config items spell them (`warn` too).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim() {
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "info" => Self::Info,
            "warning" | "warn" => Self::Warning,
            "error" => Self::Error,
            "fatal" => Self::Fatal,
            "panic" => Self::Panic,
            _ => return None,
        })
    }
}

/// One log record from a service of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Severity.
    pub level: Level,
    /// Emitting service (`zedagent`, `nim`, ...).
    pub source: String,
    /// Message text (cut to [`MAX_CONTENT`] bytes).
    pub content: String,
    /// When it was logged, Unix milliseconds.
    pub unix_ms: u64,
    /// Source file, may be empty.
    pub filename: String,
    /// Function, may be empty.
    pub function: String,
}

/// Appends `s` as a JSON string literal escaped as Go's `json.Marshal`
/// escapes it (HTML-safe `<`, `>`, `&`, and U+2028/U+2029), so our lines
/// are byte for byte what newlogd would write for the same record.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The longest prefix of `s` of at most `max` bytes ending on a character
/// boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends `,"key":` (no comma for the first key of an object).
fn json_key(out: &mut String, key: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    json_string(out, key);
    out.push(':');
}

/// One JSON line (with its newline) for `record`, `msgid` numbering it, in
/// the form Go's `encoding/json` gives EVE's `logs.LogEntry`: keys in field
/// order, every empty field left out (all are `omitempty`), `msgid` a
/// number, and `timestamp` the `Timestamp` struct as an object of
/// `seconds` and `nanos` (each left out when zero), not protobuf-JSON's
/// RFC 3339 string, which Adam refuses. `iid` and `tags` are never set
/// here: a unikernel has no process id and records carry no tags.
pub fn json_line(record: &LogRecord, msgid: u64) -> String {
    let mut out = String::with_capacity(record.content.len().min(MAX_CONTENT) + 160);
    out.push('{');
    json_key(&mut out, "severity");
    json_string(&mut out, record.level.as_str());
    for (key, value) in [
        ("source", record.source.as_str()),
        ("content", cut(&record.content, MAX_CONTENT)),
    ] {
        if !value.is_empty() {
            json_key(&mut out, key);
            json_string(&mut out, value);
        }
    }
    if msgid != 0 {
        json_key(&mut out, "msgid");
        let _ = write!(out, "{msgid}");
    }
    json_key(&mut out, "timestamp");
    out.push('{');
    let (seconds, nanos) = (record.unix_ms / 1000, record.unix_ms % 1000 * 1_000_000);
    if seconds != 0 {
        json_key(&mut out, "seconds");
        let _ = write!(out, "{seconds}");
    }
    if nanos != 0 {
        json_key(&mut out, "nanos");
        let _ = write!(out, "{nanos}");
    }
    out.push('}');
    for (key, value) in [
        ("filename", record.filename.as_str()),
        ("function", record.function.as_str()),
    ] {
        if !value.is_empty() {
            json_key(&mut out, key);
            json_string(&mut out, value);
        }
    }
    out.push_str("}\n");
    out
}

/// The gzip comment EVE writes: `LogBundle` metadata as JSON, empty fields
/// left out.
pub fn batch_metadata(dev_id: &str, image: &str, eve_version: &str) -> String {
    let mut out = String::from("{");
    for (key, value) in [
        ("devID", dev_id),
        ("image", image),
        ("eveVersion", eve_version),
    ] {
        if !value.is_empty() {
            json_key(&mut out, key);
            json_string(&mut out, value);
        }
    }
    out.push('}');
    out
}

/// A sealed batch: gzip bytes ready to upload and how many lines they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Log lines inside.
    pub lines: u32,
    /// The gzip member.
    pub gzip: Vec<u8>,
}

/// Record magic of the first layout: sealed batches only. Still read, so
/// an update does not lose the batches an older agent left behind.
const QUEUE_MAGIC_V1: &[u8; 4] = b"EVL1";
/// Record magic of [`LogQueue::encode`]: the next msgid and the open
/// (unsealed) lines, then the sealed batches, so lines not yet sealed
/// survive a power loss too.
const QUEUE_MAGIC_V2: &[u8; 4] = b"EVL2";

/// Log lines waiting for upload: an open text buffer and sealed gzip
/// batches, with a bound on the sealed bytes, and the counts EVE's
/// `logMetric` reports.
#[derive(Debug)]
pub struct LogQueue {
    open: String,
    open_lines: u32,
    sealed: VecDeque<Batch>,
    sealed_bytes: usize,
    max_sealed_bytes: usize,
    input_lines: u64,
    bound_dropped_lines: u64,
    refused_lines: u64,
    next_msgid: u64,
}

/// Reads a little-endian `u32` and the rest.
fn take_u32(data: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = data.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

impl LogQueue {
    /// An empty queue keeping at most `max_sealed_bytes` of gzip batches.
    pub fn new(max_sealed_bytes: usize) -> Self {
        Self {
            open: String::new(),
            open_lines: 0,
            sealed: VecDeque::new(),
            sealed_bytes: 0,
            max_sealed_bytes,
            input_lines: 0,
            bound_dropped_lines: 0,
            refused_lines: 0,
            next_msgid: 1,
        }
    }

    /// Adds a record. Returns `true` when the open batch was full and got
    /// sealed first (the caller persists the queue then), using `meta` as
    /// gzip comment and `now_unix` as its time.
    pub fn push(&mut self, record: &LogRecord, meta: &str, now_unix: u32) -> bool {
        let line = json_line(record, self.next_msgid);
        self.next_msgid += 1;
        self.input_lines += 1;
        let mut sealed = false;
        if self.open.len() + line.len() > MAX_BATCH_TEXT {
            sealed = self.seal(meta, now_unix);
        }
        self.open.push_str(&line);
        self.open_lines += 1;
        sealed
    }

    /// Compresses the open lines into a batch. `false` if there were none.
    pub fn seal(&mut self, meta: &str, now_unix: u32) -> bool {
        if self.open_lines == 0 {
            return false;
        }
        let gzip = gzip::compress(self.open.as_bytes(), meta.as_bytes(), now_unix);
        let batch = Batch {
            lines: self.open_lines,
            gzip,
        };
        self.open.clear();
        self.open_lines = 0;
        self.sealed_bytes += batch.gzip.len();
        self.sealed.push_back(batch);
        self.enforce_bound();
        true
    }

    fn enforce_bound(&mut self) {
        while self.sealed_bytes > self.max_sealed_bytes {
            let Some(old) = self.sealed.pop_front() else {
                break;
            };
            self.sealed_bytes -= old.gzip.len();
            self.bound_dropped_lines += u64::from(old.lines);
        }
    }

    /// The oldest sealed batch, next to upload.
    pub fn front(&self) -> Option<&Batch> {
        self.sealed.front()
    }

    /// Removes the oldest sealed batch (uploaded, or refused for good).
    pub fn pop_front(&mut self) -> Option<Batch> {
        let b = self.sealed.pop_front()?;
        self.sealed_bytes -= b.gzip.len();
        Some(b)
    }

    /// Counts the lines of a batch the controller refused for good.
    pub fn count_refused(&mut self, lines: u32) {
        self.refused_lines += u64::from(lines);
    }

    /// Sealed batches waiting.
    pub fn sealed_batches(&self) -> usize {
        self.sealed.len()
    }

    /// Lines in the open (not yet sealed) buffer.
    pub fn open_lines(&self) -> u32 {
        self.open_lines
    }

    /// Lines queued since this queue was created (restored ones excluded:
    /// they were counted by the agent before the reboot).
    pub fn input_lines(&self) -> u64 {
        self.input_lines
    }

    /// Lines dropped on the device to keep the queue bounded.
    pub fn bound_dropped_lines(&self) -> u64 {
        self.bound_dropped_lines
    }

    /// Lines in batches the controller refused for good.
    pub fn refused_lines(&self) -> u64 {
        self.refused_lines
    }

    /// Lines dropped because of the bound or a refusal.
    pub fn dropped_lines(&self) -> u64 {
        self.bound_dropped_lines + self.refused_lines
    }

    /// The queue as one record for the state volume: magic, next msgid
    /// (`u64`), open line count and text length (`u32` each), the open
    /// text, then each sealed batch as line count, length (`u32` each) and
    /// gzip bytes; little-endian throughout.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.sealed_bytes + self.open.len() + 20 + 8 * self.sealed.len());
        out.extend_from_slice(QUEUE_MAGIC_V2);
        out.extend_from_slice(&self.next_msgid.to_le_bytes());
        out.extend_from_slice(&self.open_lines.to_le_bytes());
        out.extend_from_slice(&(self.open.len() as u32).to_le_bytes());
        out.extend_from_slice(self.open.as_bytes());
        for b in &self.sealed {
            out.extend_from_slice(&b.lines.to_le_bytes());
            out.extend_from_slice(&(b.gzip.len() as u32).to_le_bytes());
            out.extend_from_slice(&b.gzip);
        }
        out
    }

    /// Restores a record of [`LogQueue::encode`] (or of the older
    /// sealed-only layout) into this queue, at boot. Restored lines go
    /// before whatever was queued since the queue was created; restored
    /// open lines that do not fit one batch with those are sealed on their
    /// own, with `meta` and `now_unix` as for [`LogQueue::seal`]. A damaged
    /// record yields what came before the damage; returns whether it was
    /// intact.
    pub fn restore(&mut self, record: &[u8], meta: &str, now_unix: u32) -> bool {
        let mut rest = if let Some(v1) = record.strip_prefix(QUEUE_MAGIC_V1.as_slice()) {
            v1
        } else if let Some(v2) = record.strip_prefix(QUEUE_MAGIC_V2.as_slice()) {
            let Some(after) = self.restore_open(v2, meta, now_unix) else {
                return false;
            };
            after
        } else {
            return false;
        };
        let mut batches = VecDeque::new();
        let mut intact = true;
        while !rest.is_empty() {
            let Some((lines, len, tail)) = take_u32(rest)
                .and_then(|(lines, t)| take_u32(t).map(|(len, t)| (lines, len as usize, t)))
            else {
                intact = false;
                break;
            };
            if len > MAX_BATCH_GZIP || len > tail.len() {
                intact = false;
                break;
            }
            let (gz, tail) = tail.split_at(len);
            batches.push_back(Batch {
                lines,
                gzip: gz.to_vec(),
            });
            rest = tail;
        }
        self.sealed_bytes += batches.iter().map(|b| b.gzip.len()).sum::<usize>();
        batches.append(&mut self.sealed);
        self.sealed = batches;
        self.enforce_bound();
        intact
    }

    /// Takes the msgid and open lines of a version 2 record; returns what
    /// follows them, or `None` when they are damaged (then nothing of the
    /// record is used: the batch lengths after them cannot be trusted).
    fn restore_open<'a>(&mut self, data: &'a [u8], meta: &str, now_unix: u32) -> Option<&'a [u8]> {
        let (msgid, rest) = data.split_first_chunk::<8>()?;
        let (lines, rest) = take_u32(rest)?;
        let (len, rest) = take_u32(rest)?;
        let len = len as usize;
        if len > MAX_BATCH_TEXT || len > rest.len() {
            return None;
        }
        let (text, rest) = rest.split_at(len);
        let text = core::str::from_utf8(text).ok()?;
        let counted = text.bytes().filter(|&b| b == b'\n').count();
        if counted != lines as usize || !(text.is_empty() || text.ends_with('\n')) {
            return None;
        }
        self.next_msgid = self.next_msgid.max(u64::from_le_bytes(*msgid));
        if lines == 0 {
            return Some(rest);
        }
        if self.open.len() + text.len() > MAX_BATCH_TEXT {
            let gzip = gzip::compress(text.as_bytes(), meta.as_bytes(), now_unix);
            self.sealed_bytes += gzip.len();
            self.sealed.push_front(Batch { lines, gzip });
        } else {
            self.open.insert_str(0, text);
            self.open_lines += lines;
        }
        Some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::prelude::rust_2024::*;
    use std::{format, vec};

    fn record(content: &str) -> LogRecord {
        LogRecord {
            level: Level::Warning,
            source: "zedagent".into(),
            content: content.into(),
            unix_ms: 1_767_225_600_123,
            filename: "agent.rs".into(),
            function: String::new(),
        }
    }

    fn gunzip(gz: &[u8]) -> String {
        let mut s = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    /// The exact bytes Go's `json.Marshal` writes for a `logs.LogEntry`
    /// with these fields set: keys in struct order, empty ones left out,
    /// the timestamp as an object.
    #[test]
    fn json_line_is_what_go_encoding_json_writes() {
        let full = LogRecord {
            level: Level::Info,
            source: "zedagent".into(),
            content: "hello".into(),
            unix_ms: 1_700_000_000_005,
            filename: "f.go:12".into(),
            function: "main.f".into(),
        };
        assert_eq!(
            json_line(&full, 7),
            "{\"severity\":\"info\",\"source\":\"zedagent\",\"content\":\"hello\",\"msgid\":7,\
             \"timestamp\":{\"seconds\":1700000000,\"nanos\":5000000},\
             \"filename\":\"f.go:12\",\"function\":\"main.f\"}\n"
        );
        let sparse = LogRecord {
            level: Level::Error,
            source: String::new(),
            content: String::new(),
            unix_ms: 1_700_000_000_000,
            filename: String::new(),
            function: String::new(),
        };
        assert_eq!(
            json_line(&sparse, 0),
            "{\"severity\":\"error\",\"timestamp\":{\"seconds\":1700000000}}\n"
        );
        let epoch = LogRecord {
            unix_ms: 250,
            ..sparse.clone()
        };
        assert_eq!(
            json_line(&epoch, 1),
            "{\"severity\":\"error\",\"msgid\":1,\"timestamp\":{\"nanos\":250000000}}\n"
        );
        let zero = LogRecord {
            unix_ms: 0,
            ..sparse
        };
        assert!(json_line(&zero, 1).ends_with(",\"timestamp\":{}}\n"));
    }

    #[test]
    fn json_line_escapes_as_go_and_parses() {
        let text = "a \"quoted\"\\ line\nwith\u{1}\u{8}\u{c} ctl <b>&amp;</b> \u{2028} and ü";
        let line = json_line(&record(text), 42);
        assert!(line.ends_with("}\n"));
        assert!(line.contains(
            "a \\\"quoted\\\"\\\\ line\\nwith\\u0001\\b\\f ctl \\u003cb\\u003e\\u0026amp;\\u003c/b\\u003e \\u2028 and ü"
        ));
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["content"], text);
        assert_eq!(v["msgid"], 42);
        assert_eq!(v["timestamp"]["seconds"], 1_767_225_600);
        assert_eq!(v["timestamp"]["nanos"], 123_000_000);
        assert_eq!(v["filename"], "agent.rs");
        assert!(v.get("function").is_none());
    }

    #[test]
    fn long_content_is_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_CONTENT);
        let line = json_line(&record(&long), 1);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        let content = v["content"].as_str().unwrap();
        assert!(content.len() <= MAX_CONTENT && content.len() >= MAX_CONTENT - 1);
    }

    #[test]
    fn metadata_omits_empty_fields() {
        assert_eq!(batch_metadata("", "IMGA", ""), "{\"image\":\"IMGA\"}");
        assert_eq!(batch_metadata("", "", ""), "{}");
        assert_eq!(
            batch_metadata("u", "IMGA", "1.0"),
            "{\"devID\":\"u\",\"image\":\"IMGA\",\"eveVersion\":\"1.0\"}"
        );
    }

    #[test]
    fn batches_stay_under_the_upload_limit_even_incompressible() {
        let mut q = LogQueue::new(1 << 20);
        let mut seed = 1u64;
        for _ in 0..200 {
            let noise: String = (0..900)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    char::from(b'!' + ((seed >> 40) % 90) as u8)
                })
                .collect();
            q.push(&record(&noise), "{}", 0);
        }
        q.seal("{}", 0);
        assert!(q.sealed_batches() > 2);
        let mut lines = 0;
        while let Some(b) = q.pop_front() {
            assert!(b.gzip.len() <= MAX_BATCH_GZIP, "{}", b.gzip.len());
            let text = gunzip(&b.gzip);
            assert_eq!(text.lines().count(), b.lines as usize);
            lines += b.lines;
        }
        assert_eq!(lines, 200);
        assert_eq!(q.input_lines(), 200);
    }

    #[test]
    fn bound_drops_oldest_and_counts() {
        let mut q = LogQueue::new(3000);
        for i in 0..50 {
            q.push(
                &record(&format!("line {i} {}", "x".repeat(i * 37))),
                "{}",
                0,
            );
            q.seal("{}", 0);
        }
        assert!(q.encode().len() <= 3000 + 20 + 8 * q.sealed_batches());
        assert!(q.bound_dropped_lines() > 0);
        assert_eq!(q.bound_dropped_lines() + q.sealed_batches() as u64, 50);
        assert_eq!(q.dropped_lines(), q.bound_dropped_lines());
        let last = gunzip(&q.sealed.back().unwrap().gzip);
        assert!(last.contains("line 49"));
        let b = q.pop_front().unwrap();
        q.count_refused(b.lines);
        assert_eq!(q.refused_lines(), 1);
        assert_eq!(q.dropped_lines(), q.bound_dropped_lines() + 1);
    }

    /// A queue with three sealed batches and two open lines, and its record.
    fn sample() -> (LogQueue, Vec<u8>) {
        let mut q = LogQueue::new(1 << 20);
        for i in 0..3 {
            q.push(&record(&format!("n{i}")), "{}", 0);
            q.seal("{}", 0);
        }
        q.push(&record("open one"), "{}", 0);
        q.push(&record("open two"), "{}", 0);
        let rec = q.encode();
        (q, rec)
    }

    #[test]
    fn queue_record_keeps_open_lines_and_msgids() {
        let (q, rec) = sample();
        let mut r = LogQueue::new(1 << 20);
        assert!(r.restore(&rec, "{}", 0));
        assert_eq!(r.sealed, q.sealed);
        assert_eq!((r.open.as_str(), r.open_lines()), (q.open.as_str(), 2));
        // Numbering goes on where it stopped, so msgids stay unique.
        r.push(&record("after reboot"), "{}", 0);
        assert!(r.open.ends_with(&json_line(&record("after reboot"), 6)));
        r.seal("{}", 0);
        let text = gunzip(&r.sealed.back().unwrap().gzip);
        let contents: Vec<_> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["content"].clone())
            .collect();
        assert_eq!(contents, ["open one", "open two", "after reboot"]);
        assert_eq!(r.input_lines(), 1);
    }

    #[test]
    fn restored_lines_go_before_lines_queued_since_boot() {
        let (q, rec) = sample();
        let mut r = LogQueue::new(1 << 20);
        r.push(&record("logged at boot"), "{}", 0);
        assert!(r.restore(&rec, "{}", 0));
        assert_eq!(r.open_lines(), 3);
        assert!(r.open.starts_with(&q.open));
        assert!(r.open.ends_with(&json_line(&record("logged at boot"), 1)));

        // Restored open lines that cannot share a batch with them are
        // sealed on their own, after the restored batches.
        let mut full = LogQueue::new(1 << 20);
        while full.open.len() < MAX_BATCH_TEXT - 200 {
            full.push(&record(&"y".repeat(150)), "{}", 0);
        }
        let lines = full.open_lines();
        let mut r = LogQueue::new(1 << 20);
        r.push(&record(&"z".repeat(400)), "{}", 0);
        assert!(r.restore(&full.encode(), "{}", 0));
        assert_eq!((r.sealed_batches(), r.open_lines()), (1, 1));
        assert_eq!(r.front().unwrap().lines, lines);
        assert_eq!(gunzip(&r.front().unwrap().gzip), full.open);
    }

    #[test]
    fn version_1_records_still_restore() {
        let (q, _) = sample();
        let mut v1 = b"EVL1".to_vec();
        for b in &q.sealed {
            v1.extend_from_slice(&b.lines.to_le_bytes());
            v1.extend_from_slice(&(b.gzip.len() as u32).to_le_bytes());
            v1.extend_from_slice(&b.gzip);
        }
        let mut r = LogQueue::new(1 << 20);
        assert!(r.restore(&v1, "{}", 0));
        assert_eq!(r.sealed, q.sealed);
        assert_eq!(r.open_lines(), 0);
        assert!(!r.restore(b"EVL3", "{}", 0));
        assert!(!r.restore(b"", "{}", 0));
    }

    #[test]
    fn damaged_records_yield_what_came_before_the_damage() {
        let (q, rec) = sample();
        let header = 4 + 8 + 4 + 4 + q.open.len();
        let mut boundaries = vec![header];
        for b in &q.sealed {
            boundaries.push(boundaries.last().unwrap() + 8 + b.gzip.len());
        }
        for cut in 0..rec.len() {
            let mut t = LogQueue::new(1 << 20);
            let intact = t.restore(&rec[..cut], "{}", 0);
            assert_eq!(intact, boundaries.contains(&cut), "cut at {cut}");
            if cut < header {
                assert_eq!((t.sealed_batches(), t.open_lines()), (0, 0), "cut {cut}");
            } else {
                assert_eq!(t.open, q.open);
            }
            let n = t.sealed_batches();
            assert!(t.sealed.iter().eq(q.sealed.iter().take(n)));
        }
        let mut seed = 9u64;
        for _ in 0..4000 {
            let mut bad = rec.clone();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let i = (seed >> 33) as usize % bad.len();
            bad[i] ^= 1 << ((seed >> 20) % 8);
            let mut t = LogQueue::new(1 << 20);
            t.restore(&bad, "{}", 0);
            assert!(t.sealed_batches() <= 3);
            assert!(t.open_lines() <= 2);
            assert_eq!(t.open.matches('\n').count(), t.open_lines() as usize);
        }
    }
}
