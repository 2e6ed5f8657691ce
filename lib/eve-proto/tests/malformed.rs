//! Hostile input: truncations, bit flips and random bytes must produce
//! errors (or some value), never a panic.

use eve_proto::Message;
use eve_proto::{auth, certs, config, info, metrics};

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/testdata/golden/{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Small deterministic PRNG so failures are reproducible.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn decode_all(bytes: &[u8]) {
    let _ = auth::AuthContainer::decode(bytes);
    let _ = config::EdgeDevConfig::decode(bytes);
    let _ = info::ZInfoMsg::decode(bytes);
    let _ = metrics::ZMetricMsg::decode(bytes);
    let _ = certs::ZControllerCert::decode(bytes);
}

#[test]
fn truncated_inputs() {
    for name in [
        "edge_dev_config",
        "auth_container",
        "info_device",
        "metrics",
    ] {
        let bytes = golden(name);
        for len in 0..bytes.len() {
            decode_all(&bytes[..len]);
        }
    }
    // A truncated length-delimited field is an error, not a short read.
    let bytes = golden("edge_dev_config");
    assert!(config::EdgeDevConfig::decode(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn bit_flips_and_random_bytes() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let base = golden("edge_dev_config");
    for _ in 0..2000 {
        let mut b = base.clone();
        for _ in 0..4 {
            let i = (rng.next() as usize) % b.len();
            b[i] ^= 1 << (rng.next() % 8);
        }
        decode_all(&b);
    }
    for _ in 0..5000 {
        let len = (rng.next() % 256) as usize;
        let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        decode_all(&b);
    }
}

#[test]
fn deep_nesting_is_rejected() {
    // DisksConfig-like recursion is not in our schema, but nested groups and
    // messages must hit prost's recursion limit instead of the stack.
    let mut b = Vec::new();
    for _ in 0..10_000 {
        b.push(0x22); // field 4 (apps), length-delimited
        b.push(0x7f);
    }
    assert!(config::EdgeDevConfig::decode(b.as_slice()).is_err());
    let groups: Vec<u8> = std::iter::repeat_n(0x0b, 5000).collect(); // start-group field 1
    assert!(info::ZInfoMsg::decode(groups.as_slice()).is_err());
}

#[test]
fn huge_length_prefix() {
    // Length claims far beyond the buffer must fail cleanly.
    let b = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    assert!(auth::AuthContainer::decode(&b[..]).is_err());
}
