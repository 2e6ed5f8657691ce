//! Decoding an EdgeDevConfig (and a ConfigResponse wrapping one) from hostile
//! bytes must never panic; decoded values must survive a round trip.
#![no_main]

use eve_proto::Message;
use eve_proto::config::{ConfigResponse, EdgeDevConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = EdgeDevConfig::decode(data) {
        let again = EdgeDevConfig::decode(cfg.encode_to_vec().as_slice()).expect("re-decode");
        assert_eq!(again, cfg);
    }
    let _ = ConfigResponse::decode(data);
});
