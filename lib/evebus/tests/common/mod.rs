//! Shared by the test files: a deterministic PRNG and sample messages.
#![allow(dead_code)] // each test file uses a different part

use evebus::{Change, DenyReason, Level, Limits, Message, Operation, RefuseReason, Status};

/// xorshift64*: deterministic, so a failing case reproduces.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// One message of every kind, with every enum value used somewhere.
pub fn samples() -> Vec<Message> {
    vec![
        Message::Hello {
            service: "zedagent".into(),
            protocol: 2,
            boot_counter: 7,
        },
        Message::Welcome {
            protocol: 2,
            heartbeat_interval_ms: 1000,
        },
        Message::Refused {
            reason: RefuseReason::UnsupportedVersion,
        },
        Message::Refused {
            reason: RefuseReason::WrongService,
        },
        Message::Refused {
            reason: RefuseReason::ExpectedHello,
        },
        Message::Subscribe {
            topic: "device-network-status".into(),
        },
        Message::Publish {
            topic: "device-network-status".into(),
            key: "global".into(),
            value: vec![0x0a, 0x03, 1, 2, 3],
        },
        Message::Publish {
            topic: "t".into(),
            key: "k".into(),
            value: vec![],
        },
        Message::Delete {
            topic: "app-instance-status".into(),
            key: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
        },
        Message::Synchronized {
            topic: "@log".into(),
        },
        Message::Update {
            change: Change::Created,
            topic: "a".into(),
            key: "b".into(),
            value: vec![9; 300],
        },
        Message::Update {
            change: Change::Modified,
            topic: "a".into(),
            key: "b".into(),
            value: vec![1],
        },
        Message::Update {
            change: Change::Deleted,
            topic: "a".into(),
            key: "b".into(),
            value: vec![],
        },
        Message::Heartbeat { sequence: u64::MAX },
        Message::Log {
            level: Level::Error,
            unix_ns: 1_700_000_000_000_000_000,
            target: "nim::dhcp".into(),
            message: "lease lost on eth0 \u{2014} retrying\nsecond line".into(),
        },
        Message::Log {
            level: Level::Trace,
            unix_ns: 0,
            target: String::new(),
            message: String::new(),
        },
        Message::LogRecord {
            source: "nim".into(),
            level: Level::Warn,
            unix_ns: 5,
            target: "t".into(),
            message: "m".into(),
        },
        Message::LogRecord {
            source: "a".into(),
            level: Level::Info,
            unix_ns: 5,
            target: "t".into(),
            message: "m".into(),
        },
        Message::LogRecord {
            source: "a".into(),
            level: Level::Debug,
            unix_ns: 5,
            target: "t".into(),
            message: "m".into(),
        },
        Message::Request {
            id: 42,
            target: "tpm".into(),
            operation: "read-pcrs".into(),
            version: 1,
            payload: vec![0x80, 0x01, 0, 0, 0, 10],
        },
        response(Status::Ok),
        response(Status::NoSuchOperation),
        response(Status::WrongVersion),
        response(Status::Denied),
        response(Status::NoSuchTarget),
        response(Status::BadRequest),
        response(Status::Failed),
        response(Status::Busy),
        Message::Denied {
            operation: Operation::Publish,
            topic: "x".into(),
            reason: DenyReason::NotGranted,
        },
        Message::Denied {
            operation: Operation::Delete,
            topic: "x".into(),
            reason: DenyReason::TableFull,
        },
        Message::Denied {
            operation: Operation::Subscribe,
            topic: "x".into(),
            reason: DenyReason::NotGranted,
        },
        Message::Denied {
            operation: Operation::Synchronized,
            topic: "x".into(),
            reason: DenyReason::NotGranted,
        },
    ]
}

fn response(status: Status) -> Message {
    Message::Response {
        id: u32::MAX,
        status,
        payload: vec![1, 2],
    }
}

/// All samples encoded back to back.
pub fn sample_stream() -> Vec<u8> {
    let mut out = Vec::new();
    for m in samples() {
        m.encode(&Limits::DEFAULT, &mut out).unwrap();
    }
    out
}
