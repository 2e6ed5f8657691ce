use alloc::vec;
use alloc::vec::Vec;

use crate::*;

fn sample_requests() -> Vec<Vec<u8>> {
    let digest = [0x5a; DIGEST_LEN];
    let nonce = [7u8; 32];
    let selection = PcrSelection::from_indices(&[0, 1, 7, 23]).unwrap();
    [
        RequestRepr::CreateDeviceKey,
        RequestRepr::DevicePublicKey,
        RequestRepr::SignDigest { digest: &digest },
        RequestRepr::ReadPcrs {
            bank: PcrBank::Sha256,
            selection,
        },
        RequestRepr::Quote {
            nonce: &nonce,
            bank: PcrBank::Sha256,
            selection,
        },
        RequestRepr::ReadEkCert,
    ]
    .iter()
    .map(|r| r.to_vec().unwrap())
    .collect()
}

fn sample_responses() -> Vec<Vec<u8>> {
    let mut key = [0x11u8; PUBLIC_KEY_LEN];
    key[0] = 0x04;
    let sig = [0x22u8; SIGNATURE_LEN];
    let selection = PcrSelection::from_bits(0b1000_0011).unwrap();
    let digests = [0x33u8; 3 * 32];
    let pcrs = PcrValues::new(PcrBank::Sha256, selection, &digests).unwrap();
    let attest = [0x44u8; 129];
    let cert = [0x30u8, 0x03, 0x02, 0x01, 0x01];
    [
        ResponseRepr::Failure(Failure::Denied),
        ResponseRepr::Failure(Failure::Tpm(0x18b)),
        ResponseRepr::PublicKey(&key),
        ResponseRepr::Signature(&sig),
        ResponseRepr::Pcrs(pcrs),
        ResponseRepr::Quote {
            attest: &attest,
            signature: &sig,
            attestation_key: &key,
            pcrs,
        },
        ResponseRepr::EkCert(&cert),
    ]
    .iter()
    .map(|r| r.to_vec().unwrap())
    .collect()
}

#[test]
fn requests_round_trip() {
    let digest = [9u8; DIGEST_LEN];
    let encoded = RequestRepr::SignDigest { digest: &digest }
        .to_vec()
        .unwrap();
    assert_eq!(encoded.len(), 2 + DIGEST_LEN);
    assert_eq!(&encoded[..2], &[WIRE_VERSION, Op::SignDigest.code()]);
    assert_eq!(
        RequestRepr::from_bytes(&encoded),
        Ok(RequestRepr::SignDigest { digest: &digest })
    );
    let view = Request::new_checked(&encoded[..]).unwrap();
    assert_eq!(view.op(), Op::SignDigest);
    assert_eq!(view.digest(), Some(&digest[..]));
    assert_eq!(view.nonce(), None);

    let nonce = [1u8, 2, 3];
    let selection = PcrSelection::from_indices(&[0, 15]).unwrap();
    let quote = RequestRepr::Quote {
        nonce: &nonce,
        bank: PcrBank::Sha256,
        selection,
    };
    let encoded = quote.to_vec().unwrap();
    let view = Request::new_checked(&encoded[..]).unwrap();
    assert_eq!(view.nonce(), Some(&nonce[..]));
    assert_eq!(view.bank_id(), Some(0x000b));
    assert_eq!(view.selection_bits(), Some(0x8001));
    assert_eq!(RequestRepr::parse(&view), Ok(quote));

    for bytes in sample_requests() {
        let repr = RequestRepr::from_bytes(&bytes).unwrap();
        assert_eq!(repr.to_vec().unwrap(), bytes);
        assert_eq!(repr.buffer_len(), bytes.len());
    }
}

#[test]
fn responses_round_trip() {
    for bytes in sample_responses() {
        let repr = ResponseRepr::from_bytes(&bytes).unwrap();
        assert_eq!(repr.to_vec().unwrap(), bytes, "{repr:?}");
        assert_eq!(repr.buffer_len(), bytes.len());
        let view = Response::new_checked(&bytes[..]).unwrap();
        assert_eq!(view.is_failure(), matches!(repr, ResponseRepr::Failure(_)));
    }
    let bytes = ResponseRepr::Failure(Failure::Tpm(0x922)).to_vec().unwrap();
    assert_eq!(
        ResponseRepr::from_bytes(&bytes),
        Ok(ResponseRepr::Failure(Failure::Tpm(0x922)))
    );
}

