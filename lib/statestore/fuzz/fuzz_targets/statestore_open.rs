//! A state volume after power loss, disk damage or a hostile host: opening
//! it must give a store (the newest intact snapshot, or an empty one) and
//! never panic, and the store must then work.
//!
//! The first input byte chooses how the rest is used: as a raw volume
//! image, or as a snapshot payload framed in a valid slot header with a
//! correct CRC, so the fuzzer reaches the record and queue decoders instead
//! of stopping at the checksum.
#![no_main]

use blockdev::{BLOCK_SIZE, MemDisk};
use libfuzzer_sys::fuzz_target;
use statestore::{QueueLimits, Store};

const LIMITS: QueueLimits = QueueLimits {
    max_items: 8,
    max_bytes: 256,
};

/// A two-slot volume whose slot 0 holds `payload` under a valid header
/// (the layout `statestore`'s slot module documents).
fn framed(payload: &[u8], sequence: u64) -> Vec<u8> {
    let mut header = [0u8; 32];
    header[..8].copy_from_slice(b"EVESTATE");
    header[8..10].copy_from_slice(&1u16.to_le_bytes());
    header[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[16..24].copy_from_slice(&sequence.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..28]);
    crc.update(payload);
    header[28..].copy_from_slice(&crc.finalize().to_le_bytes());
    let slot_blocks = (header.len() + payload.len()).div_ceil(BLOCK_SIZE);
    let mut image = vec![0u8; 2 * slot_blocks * BLOCK_SIZE];
    image[..32].copy_from_slice(&header);
    image[32..32 + payload.len()].copy_from_slice(payload);
    image
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let image = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        framed(rest, u64::from(mode >> 1))
    };
    let Ok(mut store) = Store::open(MemDisk::from_image(image)) else {
        return;
    };
    let names: Vec<String> = store.names().map(String::from).collect();
    for name in &names {
        assert!(store.get(name).is_some());
        if let Ok(queue) = store.queue(name, LIMITS) {
            assert!(queue.len() <= LIMITS.max_items && queue.item_bytes() <= LIMITS.max_bytes);
        }
    }
    // What was opened must survive a commit and a reopen, with the change.
    let value = [mode; 3];
    if store.put_commit("fuzz.check", &value).is_err() {
        return;
    }
    let reopened = Store::open(store.into_device()).expect("a committed store opens");
    assert_eq!(reopened.get("fuzz.check"), Some(&value[..]));
    for name in names.iter().filter(|n| n.as_str() != "fuzz.check") {
        assert!(
            reopened.get(name).is_some(),
            "record {name} lost by a commit"
        );
    }
});
