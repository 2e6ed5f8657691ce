//! RSA controller chains: 2048, 3072 and 4096-bit keys, PKCS#1 v1.5 and
//! PSS certificate signatures, the RSA-PSS handshake schemes, and the
//! refusals (keys under 2048 bits, SHA-1, PKCS#1 v1.5 in CertificateVerify).

mod common;

use common::{issue_with, resigned, rsa_key, rsa_root, with_openssl_key};
use evetls::{
    CertError, ConfigError, RootStore, ServerKey, ServerName, SignatureScheme, TlsError,
    verify_server_chain,
};
use harness::pki::{Issued, NOW, leaf, root};
use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, PKCS_RSA_SHA384, PKCS_RSA_SHA512};
use sigverify::testing::{self, Digest, Padding};

const NAME: &str = "controller.test";

fn verify(roots: &[&Issued], chain: &[Vec<u8>]) -> Result<ServerKey, CertError> {
    let ders: Vec<Vec<u8>> = roots.iter().map(|r| r.der()).collect();
    let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
    let store = RootStore::from_der(&refs).expect("root store");
    let chain: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    verify_server_chain(&store, &chain, &ServerName::parse(NAME).unwrap(), Some(NOW))
}

/// What a TLS 1.3 server signs in CertificateVerify.
fn handshake_message() -> Vec<u8> {
    let mut message = vec![0x20; 64];
    message.extend_from_slice(b"TLS 1.3, server CertificateVerify\x00");
    message.extend_from_slice(&[0xab; 32]);
    message
}

#[test]
fn rsa_chains_of_every_size_and_hash_are_accepted_and_sign_with_pss() {
    let algs = [&PKCS_RSA_SHA256, &PKCS_RSA_SHA384, &PKCS_RSA_SHA512];
    for (bits, alg) in [2048, 3072, 4096].into_iter().zip(algs) {
        let ca = rsa_root("RSA Root", bits, alg);
        let inter = issue_with("RSA Inter", &[], rsa_key(bits, 1, alg), &ca, true);
        let server = issue_with("server", &[NAME], rsa_key(bits, 2, alg), &inter, false);
        let key = verify(&[&ca], &[server.der(), inter.der()])
            .unwrap_or_else(|e| panic!("{bits}-bit chain: {e:?}"));
        let pem = testing::rsa_key_pem(bits, 2);
        let message = handshake_message();
        for (scheme, digest) in [
            (SignatureScheme::RsaPssRsaeSha256, Digest::Sha256),
            (SignatureScheme::RsaPssRsaeSha384, Digest::Sha384),
            (SignatureScheme::RsaPssRsaeSha512, Digest::Sha512),
        ] {
            let salt = digest.output_len();
            let sig = testing::sign(&pem, digest, Some(Padding::Pss { salt }), &message);
            assert!(
                key.verify_handshake_signature(scheme, &message, &sig)
                    .is_ok(),
                "{bits} bits, {scheme:?}"
            );
            let mut bad = sig.clone();
            bad[7] ^= 0x10;
            assert!(matches!(
                key.verify_handshake_signature(scheme, &message, &bad),
                Err(TlsError::BadHandshakeSignature)
            ));
        }
        // TLS 1.3 has no PKCS#1 v1.5 in CertificateVerify, whatever the
        // signature; nor ECDSA or Ed25519 schemes for an RSA key.
        let pkcs1 = testing::sign(&pem, Digest::Sha256, Some(Padding::Pkcs1), &message);
        for scheme in [
            SignatureScheme::RsaPkcs1Sha256,
            SignatureScheme::EcdsaSecp256r1Sha256,
            SignatureScheme::Ed25519,
        ] {
            assert!(matches!(
                key.verify_handshake_signature(scheme, &message, &pkcs1),
                Err(TlsError::UnsupportedSignatureScheme)
            ));
        }
    }
}

#[test]
fn pss_signed_certificates_are_accepted_with_every_hash() {
    let ca = rsa_root("RSA Root", 3072, &PKCS_RSA_SHA256);
    for digest in [Digest::Sha256, Digest::Sha384, Digest::Sha512] {
        let server = issue_with(
            "server",
            &[NAME],
            rsa_key(2048, 2, &PKCS_RSA_SHA256),
            &ca,
            false,
        );
        let salt = digest.output_len();
        let pss = resigned(&server, &ca, digest, Padding::Pss { salt });
        assert!(verify(&[&ca], &[pss]).is_ok(), "{digest:?}");
        // Another salt length is not the PSS TLS 1.3 and Go accept.
        let odd = resigned(&server, &ca, digest, Padding::Pss { salt: 20 });
        assert_eq!(
            verify(&[&ca], &[odd]).map(|_| ()),
            Err(CertError::UnsupportedAlgorithm)
        );
    }
}

