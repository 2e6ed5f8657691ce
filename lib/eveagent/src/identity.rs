//! Who the device is and whom it trusts: the device key and self-signed
//! certificate (created on first boot and kept on the state volume, as EVE
//! does on nodes without a TPM), the onboarding identity from the CONFIG
//! partition, and the controller's signing certificate from `/certs`,
//! verified against `root-certificate.pem`.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::Message;
use eve_proto::auth::AuthContainer;
use eve_proto::cipher::KeyAgreement;
use eve_proto::p256;
use eve_proto::sha256;
use eve_proto::sign::{self, Signer, SoftwareSigner, TrustedSigner, VerifyError};
use eve_proto::x509::{self, Certificate, ControllerCert, DeviceCertParams};

use crate::io::{Persist, PersistError, Rng};

/// State-volume record: the software device key (32-byte P-256 scalar).
pub const REC_DEVICE_KEY: &str = "device-key";
/// State-volume record: the device certificate, PEM.
pub const REC_DEVICE_CERT: &str = "device-cert.pem";

/// Validity of a new device certificate: EVE's are long-lived (the
/// controller identifies the device by it, so it must outlive the device).
const CERT_LIFETIME_S: u64 = 20 * 365 * 24 * 3600;

/// Why the agent could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// The state volume failed.
    Persist(PersistError),
    /// `root-certificate.pem` is not a usable certificate.
    RootCert,
    /// `onboard.cert.pem` is not a usable P-256 certificate.
    OnboardingCert,
    /// `onboard.key.pem` is not a P-256 private key.
    OnboardingKey,
    /// The onboarding key does not belong to the onboarding certificate.
    OnboardingMismatch,
    /// Building the device certificate failed (the signer refused).
    DeviceCert,
}

impl From<PersistError> for SetupError {
    fn from(e: PersistError) -> Self {
        Self::Persist(e)
    }
}

/// Where the device key lives.
pub enum DeviceKeySource {
    /// A P-256 key generated on first boot and kept in [`REC_DEVICE_KEY`];
    /// it also opens the secrets the controller seals for the device
    /// certificate.
    Software,
    /// A key held elsewhere (TPM through the host); never leaves it.
    External(Box<dyn Signer>),
}

/// A key the device opens sealed secrets with, and the certificate the
/// controller sealed them for.
pub struct SecretKey {
    agreement: Box<dyn KeyAgreement>,
    /// SHA-256 of the certificate's PEM, which cipher contexts name.
    cert_hash: [u8; 32],
}

impl SecretKey {
    /// `agreement` for the certificate `cert_pem`.
    pub fn new(agreement: Box<dyn KeyAgreement>, cert_pem: &[u8]) -> Self {
        Self {
            agreement,
            cert_hash: sha256(cert_pem),
        }
    }

    /// Whether a cipher context's `device_cert_hash` (a prefix of the
    /// SHA-256 of the certificate's PEM) names this key's certificate.
    pub fn named_by(&self, hash: &[u8]) -> bool {
        !hash.is_empty() && self.cert_hash.starts_with(hash)
    }

    /// The key agreement.
    pub fn agreement(&self) -> &dyn KeyAgreement {
        &*self.agreement
    }
}

/// The onboarding identity from the CONFIG partition.
pub struct Onboarding {
    cert_pem: Vec<u8>,
    cert_hash: [u8; 32],
    signer: Box<dyn Signer>,
}

impl Onboarding {
    /// From `onboard.cert.pem` and `onboard.key.pem` (PKCS#8 or SEC1).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, SetupError> {
        let cert = x509::parse_pem(cert_pem).map_err(|_| SetupError::OnboardingCert)?;
        let public = x509::p256_public_key(&cert).map_err(|_| SetupError::OnboardingCert)?;
        let der = x509::to_der(&cert).map_err(|_| SetupError::OnboardingCert)?;
        let key_text = core::str::from_utf8(key_pem).map_err(|_| SetupError::OnboardingKey)?;
        let signer = SoftwareSigner::from_pem(key_text).map_err(|_| SetupError::OnboardingKey)?;
        if signer.public_key() != public {
            return Err(SetupError::OnboardingMismatch);
        }
        Ok(Self {
            cert_pem: cert_pem.to_vec(),
            cert_hash: sha256(&der),
            signer: Box::new(signer),
        })
    }

    /// The certificate PEM, embedded (base64) in the register envelope.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// SHA-256 of the certificate's DER (`senderCertHash`).
    pub fn cert_hash(&self) -> [u8; 32] {
        self.cert_hash
    }

    /// The onboarding key.
    pub fn signer(&self) -> &dyn Signer {
        &*self.signer
    }
}

/// The device key and certificate.
pub struct DeviceIdentity {
    signer: Box<dyn Signer>,
    cert_pem: Vec<u8>,
    cert_hash: [u8; 32],
    /// The software key as a key agreement (none for a TPM key, which
    /// only signs).
    secret: Option<p256::SecretKey>,
}

impl DeviceIdentity {
    /// The device key.
    pub fn signer(&self) -> &dyn Signer {
        &*self.signer
    }

