//! Onboarding: `register` with the onboarding certificate, then `uuid`.

use eve_proto::auth::AuthContainer;
use eve_proto::register::ZRegisterMsg;
use eve_proto::sign::{self, TrustedSigner, VerifyError};
use eve_proto::uuid::UuidResponse;
use eve_proto::{Message, sha256};
use hyper::StatusCode;

use super::{Controller, Dev, Reject, Reply, hex, now, random, unix_secs};
use crate::configspec;
use crate::store::{AttestState, Device, RegisterOutcome};

impl Controller {
    /// `register`: signed by the onboarding certificate embedded in
    /// `senderCert`, which must be on the allow-list with the serial.
    pub fn register(&self, body: &[u8]) -> Reply {
        let container = AuthContainer::decode(body)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "body is not an AuthContainer"))?;
        if container.sender_cert.is_empty() {
            return Err(Reject::new(
                StatusCode::BAD_REQUEST,
                "register needs senderCert (the onboarding certificate)",
            ));
        }
        let onboard = TrustedSigner::from_embedded_sender_cert(&container)
            .map_err(|e| Reject::new(StatusCode::BAD_REQUEST, format!("senderCert: {e:?}")))?;
        let payload = sign::verify_auth_container(&container, &onboard).map_err(|e| match e {
            VerifyError::BadSignature | VerifyError::UnknownSenderCert => Reject::new(
                StatusCode::UNAUTHORIZED,
                format!("onboarding signature: {e:?}"),
            ),
            other => Reject::new(StatusCode::BAD_REQUEST, format!("bad envelope: {other:?}")),
        })?;
        let onboard_hash = hex(onboard.cert_hash());
        let msg = ZRegisterMsg::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a ZRegisterMsg"))?;
        let entry = self.store.onboard_find(&onboard_hash)?.ok_or_else(|| {
            Reject::new(
                StatusCode::FORBIDDEN,
                "onboarding certificate is not pre-registered",
            )
        })?;
        let serial = [&msg.serial, &msg.soft_serial]
            .into_iter()
            .find(|s| !s.is_empty() && (entry.serials.is_empty() || entry.serials.contains(s)))
            .cloned()
            .ok_or_else(|| {
                Reject::new(
                    StatusCode::FORBIDDEN,
                    "serial is not allowed for this onboarding certificate",
                )
            })?;
        let pem = device_cert_pem(&msg.pem_cert)?;
        let cert = eve_proto::x509::parse_pem(&pem).map_err(|_| {
            Reject::new(StatusCode::BAD_REQUEST, "pemCert is not a PEM certificate")
        })?;
        let der = eve_proto::x509::to_der(&cert).map_err(|_| {
            Reject::new(StatusCode::BAD_REQUEST, "pemCert is not a PEM certificate")
        })?;
        TrustedSigner::from_device_der(&der).map_err(|e| {
            Reject::new(
                StatusCode::BAD_REQUEST,
                format!("device certificate: {e:?}"),
            )
        })?;
        let uuid = configspec::format_uuid(&{
            let mut b = random::<16>();
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            b
        });
        let device = Device {
            uuid: uuid.clone(),
            device_cert_pem: String::from_utf8_lossy(&pem).into_owned(),
            device_cert_hash: hex(&sha256(&der)),
            onboard_cert_hash: onboard_hash,
            serial,
            registered: unix_secs(),
            last_seen: unix_secs(),
            attest: AttestState {
                state: "none".into(),
                ..Default::default()
            },
        };
        let initial = configspec::initial(&uuid, now()).encode_to_vec();
        match self.store.register_device(&device, &initial)? {
            RegisterOutcome::Created => {
                self.devices
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert_device(&device);
                Ok((StatusCode::CREATED, None))
            }
            RegisterOutcome::Repeat(_) => Ok((StatusCode::OK, None)),
            RegisterOutcome::Conflict => Err(Reject::new(
                StatusCode::CONFLICT,
                "onboarding certificate and serial are used by another device",
            )),
        }
    }

    /// `uuid`: the UUID the signer was given.
    pub fn uuid(&self, dev: &Dev) -> Reply {
        let resp = UuidResponse {
            uuid: dev.uuid.clone(),
            ..Default::default()
        };
        Ok((StatusCode::OK, Some(self.envelope(resp.encode_to_vec()))))
    }
}

/// EVE sends `pemCert` as base64 of the PEM; raw PEM is accepted too.
fn device_cert_pem(field: &[u8]) -> Result<Vec<u8>, Reject> {
    if field.starts_with(b"-----BEGIN") {
        return Ok(field.to_vec());
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(field)
        .map_err(|_| {
            Reject::new(
                StatusCode::BAD_REQUEST,
                "pemCert is neither PEM nor base64 of PEM",
            )
        })
}
