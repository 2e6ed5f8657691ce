use alloc::vec;
use alloc::vec::Vec;

use wirebytes::testing::XorShift;

use super::*;

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let n = encode_query(id, name, &mut buf).expect("query");
    buf[..n].to_vec()
}

/// A response to `query(id, name)` with the given answer records (already
/// encoded), flags and rcode.
fn response(id: u16, name: &str, flags: u16, answers: &[Vec<u8>]) -> Vec<u8> {
    let mut msg = query(id, name);
    msg[2..4].copy_from_slice(&flags.to_be_bytes());
    msg[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    for a in answers {
        msg.extend_from_slice(a);
    }
    msg
}

/// A record whose name is a pointer to the question name (offset 12).
fn record(rtype: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
    let mut r = vec![0xc0, 12];
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&(data.len() as u16).to_be_bytes());
    r.extend_from_slice(data);
    r
}

const OK: u16 = 0x8180;

#[test]
fn query_bytes_are_exact() {
    assert_eq!(
        query(0x1234, "controller.example"),
        [
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 10, b'c', b'o', b'n', b't', b'r', b'o',
            b'l', b'l', b'e', b'r', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1
        ]
    );
    assert_eq!(query(1, "a.b."), query(1, "a.b"));
}

#[test]
fn bad_names_and_small_buffers_are_refused() {
    let mut buf = [0u8; 512];
    for name in [
        "",
        ".",
        "a..b",
        "a b",
        "-\n",
        &"x".repeat(64),
        &"a.".repeat(128),
    ] {
        assert_eq!(
            encode_query(1, name, &mut buf),
            Err(DnsError::BadName),
            "{name:?}"
        );
    }
    assert_eq!(
        encode_query(1, "example.com", &mut [0u8; 20]),
        Err(DnsError::BufferTooSmall)
    );
}

#[test]
fn a_records_are_collected_across_a_cname() {
    // CNAME to a name elsewhere in the message, then two A records.
    let cname = record(5, 60, &[3, b'w', b'w', b'w', 0xc0, 12]);
    let a1 = record(1, 300, &[10, 0, 2, 100]);
    let a2 = record(1, 30, &[10, 0, 2, 101]);
    let msg = response(7, "example.com", OK, &[cname, a1, a2]);
    let answer = parse_response(&msg, 7).expect("answer");
    assert_eq!(
        answer.addresses,
        [Ipv4Addr::new(10, 0, 2, 100), Ipv4Addr::new(10, 0, 2, 101)]
    );
    assert_eq!(answer.ttl, 30);
}

#[test]
fn server_verdicts_are_distinct_errors() {
    assert_eq!(
        parse_response(&response(7, "x.y", 0x8183, &[]), 7),
        Err(DnsError::NameNotFound)
    );
    assert_eq!(
        parse_response(&response(7, "x.y", 0x8182, &[]), 7),
        Err(DnsError::ServerFailure(2))
    );
    assert_eq!(
        parse_response(&response(7, "x.y", 0x8380, &[]), 7),
        Err(DnsError::TruncatedByServer)
    );
    assert_eq!(
        parse_response(&response(8, "x.y", OK, &[]), 7),
        Err(DnsError::NotOurResponse)
    );
    // A query (QR clear) is not a response.
    assert_eq!(
        parse_response(&query(7, "x.y"), 7),
        Err(DnsError::NotOurResponse)
    );
    let empty = parse_response(&response(7, "x.y", OK, &[]), 7).expect("empty answer");
    assert!(empty.addresses.is_empty());
}

#[test]
fn hostile_messages_are_refused() {
    let good = response(7, "example.com", OK, &[record(1, 1, &[1, 2, 3, 4])]);
    // Every truncation.
    for len in 0..good.len() {
        assert!(parse_response(&good[..len], 7).is_err(), "length {len}");
    }
    // A record with 5 bytes of data.
    let bad = response(7, "example.com", OK, &[record(1, 1, &[1, 2, 3, 4, 5])]);
    assert_eq!(parse_response(&bad, 7), Err(DnsError::BadRecord));
    // A pointer to itself and a forward pointer.
    let mut looped = response(7, "a.b", OK, &[]);
    looped[6..8].copy_from_slice(&1u16.to_be_bytes());
    let at = looped.len() as u16;
    looped.extend_from_slice(&(0xc000 | at).to_be_bytes());
    looped.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]);
    assert_eq!(parse_response(&looped, 7), Err(DnsError::BadCompression));
    let mut forward = looped.clone();
    let last = forward.len() as u16;
    let at = at as usize;
    forward[at..at + 2].copy_from_slice(&(0xc000 | last).to_be_bytes());
    assert_eq!(parse_response(&forward, 7), Err(DnsError::BadCompression));
    // Reserved label types.
    let mut reserved = good.clone();
    reserved[12] = 0x40;
    assert_eq!(parse_response(&reserved, 7), Err(DnsError::BadCompression));
}

#[test]
fn random_and_mutated_messages_never_panic() {
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.next_u64();
    let good = response(
        7,
        "example.com",
        OK,
        &[
            record(5, 60, &[3, b'w', b'w', b'w', 0xc0, 12]),
            record(1, 1, &[1, 2, 3, 4]),
        ],
    );
    for i in 0..20_000 {
        let mut msg = if i % 2 == 0 {
            good.clone()
        } else {
            (0..next() % 200).map(|_| next() as u8).collect()
        };
        for _ in 0..1 + next() % 4 {
            if msg.is_empty() {
                break;
            }
            let at = (next() as usize) % msg.len();
            msg[at] = next() as u8;
        }
        let _ = parse_response(&msg, 7);
        let _ = Header::parse(&msg);
    }
}
