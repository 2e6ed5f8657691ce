//! One line of a `newlogs` upload, read the way EVE's peers read it.
//!
//! EVE's newlogd writes each line with Go's `encoding/json` of the
//! generated `logs.LogEntry` struct, and the open controller Adam reads it
//! back the same way, not as protobuf-JSON: so `msgid` is a number and
//! `timestamp` is the `Timestamp` struct, an object of `seconds` and
//! `nanos`. This reader follows `encoding/json` where a sender could tell
//! the difference: keys match the field tags case-insensitively (Go's
//! folding), unknown keys are ignored, `null` leaves a field as it is, a
//! repeated key overwrites (or, for `tags` and `timestamp`, merges into)
//! what came before, and a value of the wrong type refuses the line. It
//! is more liberal than Go in two ways, for older and other senders (our
//! agent before it wrote EVE's form, protobuf-JSON writers): `timestamp`
//! may be an RFC 3339 string and `msgid` a decimal string.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use eve_proto::logs::LogEntry;
use eve_proto::prost_types::Timestamp;
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// Parses one line (without its newline).
pub fn parse_line(line: &str) -> Result<LogEntry, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(line);
    let entry = de.deserialize_any(EntryVisitor)?;
    de.end()?;
    Ok(entry)
}

/// A key as Go's `encoding/json` compares it with a field name: every
/// character mapped through lower then upper case (simple mappings only,
/// so `ſ` matches `s` and the Kelvin sign `k`, as in Go).
fn fold(key: &str) -> String {
    fn single(mut mapped: impl Iterator<Item = char>, c: char) -> char {
        match (mapped.next(), mapped.next()) {
            (Some(m), None) => m,
            _ => c,
        }
    }
    key.chars()
        .map(|c| {
            let lower = single(c.to_lowercase(), c);
            single(lower.to_uppercase(), lower)
        })
        .collect()
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = LogEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a LogEntry object")
    }

    /// `null` decodes to an empty entry, as Go leaves the struct alone.
    fn visit_unit<E: de::Error>(self) -> Result<LogEntry, E> {
        Ok(LogEntry::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LogEntry, A::Error> {
        let mut e = LogEntry::default();
        while let Some(key) = map.next_key::<String>()? {
            let text = |field: &mut String, v: Option<String>| {
                if let Some(v) = v {
                    *field = v;
                }
            };
            match fold(&key).as_str() {
                "SEVERITY" => text(&mut e.severity, map.next_value()?),
                "SOURCE" => text(&mut e.source, map.next_value()?),
                "IID" => text(&mut e.iid, map.next_value()?),
                "CONTENT" => text(&mut e.content, map.next_value()?),
                "FILENAME" => text(&mut e.filename, map.next_value()?),
                "FUNCTION" => text(&mut e.function, map.next_value()?),
                "MSGID" => {
                    if let Some(id) = map.next_value_seed(Msgid)? {
                        e.msgid = id;
                    }
                }
                "TAGS" => match map.next_value::<Option<BTreeMap<String, Option<String>>>>()? {
                    // Go decodes into the map already there.
                    Some(tags) => e
                        .tags
                        .extend(tags.into_iter().map(|(k, v)| (k, v.unwrap_or_default()))),
                    None => e.tags.clear(),
                },
                "TIMESTAMP" => {
                    e.timestamp = map.next_value_seed(TimestampSeed(e.timestamp.take()))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(e)
    }
}

/// `msgid`: an unsigned integer (Go refuses fractions, exponents, signs
/// and overflow alike), or its decimal string; `None` for `null`.
struct Msgid;

impl<'de> DeserializeSeed<'de> for Msgid {
    type Value = Option<u64>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for Msgid {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("msgid as an unsigned 64-bit integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<u64>, E> {
        Ok(Some(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<u64>, E> {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::invalid_value(de::Unexpected::Str(v), &self));
        }
        v.parse()
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
        Ok(None)
    }
}

/// `timestamp`: Go's object of `seconds` and `nanos`, decoded into the
/// value a repeated key left; or an RFC 3339 string; `null` removes it.
struct TimestampSeed(Option<Timestamp>);

impl<'de> DeserializeSeed<'de> for TimestampSeed {
    type Value = Option<Timestamp>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Timestamp>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TimestampSeed {
    type Value = Option<Timestamp>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("timestamp as {\"seconds\":..,\"nanos\":..} or an RFC 3339 string")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Timestamp>, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Timestamp>, E> {
        Timestamp::from_str(v)
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Timestamp>, A::Error> {
        let mut t = self.0.unwrap_or_default();
        while let Some(key) = map.next_key::<String>()? {
            match fold(&key).as_str() {
                "SECONDS" => {
                    if let Some(s) = map.next_value::<Option<i64>>()? {
                        t.seconds = s;
                    }
                }
                "NANOS" => {
                    if let Some(n) = map.next_value::<Option<i32>>()? {
                        t.nanos = n;
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos })
    }

    #[test]
    fn reads_the_line_eve_writes() {
        let e = parse_line(
            r#"{"severity":"info","source":"zedagent","iid":"1234","content":"hello","msgid":7,"tags":{"app":"x"},"timestamp":{"seconds":1700000000,"nanos":5000000},"filename":"f.go:12","function":"main.f"}"#,
        )
        .unwrap();
        assert_eq!(
            (e.severity.as_str(), e.source.as_str(), e.iid.as_str()),
            ("info", "zedagent", "1234")
        );
        assert_eq!((e.content.as_str(), e.msgid), ("hello", 7));
        assert_eq!(e.tags["app"], "x");
        assert_eq!(e.timestamp, ts(1_700_000_000, 5_000_000));
        assert_eq!(
            (e.filename.as_str(), e.function.as_str()),
            ("f.go:12", "main.f")
        );
        // omitempty: an empty timestamp object and missing keys.
        let e = parse_line(r#"{"severity":"error","timestamp":{}}"#).unwrap();
        assert_eq!((e.timestamp, e.msgid), (ts(0, 0), 0));
    }

    #[test]
    fn follows_go_on_keys_nulls_and_repeats() {
        let e = parse_line(
            r#"{"SEVERITY":"warning","Content":"a","unknown":{"deep":[1,{"x":null}]},"ſource":"s","content":null,"TimeStamp":{"SECONDS":5,"extra":true}}"#,
        )
        .unwrap();
        assert_eq!(
            (e.severity.as_str(), e.content.as_str(), e.source.as_str()),
            ("warning", "a", "s")
        );
        assert_eq!(e.timestamp, ts(5, 0));
        let e = parse_line(
            r#"{"timestamp":{"seconds":5},"timestamp":{"nanos":9},"tags":{"a":"1"},"tags":{"b":null},"msgid":3,"msgid":null}"#,
        )
        .unwrap();
        assert_eq!(e.timestamp, ts(5, 9));
        assert_eq!(e.tags.len(), 2);
        assert_eq!((e.tags["a"].as_str(), e.tags["b"].as_str()), ("1", ""));
        assert_eq!(e.msgid, 3);
        let e = parse_line(r#"{"timestamp":{"seconds":5},"timestamp":null,"tags":null}"#).unwrap();
        assert_eq!((e.timestamp, e.tags.len()), (None, 0));
        assert_eq!(parse_line("null").unwrap(), LogEntry::default());
        assert_eq!(parse_line(" {} ").unwrap(), LogEntry::default());
    }

    #[test]
    fn accepts_the_rfc3339_and_protobuf_json_forms() {
        let e = parse_line(
            r#"{"severity":"info","msgid":"12","timestamp":"2026-01-01T00:00:00.123Z"}"#,
        )
        .unwrap();
        assert_eq!(e.msgid, 12);
        assert_eq!(e.timestamp, ts(1_767_225_600, 123_000_000));
        let e = parse_line(r#"{"timestamp":"2026-01-01T01:00:00+01:00"}"#).unwrap();
        assert_eq!(e.timestamp, ts(1_767_225_600, 0));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in [
            "",
            "not json",
            "[1]",
            "\"text\"",
            "7",
            r#"{"severity":7}"#,
            r#"{"content":{"a":1}}"#,
            r#"{"msgid":-1}"#,
            r#"{"msgid":1.5}"#,
            r#"{"msgid":1e3}"#,
            r#"{"msgid":18446744073709551616}"#,
            r#"{"msgid":"-1"}"#,
            r#"{"msgid":"+1"}"#,
            r#"{"msgid":true}"#,
            r#"{"timestamp":5}"#,
            r#"{"timestamp":"yesterday"}"#,
            r#"{"timestamp":{"seconds":"5"}}"#,
            r#"{"timestamp":{"nanos":2147483648}}"#,
            r#"{"timestamp":{"seconds":1.5}}"#,
            r#"{"tags":{"a":1}}"#,
            r#"{"tags":["a"]}"#,
            r#"{"severity":"info"} trailing"#,
            r#"{"severity":"info""#,
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_lines_fail_without_panicking() {
        // Deep nesting under an unknown key is skipped without recursion;
        // under a known one it is a type error at its first level.
        let nest = |key: &str| {
            format!(
                "{{\"{key}\":{}{}}}",
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
        };
        assert!(parse_line(&nest("x")).is_ok());
        assert!(parse_line(&nest("tags")).is_err());
        assert!(parse_line(&nest("timestamp")).is_err());
        let unclosed = format!("{{\"x\":{}", "{\"a\":".repeat(100_000));
        assert!(parse_line(&unclosed).is_err());
        let mut seed = 3u64;
        let base = br#"{"severity":"info","msgid":7,"timestamp":{"seconds":1700000000,"nanos":5},"tags":{"k":"v"}}"#;
        for _ in 0..5000 {
            let mut line = base.to_vec();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let i = (seed >> 33) as usize % line.len();
            line[i] = (seed >> 20) as u8;
            if let Ok(text) = std::str::from_utf8(&line) {
                let _ = parse_line(text);
            }
        }
    }
}