#[test]
fn rsa_and_ecdsa_mix_in_one_chain() {
    // An RSA root over a P-256 server, and a P-256 root over an RSA server.
    let rsa_ca = rsa_root("RSA Root", 2048, &PKCS_RSA_SHA256);
    let ec_server = issue_with(
        "server",
        &[NAME],
        rcgen::KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        &rsa_ca,
        false,
    );
    assert!(verify(&[&rsa_ca], &[ec_server.der()]).is_ok());
    let ec_ca = root("EC Root");
    let rsa_server = issue_with(
        "server",
        &[NAME],
        rsa_key(2048, 2, &PKCS_RSA_SHA256),
        &ec_ca,
        false,
    );
    assert!(verify(&[&ec_ca], &[rsa_server.der()]).is_ok());
    // Names alone do not chain: an RSA root with the EC root's name did
    // not sign the EC root's certificates.
    let impostor = rsa_root("EC Root", 2048, &PKCS_RSA_SHA256);
    assert_eq!(
        verify(&[&impostor], &[leaf(&[NAME], &ec_ca).der()]).map(|_| ()),
        Err(CertError::UntrustedRoot)
    );
}

#[test]
fn rsa_keys_under_2048_bits_are_refused_wherever_they_are() {
    // A 1024-bit self-signed root is refused when pinned.
    let shape = rsa_root("Weak Root", 2048, &PKCS_RSA_SHA256);
    let (weak_root, _) = with_openssl_key(&shape.der(), 1024, 0, None);
    assert!(matches!(
        RootStore::from_der(&[&weak_root]),
        Err(ConfigError::WeakRootKey)
    ));
    // A 1024-bit intermediate, and a 2047-bit server key, under a good root.
    let ca = rsa_root("RSA Root", 2048, &PKCS_RSA_SHA256);
    let ca_pem = ca.key.serialize_pem();
    let inter = issue_with(
        "Weak Inter",
        &[],
        rsa_key(2048, 1, &PKCS_RSA_SHA256),
        &ca,
        true,
    );
    let server = issue_with(
        "server",
        &[NAME],
        rsa_key(2048, 2, &PKCS_RSA_SHA256),
        &inter,
        false,
    );
    let (weak_inter, weak_inter_pem) = with_openssl_key(&inter.der(), 1024, 1, Some(&ca_pem));
    let under_weak = testing::resign_certificate(
        &server.der(),
        &weak_inter_pem,
        Digest::Sha256,
        Padding::Pkcs1,
    );
    assert_eq!(
        verify(&[&ca], &[under_weak, weak_inter]).map(|_| ()),
        Err(CertError::WeakKey)
    );
    let direct = issue_with(
        "server",
        &[NAME],
        rsa_key(2048, 2, &PKCS_RSA_SHA256),
        &ca,
        false,
    );
    let (weak_server, _) = with_openssl_key(&direct.der(), 2047, 2, Some(&ca_pem));
    assert_eq!(
        verify(&[&ca], &[weak_server]).map(|_| ()),
        Err(CertError::WeakKey)
    );
}

#[test]
fn sha1_signatures_are_refused_in_pkcs1_and_pss() {
    let ca = rsa_root("RSA Root", 2048, &PKCS_RSA_SHA256);
    let server = issue_with(
        "server",
        &[NAME],
        rsa_key(2048, 2, &PKCS_RSA_SHA256),
        &ca,
        false,
    );
    for padding in [Padding::Pkcs1, Padding::Pss { salt: 20 }] {
        let sha1 = resigned(&server, &ca, Digest::Sha1, padding);
        assert_eq!(
            verify(&[&ca], &[sha1]).map(|_| ()),
            Err(CertError::WeakHash),
            "{padding:?}"
        );
    }
    // The same certificate over SHA-256 is fine: the hash was the fault.
    let sha256 = resigned(&server, &ca, Digest::Sha256, Padding::Pkcs1);
    assert!(verify(&[&ca], &[sha256]).is_ok());
}

#[test]
fn tampered_rsa_signed_certificate_is_refused() {
    let ca = rsa_root("RSA Root", 4096, &PKCS_RSA_SHA256);
    let inter = issue_with(
        "RSA Inter",
        &[],
        rsa_key(4096, 1, &PKCS_RSA_SHA256),
        &ca,
        true,
    );
    let server = issue_with(
        "server",
        &[NAME],
        rsa_key(2048, 2, &PKCS_RSA_SHA256),
        &inter,
        false,
    );
    let mut renamed = server.der();
    let at = renamed
        .windows(NAME.len())
        .position(|w| w == NAME.as_bytes())
        .expect("the name is in the certificate");
    renamed[at] = b'k';
    // The signature itself altered (it is the last 512 bytes).
    let mut flipped = server.der();
    let signature_at = flipped.len() - 512;
    flipped[signature_at + 100] ^= 1;
    for bad in [renamed, flipped] {
        assert_eq!(
            verify(&[&ca], &[bad, inter.der()]).map(|_| ()),
            Err(CertError::BadSignature)
        );
    }
    assert!(verify(&[&ca], &[server.der(), inter.der()]).is_ok());
}
