//! X.509 for device identity and controller trust, without `std`.
//!
//! Device certificates are P-256 (a TPM key, or its software stand-in).
//! Controller certificates are whatever EVE's Go client verifies, through
//! `sigverify`'s policy: ECDSA P-256/P-384 and RSA from 2048 to 4096 bits
//! (the open controller Adam's default set is RSA 2048), signed with
//! ECDSA, RSA PKCS#1 v1.5 or RSA-PSS over SHA-256, SHA-384 or SHA-512.
//! Ed25519 certificates chain, but EVE signs no envelope with them. Weak RSA
//! keys, SHA-1 and anything else are rejected with a distinct error rather
//! than silently accepted.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use const_oid::db::rfc4519::CN;
use const_oid::db::rfc5280::ID_KP_CLIENT_AUTH;
use const_oid::db::rfc5912::{ECDSA_WITH_SHA_256, ID_EC_PUBLIC_KEY, SECP_256_R_1};
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::asn1::{Any, BitString, GeneralizedTime, OctetString, SetOfVec, UtcTime, Utf8StringRef};
use der::{Decode, DecodePem, Encode, EncodePem, pem::LineEnding};
use p256::PublicKey;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use prost::Message;
use sigverify::{KeyKind, VerifyError, x509_scheme};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{TbsCertificate, Version};

pub use x509_cert::Certificate;

use crate::certs::{ZCert, ZCertType, ZControllerCert};
use crate::sha256;
use crate::sign::Signer;

/// A problem with a single certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertError {
    /// Not parseable as PEM/DER X.509.
    Malformed,
    /// The subject key is not of a kind this use takes (a device key that
    /// is not P-256, an ECDH key that is not P-256, an envelope-signing key
    /// EVE cannot verify with, RSA over 4096 bits, other curves).
    UnsupportedKey,
    /// The certificate is signed with an algorithm we do not verify.
    UnsupportedAlgorithm,
    /// An RSA key under 2048 bits.
    WeakKey,
    /// The certificate is signed over SHA-1 or MD5.
    WeakHash,
    /// Building a certificate failed (bad name, serial or time).
    Encode,
    /// The signer backend failed.
    Sign,
}

/// Parses one PEM "CERTIFICATE" block.
pub fn parse_pem(pem: &[u8]) -> Result<Certificate, CertError> {
    Certificate::from_pem(pem).map_err(|_| CertError::Malformed)
}

/// Parses every "CERTIFICATE" block of a PEM bundle (at least one).
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<Certificate>, CertError> {
    let certs = Certificate::load_pem_chain(pem).map_err(|_| CertError::Malformed)?;
    if certs.is_empty() {
        return Err(CertError::Malformed);
    }
    Ok(certs)
}

/// Parses a DER certificate.
pub fn parse_der(der: &[u8]) -> Result<Certificate, CertError> {
    Certificate::from_der(der).map_err(|_| CertError::Malformed)
}

/// DER encoding of a certificate.
pub fn to_der(cert: &Certificate) -> Result<Vec<u8>, CertError> {
    cert.to_der().map_err(|_| CertError::Encode)
}

/// PEM encoding (LF line endings, as Go's `pem.Encode` writes).
pub fn to_pem(cert: &Certificate) -> Result<String, CertError> {
    cert.to_pem(LineEnding::LF).map_err(|_| CertError::Encode)
}

/// The certificate's subject key, if it is P-256.
pub fn p256_public_key(cert: &Certificate) -> Result<PublicKey, CertError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<const_oid::ObjectIdentifier>().ok());
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(SECP_256_R_1) {
        return Err(CertError::UnsupportedKey);
    }
    let der = spki.to_der().map_err(|_| CertError::Malformed)?;
    PublicKey::from_public_key_der(&der).map_err(|_| CertError::UnsupportedKey)
}

/// The certificate's subject key, for verifying what it signed.
pub fn signature_key(cert: &Certificate) -> Result<sigverify::PublicKey, CertError> {
    sigverify::PublicKey::from_spki(&cert.tbs_certificate.subject_public_key_info).map_err(|e| {
        match e {
            VerifyError::WeakKey => CertError::WeakKey,
            VerifyError::Malformed => CertError::Malformed,
            _ => CertError::UnsupportedKey,
        }
    })
}

/// Whether `cert` carries a valid signature by the P-256 `issuer_key`.
pub fn verify_signed_by(cert: &Certificate, issuer_key: &PublicKey) -> Result<bool, CertError> {
    signed_by(cert, &VerifyingKey::from(issuer_key).into())
}

