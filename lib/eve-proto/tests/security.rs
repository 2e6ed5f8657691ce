//! Signing, certificate-chain and secret-decryption vectors produced with
//! Python `cryptography` (see `testdata/gen_golden.py`).

use eve_proto::Message;
use eve_proto::auth::AuthContainer;
use eve_proto::certs::{ZCertType, ZControllerCert};
use eve_proto::cipher::{self, CipherError};
use eve_proto::common::{CipherBlock, CipherContext, HashAlgorithm};
use eve_proto::sign::{self, SenderIdentity, Signer, SoftwareSigner, TrustedSigner, VerifyError};
use eve_proto::x509::{self, ChainError, DeviceCertParams};
use p256::pkcs8::DecodePrivateKey;

fn data(path: &str) -> Vec<u8> {
    let p = format!("{}/testdata/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn text(path: &str) -> String {
    String::from_utf8(data(path)).unwrap()
}

/// Pulls `"key": "value"` out of the flat vector file without a JSON dependency.
fn vector(key: &str) -> String {
    let v = text("signing/vector.json");
    let start = v.find(&format!("\"{key}\": ")).unwrap() + key.len() + 4;
    v[start..]
        .split([',', '\n'])
        .next()
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

/// 2025-01-01, inside the test PKI's validity window.
const NOW: u64 = 1_735_689_600;

fn controller() -> TrustedSigner {
    TrustedSigner::from_controller_pem(&data("pki/signing.pem")).unwrap()
}

#[test]
fn deterministic_signature_matches_python() {
    let key: [u8; 32] = hex::decode(vector("private_key"))
        .unwrap()
        .try_into()
        .unwrap();
    let signer = SoftwareSigner::from_bytes(&key).unwrap();
    let payload = hex::decode(vector("payload")).unwrap();
    let digest = eve_proto::sha256(&payload);
    assert_eq!(hex::encode(digest), vector("sha256"));
    let sig = signer.sign_digest(&digest).unwrap();
    assert_eq!(hex::encode(sig), vector("signature_rs"));
}

#[test]
fn controller_hash_is_over_pem_text() {
    assert_eq!(
        hex::encode(controller().cert_hash()),
        vector("signing_cert_pem_sha256")
    );
}

#[test]
fn verify_python_signed_config() {
    for file in [
        "signing/config_signed_32.bin",
        "signing/config_signed_16.bin",
    ] {
        let payload = sign::open_auth_container(&data(file), &controller()).unwrap();
        assert_eq!(payload, data("golden/edge_dev_config.bin"), "{file}");
    }
}

#[test]
fn verify_errors_in_eve_order() {
    let good = AuthContainer::decode(data("signing/config_signed_32.bin").as_slice()).unwrap();
    let trusted = controller();

    let mut c = good.clone();
    c.sender_cert_hash.truncate(20);
    c.algo = 99; // length is checked before the algorithm
    assert_eq!(
        sign::verify_auth_container(&c, &trusted),
        Err(VerifyError::BadHashLength(20))
    );

    let mut c = good.clone();
    c.algo = 99;
    assert_eq!(
        sign::verify_auth_container(&c, &trusted),
        Err(VerifyError::UnsupportedAlgorithm(99))
    );
    c.algo = HashAlgorithm::Invalid as i32;
    assert_eq!(
        sign::verify_auth_container(&c, &trusted),
        Err(VerifyError::UnsupportedAlgorithm(0))
    );

    let mut c = good.clone();
    c.sender_cert_hash[0] ^= 1;
    assert_eq!(
        sign::verify_auth_container(&c, &trusted),
        Err(VerifyError::UnknownSenderCert)
    );
    // A 16-byte hash under the 32-byte algorithm names no certificate either.
    let mut c = good.clone();
    c.sender_cert_hash.truncate(16);
    assert_eq!(
        sign::verify_auth_container(&c, &trusted),
        Err(VerifyError::UnknownSenderCert)
    );

    let mut c = good.clone();
    c.protected_payload.as_mut().unwrap().payload[0] ^= 1;
    assert_eq!(
        sign::verify_auth_container(&c, &trusted),
        Err(VerifyError::BadSignature)
    );
    let mut c = good.clone();
    c.signature_hash.truncate(63);
    assert_eq!(
        sign::verify_auth_container(&c, &trusted),
        Err(VerifyError::BadSignature)
    );

    assert_eq!(
        sign::open_auth_container(&[0xff, 0xff], &trusted),
        Err(VerifyError::Malformed)
    );
}

#[test]
fn onboarding_register_with_embedded_cert() {
    let c = AuthContainer::decode(data("signing/register_signed.bin").as_slice()).unwrap();
    let device = TrustedSigner::from_embedded_sender_cert(&c).unwrap();
    assert_eq!(
        hex::encode(device.cert_hash()),
        vector("device_cert_der_sha256")
    );
    let payload = sign::verify_auth_container(&c, &device).unwrap();
    assert_eq!(payload, data("golden/register.bin"));
}

#[test]
fn rust_signed_container_round_trip() {
    let signer = SoftwareSigner::from_pem(&text("pki/signing_key.pem")).unwrap();
    let trusted = controller();
    for algo in [HashAlgorithm::Sha25616bytes, HashAlgorithm::Sha25632bytes] {
        let sender = SenderIdentity {
            cert_hash: *trusted.cert_hash(),
            algo,
            embed_cert_pem: None,
        };
        let c = sign::sign_auth_container(b"hello".to_vec(), &signer, &sender).unwrap();
        assert_eq!(sign::verify_auth_container(&c, &trusted), Ok(&b"hello"[..]));
        assert!(c.sender_cert.is_empty());
    }
    let sender = SenderIdentity {
        cert_hash: [0; 32],
        algo: HashAlgorithm::Invalid,
        embed_cert_pem: None,
    };
    assert_eq!(
        sign::sign_auth_container(vec![], &signer, &sender).err(),
        Some(sign::SignError::UnsupportedAlgorithm)
    );
}

#[test]
fn controller_chain_verifies_to_pinned_root() {
    let root = x509::parse_pem(&data("pki/root.pem")).unwrap();
    let bytes = data("golden/controller_certs.bin");
    let certs = x509::verify_controller_cert_bytes(&bytes, &root, NOW).unwrap();
    assert_eq!(certs.signing.pem, data("pki/signing.pem"));
    assert_eq!(
        hex::encode(certs.signing.cert_hash),
        vector("signing_cert_pem_sha256")
    );
    assert_eq!(certs.ecdh.len(), 1);

    let other = x509::parse_pem(&data("pki/other_root.pem")).unwrap();
    assert_eq!(
        x509::verify_controller_cert_bytes(&bytes, &other, NOW).err(),
        Some(ChainError::BadSignature)
    );
    assert_eq!(
        x509::verify_controller_cert_bytes(&bytes, &root, 2_400_000_000).err(),
        Some(ChainError::Expired)
    );
    assert_eq!(
        x509::verify_controller_cert_bytes(&bytes, &root, 1_600_000_000).err(),
        Some(ChainError::NotYetValid)
    );
    let two = data("signing/two_signing_certs.bin");
    assert_eq!(
        x509::verify_controller_cert_bytes(&two, &root, NOW).err(),
        Some(ChainError::MultipleSigningCerts)
    );
    assert_eq!(
        x509::verify_controller_cert_bytes(&[0xff], &root, NOW).err(),
        Some(ChainError::Malformed)
    );

    let msg = ZControllerCert::decode(bytes.as_slice()).unwrap();
    let mut no_signing = msg.clone();
    no_signing
        .certs
        .retain(|c| c.r#type() != ZCertType::CertTypeControllerSigning);
    assert_eq!(
        x509::verify_controller_certs(&no_signing.certs, &root, NOW).err(),
        Some(ChainError::NoSigningCert)
    );
    let mut unknown = msg.clone();
    unknown.certs[2].r#type = ZCertType::CertTypeDeviceOnboarding as i32;
    assert_eq!(
        x509::verify_controller_certs(&unknown.certs, &root, NOW).err(),
        Some(ChainError::UnknownCertType(10))
    );
    let mut no_inter = msg.clone();
    no_inter.certs.remove(0);
    assert_eq!(
        x509::verify_controller_certs(&no_inter.certs, &root, NOW).err(),
        Some(ChainError::IssuerNotFound)
    );
    // The intermediate alone is no root: its issuer is missing.
    let inter = x509::parse_pem(&data("pki/intermediate.pem")).unwrap();
    assert!(x509::verify_controller_certs(&no_inter.certs, &inter, NOW).is_ok());
}

#[test]
fn device_certificate_generation() {
    let signer = SoftwareSigner::from_pem(&text("pki/device_key.pem")).unwrap();
    let params = DeviceCertParams {
        common_name: "device-0001",
        serial: &[0x80, 1, 2, 3],
        not_before_unix: NOW,
        not_after_unix: 2_556_144_000, // 2051: exercises GeneralizedTime
    };
    let cert = x509::generate_device_cert(&signer, &params).unwrap();
    let pem = x509::to_pem(&cert).unwrap();
    let parsed = x509::parse_pem(pem.as_bytes()).unwrap();
    assert_eq!(parsed, cert);
    assert_eq!(x509::p256_public_key(&parsed).unwrap(), signer.public_key());
    assert!(x509::verify_signed_by(&parsed, &signer.public_key()).unwrap());
    let der = x509::to_der(&parsed).unwrap();
    assert_eq!(x509::parse_der(&der).unwrap(), cert);
    assert!(format!("{}", parsed.tbs_certificate.subject).contains("device-0001"));

    // The device signs with this identity; the controller verifies via the DER hash.
    let trusted = TrustedSigner::from_device_der(&der).unwrap();
    let sender = SenderIdentity {
        cert_hash: eve_proto::sha256(&der),
        algo: HashAlgorithm::Sha25632bytes,
        embed_cert_pem: Some(pem.as_bytes()),
    };
    let c = sign::sign_auth_container(b"metrics".to_vec(), &signer, &sender).unwrap();
    assert!(sign::verify_auth_container(&c, &trusted).is_ok());
    let embedded = TrustedSigner::from_embedded_sender_cert(&c).unwrap();
    assert_eq!(embedded.cert_hash(), trusted.cert_hash());

    let bad = DeviceCertParams {
        serial: &[],
        ..params
    };
    assert!(x509::generate_device_cert(&signer, &bad).is_err());

    // The ECDH key's certificate: issued by the device certificate, signed
    // by the device key, for another key.
    let ecdh = eve_proto::p256::SecretKey::from_slice(&[0x42; 32]).unwrap();
    let ecdh_cert = x509::generate_ecdh_cert(
        &signer,
        &cert,
        &ecdh.public_key(),
        &DeviceCertParams {
            common_name: "device-0001-ecdh",
            ..params
        },
    )
    .unwrap();
    let parsed = x509::parse_pem(x509::to_pem(&ecdh_cert).unwrap().as_bytes()).unwrap();
    assert_eq!(x509::p256_public_key(&parsed).unwrap(), ecdh.public_key());
    assert!(x509::verify_signed_by(&parsed, &signer.public_key()).unwrap());
    assert_eq!(parsed.tbs_certificate.issuer, cert.tbs_certificate.subject);
    assert!(!x509::verify_signed_by(&parsed, &ecdh.public_key()).unwrap());
}

#[test]
fn decrypt_python_cipher_block() {
    let block = CipherBlock::decode(data("cipher/cipher_block.bin").as_slice()).unwrap();
    let ctx = CipherContext::decode(data("cipher/cipher_context.bin").as_slice()).unwrap();
    let device = p256::SecretKey::from_pkcs8_pem(&text("pki/device_ecdh_key.pem")).unwrap();
    let ctrl_cert = x509::parse_pem(&data("pki/controller_ecdh.pem")).unwrap();
    let ctrl_pub = x509::p256_public_key(&ctrl_cert).unwrap();

    let clear = cipher::decrypt_cipher_block(&block, &ctx, &device, &ctrl_pub).unwrap();
    assert_eq!(clear, data("cipher/clear_text.bin"));
    let eb = cipher::decrypt_encryption_block(&block, &ctx, &device, &ctrl_pub).unwrap();
    assert_eq!(eb.ds_password, "s3cr3t");
    assert_eq!(eb.protected_user_data, "#cloud-config\n");

    let mut tampered = block.clone();
    tampered.cipher_data[0] ^= 1;
    assert_eq!(
        cipher::decrypt_cipher_block(&tampered, &ctx, &device, &ctrl_pub),
        Err(CipherError::DigestMismatch)
    );
    let mut short_iv = block.clone();
    short_iv.initial_value.pop();
    assert_eq!(
        cipher::decrypt_cipher_block(&short_iv, &ctx, &device, &ctrl_pub),
        Err(CipherError::BadIv)
    );
    let mut other_ctx = ctx.clone();
    other_ctx.context_id = "ctx-2".into();
    assert_eq!(
        cipher::decrypt_cipher_block(&block, &other_ctx, &device, &ctrl_pub),
        Err(CipherError::ContextMismatch)
    );
    let mut plain_ctx = ctx.clone();
    plain_ctx.encryption_scheme = 0;
    assert_eq!(
        cipher::decrypt_cipher_block(&block, &plain_ctx, &device, &ctrl_pub),
        Err(CipherError::UnsupportedScheme)
    );
}

#[test]
fn controller_encrypts_device_decrypts() {
    let ctrl = p256::SecretKey::from_pkcs8_pem(&text("pki/controller_ecdh_key.pem")).unwrap();
    let device = p256::SecretKey::from_pkcs8_pem(&text("pki/device_ecdh_key.pem")).unwrap();
    let block = cipher::encrypt_cipher_block(
        &data("cipher/clear_text.bin"),
        "ctx-1",
        core::array::from_fn(|i| i as u8 + 16),
        &ctrl,
        &device.public_key(),
    )
    .unwrap();
    // Same keys, IV and clear text as the Python vector: identical cipher text.
    let python = CipherBlock::decode(data("cipher/cipher_block.bin").as_slice()).unwrap();
    assert_eq!(block, python);
    let ctx = CipherContext::decode(data("cipher/cipher_context.bin").as_slice()).unwrap();
    let clear = cipher::decrypt_cipher_block(&block, &ctx, &device, &ctrl.public_key()).unwrap();
    assert_eq!(clear, data("cipher/clear_text.bin"));
}
