//! Server certificate chain verification: a strict subset of RFC 5280
//! path validation, plus RFC 6125 hostname matching.
//!
//! Signatures are checked by `sigverify`, the policy our devices share:
//! ECDSA P-256/P-384, RSA 2048 to 4096 bits (PKCS#1 v1.5 and PSS in
//! certificates, PSS in the handshake as TLS 1.3 requires) and Ed25519.
//! Weaker keys, SHA-1 and anything outside that set are refused with their
//! own [`CertError`] rather than waved through.

use alloc::vec;
use alloc::vec::Vec;

use const_oid::AssociatedOid;
use const_oid::db::rfc5280::ID_KP_SERVER_AUTH;
use der::asn1::BitString;
use der::{Decode, Header, Reader, SliceReader, Tag};
use embedded_tls::SignatureScheme;
use sigverify::{Hash, KeyKind, PublicKey, Scheme, VerifyError, x509_scheme};
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::name::Name;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::config::{RootStore, ServerName};
use crate::error::{CertError, TlsError};

/// The signature schemes we verify, which are exactly the ones our
/// ClientHello offers (embedded-tls's defaults plus its RSA set): a server
/// may sign the handshake with the ECDSA, RSA-PSS and Ed25519 ones, and
/// certificates with any of them; `rsa_pkcs1_*` are for certificates only
/// (RFC 8446 4.2.3).
pub const SIGNATURE_SCHEMES: [SignatureScheme; 9] = [
    SignatureScheme::RsaPkcs1Sha256,
    SignatureScheme::RsaPkcs1Sha384,
    SignatureScheme::RsaPkcs1Sha512,
    SignatureScheme::RsaPssRsaeSha256,
    SignatureScheme::RsaPssRsaeSha384,
    SignatureScheme::RsaPssRsaeSha512,
    SignatureScheme::EcdsaSecp256r1Sha256,
    SignatureScheme::EcdsaSecp384r1Sha384,
    SignatureScheme::Ed25519,
];

/// Most intermediates we walk between the leaf and a root. Real chains have
/// one or two; the bound keeps hostile chains from costing many signature
/// checks.
const MAX_INTERMEDIATES: usize = 6;

/// The extensions we act on; any other one marked critical refuses the
/// certificate, as RFC 5280 4.2 requires.
#[derive(Default)]
struct Extensions {
    basic_constraints: Option<BasicConstraints>,
    key_usage: Option<KeyUsage>,
    ext_key_usage: Option<ExtendedKeyUsage>,
    subject_alt_name: Option<SubjectAltName>,
}

/// A decoded certificate with the exact signed bytes kept aside, so
/// signatures are checked over what the issuer signed rather than over a
/// re-encoding.
pub(crate) struct Parsed {
    cert: Certificate,
    tbs: Vec<u8>,
    ext: Extensions,
}

impl Parsed {
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let cert = Certificate::from_der(der).map_err(|_| CertError::Malformed)?;
        let tbs = signed_part(der).map_err(|_| CertError::Malformed)?.to_vec();
        if cert.signature_algorithm != cert.tbs_certificate.signature {
            return Err(CertError::Malformed);
        }
        let ext = decode_extensions(&cert)?;
        Ok(Self { cert, tbs, ext })
    }

    fn subject(&self) -> &Name {
        &self.cert.tbs_certificate.subject
    }

    fn issuer(&self) -> &Name {
        &self.cert.tbs_certificate.issuer
    }

    fn spki(&self) -> &SubjectPublicKeyInfoOwned {
        &self.cert.tbs_certificate.subject_public_key_info
    }

    /// The certificate's own key.
    pub(crate) fn key(&self) -> Result<ServerKey, CertError> {
        ServerKey::from_spki(self.spki())
    }

    /// Whether this certificate may sign others: basicConstraints CA=true
    /// and, when keyUsage is present, keyCertSign.
    pub(crate) fn may_issue(&self) -> bool {
        self.is_ca() && self.allows_cert_sign()
    }

    fn is_ca(&self) -> bool {
        self.ext.basic_constraints.as_ref().is_some_and(|b| b.ca)
    }

    fn allows_cert_sign(&self) -> bool {
        self.ext
            .key_usage
            .as_ref()
            .is_none_or(KeyUsage::key_cert_sign)
    }

    /// Checks `issuer` signed this certificate. A signature its key
    /// cannot have made (another key type) is a bad signature: that issuer
    /// did not sign it.
    fn signed_by(&self, issuer: &Parsed) -> Result<(), CertError> {
        let scheme = x509_scheme(&self.cert.signature_algorithm).map_err(cert_error)?;
        let signature = signature_bytes(&self.cert.signature)?;
        ServerKey::from_spki(issuer.spki())?
            .0
            .verify(scheme, &self.tbs, signature)
            .map_err(cert_error)
    }

    /// Checks this certificate may issue a chain with `below` CA
    /// certificates between it and the leaf.
    fn check_issuer(&self, below: usize) -> Result<(), CertError> {
        if !self.is_ca() {
            return Err(CertError::IssuerNotCa);
        }
        if !self.allows_cert_sign() {
            return Err(CertError::BadKeyUsage);
        }
        let limit = self
            .ext
            .basic_constraints
            .as_ref()
            .and_then(|b| b.path_len_constraint);
        if limit.is_some_and(|limit| below > usize::from(limit)) {
            return Err(CertError::PathLenExceeded);
        }
        Ok(())
    }

    fn check_validity(&self, now: Option<u64>) -> Result<(), CertError> {
        let Some(now) = now else {
            return Ok(());
        };
        let validity = &self.cert.tbs_certificate.validity;
        if now < validity.not_before.to_unix_duration().as_secs() {
            return Err(CertError::NotYetValid);
        }
        if now > validity.not_after.to_unix_duration().as_secs() {
            return Err(CertError::Expired);
        }
        Ok(())
    }

    /// The leaf's own usage: digitalSignature (TLS 1.3 servers sign the
    /// handshake) and serverAuth, each only when the extension is present.
    fn check_server_usage(&self) -> Result<(), CertError> {
        if let Some(usage) = &self.ext.key_usage
            && !usage.digital_signature()
        {
            return Err(CertError::BadKeyUsage);
        }
        if let Some(eku) = &self.ext.ext_key_usage
            && !eku.0.contains(&ID_KP_SERVER_AUTH)
        {
            return Err(CertError::NotServerAuth);
        }
        Ok(())
    }

    fn matches(&self, name: &ServerName) -> bool {
        let Some(san) = &self.ext.subject_alt_name else {
            return false;
        };
        san.0.iter().any(|entry| match (entry, name) {
            (GeneralName::DnsName(pattern), ServerName::Dns(host)) => {
                dns_matches(pattern.as_str(), host)
            }
            (GeneralName::IpAddress(octets), ServerName::Ip(ip)) => {
                let octets = octets.as_bytes();
                match ip {
                    core::net::IpAddr::V4(v4) => octets == v4.octets(),
                    core::net::IpAddr::V6(v6) => octets == v6.octets(),
                }
            }
            _ => false,
        })
    }
}

