//! Decoding and verifying an AuthContainer from hostile bytes must never
//! panic; whatever decodes must re-encode and decode to the same value.
#![no_main]

use eve_proto::Message;
use eve_proto::auth::AuthContainer;
use eve_proto::sign::{self, TrustedSigner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(container) = AuthContainer::decode(data) else {
        return;
    };
    let again = AuthContainer::decode(container.encode_to_vec().as_slice()).expect("re-decode");
    assert_eq!(again, container);
    // Exercise the verify path with a fixed key; the result does not matter.
    let key = p256_key();
    let trusted = TrustedSigner::new(&key, [0; 32]);
    let _ = sign::verify_auth_container(&container, &trusted);
    let _ = TrustedSigner::from_embedded_sender_cert(&container);
});

fn p256_key() -> eve_proto::p256::PublicKey {
    use eve_proto::sign::Signer;
    eve_proto::sign::SoftwareSigner::from_bytes(&[1; 32])
        .expect("valid scalar")
        .public_key()
}
