//! The provider's handshake bookkeeping, driven the way embedded-tls drives
//! it, including the orders a hostile server could force.

use embedded_tls::SignatureScheme;
use embedded_tls::blocking::{
    CertificateEntryRef, CertificateRef, CertificateVerifyRef, CryptoProvider, TlsVerifier,
};
use evetls::{
    CertError, CipherSuite, ClientConfig, ClientIdentity, Clock, Csprng, Provider, RootStore,
    TlsError,
};
use harness::pki::{Issued, NOW, leaf, root};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256};

struct Setup {
    server: Issued,
    config: ClientConfig,
}

fn setup() -> Setup {
    let ca = root("Root");
    let server = leaf(&["controller.test"], &ca);
    let device = leaf(&["device"], &ca);
    let identity = ClientIdentity::from_der(&device.der(), &device.key.serialize_der()).unwrap();
    let roots = RootStore::from_der(&[&ca.der()]).unwrap();
    let config = ClientConfig::new(roots, "controller.test", Clock::Fixed(NOW))
        .unwrap()
        .with_client_identity(identity);
    Setup { server, config }
}

fn transcript() -> Sha256 {
    Sha256::new().chain_update(b"ClientHello..Certificate")
}

/// What a TLS 1.3 server signs in CertificateVerify.
fn signed_message(transcript: &Sha256) -> Vec<u8> {
    let mut message = vec![0x20; 64];
    message.extend_from_slice(b"TLS 1.3, server CertificateVerify\x00");
    message.extend_from_slice(&transcript.clone().finalize());
    message
}

fn present_certificate(
    provider: &mut Provider<'_, Csprng>,
    der: &[u8],
) -> Result<(), embedded_tls::TlsError> {
    let mut cert = CertificateRef::with_context(&[]);
    cert.add(CertificateEntryRef::X509(der)).unwrap();
    let verifier = provider.verifier().unwrap();
    TlsVerifier::<CipherSuite>::verify_certificate(verifier, &transcript(), cert)
}

fn present_signature(
    provider: &mut Provider<'_, Csprng>,
    signature: &[u8],
) -> Result<(), embedded_tls::TlsError> {
    let verify = CertificateVerifyRef {
        signature_scheme: SignatureScheme::EcdsaSecp256r1Sha256,
        signature,
    };
    TlsVerifier::<CipherSuite>::verify_signature(provider.verifier().unwrap(), verify)
}

fn server_signature(server: &Issued, message: &[u8]) -> DerSignature {
    let key = SigningKey::from_pkcs8_der(&server.key.serialize_der()).unwrap();
    key.sign(message)
}

#[test]
fn server_that_proves_its_key_is_authenticated_and_gets_our_identity() {
    let s = setup();
    let mut provider = Provider::new(&s.config, Csprng::from_entropy([1; 32]));
    present_certificate(&mut provider, &s.server.der()).unwrap();
    let signature = server_signature(&s.server, &signed_message(&transcript()));
    present_signature(&mut provider, signature.as_ref()).unwrap();
    assert!(provider.outcome().is_ok());
    assert!(provider.client_cert().is_some());
    assert!(provider.signer().is_ok());
}

#[test]
fn signature_over_another_transcript_is_refused() {
    let s = setup();
    let mut provider = Provider::new(&s.config, Csprng::from_entropy([1; 32]));
    present_certificate(&mut provider, &s.server.der()).unwrap();
    let other = Sha256::new().chain_update(b"another handshake");
    let signature = server_signature(&s.server, &signed_message(&other));
    assert!(present_signature(&mut provider, signature.as_ref()).is_err());
    assert!(matches!(
        provider.outcome(),
        Err(TlsError::BadHandshakeSignature)
    ));
    assert!(provider.client_cert().is_none());
}

#[test]
fn garbage_signature_is_refused() {
    let s = setup();
    let mut provider = Provider::new(&s.config, Csprng::from_entropy([1; 32]));
    present_certificate(&mut provider, &s.server.der()).unwrap();
    assert!(present_signature(&mut provider, &[0x30, 0x03, 0x02, 0x01]).is_err());
    assert!(matches!(
        provider.outcome(),
        Err(TlsError::BadHandshakeSignature)
    ));
}

#[test]
fn server_that_skips_certificate_verify_is_not_authenticated() {
    let s = setup();
    let mut provider = Provider::new(&s.config, Csprng::from_entropy([1; 32]));
    present_certificate(&mut provider, &s.server.der()).unwrap();
    // embedded-tls would now accept Finished and ask for our certificate.
    assert!(provider.client_cert().is_none());
    assert!(provider.signer().is_err());
    assert!(matches!(
        provider.outcome(),
        Err(TlsError::ServerNotAuthenticated)
    ));
}

#[test]
fn server_that_sends_no_certificate_is_not_authenticated() {
    let s = setup();
    let provider = Provider::new(&s.config, Csprng::from_entropy([1; 32]));
    assert!(matches!(
        provider.outcome(),
        Err(TlsError::ServerNotAuthenticated)
    ));
}

#[test]
fn out_of_order_messages_are_refused() {
    let s = setup();
    let mut provider = Provider::new(&s.config, Csprng::from_entropy([1; 32]));
    let signature = server_signature(&s.server, &signed_message(&transcript()));
    assert!(present_signature(&mut provider, signature.as_ref()).is_err());
    assert!(matches!(provider.outcome(), Err(TlsError::Protocol(_))));

    let mut provider = Provider::new(&s.config, Csprng::from_entropy([1; 32]));
    present_certificate(&mut provider, &s.server.der()).unwrap();
    assert!(present_certificate(&mut provider, &s.server.der()).is_err());
    assert!(matches!(provider.outcome(), Err(TlsError::Protocol(_))));
}

#[test]
fn refused_chain_reason_is_kept() {
    let s = setup();
    let mut provider = Provider::new(&s.config, Csprng::from_entropy([1; 32]));
    let stranger = leaf(&["controller.test"], &root("Other"));
    assert!(present_certificate(&mut provider, &stranger.der()).is_err());
    assert!(matches!(
        provider.failure(),
        Some(TlsError::Certificate(CertError::UntrustedRoot))
    ));
}

#[test]
fn hostname_given_by_embedded_tls_must_be_ours() {
    let s = setup();
    let mut provider = Provider::new(&s.config, Csprng::from_entropy([1; 32]));
    let verifier = provider.verifier().unwrap();
    assert!(
        TlsVerifier::<CipherSuite>::set_hostname_verification(verifier, "Controller.test").is_ok()
    );
    let verifier = provider.verifier().unwrap();
    assert!(TlsVerifier::<CipherSuite>::set_hostname_verification(verifier, "evil.test").is_err());
}