/// The DER of the TBSCertificate inside a Certificate SEQUENCE.
fn signed_part(der: &[u8]) -> der::Result<&[u8]> {
    let mut reader = SliceReader::new(der)?;
    let outer = Header::decode(&mut reader)?;
    outer.tag.assert_eq(Tag::Sequence)?;
    reader.tlv_bytes()
}

fn decode_extensions(cert: &Certificate) -> Result<Extensions, CertError> {
    fn set<T: for<'a> Decode<'a>>(slot: &mut Option<T>, value: &[u8]) -> Result<(), CertError> {
        if slot.is_some() {
            return Err(CertError::Malformed);
        }
        *slot = Some(T::from_der(value).map_err(|_| CertError::Malformed)?);
        Ok(())
    }

    let mut ext = Extensions::default();
    for e in cert.tbs_certificate.extensions.iter().flatten() {
        let value = e.extn_value.as_bytes();
        match e.extn_id {
            BasicConstraints::OID => set(&mut ext.basic_constraints, value)?,
            KeyUsage::OID => set(&mut ext.key_usage, value)?,
            ExtendedKeyUsage::OID => set(&mut ext.ext_key_usage, value)?,
            SubjectAltName::OID => set(&mut ext.subject_alt_name, value)?,
            _ if e.critical => return Err(CertError::UnknownCriticalExtension),
            _ => {}
        }
    }
    Ok(ext)
}

/// RFC 6125 6.4 matching of a dNSName entry against a lower-case host
/// name: exact (case-insensitive), or a wildcard that is the whole
/// left-most label and stands for exactly one non-empty label, above at
/// least two labels (`*.com` matches nothing).
fn dns_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            if suffix.contains('*') || !suffix.contains('.') {
                return false;
            }
            host.split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest.eq_ignore_ascii_case(suffix))
        }
        None => !pattern.contains('*') && pattern.eq_ignore_ascii_case(host),
    }
}

/// A signature or key refusal, in chain terms.
fn cert_error(e: VerifyError) -> CertError {
    match e {
        VerifyError::Malformed => CertError::Malformed,
        VerifyError::UnsupportedAlgorithm => CertError::UnsupportedAlgorithm,
        VerifyError::WeakKey => CertError::WeakKey,
        VerifyError::WeakHash => CertError::WeakHash,
        VerifyError::WrongKeyType | VerifyError::BadSignature => CertError::BadSignature,
    }
}

fn signature_bytes(signature: &BitString) -> Result<&[u8], CertError> {
    signature.as_bytes().ok_or(CertError::Malformed)
}

/// A verified server's public key, which must then sign the handshake.
#[derive(Debug, Clone)]
pub struct ServerKey(PublicKey);

impl ServerKey {
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<Self, CertError> {
        PublicKey::from_spki(spki).map(Self).map_err(cert_error)
    }

    pub(crate) fn is_p256(&self, key: &p256::ecdsa::VerifyingKey) -> bool {
        self.0.p256() == Some(key)
    }

