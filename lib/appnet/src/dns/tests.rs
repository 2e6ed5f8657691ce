use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use wirebytes::testing::XorShift;

use core::net::Ipv4Addr;

use super::wire::*;

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

#[test]
fn reads_a_query_and_answers_it() {
    let msg = query(7, "App1.Local", TYPE_A);
    let q = parse_query(&msg).unwrap();
    assert_eq!(
        (q.id, q.name.as_str(), q.qtype, q.qclass),
        (7, "app1.local", TYPE_A, 1)
    );
    let answer = answer(&q, &[Ipv4Addr::new(10, 1, 0, 2)], 0);
    let learned = parse_answer(&answer).unwrap();
    assert_eq!(learned.id, 7);
    assert_eq!(learned.qname, "app1.local");
    assert_eq!(learned.addrs, vec![Ipv4Addr::new(10, 1, 0, 2)]);
    assert!(same_question(&q, &answer));
    assert!(!same_question(
        &parse_query(&query(7, "other", TYPE_A)).unwrap(),
        &answer
    ));
    // An answer is not a query; a query with two questions is not ours.
    assert_eq!(parse_query(&answer), Err(DnsError::NotAQuery));
    let mut two = msg.clone();
    two[5] = 2;
    assert_eq!(parse_query(&two), Err(DnsError::NotAQuery));
}

#[test]
fn learns_every_name_of_a_cname_chain() {
    let mut msg = query(9, "www.example.org", TYPE_A);
    msg[2] |= 0x80;
    msg[7] = 2;
    // www.example.org CNAME cdn.net (name at 12), cdn.net A 198.51.100.7
    msg.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60]);
    let target_at = msg.len() + 2;
    msg.extend_from_slice(&[0, 9, 3, b'c', b'd', b'n', 3, b'n', b'e', b't', 0]);
    msg.extend_from_slice(&[
        0xc0,
        target_at as u8,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
        60,
        0,
        4,
        198,
        51,
        100,
        7,
    ]);
    let learned = parse_answer(&msg).unwrap();
    assert_eq!(
        learned.names,
        vec![String::from("www.example.org"), String::from("cdn.net")]
    );
    assert_eq!(learned.addrs, vec![Ipv4Addr::new(198, 51, 100, 7)]);
}

#[test]
fn refuses_forward_and_looping_pointers() {
    let mut msg = query(1, "a", TYPE_A);
    msg[2] |= 0x80;
    msg[7] = 1;
    let at = msg.len();
    // A record whose owner name points to itself.
    msg.extend_from_slice(&[0xc0, at as u8, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]);
    assert_eq!(parse_answer(&msg), Err(DnsError::BadName));
    let mut forward = query(1, "a", TYPE_A);
    forward[12] = 0xc0;
    forward[13] = 40;
    assert_eq!(parse_query(&forward), Err(DnsError::BadName));
}

#[test]
fn an_error_answer_needs_only_a_header() {
    let mut msg = query(0x1234, "x", TYPE_A);
    msg.truncate(14);
    assert!(parse_query(&msg).is_err());
    let answer = header_only_error(&msg, RCODE_FORMERR).unwrap();
    assert_eq!(&answer[..2], &[0x12, 0x34]);
    assert_eq!(answer[3] & 0xf, RCODE_FORMERR);
    assert_eq!(answer.len(), HEADER_LEN);
}

#[test]
fn hostile_messages_never_panic() {
    let mut rng = XorShift::new(7);
    let seed = {
        let mut m = query(3, "www.example.org", TYPE_A);
        m[2] |= 0x80;
        m[7] = 1;
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]);
        m
    };
    for round in 0..20_000 {
        let mut msg = if round % 2 == 0 {
            seed.clone()
        } else {
            let mut random = vec![0u8; rng.below(300)];
            rng.fill(&mut random);
            random
        };
        for _ in 0..rng.below(3) {
            if !msg.is_empty() {
                let at = rng.below(msg.len());
                msg[at] = rng.next_u64() as u8;
            }
        }
        msg.truncate(rng.below(msg.len() + 1));
        let _ = parse_answer(&msg);
        if let Ok(q) = parse_query(&msg) {
            let _ = same_question(&q, &msg);
            let _ = answer(&q, &[Ipv4Addr::LOCALHOST], 0);
        }
        let _ = header_only_error(&msg, RCODE_REFUSED);
    }
}
