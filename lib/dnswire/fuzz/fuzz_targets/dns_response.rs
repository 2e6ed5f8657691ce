//! A DNS answer from the network: parsing must never panic, and what it
//! returns must be consistent with the message. The query ID is taken from
//! the message itself, so the fuzzer does not have to guess it.
#![no_main]

use dnswire::{Header, encode_query, parse_response, valid_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = Header::parse(data).map_or(0, |h| h.id);
    if let Ok(answer) = parse_response(data, id) {
        let header = Header::parse(data).expect("a parsed answer has a header");
        assert!(answer.addresses.len() <= usize::from(header.answers));
        if answer.addresses.is_empty() {
            assert_eq!(answer.ttl, 0);
        }
    }
    // The same bytes as a name to ask for: a valid name always encodes.
    if let Ok(name) = core::str::from_utf8(data) {
        let mut buf = [0u8; 512];
        match encode_query(id, name, &mut buf) {
            Ok(len) => assert!(valid_name(name) && len <= buf.len()),
            Err(_) => assert!(!valid_name(name)),
        }
    }
});
