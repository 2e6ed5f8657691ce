//! RSA certificates for the tests: keys from the host's OpenSSL (rcgen on
//! ring cannot generate RSA keys), certificates from rcgen, and
//! re-signatures (PSS, SHA-1) that neither rcgen nor ring makes.

#![allow(dead_code)]

use harness::pki::Issued;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
    SignatureAlgorithm,
};
use sigverify::testing::{self, Digest, Padding};

/// An RSA key of `bits` from slot `slot`, signing with `alg`.
pub fn rsa_key(bits: usize, slot: u8, alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::from_pkcs8_pem_and_sign_algo(&testing::rsa_key_pem(bits, slot), alg)
        .expect("OpenSSL's key loads")
}

fn params(cn: &str, sans: &[&str], is_ca: IsCa) -> CertificateParams {
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = is_ca;
    params
}

/// A self-signed RSA CA whose key signs with `alg`.
pub fn rsa_root(cn: &str, bits: usize, alg: &'static SignatureAlgorithm) -> Issued {
    let key = rsa_key(bits, 0, alg);
    let cert = params(cn, &[], IsCa::Ca(BasicConstraints::Unconstrained))
        .self_signed(&key)
        .expect("self-sign");
    Issued { cert, key }
}

/// A certificate with `key` under `parent` (CA when `ca`).
pub fn issue_with(cn: &str, sans: &[&str], key: KeyPair, parent: &Issued, ca: bool) -> Issued {
    let is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::NoCa
    };
    let cert = params(cn, sans, is_ca)
        .signed_by(&key, &parent.cert, &parent.key)
        .expect("sign");
    Issued { cert, key }
}

/// `cert`'s DER, signed again by its RSA `issuer` with `digest` and
/// `padding`.
pub fn resigned(cert: &Issued, issuer: &Issued, digest: Digest, padding: Padding) -> Vec<u8> {
    testing::resign_certificate(&cert.der(), &issuer.key.serialize_pem(), digest, padding)
}

/// `cert_der` made over to the OpenSSL RSA key `(bits, slot)` (which ring
/// may refuse to load, under 2048 bits) and signed by `issuer_pem` with
/// SHA-256 and PKCS#1 v1.5. Returns the DER and the key's PEM.
pub fn with_openssl_key(
    cert_der: &[u8],
    bits: usize,
    slot: u8,
    issuer_pem: Option<&str>,
) -> (Vec<u8>, String) {
    let pem = testing::rsa_key_pem(bits, slot);
    let swapped = testing::replace_subject_key(cert_der, &testing::spki_der(&pem));
    let issuer = issuer_pem.unwrap_or(&pem);
    let der = testing::resign_certificate(&swapped, issuer, Digest::Sha256, Padding::Pkcs1);
    (der, pem)
}