    /// The device certificate, PEM.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// SHA-256 of the certificate's DER: the `senderCertHash` of every
    /// device envelope.
    pub fn cert_hash(&self) -> [u8; 32] {
        self.cert_hash
    }

    /// The software device key as a key for sealed secrets, with its
    /// certificate; none when the key is held elsewhere.
    pub fn secret_key(&self) -> Option<SecretKey> {
        self.secret
            .clone()
            .map(|k| SecretKey::new(Box::new(k), &self.cert_pem))
    }

    /// Loads the device identity, creating what is missing: the software
    /// key first (so a power loss between the two writes keeps the key and
    /// only the certificate is made again), then the certificate. A stored
    /// certificate that does not match the key is replaced.
    pub fn load_or_create(
        persist: &mut dyn Persist,
        rng: &mut dyn Rng,
        source: DeviceKeySource,
        common_name: &str,
        now_unix: u64,
    ) -> Result<(Self, bool), SetupError> {
        let (signer, secret): (Box<dyn Signer>, _) = match source {
            DeviceKeySource::External(s) => (s, None),
            DeviceKeySource::Software => {
                let secret = software_key(persist, rng)?;
                (Box::new(SoftwareSigner::new(&secret)), Some(secret))
            }
        };
        if let Some(pem) = persist.read(REC_DEVICE_CERT)? {
            let usable = x509::parse_pem(&pem).ok().and_then(|cert| {
                let key = x509::p256_public_key(&cert).ok()?;
                let der = x509::to_der(&cert).ok()?;
                (key == signer.public_key()).then(|| sha256(&der))
            });
            if let Some(cert_hash) = usable {
                return Ok((
                    Self {
                        signer,
                        cert_pem: pem,
                        cert_hash,
                        secret,
                    },
                    false,
                ));
            }
        }
        let mut serial = [0u8; 16];
        rng.fill(&mut serial);
        serial[0] = (serial[0] & 0x7f) | 0x01;
        let not_before = now_unix.saturating_sub(3600);
        let cert = x509::generate_device_cert(
            &*signer,
            &DeviceCertParams {
                common_name,
                serial: &serial,
                not_before_unix: not_before,
                not_after_unix: not_before + CERT_LIFETIME_S,
            },
        )
        .map_err(|_| SetupError::DeviceCert)?;
        let pem = x509::to_pem(&cert).map_err(|_| SetupError::DeviceCert)?;
        let der = x509::to_der(&cert).map_err(|_| SetupError::DeviceCert)?;
        persist.write(REC_DEVICE_CERT, pem.as_bytes())?;
        Ok((
            Self {
                signer,
                cert_pem: pem.into_bytes(),
                cert_hash: sha256(&der),
                secret,
            },
            true,
        ))
    }
}

fn software_key(
    persist: &mut dyn Persist,
    rng: &mut dyn Rng,
) -> Result<p256::SecretKey, SetupError> {
    if let Some(bytes) = persist.read(REC_DEVICE_KEY)?
        && let Ok(scalar) = <[u8; 32]>::try_from(bytes.as_slice())
        && let Ok(secret) = p256::SecretKey::from_slice(&scalar)
    {
        return Ok(secret);
    }
    loop {
        let mut scalar = [0u8; 32];
        rng.fill(&mut scalar);
        if let Ok(secret) = p256::SecretKey::from_slice(&scalar) {
            persist.write(REC_DEVICE_KEY, &scalar)?;
            // A certificate made for a lost key names the wrong key.
            persist.remove(REC_DEVICE_CERT)?;
            return Ok(secret);
        }
        // A zero or out-of-range scalar (probability ~2^-32): draw again.
    }
}

/// Parses `root-certificate.pem`: any key the controller chain can be
/// verified with (ECDSA P-256/P-384, RSA 2048 to 4096 bits, Ed25519).
pub fn parse_root(pem: &[u8]) -> Result<Certificate, SetupError> {
    let cert = x509::parse_pem(pem).map_err(|_| SetupError::RootCert)?;
    x509::signature_key(&cert).map_err(|_| SetupError::RootCert)?;
    Ok(cert)
}

/// Why a controller answer was not accepted. Each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not decodable (truncated, garbage, missing parts).
    Malformed,
    /// Longer than the agent accepts for this request.
    Oversized,
    /// The envelope's signature does not verify.
    BadSignature,
    /// `senderCertHash` names a certificate we do not have (rotated?).
    UnknownSigner,
    /// `/certs` did not chain to `root-certificate.pem`.
    BadChain,
    /// The config is for another device.
    WrongUuid,
    /// The config is older than the one we have.
    StaleTimestamp,
}

impl From<VerifyError> for Rejection {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::UnknownSenderCert => Self::UnknownSigner,
            VerifyError::BadSignature => Self::BadSignature,
            VerifyError::Malformed
            | VerifyError::BadHashLength(_)
            | VerifyError::UnsupportedAlgorithm(_) => Self::Malformed,
        }
    }
}

