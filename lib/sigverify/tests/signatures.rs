//! Every scheme against signatures made elsewhere (OpenSSL for RSA, the
//! RustCrypto signers for ECDSA and Ed25519), and every refusal: weak and
//! oversized keys, SHA-1, out-of-range RSA signatures, mismatched keys.

use const_oid::ObjectIdentifier;
use der::asn1::{Any, BitString, UintRef};
use der::{Decode, Encode};
use p256::pkcs8::EncodePublicKey;
use sigverify::testing::{self, Digest, Padding};
use sigverify::{Hash, KeyKind, PublicKey, Scheme, VerifyError, x509_scheme};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

const MESSAGE: &[u8] = b"EVE controller says: config 42";

fn digest(hash: Hash) -> Digest {
    match hash {
        Hash::Sha256 => Digest::Sha256,
        Hash::Sha384 => Digest::Sha384,
        Hash::Sha512 => Digest::Sha512,
    }
}

fn rsa_key(bits: usize) -> (String, PublicKey) {
    let pem = testing::rsa_key_pem(bits, 0);
    let key = PublicKey::from_spki_der(&testing::spki_der(&pem)).expect("RSA key accepted");
    (pem, key)
}

#[test]
fn rsa_pkcs1_and_pss_signatures_verify_at_2048_3072_and_4096_bits() {
    for bits in [2048, 3072, 4096] {
        let (pem, key) = rsa_key(bits);
        assert_eq!(key.kind(), KeyKind::Rsa { bits });
        for hash in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
            let pkcs1 = testing::sign(&pem, digest(hash), Some(Padding::Pkcs1), MESSAGE);
            let pss = testing::sign(
                &pem,
                digest(hash),
                Some(Padding::Pss {
                    salt: hash.output_len(),
                }),
                MESSAGE,
            );
            assert_eq!(key.verify(Scheme::RsaPkcs1(hash), MESSAGE, &pkcs1), Ok(()));
            assert_eq!(key.verify(Scheme::RsaPss(hash), MESSAGE, &pss), Ok(()));
            // Another message, padding or hash does not verify.
            let other = b"EVE controller says: config 43";
            for (scheme, sig) in [
                (Scheme::RsaPkcs1(hash), &pkcs1),
                (Scheme::RsaPss(hash), &pss),
            ] {
                assert_eq!(
                    key.verify(scheme, other, sig),
                    Err(VerifyError::BadSignature)
                );
            }
            assert_eq!(
                key.verify(Scheme::RsaPss(hash), MESSAGE, &pkcs1),
                Err(VerifyError::BadSignature)
            );
            assert_eq!(
                key.verify(Scheme::RsaPkcs1(hash), MESSAGE, &pss),
                Err(VerifyError::BadSignature)
            );
            let wrong_hash = if hash == Hash::Sha256 {
                Hash::Sha384
            } else {
                Hash::Sha256
            };
            assert_eq!(
                key.verify(Scheme::RsaPkcs1(wrong_hash), MESSAGE, &pkcs1),
                Err(VerifyError::BadSignature)
            );
        }
    }
}

#[test]
fn pss_with_another_salt_length_is_refused() {
    // TLS 1.3 and Go's X.509 both require the salt to be as long as the
    // hash; OpenSSL's default for signing is the longest salt that fits.
    let (pem, key) = rsa_key(2048);
    for salt in [0, 20, 64] {
        let sig = testing::sign(&pem, Digest::Sha256, Some(Padding::Pss { salt }), MESSAGE);
        assert_eq!(
            key.verify(Scheme::RsaPss(Hash::Sha256), MESSAGE, &sig),
            Err(VerifyError::BadSignature),
            "salt {salt}"
        );
    }
}

