//! The snapshot payload: the named records.
//!
//! `count: u32`, then per record in strictly ascending name order
//! `name_len: u8, name (UTF-8), value_len: u32, value`; all little-endian.
//! The order makes the encoding canonical, so a decoder can refuse
//! duplicates cheaply.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use wirebytes::Reader;

/// Named records, as kept in memory.
pub type Records = BTreeMap<String, Vec<u8>>;

/// Bytes of the payload before any record.
pub const EMPTY_LEN: usize = 4;

/// Bytes one record adds to the payload.
pub fn record_len(name: &str, value: &[u8]) -> usize {
    1 + name.len() + 4 + value.len()
}

/// Encodes records; names must be 1..=255 bytes (checked on insertion).
pub fn encode(records: &Records, encoded_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for (name, value) in records {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// Decodes a payload; `None` for anything [`encode`] would not produce.
pub fn decode(payload: &[u8]) -> Option<Records> {
    let mut reader = Reader::new(payload);
    let count = reader.le_u32().ok()?;
    let mut records = Records::new();
    for _ in 0..count {
        let name = reader.u8_prefixed(usize::from(u8::MAX)).ok()?;
        if name.is_empty() {
            return None;
        }
        let name = core::str::from_utf8(name).ok()?;
        // The payload bounds every value: no limit of its own.
        let value = reader.le_u32_prefixed(usize::MAX).ok()?;
        if records
            .last_key_value()
            .is_some_and(|(last, _)| last.as_str() >= name)
        {
            return None;
        }
        records.insert(String::from(name), value.to_vec());
    }
    reader.finish().ok()?;
    Some(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use wirebytes::testing::XorShift;

    fn sample() -> Records {
        let mut records = Records::new();
        records.insert("device-uuid".into(), b"0f3c".to_vec());
        records.insert("empty".into(), Vec::new());
        records.insert("z".into(), vec![0xff; 300]);
        records
    }

    fn encoded_len(records: &Records) -> usize {
        EMPTY_LEN + records.iter().map(|(n, v)| record_len(n, v)).sum::<usize>()
    }

    #[test]
    fn round_trip_and_length_accounting() {
        let records = sample();
        let bytes = encode(&records, 0);
        assert_eq!(bytes.len(), encoded_len(&records));
        assert_eq!(decode(&bytes), Some(records));
        assert_eq!(decode(&encode(&Records::new(), 0)), Some(Records::new()));
    }

    #[test]
    fn every_truncation_and_trailing_garbage_is_refused() {
        let bytes = encode(&sample(), 0);
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len]), None, "length {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
    }

    #[test]
    fn duplicates_disorder_empty_names_and_bad_utf8_are_refused() {
        let record = |name: &[u8]| {
            let mut out = vec![name.len() as u8];
            out.extend_from_slice(name);
            out.extend_from_slice(&0u32.to_le_bytes());
            out
        };
        let payload = |names: &[&[u8]]| {
            let mut out = (names.len() as u32).to_le_bytes().to_vec();
            for name in names {
                out.extend(record(name));
            }
            out
        };
        assert!(decode(&payload(&[b"a", b"b"])).is_some());
        assert_eq!(decode(&payload(&[b"b", b"a"])), None);
        assert_eq!(decode(&payload(&[b"a", b"a"])), None);
        assert_eq!(decode(&payload(&[b""])), None);
        assert_eq!(decode(&payload(&[&[0xff, 0xfe]])), None);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let state = rng.next_u64();
            let len = (state % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (state >> (i % 8 * 8)) as u8).collect();
            if let Some(records) = decode(&bytes) {
                assert_eq!(encode(&records, 0), bytes);
            }
        }
    }
}
