//! Hostile bytes never panic: mutated keys, algorithm identifiers and
//! signatures are refused or, rarely, still valid, but always answered.

use der::{Decode, Encode};
use p256::pkcs8::EncodePublicKey;
use sigverify::testing::{self, Digest, Padding};
use sigverify::{Hash, PublicKey, Scheme, x509_scheme};
use spki::AlgorithmIdentifierOwned;
use wirebytes::testing::XorShift;

fn mutate(rng: &mut XorShift, bytes: &mut Vec<u8>) {
    match rng.below(4) {
        0 if !bytes.is_empty() => {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
        }
        1 if !bytes.is_empty() => {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next_u64() as u8;
        }
        2 => bytes.truncate(rng.below(bytes.len() + 1)),
        _ => {
            let at = rng.below(bytes.len() + 1);
            bytes.insert(at, rng.next_u64() as u8);
        }
    }
}

#[test]
fn mutated_keys_algorithms_and_signatures_never_panic() {
    let rsa_pem = testing::rsa_key_pem(2048, 0);
    let spkis = [
        testing::spki_der(&rsa_pem),
        p256::ecdsa::SigningKey::from_slice(&[3; 32])
            .unwrap()
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec(),
    ];
    let algorithms: Vec<Vec<u8>> = [
        testing::rsa_algorithm(Digest::Sha256, Padding::Pss { salt: 32 }),
        testing::rsa_algorithm(Digest::Sha384, Padding::Pkcs1),
    ]
    .iter()
    .map(|a| a.to_der().unwrap())
    .collect();
    let message = b"hostile";
    let signature = testing::sign(
        &rsa_pem,
        Digest::Sha256,
        Some(Padding::Pss { salt: 32 }),
        message,
    );
    let good = PublicKey::from_spki_der(&spkis[0]).unwrap();
    let mut rng = XorShift::new(0x5157_7e21);
    for round in 0..3000 {
        let mut spki = spkis[round % spkis.len()].clone();
        let mut alg = algorithms[round % algorithms.len()].clone();
        let mut sig = signature.clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut rng, &mut spki);
            mutate(&mut rng, &mut alg);
            mutate(&mut rng, &mut sig);
        }
        if let Ok(key) = PublicKey::from_spki_der(&spki) {
            for scheme in [
                Scheme::RsaPss(Hash::Sha256),
                Scheme::RsaPkcs1(Hash::Sha512),
                Scheme::EcdsaDer(Hash::Sha256),
                Scheme::EcdsaFixed(Hash::Sha384),
                Scheme::Ed25519,
            ] {
                let _ = key.verify(scheme, message, &sig);
            }
        }
        if let Ok(alg) = AlgorithmIdentifierOwned::from_der(&alg) {
            let _ = x509_scheme(&alg);
        }
        assert!(
            good.verify(Scheme::RsaPss(Hash::Sha256), message, &sig)
                .is_err()
                || sig == signature
        );
    }
}