#[test]
fn pcr_values_are_indexed_by_pcr() {
    let selection = PcrSelection::from_indices(&[2, 9]).unwrap();
    let mut digests = vec![0u8; 64];
    digests[32..].fill(9);
    let values = PcrValues::new(PcrBank::Sha256, selection, &digests).unwrap();
    assert_eq!(values.get(2), Some(&[0u8; 32][..]));
    assert_eq!(values.get(9), Some(&[9u8; 32][..]));
    assert_eq!(values.get(3), None);
    assert_eq!(values.iter().map(|(i, _)| i).collect::<Vec<_>>(), [2, 9]);
    assert_eq!(
        PcrValues::new(PcrBank::Sha256, selection, &digests[1..]),
        Err(WireError::BadLength)
    );
}

#[test]
fn selections_are_bounded() {
    assert_eq!(PcrSelection::from_bits(0), Err(WireError::BadSelection));
    assert_eq!(
        PcrSelection::from_bits(1 << 24),
        Err(WireError::BadSelection)
    );
    assert_eq!(
        PcrSelection::from_indices(&[24]),
        Err(WireError::BadSelection)
    );
    assert_eq!(
        PcrSelection::from_indices(&[]),
        Err(WireError::BadSelection)
    );
    let all = PcrSelection::from_bits(0x00ff_ffff).unwrap();
    assert_eq!(all.count(), 24);
    assert!(all.contains(23) && !all.contains(24));
}

#[test]
fn bad_requests_are_refused() {
    let mut bytes = RequestRepr::DevicePublicKey.to_vec().unwrap();
    bytes[0] = 2;
    assert_eq!(
        RequestRepr::from_bytes(&bytes),
        Err(WireError::UnsupportedVersion(2))
    );
    assert_eq!(
        RequestRepr::from_bytes(&[WIRE_VERSION, 99]),
        Err(WireError::UnknownKind(99))
    );
    assert_eq!(
        RequestRepr::from_bytes(&[WIRE_VERSION, Op::CreateDeviceKey.code(), 0]),
        Err(WireError::TrailingBytes)
    );
    assert_eq!(
        RequestRepr::from_bytes(&[WIRE_VERSION, Op::SignDigest.code(), 1, 2]),
        Err(WireError::Truncated)
    );
    // SHA-1 bank.
    assert_eq!(
        RequestRepr::from_bytes(&[WIRE_VERSION, 4, 0, 4, 0, 0, 0, 1]),
        Err(WireError::UnsupportedBank(4))
    );
    // PCR 24 selected.
    assert_eq!(
        RequestRepr::from_bytes(&[WIRE_VERSION, 4, 0, 0x0b, 1, 0, 0, 0]),
        Err(WireError::BadSelection)
    );
    // Empty nonce, and a nonce longer than the limit.
    assert_eq!(
        RequestRepr::from_bytes(&[WIRE_VERSION, 5, 0, 0x0b, 0, 0, 0, 1, 0]),
        Err(WireError::BadNonce)
    );
    let mut long = vec![WIRE_VERSION, 5, 0, 0x0b, 0, 0, 0, 1, 65];
    long.extend_from_slice(&[0; 65]);
    assert_eq!(RequestRepr::from_bytes(&long), Err(WireError::BadNonce));
    // The nonce length says more than follows.
    assert_eq!(
        RequestRepr::from_bytes(&[WIRE_VERSION, 5, 0, 0x0b, 0, 0, 0, 1, 4, 1]),
        Err(WireError::Truncated)
    );
}