/// Whether `cert` carries a valid signature by `issuer_key`: `Ok(false)`
/// when the signature does not verify or the key could not have made it;
/// an error when the algorithm is one we do not verify (weak, unknown or
/// inconsistent with the signed part).
fn signed_by(cert: &Certificate, issuer_key: &sigverify::PublicKey) -> Result<bool, CertError> {
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err(CertError::Malformed);
    }
    let scheme = x509_scheme(&cert.signature_algorithm).map_err(|e| match e {
        VerifyError::WeakHash => CertError::WeakHash,
        VerifyError::Malformed => CertError::Malformed,
        _ => CertError::UnsupportedAlgorithm,
    })?;
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|_| CertError::Malformed)?;
    let Some(signature) = cert.signature.as_bytes() else {
        return Ok(false);
    };
    Ok(issuer_key.verify(scheme, &tbs, signature).is_ok())
}

/// Why a controller certificate set was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    /// The `ZControllerCert` bytes did not decode.
    Malformed,
    /// One certificate was unusable.
    Cert(CertError),
    /// A `ZCert.type` a controller must not send (value given).
    UnknownCertType(i32),
    /// More than one CERT_TYPE_CONTROLLER_SIGNING certificate.
    MultipleSigningCerts,
    /// No CERT_TYPE_CONTROLLER_SIGNING certificate.
    NoSigningCert,
    /// No intermediate or root has the issuer's name.
    IssuerNotFound,
    /// An issuer with the right name did not sign the certificate.
    BadSignature,
    /// An issuer lacks the CA basic constraint.
    IssuerNotCa,
    /// `now` is before some certificate's notBefore.
    NotYetValid,
    /// `now` is after some certificate's notAfter.
    Expired,
    /// The chain is longer than we are willing to follow.
    TooLong,
}

impl From<CertError> for ChainError {
    fn from(e: CertError) -> Self {
        Self::Cert(e)
    }
}

/// A controller certificate that chained to the pinned root.
#[derive(Debug, Clone)]
pub struct ControllerCert {
    /// The PEM bytes exactly as received; EVE fingerprints these.
    pub pem: Vec<u8>,
    /// The certificate's key: for the signing certificate one EVE signs
    /// envelopes with (ECDSA or RSA), for ECDH certificates P-256.
    pub key: sigverify::PublicKey,
    /// SHA-256 of `pem`.
    pub cert_hash: [u8; 32],
}

impl ControllerCert {
    /// The key as P-256, which ECDH certificates always are.
    pub fn p256_key(&self) -> Option<PublicKey> {
        self.key.p256().map(PublicKey::from)
    }
}

/// The usable result of a verified `/certs` response.
#[derive(Debug, Clone)]
pub struct ControllerCerts {
    /// The single envelope-signing certificate.
    pub signing: ControllerCert,
    /// Certificates for ECDH secret exchange ([`crate::cipher`]).
    pub ecdh: Vec<ControllerCert>,
}

/// Longest issuer path we follow from a leaf to the root.
const MAX_DEPTH: usize = 8;

/// Decodes a `/certs` response body and verifies it, see [`verify_controller_certs`].
pub fn verify_controller_cert_bytes(
    bytes: &[u8],
    root: &Certificate,
    now_unix: u64,
) -> Result<ControllerCerts, ChainError> {
    let msg = ZControllerCert::decode(bytes).map_err(|_| ChainError::Malformed)?;
    verify_controller_certs(&msg.certs, root, now_unix)
}

