//! RSA controllers, as EVE verifies them: RSA chains (2048, 3072 and 4096
//! bits; PKCS#1 v1.5 and PSS certificate signatures) in `/certs`, envelopes
//! signed RSASSA-PKCS1-v1_5 over SHA-256, and the refusals: keys under 2048
//! bits, SHA-1, keys that cannot sign envelopes or do ECDH. Keys come from
//! the host's OpenSSL, certificates from rcgen.

use eve_proto::Message;
use eve_proto::auth::{AuthBody, AuthContainer};
use eve_proto::certs::{ZCert, ZCertType};
use eve_proto::common::HashAlgorithm;
use eve_proto::sign::{self, TrustedSigner, VerifyError};
use eve_proto::x509::{self, CertError, ChainError, ControllerCerts};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, PKCS_RSA_SHA384,
    PKCS_RSA_SHA512, SignatureAlgorithm,
};
use sigverify::testing::{self, Digest, Padding};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Issued {
    cert: Certificate,
    key: KeyPair,
}

fn rsa_key(bits: usize, slot: u8, alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::from_pkcs8_pem_and_sign_algo(&testing::rsa_key_pem(bits, slot), alg).unwrap()
}

fn params(cn: &str, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
    }
    p
}

fn self_signed(cn: &str, key: KeyPair) -> Issued {
    let cert = params(cn, true).self_signed(&key).unwrap();
    Issued { cert, key }
}

fn issue(cn: &str, key: KeyPair, parent: &Issued, ca: bool) -> Issued {
    let cert = params(cn, ca)
        .signed_by(&key, &parent.cert, &parent.key)
        .unwrap();
    Issued { cert, key }
}

