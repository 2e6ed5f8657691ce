//! The wire format: layouts, round trips, stream decoding, limits and
//! hostile input.

mod common;

use common::{Prng, sample_stream, samples};
use evebus::frame::{HEADER_LEN, MAGIC};
use evebus::{Decoder, Field, Frame, Kind, Limits, Message, WireError};

#[test]
fn every_message_round_trips_through_emit_and_parse() {
    let limits = Limits::DEFAULT;
    let mut kinds = std::collections::BTreeSet::new();
    for message in samples() {
        let mut buf = vec![0; message.buffer_len()];
        assert_eq!(message.emit(&limits, &mut buf), Ok(buf.len()));
        let frame = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(frame.kind(), message.kind().code());
        assert_eq!(frame.frame_len(), buf.len());
        assert_eq!(Message::parse(&frame, &limits), Ok(message.clone()));
        kinds.insert(message.kind().code());
    }
    assert_eq!(kinds.len(), 14, "a sample of every kind");
}

#[test]
fn heartbeat_has_the_documented_layout() {
    let mut out = Vec::new();
    Message::Heartbeat {
        sequence: 0x0102_0304_0506_0708,
    }
    .encode(&Limits::DEFAULT, &mut out)
    .unwrap();
    assert_eq!(out, [b'E', b'B', 1, 9, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn publish_has_the_documented_layout() {
    let mut out = Vec::new();
    Message::Publish {
        topic: "ab".into(),
        key: "k".into(),
        value: vec![0xff],
    }
    .encode(&Limits::DEFAULT, &mut out)
    .unwrap();
    let body = [0, 2, b'a', b'b', 0, 1, b'k', 0, 0, 0, 1, 0xff];
    assert_eq!(
        out[..HEADER_LEN],
        [b'E', b'B', 1, 5, 0, 0, 0, body.len() as u8]
    );
    assert_eq!(out[HEADER_LEN..], body);
}

#[test]
fn stream_decodes_byte_by_byte_and_all_at_once() {
    let stream = sample_stream();
    for chunk_len in [1, 2, 3, 7, 8, 9, 64, 1000, stream.len()] {
        let mut decoder = Decoder::new(Limits::DEFAULT);
        let mut out = Vec::new();
        for chunk in stream.chunks(chunk_len) {
            decoder.feed(chunk, |m| out.push(m)).unwrap();
        }
        assert_eq!(out, samples(), "chunks of {chunk_len}");
        assert_eq!(decoder.buffered(), 0);
    }
}

#[test]
fn decode_returns_one_message_and_what_it_consumed() {
    let stream = sample_stream();
    let mut decoder = Decoder::new(Limits::DEFAULT);
    let first_len = samples()[0].buffer_len();
    let (consumed, message) = decoder.decode(&stream).unwrap();
    assert_eq!(consumed, first_len);
    assert_eq!(message, Some(samples()[0].clone()));
}

#[test]
fn random_chunking_yields_the_same_messages() {
    let stream = sample_stream();
    let mut rng = Prng::new(7);
    for _ in 0..300 {
        let mut decoder = Decoder::new(Limits::DEFAULT);
        let mut out = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(200));
            decoder.feed(&rest[..n], |m| out.push(m)).unwrap();
            rest = &rest[n..];
        }
        assert_eq!(out, samples());
    }
}

#[test]
fn garbage_fails_at_the_header_and_the_decoder_stays_failed() {
    let mut decoder = Decoder::new(Limits::DEFAULT);
    assert_eq!(
        decoder.feed(b"GET / HTTP/1.1\r\n", |_| panic!("no message")),
        Err(WireError::BadMagic)
    );
    // Valid bytes after the error are refused too: the framing is lost.
    assert_eq!(
        decoder.feed(&sample_stream(), |_| panic!("no message")),
        Err(WireError::BadMagic)
    );
    decoder.reset();
    let mut n = 0;
    decoder.feed(&sample_stream(), |_| n += 1).unwrap();
    assert_eq!(n, samples().len());
}

#[test]
fn header_errors_are_distinguished() {
    let check = |bytes: &[u8]| Frame::new_checked(bytes).map(|_| ());
    assert_eq!(check(&MAGIC), Err(WireError::Truncated));
    assert_eq!(check(b"EB\x01\x09\0\0\0\x08\0"), Err(WireError::Truncated));
    assert_eq!(check(b"EX\x01\x09\0\0\0\0"), Err(WireError::BadMagic));
    assert_eq!(
        check(b"EB\x02\x09\0\0\0\0"),
        Err(WireError::UnsupportedVersion(2))
    );
    let unknown = Frame::new_checked(&b"EB\x01\x63\0\0\0\0"[..]).unwrap();
    assert_eq!(
        Message::parse(&unknown, &Limits::DEFAULT),
        Err(WireError::UnknownKind(0x63))
    );
}

#[test]
fn trailing_bytes_and_unknown_codes_are_refused() {
    let mut frame = Vec::new();
    Message::Heartbeat { sequence: 1 }
        .encode(&Limits::DEFAULT, &mut frame)
        .unwrap();
    frame[7] += 1;
    frame.push(0);
    assert_eq!(
        Message::parse(&Frame::new_checked(&frame[..]).unwrap(), &Limits::DEFAULT),
        Err(WireError::TrailingBytes)
    );
    let refused = [b'E', b'B', 1, Kind::Refused.code(), 0, 0, 0, 1, 99];
    assert_eq!(
        Message::parse(&Frame::new_checked(&refused[..]).unwrap(), &Limits::DEFAULT),
        Err(WireError::InvalidField(Field::RefuseReason))
    );
}

#[test]
fn frame_limit_is_enforced_on_both_sides() {
    let limits = Limits {
        max_frame_len: 100,
        ..Limits::DEFAULT
    };
    let fits = Message::Publish {
        topic: "t".into(),
        key: "k".into(),
        value: vec![0; 100 - HEADER_LEN - 3 - 3 - 4],
    };
    assert_eq!(fits.buffer_len(), 100);
    let mut out = Vec::new();
    fits.encode(&limits, &mut out).unwrap();
    let too_big = Message::Publish {
        topic: "t".into(),
        key: "k".into(),
        value: vec![0; 100 - HEADER_LEN - 3 - 3 - 4 + 1],
    };
    assert_eq!(
        too_big.encode(&limits, &mut out),
        Err(WireError::FrameTooLarge)
    );
    assert_eq!(out.len(), 100, "a failed encode appends nothing");

    // The decoder refuses an oversized frame from its header alone.
    let mut big = Vec::new();
    too_big.encode(&Limits::DEFAULT, &mut big).unwrap();
    let mut decoder = Decoder::new(limits);
    assert_eq!(
        decoder.decode(&big[..HEADER_LEN]),
        Err(WireError::FrameTooLarge)
    );
}

#[test]
fn decoder_memory_is_bounded_by_the_frame_limit() {
    // A header announcing 4 GiB is refused before any body byte.
    let mut decoder = Decoder::new(Limits::DEFAULT);
    let huge = [b'E', b'B', 1, Kind::Publish.code(), 0xff, 0xff, 0xff, 0xff];
    assert_eq!(decoder.decode(&huge), Err(WireError::FrameTooLarge));
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn field_rules_are_enforced_on_emit_and_parse() {
    let limits = Limits::DEFAULT;
    let bad: Vec<(Message, Field)> = vec![
        (
            Message::Hello {
                service: "has space".into(),
                protocol: 1,
                boot_counter: 0,
            },
            Field::Service,
        ),
        (
            Message::Subscribe {
                topic: String::new(),
            },
            Field::Topic,
        ),
        (
            Message::Subscribe {
                topic: "a\nb".into(),
            },
            Field::Topic,
        ),
        (
            Message::Subscribe {
                topic: "t".repeat(129),
            },
            Field::Topic,
        ),
        (
            Message::Delete {
                topic: "t".into(),
                key: "with space".into(),
            },
            Field::Key,
        ),
        (
            Message::Delete {
                topic: "t".into(),
                key: "k".repeat(256),
            },
            Field::Key,
        ),
        (
            Message::Request {
                id: 1,
                target: "tpm/x".into(),
                operation: "sign".into(),
                version: 1,
                payload: vec![],
            },
            Field::Target,
        ),
        (
            Message::Request {
                id: 1,
                target: "tpm".into(),
                operation: "Sign".into(),
                version: 1,
                payload: vec![],
            },
            Field::OperationName,
        ),
        (
            Message::Log {
                level: evebus::Level::Info,
                unix_ns: 0,
                target: "\x1b[31m".into(),
                message: String::new(),
            },
            Field::LogTarget,
        ),
        (
            Message::Log {
                level: evebus::Level::Info,
                unix_ns: 0,
                target: String::new(),
                message: "m".repeat(limits.max_log_message_len + 1),
            },
            Field::LogMessage,
        ),
        (
            Message::Update {
                change: evebus::Change::Deleted,
                topic: "t".into(),
                key: "k".into(),
                value: vec![1],
            },
            Field::Value,
        ),
    ];
    for (message, field) in bad {
        let mut out = Vec::new();
        assert_eq!(
            message.encode(&limits, &mut out),
            Err(WireError::InvalidField(field)),
            "{message:?}"
        );
        // Emit it with generous limits and no checks to see that the
        // receiving side refuses it too.
        let raw = raw_frame(&message);
        assert_eq!(
            Message::parse(&Frame::new_checked(&raw[..]).unwrap(), &limits),
            Err(WireError::InvalidField(field))
        );
    }
}

#[test]
fn non_utf8_strings_are_refused() {
    let frame = [
        b'E',
        b'B',
        1,
        Kind::Subscribe.code(),
        0,
        0,
        0,
        3,
        0,
        1,
        0xff,
    ];
    assert_eq!(
        Message::parse(&Frame::new_checked(&frame[..]).unwrap(), &Limits::DEFAULT),
        Err(WireError::BadUtf8)
    );
}

#[test]
fn emit_into_a_short_buffer_fails_cleanly() {
    let message = &samples()[0];
    let mut buf = vec![0; message.buffer_len() - 1];
    assert_eq!(
        message.emit(&Limits::DEFAULT, &mut buf),
        Err(WireError::BufferTooSmall)
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Prng::new(1);
    for _ in 0..5000 {
        let len = rng.below(300);
        let mut bytes = rng.bytes(len);
        // Half the cases get a valid header so bodies are exercised.
        if rng.below(2) == 0 && bytes.len() >= HEADER_LEN {
            bytes[..2].copy_from_slice(&MAGIC);
            bytes[2] = 1;
            bytes[3] = 1 + rng.below(14) as u8;
            let body = (bytes.len() - HEADER_LEN) as u32;
            bytes[4..8].copy_from_slice(&body.to_be_bytes());
        }
        if let Ok(frame) = Frame::new_checked(&bytes[..]) {
            let _ = Message::parse(&frame, &Limits::DEFAULT);
        }
        let mut decoder = Decoder::new(Limits::DEFAULT);
        let _ = decoder.feed(&bytes, |_| {});
    }
}

#[test]
fn mutated_frames_never_panic_and_valid_results_reencode() {
    let stream = sample_stream();
    let limits = Limits::DEFAULT;
    let mut rng = Prng::new(99);
    let mut parsed = 0;
    for _ in 0..5000 {
        let mut bytes = stream.clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(3) {
                0 => {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next_u64() as u8;
                }
                _ => {
                    let cut = rng.below(bytes.len());
                    bytes.truncate(cut.max(1));
                }
            }
        }
        let mut decoder = Decoder::new(limits);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(97));
            let result = decoder.feed(&rest[..n], |m| {
                // Whatever parses must be valid and encode back.
                let mut out = Vec::new();
                m.encode(&limits, &mut out).unwrap();
                parsed += 1;
            });
            if result.is_err() {
                break;
            }
            rest = &rest[n..];
        }
    }
    assert!(parsed > 0);
}

