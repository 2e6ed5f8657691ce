//! Certificates for tests, made with rcgen: roots, intermediates, server
//! certificates, and the broken chains a TLS client must refuse.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
    SignatureAlgorithm,
};

/// 2026-06-01T00:00:00Z: "now" for every test, inside the default validity.
pub const NOW: u64 = 1_780_272_000;

/// A certificate with its key.
pub struct Issued {
    pub cert: Certificate,
    pub key: KeyPair,
}

impl Issued {
    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// The DER, base64-encoded, as our guests take a root certificate on
    /// their command line (`root=`).
    pub fn der_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.cert.der())
    }
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

/// A self-signed P-256 CA.
pub fn root(cn: &str) -> Issued {
    root_with(cn, &rcgen::PKCS_ECDSA_P256_SHA256, |_| {})
}

pub fn root_with(
    cn: &str,
    alg: &'static SignatureAlgorithm,
    tweak: impl FnOnce(&mut CertificateParams),
) -> Issued {
    let key = KeyPair::generate_for(alg).expect("key");
    let mut p = params(cn, &[], IsCa::Ca(BasicConstraints::Unconstrained));
    tweak(&mut p);
    let cert = p.self_signed(&key).expect("self-sign");
    Issued { cert, key }
}

/// An intermediate CA (P-256) under `parent`.
pub fn intermediate(cn: &str, parent: &Issued) -> Issued {
    issue(cn, &[], parent, |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    })
}

/// A P-256 server certificate for `sans` under `parent`.
pub fn leaf(sans: &[&str], parent: &Issued) -> Issued {
    issue("server", sans, parent, |_| {})
}

/// Any P-256 certificate under `parent`, adjusted by `tweak`.
pub fn issue(
    cn: &str,
    sans: &[&str],
    parent: &Issued,
    tweak: impl FnOnce(&mut CertificateParams),
) -> Issued {
    issue_alg(cn, sans, parent, &rcgen::PKCS_ECDSA_P256_SHA256, tweak)
}

pub fn issue_alg(
    cn: &str,
    sans: &[&str],
    parent: &Issued,
    alg: &'static SignatureAlgorithm,
    tweak: impl FnOnce(&mut CertificateParams),
) -> Issued {
    let key = KeyPair::generate_for(alg).expect("key");
    let mut p = params(cn, sans, IsCa::NoCa);
    tweak(&mut p);
    let cert = p.signed_by(&key, &parent.cert, &parent.key).expect("sign");
    Issued { cert, key }
}
