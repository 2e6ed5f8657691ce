//! Certificates for the TPM's keys, issued by the device certificate:
//! the attestation key's and the ECDH key's are loaded, checked and made
//! the same way, so the controller can trust either key as the device's.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::p256::PublicKey;
use eve_proto::sign::Signer;
use eve_proto::x509::{self, CertError, Certificate, DeviceCertParams};

use super::Agent;

/// An `x509` issuer of one kind of TPM key certificate.
pub(super) type IssueKeyCert = fn(
    &dyn Signer,
    &Certificate,
    &PublicKey,
    &DeviceCertParams<'_>,
) -> Result<Certificate, CertError>;

/// One kind of TPM key certificate: where it is kept, how it is named and
/// issued.
pub(super) struct KeyCertKind {
    /// The state volume record holding its PEM.
    pub(super) record: &'static str,
    /// Its common name is the device's serial, a dash and this.
    pub(super) name_suffix: &'static str,
    pub(super) lifetime_s: u64,
    pub(super) issue: IssueKeyCert,
}

impl Agent {
    /// The certificate (PEM) of the TPM key `public`: the one kept on the
    /// state volume while it still certifies `public` under the device
    /// key, else a new one, kept; `None` if it cannot be made.
    pub(super) fn kept_or_new_key_cert(
        &mut self,
        kind: &KeyCertKind,
        public: &PublicKey,
    ) -> Option<Vec<u8>> {
        let device_key = self.device.signer().public_key();
        let kept = self.read(kind.record).filter(|pem| {
            x509::parse_pem(pem).is_ok_and(|cert| {
                x509::p256_public_key(&cert).ok().as_ref() == Some(public)
                    && x509::verify_signed_by(&cert, &device_key).unwrap_or(false)
            })
        });
        if kept.is_some() {
            return kept;
        }
        let pem = self.new_key_cert(kind, public)?;
        self.write(kind.record, &pem);
        Some(pem)
    }

    /// A new certificate (PEM) of `kind` for `public`, issued by the device
    /// certificate with a random serial, valid from an hour ago (clock
    /// skew) for the kind's lifetime.
    fn new_key_cert(&mut self, kind: &KeyCertKind, public: &PublicKey) -> Option<Vec<u8>> {
        let device_cert = x509::parse_pem(self.device.cert_pem()).ok()?;
        let mut serial = [0u8; 16];
        self.deps.rng.fill(&mut serial);
        serial[0] = (serial[0] & 0x7f) | 0x01;
        let now = self.unix_ms() / 1000;
        let name = format!(
            "{}-{}",
            if self.hw_serial.is_empty() {
                &self.soft_serial
            } else {
                &self.hw_serial
            },
            kind.name_suffix
        );
        let cert = (kind.issue)(
            self.device.signer(),
            &device_cert,
            public,
            &DeviceCertParams {
                common_name: &name,
                serial: &serial,
                not_before_unix: now.saturating_sub(3600),
                not_after_unix: now + kind.lifetime_s,
            },
        )
        .ok()?;
        x509::to_pem(&cert).ok().map(String::into_bytes)
    }
}