#[test]
fn bad_responses_are_refused() {
    // Unknown failure code; a detail on a failure that has none.
    assert_eq!(
        ResponseRepr::from_bytes(&[WIRE_VERSION, 0, 99, 0, 0, 0, 0]),
        Err(WireError::BadFailure)
    );
    assert_eq!(
        ResponseRepr::from_bytes(&[WIRE_VERSION, 0, 1, 0, 0, 0, 5]),
        Err(WireError::BadFailure)
    );
    // A compressed point.
    let mut key = vec![WIRE_VERSION, 1, 0x02];
    key.extend_from_slice(&[0; 64]);
    assert_eq!(ResponseRepr::from_bytes(&key), Err(WireError::BadPublicKey));
    // Empty certificate.
    assert_eq!(
        ResponseRepr::from_bytes(&[WIRE_VERSION, 5, 0, 0]),
        Err(WireError::BadLength)
    );
    // PCR values shorter than the selection needs.
    let mut pcrs = vec![WIRE_VERSION, 3, 0, 0x0b, 0, 0, 0, 3];
    pcrs.extend_from_slice(&[0; 63]);
    assert_eq!(ResponseRepr::from_bytes(&pcrs), Err(WireError::Truncated));
}

#[test]
fn emit_refuses_what_parse_would_refuse() {
    let empty: [u8; 0] = [];
    assert_eq!(
        RequestRepr::Quote {
            nonce: &empty,
            bank: PcrBank::Sha256,
            selection: PcrSelection::from_bits(1).unwrap(),
        }
        .to_vec(),
        Err(WireError::BadNonce)
    );
    assert_eq!(
        ResponseRepr::EkCert(&empty).to_vec(),
        Err(WireError::BadLength)
    );
    let compressed = [0x02u8; PUBLIC_KEY_LEN];
    assert_eq!(
        ResponseRepr::PublicKey(&compressed).to_vec(),
        Err(WireError::BadPublicKey)
    );
    let mut small = [0u8; 4];
    assert_eq!(
        RequestRepr::SignDigest {
            digest: &[0; DIGEST_LEN]
        }
        .emit(&mut small),
        Err(WireError::BufferTooSmall)
    );
}

#[test]
fn answers_match_operations() {
    let sig = [0u8; SIGNATURE_LEN];
    assert!(ResponseRepr::Signature(&sig).answers(Op::SignDigest));
    assert!(!ResponseRepr::Signature(&sig).answers(Op::Quote));
    assert!(ResponseRepr::Failure(Failure::Denied).answers(Op::Quote));
    let mut key = [0u8; PUBLIC_KEY_LEN];
    key[0] = 4;
    assert!(ResponseRepr::PublicKey(&key).answers(Op::CreateDeviceKey));
    assert!(ResponseRepr::PublicKey(&key).answers(Op::DevicePublicKey));
    assert!(!ResponseRepr::PublicKey(&key).answers(Op::ReadEkCert));
}

#[test]
fn random_and_mutated_messages_never_panic() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut seeds = sample_requests();
    seeds.extend(sample_responses());
    let mut parsed = 0usize;
    for i in 0..40_000 {
        let mut msg = if i % 3 == 0 {
            (0..next() % 300).map(|_| next() as u8).collect()
        } else {
            seeds[(next() as usize) % seeds.len()].clone()
        };
        for _ in 0..1 + next() % 4 {
            match next() % 3 {
                0 if !msg.is_empty() => {
                    let at = (next() as usize) % msg.len();
                    msg[at] = next() as u8;
                }
                1 => msg.truncate((next() as usize) % (msg.len() + 1)),
                _ => msg.push(next() as u8),
            }
        }
        // Whatever parses must encode back to the same bytes.
        if let Ok(repr) = RequestRepr::from_bytes(&msg) {
            assert_eq!(repr.to_vec().unwrap(), msg);
            parsed += 1;
        }
        if let Ok(repr) = ResponseRepr::from_bytes(&msg) {
            assert_eq!(repr.to_vec().unwrap(), msg);
            parsed += 1;
        }
        if let Ok(view) = Request::new_checked(&msg[..]) {
            let _ = (
                view.digest(),
                view.nonce(),
                view.bank_id(),
                view.selection_bits(),
            );
        }
        let _ = Response::new_checked(&msg[..]).map(|v| v.kind());
    }
    // The mutations must leave some messages valid, or this test exercises
    // only the refusal paths.
    assert!(parsed > 100, "only {parsed} mutated messages parsed");
}