/// `a + b` of two big-endian numbers, one byte longer than the longer.
fn add_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let len = a.len().max(b.len()) + 1;
    let mut out = vec![0u8; len];
    let mut carry = 0u16;
    for i in 0..len {
        let x = *a.iter().rev().nth(i).unwrap_or(&0) as u16;
        let y = *b.iter().rev().nth(i).unwrap_or(&0) as u16;
        let sum = x + y + carry;
        out[len - 1 - i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

fn modulus(key_pem: &str) -> Vec<u8> {
    let spki = testing::spki_der(key_pem);
    let spki: SubjectPublicKeyInfoOwned = der::Decode::from_der(&spki).unwrap();
    let rsa: rsa::pkcs1::RsaPublicKey =
        der::Decode::from_der(spki.subject_public_key.raw_bytes()).unwrap();
    rsa.modulus.as_bytes().to_vec()
}

#[test]
fn rsa_signatures_outside_the_modulus_or_of_the_wrong_length_are_refused() {
    let (pem, key) = rsa_key(2048);
    let n = modulus(&pem);
    // s + n is the same residue as s: it must still be refused. Find a
    // message whose signature leaves room for n below 2^2048.
    let mut checked = 0;
    for i in 0..64u8 {
        let message = [MESSAGE, &[i]].concat();
        for (scheme, padding) in [
            (Scheme::RsaPss(Hash::Sha256), Padding::Pss { salt: 32 }),
            (Scheme::RsaPkcs1(Hash::Sha256), Padding::Pkcs1),
        ] {
            let sig = testing::sign(&pem, Digest::Sha256, Some(padding), &message);
            assert_eq!(key.verify(scheme, &message, &sig), Ok(()));
            let shifted = add_be(&sig, &n);
            if shifted[0] != 0 {
                continue;
            }
            assert_eq!(
                key.verify(scheme, &message, &shifted[1..]),
                Err(VerifyError::BadSignature)
            );
            checked += 1;
        }
        if checked >= 2 {
            break;
        }
    }
    assert!(checked >= 2, "no signature below 2^2048 - n in 64 tries");
    let sig = testing::sign(&pem, Digest::Sha256, Some(Padding::Pkcs1), MESSAGE);
    for bad in [
        [&[0u8][..], &sig].concat(),
        sig[1..].to_vec(),
        n.clone(),
        vec![0xff; 256],
    ] {
        assert_eq!(
            key.verify(Scheme::RsaPkcs1(Hash::Sha256), MESSAGE, &bad),
            Err(VerifyError::BadSignature)
        );
    }
}

fn rsa_spki(modulus: &[u8], exponent: &[u8], params: Option<Any>) -> Vec<u8> {
    let key = rsa::pkcs1::RsaPublicKey {
        modulus: UintRef::new(modulus).unwrap(),
        public_exponent: UintRef::new(exponent).unwrap(),
    }
    .to_der()
    .unwrap();
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::RSA_ENCRYPTION,
            parameters: params,
        },
        subject_public_key: BitString::from_bytes(&key).unwrap(),
    }
    .to_der()
    .unwrap()
}

#[test]
fn weak_oversized_and_malformed_rsa_keys_are_refused() {
    for bits in [1024, 2047] {
        let pem = testing::rsa_key_pem(bits, 0);
        assert_eq!(
            PublicKey::from_spki_der(&testing::spki_der(&pem)),
            Err(VerifyError::WeakKey),
            "{bits} bits"
        );
    }
    let e = [1, 0, 1];
    let mut big = vec![0xc5; 513];
    big[0] = 0x01; // 4097 bits, odd
    assert_eq!(
        PublicKey::from_spki_der(&rsa_spki(&big, &e, Some(Any::null()))),
        Err(VerifyError::UnsupportedAlgorithm)
    );
    let mut even = vec![0xc5; 256];
    even[255] = 0xc4;
    assert_eq!(
        PublicKey::from_spki_der(&rsa_spki(&even, &e, Some(Any::null()))),
        Err(VerifyError::Malformed)
    );
    let n = modulus(&testing::rsa_key_pem(2048, 0));
    assert!(PublicKey::from_spki_der(&rsa_spki(&n, &e, Some(Any::null()))).is_ok());
    // RFC 3279: rsaEncryption carries NULL parameters.
    assert_eq!(
        PublicKey::from_spki_der(&rsa_spki(&n, &e, None)),
        Err(VerifyError::Malformed)
    );
    // Exponents 1 and even ones are not RSA.
    for bad_e in [&[1u8][..], &[1, 0, 0]] {
        assert_eq!(
            PublicKey::from_spki_der(&rsa_spki(&n, bad_e, Some(Any::null()))),
            Err(VerifyError::Malformed)
        );
    }
}

