//! [`SimDevice`]: an EVE device's identities and envelopes, signed and
//! verified with `eve-proto` exactly as an EVE node does.

use base64::Engine;
use bytes::Bytes;
use eve_proto::Message;
use eve_proto::common::HashAlgorithm;
use eve_proto::register::ZRegisterMsg;
pub use eve_proto::sign::SoftwareSigner;
use eve_proto::sign::{self, SenderIdentity, TrustedSigner};
use eve_proto::x509::{self, DeviceCertParams};

/// Why a simulated device could not be built or could not trust an answer.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Certificate generation failed.
    #[error("certificate: {0:?}")]
    Cert(x509::CertError),
    /// Signing failed.
    #[error("signing: {0:?}")]
    Sign(sign::SignError),
    /// The controller's answer did not verify.
    #[error("controller envelope: {0:?}")]
    Verify(sign::VerifyError),
    /// `/certs` did not verify against the root.
    #[error("controller certificates: {0:?}")]
    Chain(x509::ChainError),
}

/// A fresh P-256 key.
pub fn random_signer() -> SoftwareSigner {
    loop {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).expect("the OS random source works");
        if let Ok(s) = SoftwareSigner::from_bytes(&k) {
            return s;
        }
    }
}

/// A self-signed certificate for `signer` with common name `cn`.
pub fn self_signed(signer: &SoftwareSigner, cn: &str) -> Result<(String, Vec<u8>), DeviceError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut serial = [0u8; 8];
    getrandom::getrandom(&mut serial).expect("the OS random source works");
    serial[0] |= 1;
    let cert = x509::generate_device_cert(
        signer,
        &DeviceCertParams {
            common_name: cn,
            serial: &serial,
            not_before_unix: now - 3600,
            not_after_unix: now + 20 * 365 * 24 * 3600,
        },
    )
    .map_err(DeviceError::Cert)?;
    let pem = x509::to_pem(&cert).map_err(DeviceError::Cert)?;
    let der = x509::to_der(&cert).map_err(DeviceError::Cert)?;
    Ok((pem, der))
}

/// A simulated EVE device: onboarding identity, device identity, and the
/// controller's signing certificate once `/certs` has been verified.
pub struct SimDevice {
    /// Serial number sent at registration.
    pub serial: String,
    /// Onboarding key and certificate PEM.
    pub onboard: (SoftwareSigner, String),
    /// Device key.
    pub key: SoftwareSigner,
    /// Device certificate PEM.
    pub cert_pem: String,
    /// SHA-256 of the device certificate DER.
    pub cert_hash: [u8; 32],
    /// The controller's signing certificate, from `/certs`.
    pub controller: Option<TrustedSigner>,
}

impl SimDevice {
    /// A device with its own device key and the given onboarding identity.
    pub fn new(serial: &str, onboard: (SoftwareSigner, String)) -> Result<Self, DeviceError> {
        let key = random_signer();
        let (cert_pem, der) = self_signed(&key, serial)?;
        Ok(Self {
            serial: serial.to_owned(),
            onboard,
            key,
            cert_pem,
            cert_hash: eve_proto::sha256(&der),
            controller: None,
        })
    }

    /// The certificate of an attestation key `aik`, issued by this device's
    /// certificate and signed with its key, as EVE's `attest.cert.pem`: the
    /// controller takes no other.
    pub fn attestation_cert(&self, aik: &SoftwareSigner) -> Result<String, DeviceError> {
        use eve_proto::sign::Signer;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let device_cert = x509::parse_pem(self.cert_pem.as_bytes()).map_err(DeviceError::Cert)?;
        let cert = x509::generate_attestation_cert(
            &self.key,
            &device_cert,
            &aik.public_key(),
            &DeviceCertParams {
                common_name: &format!("{}-attest", self.serial),
                serial: &[0x01, 0x02],
                not_before_unix: now - 3600,
                not_after_unix: now + 20 * 365 * 24 * 3600,
            },
        )
        .map_err(DeviceError::Cert)?;
        x509::to_pem(&cert).map_err(DeviceError::Cert)
    }

    /// Verifies a `/certs` envelope's chain against `root_pem` and keeps the
    /// signing certificate (EVE checks the envelope after the chain).
    pub fn accept_certs(&mut self, body: &[u8], root_pem: &str) -> Result<(), DeviceError> {
        let container = eve_proto::auth::AuthContainer::decode(body)
            .map_err(|_| DeviceError::Verify(sign::VerifyError::Malformed))?;
        let payload = container
            .protected_payload
            .as_ref()
            .map_or(&[][..], |p| &p.payload);
        let root = x509::parse_pem(root_pem.as_bytes()).map_err(DeviceError::Cert)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let certs =
            x509::verify_controller_cert_bytes(payload, &root, now).map_err(DeviceError::Chain)?;
        let trusted = TrustedSigner::from_controller(&certs.signing);
        sign::verify_auth_container(&container, &trusted).map_err(DeviceError::Verify)?;
        self.controller = Some(trusted);
        Ok(())
    }

    /// The signed registration request (signed with the onboarding key,
    /// onboarding certificate embedded, device certificate as base64 PEM).
    pub fn register_body(&self) -> Result<Bytes, DeviceError> {
        let (onboard_key, onboard_pem) = &self.onboard;
        let der = x509::parse_pem(onboard_pem.as_bytes())
            .and_then(|c| x509::to_der(&c))
            .map_err(DeviceError::Cert)?;
        let msg = ZRegisterMsg {
            pem_cert: base64::engine::general_purpose::STANDARD
                .encode(&self.cert_pem)
                .into_bytes(),
            serial: self.serial.clone(),
            ..Default::default()
        };
        let c = sign::sign_auth_container(
            msg.encode_to_vec(),
            onboard_key,
            &SenderIdentity {
                cert_hash: eve_proto::sha256(&der),
                algo: HashAlgorithm::Sha25632bytes,
                embed_cert_pem: Some(onboard_pem.as_bytes()),
            },
        )
        .map_err(DeviceError::Sign)?;
        Ok(Bytes::from(c.encode_to_vec()))
    }

    /// Wraps a payload in an envelope signed with the device key.
    pub fn sign(&self, payload: Vec<u8>) -> Result<Bytes, DeviceError> {
        let c = sign::sign_auth_container(
            payload,
            &self.key,
            &SenderIdentity {
                cert_hash: self.cert_hash,
                algo: HashAlgorithm::Sha25632bytes,
                embed_cert_pem: None,
            },
        )
        .map_err(DeviceError::Sign)?;
        Ok(Bytes::from(c.encode_to_vec()))
    }

    /// Verifies a controller envelope and returns its payload.
    pub fn open(&self, body: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let trusted = self
            .controller
            .as_ref()
            .ok_or(DeviceError::Verify(sign::VerifyError::UnknownSenderCert))?;
        sign::open_auth_container(body, trusted).map_err(DeviceError::Verify)
    }
}