fn zcert(pem: &str, kind: ZCertType) -> ZCert {
    ZCert {
        hash_algo: HashAlgorithm::Sha25616bytes as i32,
        cert_hash: eve_proto::sha256(pem.as_bytes())[..16].to_vec(),
        r#type: kind as i32,
        cert: pem.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// An Adam-like set: RSA root and intermediate, an RSA signing
/// certificate, a P-256 ECDH certificate.
struct ControllerSet {
    root: Issued,
    inter: Issued,
    signing: Issued,
    ecdh: Issued,
}

impl ControllerSet {
    fn rsa(bits: usize, alg: &'static SignatureAlgorithm) -> Self {
        let root = self_signed("Controller RSA root", rsa_key(bits, 0, alg));
        let inter = issue(
            "Controller RSA intermediate",
            rsa_key(bits, 1, alg),
            &root,
            true,
        );
        let signing = issue("Controller signing", rsa_key(bits, 2, alg), &inter, false);
        let ecdh = issue(
            "Controller ECDH",
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
            &inter,
            false,
        );
        Self {
            root,
            inter,
            signing,
            ecdh,
        }
    }

    fn certs(&self, signing_pem: &str) -> Vec<ZCert> {
        vec![
            zcert(signing_pem, ZCertType::CertTypeControllerSigning),
            zcert(
                &self.ecdh.cert.pem(),
                ZCertType::CertTypeControllerEcdhExchange,
            ),
            zcert(
                &self.inter.cert.pem(),
                ZCertType::CertTypeControllerIntermediate,
            ),
        ]
    }

    fn verify(&self, signing_pem: &str) -> Result<ControllerCerts, ChainError> {
        let root = x509::parse_pem(self.root.cert.pem().as_bytes()).unwrap();
        x509::verify_controller_certs(&self.certs(signing_pem), &root, now())
    }
}

/// An envelope as an RSA controller signs it (EVE: PKCS#1 v1.5, SHA-256).
fn rsa_envelope(payload: &[u8], signing: &ControllerCerts, key_pem: &str, pad: Padding) -> Vec<u8> {
    AuthContainer {
        protected_payload: Some(AuthBody {
            payload: payload.to_vec(),
        }),
        algo: HashAlgorithm::Sha25632bytes as i32,
        sender_cert_hash: signing.signing.cert_hash.to_vec(),
        signature_hash: testing::sign(key_pem, Digest::Sha256, Some(pad), payload),
        ..Default::default()
    }
    .encode_to_vec()
}

fn pem_of(der: &[u8]) -> String {
    x509::to_pem(&x509::parse_der(der).unwrap()).unwrap()
}

#[test]
fn rsa_controller_sets_verify_and_sign_envelopes_at_every_size() {
    let algs = [&PKCS_RSA_SHA256, &PKCS_RSA_SHA384, &PKCS_RSA_SHA512];
    for (bits, alg) in [2048, 3072, 4096].into_iter().zip(algs) {
        let set = ControllerSet::rsa(bits, alg);
        let certs = set
            .verify(&set.signing.cert.pem())
            .unwrap_or_else(|e| panic!("{bits} bits: {e:?}"));
        assert_eq!(certs.ecdh.len(), 1);
        assert!(certs.ecdh[0].p256_key().is_some());
        let trusted = TrustedSigner::from_controller(&certs.signing);
        let pem = testing::rsa_key_pem(bits, 2);
        let config = b"EdgeDevConfig bytes";
        let envelope = rsa_envelope(config, &certs, &pem, Padding::Pkcs1);
        assert_eq!(
            sign::open_auth_container(&envelope, &trusted).as_deref(),
            Ok(&config[..])
        );
        // As the PEM a device checkpoints, too.
        let from_pem = TrustedSigner::from_controller_pem(set.signing.cert.pem().as_bytes())
            .expect("an RSA signing certificate");
        assert!(sign::open_auth_container(&envelope, &from_pem).is_ok());
        // Altered payload, PSS (which EVE does not use for envelopes), and
        // an ECDSA-sized signature are all bad signatures.
        let mut altered = AuthContainer::decode(envelope.as_slice()).unwrap();
        altered.protected_payload.as_mut().unwrap().payload[0] ^= 1;
        assert_eq!(
            sign::verify_auth_container(&altered, &trusted),
            Err(VerifyError::BadSignature)
        );
        let pss = rsa_envelope(config, &certs, &pem, Padding::Pss { salt: 32 });
        assert_eq!(
            sign::open_auth_container(&pss, &trusted),
            Err(VerifyError::BadSignature)
        );
        let mut short = AuthContainer::decode(envelope.as_slice()).unwrap();
        short.signature_hash.truncate(64);
        assert_eq!(
            sign::verify_auth_container(&short, &trusted),
            Err(VerifyError::BadSignature)
        );
    }
}

#[test]
fn pss_signed_controller_certificates_chain() {
    let set = ControllerSet::rsa(2048, &PKCS_RSA_SHA256);
    let inter_pem = testing::rsa_key_pem(2048, 1);
    for digest in [Digest::Sha256, Digest::Sha384, Digest::Sha512] {
        let pss = testing::resign_certificate(
            set.signing.cert.der(),
            &inter_pem,
            digest,
            Padding::Pss {
                salt: digest.output_len(),
            },
        );
        assert!(set.verify(&pem_of(&pss)).is_ok(), "{digest:?}");
    }
}

#[test]
fn weak_keys_and_sha1_are_refused_with_their_own_errors() {
    let set = ControllerSet::rsa(2048, &PKCS_RSA_SHA256);
    let inter_pem = testing::rsa_key_pem(2048, 1);
    // A 1024-bit signing certificate.
    let weak = testing::replace_subject_key(
        set.signing.cert.der(),
        &testing::spki_der(&testing::rsa_key_pem(1024, 2)),
    );
    let weak = testing::resign_certificate(&weak, &inter_pem, Digest::Sha256, Padding::Pkcs1);
    assert_eq!(
        set.verify(&pem_of(&weak)).err(),
        Some(ChainError::Cert(CertError::WeakKey))
    );
    // A signing certificate signed over SHA-1, PKCS#1 v1.5 or PSS.
    for padding in [Padding::Pkcs1, Padding::Pss { salt: 20 }] {
        let sha1 =
            testing::resign_certificate(set.signing.cert.der(), &inter_pem, Digest::Sha1, padding);
        assert_eq!(
            set.verify(&pem_of(&sha1)).err(),
            Some(ChainError::Cert(CertError::WeakHash)),
            "{padding:?}"
        );
    }
    // A 1024-bit root.
    let weak_root_pem = testing::rsa_key_pem(1024, 0);
    let weak_root =
        testing::replace_subject_key(set.root.cert.der(), &testing::spki_der(&weak_root_pem));
    let weak_root =
        testing::resign_certificate(&weak_root, &weak_root_pem, Digest::Sha256, Padding::Pkcs1);
    let root = x509::parse_der(&weak_root).unwrap();
    assert_eq!(
        x509::verify_controller_certs(&set.certs(&set.signing.cert.pem()), &root, now()).err(),
        Some(ChainError::Cert(CertError::WeakKey))
    );
}

#[test]
fn keys_unfit_for_their_role_are_refused() {
    let set = ControllerSet::rsa(2048, &PKCS_RSA_SHA256);
    let root = x509::parse_pem(set.root.cert.pem().as_bytes()).unwrap();
    // An RSA "ECDH" certificate cannot do ECDH.
    let rsa_ecdh = issue(
        "ECDH",
        rsa_key(2048, 3, &PKCS_RSA_SHA256),
        &set.inter,
        false,
    );
    let mut certs = set.certs(&set.signing.cert.pem());
    certs[1] = zcert(
        &rsa_ecdh.cert.pem(),
        ZCertType::CertTypeControllerEcdhExchange,
    );
    assert_eq!(
        x509::verify_controller_certs(&certs, &root, now()).err(),
        Some(ChainError::Cert(CertError::UnsupportedKey))
    );
    // EVE signs no envelope with Ed25519.
    let ed = issue(
        "Ed signing",
        KeyPair::generate_for(&PKCS_ED25519).unwrap(),
        &set.inter,
        false,
    );
    assert_eq!(
        set.verify(&ed.cert.pem()).err(),
        Some(ChainError::Cert(CertError::UnsupportedKey))
    );
    assert_eq!(
        TrustedSigner::from_controller_pem(ed.cert.pem().as_bytes()).err(),
        Some(CertError::UnsupportedKey)
    );
}

#[test]
fn p384_signing_certificate_signs_96_byte_envelopes() {
    use p384::ecdsa::signature::hazmat::PrehashSigner;
    use p384::pkcs8::DecodePrivateKey;
    let set = ControllerSet::rsa(2048, &PKCS_RSA_SHA256);
    let p384 = issue(
        "P-384 signing",
        KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
        &set.inter,
        false,
    );
    let certs = set.verify(&p384.cert.pem()).expect("P-384 under RSA");
    let key = p384::ecdsa::SigningKey::from_pkcs8_der(&p384.key.serialize_der()).unwrap();
    let payload = b"info";
    let sig: p384::ecdsa::Signature = key.sign_prehash(&eve_proto::sha256(payload)).unwrap();
    let envelope = AuthContainer {
        protected_payload: Some(AuthBody {
            payload: payload.to_vec(),
        }),
        algo: HashAlgorithm::Sha25616bytes as i32,
        sender_cert_hash: certs.signing.cert_hash[..16].to_vec(),
        signature_hash: sig.to_vec(),
        ..Default::default()
    };
    let trusted = TrustedSigner::from_controller(&certs.signing);
    assert_eq!(
        sign::verify_auth_container(&envelope, &trusted),
        Ok(&payload[..])
    );
}
