//! Log upload in EVE's `newlogs` format: each batch is one gzip member of
//! newline-separated protobuf-JSON `LogEntry` objects, the comment field of
//! the gzip header carrying the device metadata (`devID`, `image`,
//! `eveVersion`), as EVE's newlogd writes them. A batch never exceeds
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

/// Appends `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
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

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 UTC with milliseconds, the protobuf-JSON form of a Timestamp.
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix_ms % 1000
    );
    out
}

/// One JSON line (with its newline) for `record`, `msgid` numbering it.
pub fn json_line(record: &LogRecord, msgid: u64) -> String {
    let mut out = String::with_capacity(record.content.len().min(MAX_CONTENT) + 128);
    out.push_str("{\"severity\":");
    json_string(&mut out, record.level.as_str());
    out.push_str(",\"source\":");
    json_string(&mut out, &record.source);
    out.push_str(",\"content\":");
    json_string(&mut out, cut(&record.content, MAX_CONTENT));
    let _ = write!(out, ",\"msgid\":{msgid},\"timestamp\":");
    json_string(&mut out, &rfc3339(record.unix_ms));
    if !record.filename.is_empty() {
        out.push_str(",\"filename\":");
        json_string(&mut out, &record.filename);
    }
    if !record.function.is_empty() {
        out.push_str(",\"function\":");
        json_string(&mut out, &record.function);
    }
    out.push_str("}\n");
    out
}

/// The gzip comment EVE writes: `LogBundle` metadata as JSON, empty fields
/// left out.
pub fn batch_metadata(dev_id: &str, image: &str, eve_version: &str) -> String {
    let mut out = String::from("{");
    let mut first = true;
    for (key, value) in [
        ("devID", dev_id),
        ("image", image),
        ("eveVersion", eve_version),
    ] {
        if value.is_empty() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        json_string(&mut out, key);
        out.push(':');
        json_string(&mut out, value);
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

/// Record layout magic of [`LogQueue::encode`], version 1.
const QUEUE_MAGIC: &[u8; 4] = b"EVL1";

/// Log lines waiting for upload: an open text buffer and sealed gzip
/// batches, with a bound on the sealed bytes.
#[derive(Debug)]
pub struct LogQueue {
    open: String,
    open_lines: u32,
    sealed: VecDeque<Batch>,
    sealed_bytes: usize,
    max_sealed_bytes: usize,
    dropped_lines: u64,
    next_msgid: u64,
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
            dropped_lines: 0,
            next_msgid: 1,
        }
    }

    /// Adds a record. Returns `true` when the open batch was full and got
    /// sealed first (the caller persists the queue then), using `meta` as
    /// gzip comment and `now_unix` as its time.
    pub fn push(&mut self, record: &LogRecord, meta: &str, now_unix: u32) -> bool {
        let line = json_line(record, self.next_msgid);
        self.next_msgid += 1;
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
            self.dropped_lines += u64::from(old.lines);
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

    /// Counts lines of a batch dropped for good (refused by the controller).
    pub fn count_dropped(&mut self, lines: u32) {
        self.dropped_lines += u64::from(lines);
    }

    /// Sealed batches waiting.
    pub fn sealed_batches(&self) -> usize {
        self.sealed.len()
    }

    /// Lines in the open (not yet sealed) buffer.
    pub fn open_lines(&self) -> u32 {
        self.open_lines
    }

    /// Lines dropped because of the bound or a refusal.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    /// The sealed batches as one record for the state volume.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.sealed_bytes + 4 + 8 * self.sealed.len());
        out.extend_from_slice(QUEUE_MAGIC);
        for b in &self.sealed {
            out.extend_from_slice(&b.lines.to_le_bytes());
            out.extend_from_slice(&(b.gzip.len() as u32).to_le_bytes());
            out.extend_from_slice(&b.gzip);
        }
        out
    }

    /// Restores sealed batches from [`LogQueue::encode`] output. A damaged
    /// record yields the batches before the damage; returns whether it was
    /// intact.
    pub fn restore(&mut self, record: &[u8]) -> bool {
        let Some(mut rest) = record.strip_prefix(QUEUE_MAGIC.as_slice()) else {
            return false;
        };
        while !rest.is_empty() {
            let Some((head, tail)) = rest.split_first_chunk::<8>() else {
                return false;
            };
            let lines = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
            if len > MAX_BATCH_GZIP || len > tail.len() {
                return false;
            }
            let (gz, tail) = tail.split_at(len);
            self.sealed_bytes += len;
            self.sealed.push_back(Batch {
                lines,
                gzip: gz.to_vec(),
            });
            rest = tail;
        }
        self.enforce_bound();
        true
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

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(rfc3339(951_825_600_000), "2000-02-29T12:00:00.000Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn json_line_escapes_and_parses() {
        let line = json_line(&record("a \"quoted\"\\ line\nwith\u{1} ctl and ü"), 42);
        assert!(line.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["content"], "a \"quoted\"\\ line\nwith\u{1} ctl and ü");
        assert_eq!(v["msgid"], 42);
        assert_eq!(v["timestamp"], "2026-01-01T00:00:00.123Z");
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
        assert!(q.encode().len() <= 3000 + 4 + 8 * q.sealed_batches());
        assert!(q.dropped_lines() > 0);
        assert_eq!(q.dropped_lines() + q.sealed_batches() as u64, 50);
        let last = gunzip(&q.sealed.back().unwrap().gzip);
        assert!(last.contains("line 49"));
    }

    #[test]
    fn queue_record_round_trips_and_survives_damage() {
        let mut q = LogQueue::new(1 << 20);
        for i in 0..3 {
            q.push(&record(&format!("n{i}")), "{}", 0);
            q.seal("{}", 0);
        }
        let rec = q.encode();
        let mut r = LogQueue::new(1 << 20);
        assert!(r.restore(&rec));
        assert_eq!(r.sealed, q.sealed);
        let mut boundaries = vec![4];
        for b in &q.sealed {
            boundaries.push(boundaries.last().unwrap() + 8 + b.gzip.len());
        }
        for cut in 0..rec.len() {
            let mut t = LogQueue::new(1 << 20);
            let intact = t.restore(&rec[..cut]);
            assert_eq!(intact, boundaries.contains(&cut), "cut at {cut}");
            let n = t.sealed_batches();
            assert!(t.sealed.iter().eq(q.sealed.iter().take(n)));
        }
        let mut seed = 9u64;
        for _ in 0..2000 {
            let mut bad = rec.clone();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let i = (seed >> 33) as usize % bad.len();
            bad[i] ^= 1 << ((seed >> 20) % 8);
            let mut t = LogQueue::new(1 << 20);
            t.restore(&bad);
            assert!(t.sealed_batches() <= 3);
        }
    }
}