#[test]
fn ecdsa_p256_and_p384_in_der_and_fixed_width() {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    let p256_key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let p384_key = p384::ecdsa::SigningKey::from_slice(&[9; 48]).unwrap();
    let p256_pub = PublicKey::from_spki_der(
        p256_key
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let p384_pub = PublicKey::from_spki_der(
        p384_key
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(p256_pub.kind(), KeyKind::P256);
    assert_eq!(p384_pub.kind(), KeyKind::P384);
    for hash in [Hash::Sha256, Hash::Sha384] {
        let digest = hash.digest(MESSAGE);
        let s256: p256::ecdsa::Signature = p256_key.sign_prehash(&digest).unwrap();
        let s384: p384::ecdsa::Signature = p384_key.sign_prehash(&digest).unwrap();
        for (key, der, fixed) in [
            (&p256_pub, s256.to_der().as_bytes().to_vec(), s256.to_vec()),
            (&p384_pub, s384.to_der().as_bytes().to_vec(), s384.to_vec()),
        ] {
            assert_eq!(key.verify(Scheme::EcdsaDer(hash), MESSAGE, &der), Ok(()));
            assert_eq!(
                key.verify(Scheme::EcdsaFixed(hash), MESSAGE, &fixed),
                Ok(())
            );
            assert_eq!(
                key.verify(Scheme::EcdsaDer(hash), b"other", &der),
                Err(VerifyError::BadSignature)
            );
            assert_eq!(
                key.verify(Scheme::EcdsaFixed(hash), MESSAGE, &der),
                Err(VerifyError::BadSignature)
            );
            assert_eq!(
                key.verify(Scheme::EcdsaFixed(hash), MESSAGE, &fixed[1..]),
                Err(VerifyError::BadSignature)
            );
        }
    }
}

#[test]
fn ed25519_verifies_strictly() {
    use ed25519_dalek::Signer;
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let key = PublicKey::from_spki_der(
        signing
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(key.kind(), KeyKind::Ed25519);
    let sig = signing.sign(MESSAGE).to_bytes();
    assert_eq!(key.verify(Scheme::Ed25519, MESSAGE, &sig), Ok(()));
    let mut bad = sig;
    bad[10] ^= 1;
    assert_eq!(
        key.verify(Scheme::Ed25519, MESSAGE, &bad),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        key.verify(Scheme::Ed25519, MESSAGE, &sig[..63]),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn a_scheme_for_another_kind_of_key_is_refused_as_such() {
    let (_, rsa) = rsa_key(2048);
    let ec = PublicKey::from_spki_der(
        p256::ecdsa::SigningKey::from_slice(&[7; 32])
            .unwrap()
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    for scheme in [
        Scheme::EcdsaDer(Hash::Sha256),
        Scheme::EcdsaFixed(Hash::Sha256),
        Scheme::Ed25519,
    ] {
        assert_eq!(
            rsa.verify(scheme, MESSAGE, &[0; 64]),
            Err(VerifyError::WrongKeyType)
        );
    }
    for scheme in [Scheme::RsaPkcs1(Hash::Sha256), Scheme::RsaPss(Hash::Sha256)] {
        assert_eq!(
            ec.verify(scheme, MESSAGE, &[0; 256]),
            Err(VerifyError::WrongKeyType)
        );
    }
}

fn alg(oid: &str, parameters: Option<Any>) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new_unwrap(oid),
        parameters,
    }
}

#[test]
fn certificate_signature_algorithms_map_to_schemes_and_weak_ones_are_refused() {
    let null = || Some(Any::null());
    let cases = [
        (
            alg("1.2.840.10045.4.3.2", None),
            Ok(Scheme::EcdsaDer(Hash::Sha256)),
        ),
        (
            alg("1.2.840.10045.4.3.3", None),
            Ok(Scheme::EcdsaDer(Hash::Sha384)),
        ),
        (
            alg("1.2.840.10045.4.3.2", null()),
            Err(VerifyError::Malformed),
        ),
        (
            alg("1.2.840.113549.1.1.11", null()),
            Ok(Scheme::RsaPkcs1(Hash::Sha256)),
        ),
        (
            alg("1.2.840.113549.1.1.11", None),
            Ok(Scheme::RsaPkcs1(Hash::Sha256)),
        ),
        (
            alg("1.2.840.113549.1.1.12", null()),
            Ok(Scheme::RsaPkcs1(Hash::Sha384)),
        ),
        (
            alg("1.2.840.113549.1.1.13", null()),
            Ok(Scheme::RsaPkcs1(Hash::Sha512)),
        ),
        (alg("1.3.101.112", None), Ok(Scheme::Ed25519)),
        // SHA-1 and MD5, whatever the key.
        (
            alg("1.2.840.113549.1.1.5", null()),
            Err(VerifyError::WeakHash),
        ),
        (alg("1.2.840.10045.4.1", None), Err(VerifyError::WeakHash)),
        (
            alg("1.2.840.113549.1.1.4", null()),
            Err(VerifyError::WeakHash),
        ),
        (alg("1.2.840.10040.4.3", None), Err(VerifyError::WeakHash)),
        // Not offered: SHA-224, P-521's ECDSA with SHA-512, Ed448.
        (
            alg("1.2.840.113549.1.1.14", null()),
            Err(VerifyError::UnsupportedAlgorithm),
        ),
        (
            alg("1.2.840.10045.4.3.4", None),
            Err(VerifyError::UnsupportedAlgorithm),
        ),
        (
            alg("1.3.101.113", None),
            Err(VerifyError::UnsupportedAlgorithm),
        ),
        // RSASSA-PSS needs its parameters.
        (
            alg("1.2.840.113549.1.1.10", None),
            Err(VerifyError::Malformed),
        ),
    ];
    for (algorithm, want) in cases {
        assert_eq!(x509_scheme(&algorithm), want, "{}", algorithm.oid);
    }
    for hash in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
        let salt = hash.output_len();
        let pss = testing::rsa_algorithm(digest(hash), Padding::Pss { salt });
        assert_eq!(x509_scheme(&pss), Ok(Scheme::RsaPss(hash)));
        let short_salt = testing::rsa_algorithm(digest(hash), Padding::Pss { salt: 20 });
        assert_eq!(
            x509_scheme(&short_salt),
            Err(VerifyError::UnsupportedAlgorithm)
        );
    }
    // All-default parameters (an empty sequence) mean SHA-1.
    let defaults = Any::from_der(&[0x30, 0x00]).unwrap();
    assert_eq!(
        x509_scheme(&alg("1.2.840.113549.1.1.10", Some(defaults))),
        Err(VerifyError::WeakHash)
    );
    let sha1 = testing::rsa_algorithm(Digest::Sha1, Padding::Pss { salt: 20 });
    assert_eq!(x509_scheme(&sha1), Err(VerifyError::WeakHash));
}

#[test]
fn pss_with_a_mask_over_another_hash_is_refused() {
    use rsa::pkcs1::{RsaPssParams, TrailerField};
    use spki::{AlgorithmIdentifier, AlgorithmIdentifierRef};
    let sha256 = AlgorithmIdentifierRef {
        oid: const_oid::db::rfc5912::ID_SHA_256,
        parameters: None,
    };
    let sha512 = AlgorithmIdentifierRef {
        oid: const_oid::db::rfc5912::ID_SHA_512,
        parameters: None,
    };
    let params = RsaPssParams {
        hash: sha256,
        mask_gen: AlgorithmIdentifier {
            oid: const_oid::db::rfc5912::ID_MGF_1,
            parameters: Some(sha512),
        },
        salt_len: 32,
        trailer_field: TrailerField::BC,
    };
    let any = Any::from_der(&params.to_der().unwrap()).unwrap();
    assert_eq!(
        x509_scheme(&alg("1.2.840.113549.1.1.10", Some(any))),
        Err(VerifyError::UnsupportedAlgorithm)
    );
}