/// Encodes without validation, as a hostile peer could.
fn raw_frame(message: &Message) -> Vec<u8> {
    let body: Vec<u8> = match message {
        Message::Hello {
            service,
            protocol,
            boot_counter,
        } => [
            str_field(service),
            protocol.to_be_bytes().to_vec(),
            boot_counter.to_be_bytes().to_vec(),
        ]
        .concat(),
        Message::Subscribe { topic } => str_field(topic),
        Message::Delete { topic, key } => [str_field(topic), str_field(key)].concat(),
        Message::Request {
            id,
            target,
            operation,
            version,
            payload,
        } => [
            id.to_be_bytes().to_vec(),
            str_field(target),
            str_field(operation),
            version.to_be_bytes().to_vec(),
            bytes_field(payload),
        ]
        .concat(),
        Message::Log {
            level,
            unix_ns,
            target,
            message,
        } => [
            vec![level.code()],
            unix_ns.to_be_bytes().to_vec(),
            str_field(target),
            str_field(message),
        ]
        .concat(),
        Message::Update {
            change,
            topic,
            key,
            value,
        } => [
            vec![change.code()],
            str_field(topic),
            str_field(key),
            bytes_field(value),
        ]
        .concat(),
        other => panic!("raw_frame does not cover {other:?}"),
    };
    let mut frame = vec![b'E', b'B', 1, message.kind().code()];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

fn str_field(s: &str) -> Vec<u8> {
    [
        (s.len() as u16).to_be_bytes().to_vec(),
        s.as_bytes().to_vec(),
    ]
    .concat()
}

fn bytes_field(b: &[u8]) -> Vec<u8> {
    [(b.len() as u32).to_be_bytes().to_vec(), b.to_vec()].concat()
}