/// Verifies a controller certificate set the way EVE does: intermediates form
/// a pool, there must be exactly one signing certificate, unknown types are
/// refused, and the signing and ECDH certificates must each chain to the
/// pinned `root` with valid signatures and validity windows at `now_unix`
/// (seconds since the Unix epoch; the caller supplies time, as `no_std` has
/// no clock). The signing key must be one EVE verifies envelopes with
/// (ECDSA P-256/P-384 or RSA) and ECDH keys must be P-256, or the set is
/// refused as [`CertError::UnsupportedKey`]; EVE itself would only find out
/// when an envelope or a secret failed.
pub fn verify_controller_certs(
    certs: &[ZCert],
    root: &Certificate,
    now_unix: u64,
) -> Result<ControllerCerts, ChainError> {
    let mut intermediates = Vec::new();
    let mut signing = None;
    let mut ecdh_pems = Vec::new();
    for zc in certs {
        match ZCertType::try_from(zc.r#type) {
            Ok(ZCertType::CertTypeControllerIntermediate) => {
                intermediates.extend(parse_pem_chain(&zc.cert)?);
            }
            Ok(ZCertType::CertTypeControllerSigning) => {
                if signing.replace(&zc.cert).is_some() {
                    return Err(ChainError::MultipleSigningCerts);
                }
            }
            Ok(ZCertType::CertTypeControllerEcdhExchange) => ecdh_pems.push(&zc.cert),
            _ => return Err(ChainError::UnknownCertType(zc.r#type)),
        }
    }
    let signing_pem = signing.ok_or(ChainError::NoSigningCert)?;
    let signing = chain_leaf(signing_pem, &intermediates, root, now_unix)?;
    if !matches!(
        signing.key.kind(),
        KeyKind::P256 | KeyKind::P384 | KeyKind::Rsa { .. }
    ) {
        return Err(CertError::UnsupportedKey.into());
    }
    let ecdh = ecdh_pems
        .into_iter()
        .map(|pem| {
            let cert = chain_leaf(pem, &intermediates, root, now_unix)?;
            match cert.key.kind() {
                KeyKind::P256 => Ok(cert),
                _ => Err(CertError::UnsupportedKey.into()),
            }
        })
        .collect::<Result<_, ChainError>>()?;
    Ok(ControllerCerts { signing, ecdh })
}

fn chain_leaf(
    pem: &[u8],
    intermediates: &[Certificate],
    root: &Certificate,
    now: u64,
) -> Result<ControllerCert, ChainError> {
    let leaf = parse_pem(pem)?;
    let key = signature_key(&leaf)?;
    check_validity(&leaf, now)?;
    let mut current = leaf;
    for _ in 0..MAX_DEPTH {
        let issuer_name = &current.tbs_certificate.issuer;
        if *issuer_name == root.tbs_certificate.subject {
            check_issuer(root, now)?;
            if !signed_by(&current, &signature_key(root)?)? {
                return Err(ChainError::BadSignature);
            }
            return Ok(ControllerCert {
                pem: pem.to_vec(),
                key,
                cert_hash: sha256(pem),
            });
        }
        let mut named = false;
        let mut next = None;
        for cand in intermediates
            .iter()
            .filter(|c| c.tbs_certificate.subject == *issuer_name)
        {
            named = true;
            if signed_by(&current, &signature_key(cand)?)? {
                next = Some(cand);
                break;
            }
        }
        let issuer = match (named, next) {
            (_, Some(issuer)) => issuer,
            (true, None) => return Err(ChainError::BadSignature),
            (false, None) => return Err(ChainError::IssuerNotFound),
        };
        check_issuer(issuer, now)?;
        current = issuer.clone();
    }
    Err(ChainError::TooLong)
}

fn check_issuer(cert: &Certificate, now: u64) -> Result<(), ChainError> {
    check_validity(cert, now)?;
    if !is_ca(cert) {
        return Err(ChainError::IssuerNotCa);
    }
    Ok(())
}

fn check_validity(cert: &Certificate, now: u64) -> Result<(), ChainError> {
    let v = &cert.tbs_certificate.validity;
    if now < v.not_before.to_unix_duration().as_secs() {
        return Err(ChainError::NotYetValid);
    }
    if now > v.not_after.to_unix_duration().as_secs() {
        return Err(ChainError::Expired);
    }
    Ok(())
}

fn is_ca(cert: &Certificate) -> bool {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == BasicConstraints::OID)
        .any(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).is_ok_and(|bc| bc.ca))
}

/// Parameters of a self-signed device certificate.
#[derive(Debug, Clone, Copy)]
pub struct DeviceCertParams<'a> {
    /// Subject (and issuer) common name, typically the device serial or UUID.
    pub common_name: &'a str,
    /// Big-endian serial number, 1..=20 bytes.
    pub serial: &'a [u8],
    /// Start of validity, seconds since the Unix epoch.
    pub not_before_unix: u64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after_unix: u64,
}

/// Builds and signs a self-signed P-256 device certificate through `signer`,
/// so the private key can stay inside a TPM.
pub fn generate_device_cert(
    signer: &dyn Signer,
    params: &DeviceCertParams<'_>,
) -> Result<Certificate, CertError> {
    let name = common_name(params.common_name)?;
    issue(
        signer,
        name.clone(),
        name,
        &signer.public_key(),
        KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyAgreement),
        Some(ID_KP_CLIENT_AUTH),
        params,
    )
}

/// Builds the certificate of the device's ECDH key (EVE's `ecdh.cert.pem`,
/// `CERT_TYPE_DEVICE_ECDH_EXCHANGE`): the key `ecdh_key`, issued by the
/// device certificate `device_cert` and signed with the device key
/// `device`, for key agreement only. The controller checks it against the
/// device certificate and seals secrets for it.
pub fn generate_ecdh_cert(
    device: &dyn Signer,
    device_cert: &Certificate,
    ecdh_key: &PublicKey,
    params: &DeviceCertParams<'_>,
) -> Result<Certificate, CertError> {
    issue(
        device,
        device_cert.tbs_certificate.subject.clone(),
        common_name(params.common_name)?,
        ecdh_key,
        KeyUsage(KeyUsages::KeyAgreement.into()),
        None,
        params,
    )
}