    /// Verifies a TLS 1.3 CertificateVerify signature over `message` (the
    /// padded, context-prefixed transcript hash). TLS 1.3 binds each ECDSA
    /// scheme to one curve and hash, allows RSA only with PSS, and each
    /// scheme must fit the key; anything else is refused.
    pub fn verify_handshake_signature(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), TlsError> {
        let kind = self.0.kind();
        let scheme = match (scheme, kind) {
            (SignatureScheme::EcdsaSecp256r1Sha256, KeyKind::P256) => {
                Scheme::EcdsaDer(Hash::Sha256)
            }
            (SignatureScheme::EcdsaSecp384r1Sha384, KeyKind::P384) => {
                Scheme::EcdsaDer(Hash::Sha384)
            }
            (SignatureScheme::RsaPssRsaeSha256, KeyKind::Rsa { .. }) => {
                Scheme::RsaPss(Hash::Sha256)
            }
            (SignatureScheme::RsaPssRsaeSha384, KeyKind::Rsa { .. }) => {
                Scheme::RsaPss(Hash::Sha384)
            }
            (SignatureScheme::RsaPssRsaeSha512, KeyKind::Rsa { .. }) => {
                Scheme::RsaPss(Hash::Sha512)
            }
            (SignatureScheme::Ed25519, KeyKind::Ed25519) => Scheme::Ed25519,
            _ => return Err(TlsError::UnsupportedSignatureScheme),
        };
        self.0
            .verify(scheme, message, signature)
            .map_err(|_| TlsError::BadHandshakeSignature)
    }
}

/// Verifies a server's chain as sent in its Certificate message (leaf
/// first, then intermediates in any order, possibly with extras) against
/// pinned roots, at `now` (Unix seconds; `None` skips the dates), for
/// `name`. Returns the leaf's key for the CertificateVerify check.
///
/// Order of checks: the path to a root and its signatures first (so a
/// stranger's certificate is reported as untrusted, not as a wrong name),
/// then dates of the leaf and intermediates, then the leaf's usage, then the
/// name.
pub fn verify_server_chain(
    roots: &RootStore,
    chain: &[&[u8]],
    name: &ServerName,
    now: Option<u64>,
) -> Result<ServerKey, CertError> {
    let (leaf, rest) = chain.split_first().ok_or(CertError::NoCertificate)?;
    let leaf = Parsed::from_der(leaf)?;
    let presented = rest
        .iter()
        .map(|der| Parsed::from_der(der))
        .collect::<Result<Vec<_>, _>>()?;

    let path = build_path(roots, &leaf, &presented)?;
    leaf.check_validity(now)?;
    for cert in &path {
        cert.check_validity(now)?;
    }
    leaf.check_server_usage()?;
    if !leaf.matches(name) {
        return Err(CertError::WrongHostname);
    }
    ServerKey::from_spki(leaf.spki())
}

/// Walks from the leaf to a pinned root, taking at each step the first
/// certificate whose subject is the current issuer and whose key verifies
/// the current signature (roots before presented intermediates). Returns
/// the intermediates, leaf side first.
///
/// There is no backtracking: a chain that needs it (cross-signing with two
/// candidates of the same name) is refused rather than explored, which
/// bounds the work a hostile server can cause.
fn build_path<'p>(
    roots: &RootStore,
    leaf: &Parsed,
    presented: &'p [Parsed],
) -> Result<Vec<&'p Parsed>, CertError> {
    let mut path: Vec<&Parsed> = Vec::new();
    let mut used = vec![false; presented.len()];
    let mut current = leaf;
    loop {
        // What to report if no issuer is found: a root's name with another
        // key is a different CA (untrusted); a presented issuer whose key
        // does not verify is a bad signature; algorithms we cannot verify
        // or malformed signatures outrank both.
        let mut miss = CertError::UntrustedRoot;
        for root in roots.anchors() {
            if root.subject() != current.issuer() {
                continue;
            }
            match current.signed_by(root) {
                Ok(()) => {
                    root.check_issuer(path.len())?;
                    return Ok(path);
                }
                Err(CertError::BadSignature) => {}
                Err(e) => miss = e,
            }
        }
        let mut found = None;
        for (i, candidate) in presented.iter().enumerate() {
            if used[i] || candidate.subject() != current.issuer() {
                continue;
            }
            match current.signed_by(candidate) {
                Ok(()) => {
                    found = Some(i);
                    break;
                }
                Err(CertError::BadSignature) if miss == CertError::UntrustedRoot => {
                    miss = CertError::BadSignature;
                }
                Err(CertError::BadSignature) => {}
                Err(e) => miss = e,
            }
        }
        let Some(i) = found else {
            return Err(miss);
        };
        if path.len() == MAX_INTERMEDIATES {
            return Err(CertError::ChainTooLong);
        }
        let issuer = &presented[i];
        issuer.check_issuer(path.len())?;
        used[i] = true;
        path.push(issuer);
        current = issuer;
    }
}
