//! Frames into every kind of port of the engine, as a script: each record
//! is (port, flags, length, bytes). Flags choose whether the sender's MAC
//! is put right (so the frame passes the first check), whether the
//! checksums are fixed (so mutated headers reach the parsers behind
//! them), and how far time moves on. Nothing may panic, every frame out
//! goes to a known port, and reports build from whatever state results.
#![no_main]

use appnet::{Duration, PortId};
use appnet_fuzz::{OUTSIDE, Rig, UPLINK, fix_checksums, mac};
use libfuzzer_sys::fuzz_target;

const PORTS: [PortId; 7] = [
    PortId(1),
    PortId(2),
    PortId(3),
    PortId(4),
    UPLINK,
    OUTSIDE,
    PortId(999),
];
const STEPS_MS: [u64; 8] = [0, 1, 10, 100, 1_000, 10_000, 60_000, 600_000];

fuzz_target!(|data: &[u8]| {
    let mut rig = Rig::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let port = PORTS[usize::from(rest[0]) % PORTS.len()];
        let flags = rest[1];
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let body = &rest[4..];
        let take = len.min(body.len());
        let mut frame = body[..take].to_vec();
        rest = &body[take..];
        if flags & 1 != 0 && frame.len() >= 12 && (1..=4).contains(&port.0) {
            frame[6..12].copy_from_slice(mac(port.0 as u8).as_bytes());
        }
        if flags & 2 != 0 {
            fix_checksums(&mut frame);
        }
        rig.receive(port, &frame);
        rig.take();
        let step = STEPS_MS[usize::from(flags >> 5)];
        if step > 0 {
            rig.advance(Duration::from_millis(step));
            rig.take();
        }
    }
    rig.report();
});