/// Builds the certificate of the device's attestation key (EVE's
/// `attest.cert.pem`, `CERT_TYPE_DEVICE_RESTRICTED_SIGNING`): the TPM's
/// restricted quoting key `attestation_key`, issued by the device
/// certificate and signed with the device key, for signatures only. The
/// controller takes quotes signed by it only once the device key vouched
/// for it this way.
pub fn generate_attestation_cert(
    device: &dyn Signer,
    device_cert: &Certificate,
    attestation_key: &PublicKey,
    params: &DeviceCertParams<'_>,
) -> Result<Certificate, CertError> {
    issue(
        device,
        device_cert.tbs_certificate.subject.clone(),
        common_name(params.common_name)?,
        attestation_key,
        KeyUsage(KeyUsages::DigitalSignature.into()),
        None,
        params,
    )
}

/// A P-256 certificate for `subject_key`, signed through `signer`.
fn issue(
    signer: &dyn Signer,
    issuer: Name,
    subject: Name,
    subject_key: &PublicKey,
    key_usage: KeyUsage,
    extended: Option<ObjectIdentifier>,
    params: &DeviceCertParams<'_>,
) -> Result<Certificate, CertError> {
    let spki_der = subject_key
        .to_public_key_der()
        .map_err(|_| CertError::Encode)?;
    let spki =
        SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).map_err(|_| CertError::Encode)?;
    let sig_alg = AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA_256,
        parameters: None,
    };
    let mut extensions = vec![
        extension(
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            true,
        )?,
        extension(&key_usage, true)?,
    ];
    if let Some(purpose) = extended {
        extensions.push(extension(&ExtendedKeyUsage(vec![purpose]), false)?);
    }
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: serial_number(params.serial)?,
        signature: sig_alg.clone(),
        issuer,
        validity: Validity {
            not_before: time(params.not_before_unix)?,
            not_after: time(params.not_after_unix)?,
        },
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der().map_err(|_| CertError::Encode)?;
    let raw = signer
        .sign_digest(&sha256(&tbs_der))
        .map_err(|_| CertError::Sign)?;
    let sig = Signature::from_slice(&raw).map_err(|_| CertError::Sign)?;
    let signature =
        BitString::from_bytes(sig.to_der().as_bytes()).map_err(|_| CertError::Encode)?;
    Ok(Certificate {
        tbs_certificate: tbs,
        signature_algorithm: sig_alg,
        signature,
    })
}

fn common_name(cn: &str) -> Result<Name, CertError> {
    let value = Any::encode_from(&Utf8StringRef::new(cn).map_err(|_| CertError::Encode)?)
        .map_err(|_| CertError::Encode)?;
    let atv = AttributeTypeAndValue { oid: CN, value };
    let rdn =
        RelativeDistinguishedName(SetOfVec::try_from(vec![atv]).map_err(|_| CertError::Encode)?);
    Ok(RdnSequence(vec![rdn]))
}

fn serial_number(serial: &[u8]) -> Result<SerialNumber, CertError> {
    if serial.is_empty() || serial.len() > 20 {
        return Err(CertError::Encode);
    }
    // DER INTEGERs are signed: a leading 0x00 keeps a high-bit serial positive.
    let mut bytes = Vec::with_capacity(serial.len() + 1);
    if serial[0] & 0x80 != 0 {
        bytes.push(0);
    }
    bytes.extend_from_slice(serial);
    SerialNumber::new(&bytes).map_err(|_| CertError::Encode)
}

/// RFC 5280: UTCTime through 2049, GeneralizedTime from 2050 on.
fn time(unix: u64) -> Result<Time, CertError> {
    const Y2050: u64 = 2_524_608_000;
    let d = Duration::from_secs(unix);
    if unix < Y2050 {
        UtcTime::from_unix_duration(d).map(Time::UtcTime)
    } else {
        GeneralizedTime::from_unix_duration(d).map(Time::GeneralTime)
    }
    .map_err(|_| CertError::Encode)
}

fn extension<T: AssociatedOid + Encode>(value: &T, critical: bool) -> Result<Extension, CertError> {
    let der = value.to_der().map_err(|_| CertError::Encode)?;
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(der).map_err(|_| CertError::Encode)?,
    })
}