/// Verifies a `/certs` answer: the chain against `root` at `now_unix`, then
/// the envelope with the signing certificate it names (EVE's order).
/// Returns the signer and the controller's ECDH certificates (for sealed
/// secrets).
pub fn open_certs(
    body: &[u8],
    root: &Certificate,
    now_unix: u64,
) -> Result<(TrustedSigner, Vec<ControllerCert>), Rejection> {
    let container = AuthContainer::decode(body).map_err(|_| Rejection::Malformed)?;
    let payload = container
        .protected_payload
        .as_ref()
        .map_or(&[][..], |p| p.payload.as_slice());
    let certs = x509::verify_controller_cert_bytes(payload, root, now_unix)
        .map_err(|_| Rejection::BadChain)?;
    let trusted = TrustedSigner::from_controller(&certs.signing);
    sign::verify_auth_container(&container, &trusted)?;
    Ok((trusted, certs.ecdh))
}

/// Checks that `uuid` looks like a UUID (the controller's answer ends up
/// in every path we request).
pub fn valid_uuid(uuid: &str) -> bool {
    uuid.len() == 36
        && uuid.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The device's UUID in canonical lower case.
pub fn canonical_uuid(uuid: &str) -> String {
    uuid.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use std::prelude::rust_2024::*;
    use std::vec;

    #[derive(Default)]
    struct Mem(BTreeMap<String, Vec<u8>>);
    impl Persist for Mem {
        fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, PersistError> {
            Ok(self.0.get(name).cloned())
        }
        fn write(&mut self, name: &str, data: &[u8]) -> Result<(), PersistError> {
            self.0.insert(name.into(), data.to_vec());
            Ok(())
        }
        fn remove(&mut self, name: &str) -> Result<(), PersistError> {
            self.0.remove(name);
            Ok(())
        }
    }
    struct Seq(u8);
    impl Rng for Seq {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                self.0 = self.0.wrapping_mul(29).wrapping_add(7);
                *b = self.0;
            }
        }
    }

    const NOW: u64 = 1_767_225_600;

    #[test]
    fn identity_is_created_once_and_reloaded() {
        let mut p = Mem::default();
        let mut rng = Seq(3);
        let (a, created) =
            DeviceIdentity::load_or_create(&mut p, &mut rng, DeviceKeySource::Software, "SN", NOW)
                .unwrap();
        assert!(created);
        let (b, created) =
            DeviceIdentity::load_or_create(&mut p, &mut rng, DeviceKeySource::Software, "SN", NOW)
                .unwrap();
        assert!(!created);
        assert_eq!(a.cert_pem(), b.cert_pem());
        assert_eq!(a.cert_hash(), b.cert_hash());
        assert_eq!(a.signer().public_key(), b.signer().public_key());
    }

    #[test]
    fn lost_certificate_is_remade_for_the_same_key_and_damaged_key_replaced() {
        let mut p = Mem::default();
        let mut rng = Seq(5);
        let (a, _) =
            DeviceIdentity::load_or_create(&mut p, &mut rng, DeviceKeySource::Software, "SN", NOW)
                .unwrap();
        p.0.remove(REC_DEVICE_CERT);
        let (b, created) =
            DeviceIdentity::load_or_create(&mut p, &mut rng, DeviceKeySource::Software, "SN", NOW)
                .unwrap();
        assert!(created);
        assert_eq!(a.signer().public_key(), b.signer().public_key());
        p.0.insert(REC_DEVICE_KEY.into(), vec![1, 2, 3]);
        let (c, created) =
            DeviceIdentity::load_or_create(&mut p, &mut rng, DeviceKeySource::Software, "SN", NOW)
                .unwrap();
        assert!(created);
        assert_ne!(a.signer().public_key(), c.signer().public_key());
        let cert = x509::parse_pem(c.cert_pem()).unwrap();
        assert_eq!(
            x509::p256_public_key(&cert).unwrap(),
            c.signer().public_key()
        );
    }

    #[test]
    fn external_key_gets_a_certificate_for_itself() {
        let mut p = Mem::default();
        let mut rng = Seq(9);
        let key = SoftwareSigner::from_bytes(&[7u8; 32]).unwrap();
        let public = key.public_key();
        let (id, _) = DeviceIdentity::load_or_create(
            &mut p,
            &mut rng,
            DeviceKeySource::External(Box::new(key)),
            "SN",
            NOW,
        )
        .unwrap();
        assert!(!p.0.contains_key(REC_DEVICE_KEY));
        let cert = x509::parse_pem(id.cert_pem()).unwrap();
        assert_eq!(x509::p256_public_key(&cert).unwrap(), public);
    }

    #[test]
    fn uuid_shape_is_checked() {
        assert!(valid_uuid("6f8a3d0e-1b2c-4d5e-8f90-a1b2c3d4e5f6"));
        assert!(!valid_uuid("6f8a3d0e-1b2c-4d5e-8f90-a1b2c3d4e5f"));
        assert!(!valid_uuid("6f8a3d0e-1b2c-4d5e-8f90/a1b2c3d4e5f6"));
        assert!(!valid_uuid("../../../../../../../../../../../.."));
    }
}
