//! A device's way onto a controller, as EVE walks it: `/certs` checked
//! against the root, `register` with the onboarding certificate, `uuid`,
//! a no-TPM `attest` for the integrity token, and the first config.

use bytes::Bytes;
use eve_proto::Message;
use eve_proto::attest::{ZAttestReq, ZAttestReqType, ZAttestResponse};
use eve_proto::config::{ConfigRequest, ConfigResponse, EdgeDevConfig};
use eve_proto::uuid::UuidResponse;
use hyper::{Method, StatusCode};

use crate::device::{DeviceError, SimDevice};
use crate::http::{Client, ClientError};

/// The device API's path prefix.
pub const API: &str = "/api/v2/edgedevice";

/// Why a device could not onboard or talk to the controller.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The request failed on the way.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Signing or verifying failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The controller answered with another status.
    #[error("{step}: controller answered {status}")]
    Status {
        /// The request.
        step: &'static str,
        /// Its answer.
        status: StatusCode,
    },
    /// The answer did not decode.
    #[error("{0}: undecodable answer")]
    Decode(&'static str),
}

/// An onboarded device: its identity, UUID, integrity token and config.
pub struct Onboarded {
    /// Keys, certificates and the controller's signing certificate.
    pub sim: SimDevice,
    /// The UUID the controller gave it.
    pub uuid: String,
    /// The integrity token config polls carry.
    pub token: Vec<u8>,
    /// The `configHash` of the config it holds.
    pub hash: String,
    /// The config it holds.
    pub config: EdgeDevConfig,
}

/// POSTs `body` to `API + path` and returns the answer if it is `want`.
pub async fn expect(
    c: &mut Client,
    path: &str,
    body: Bytes,
    step: &'static str,
    want: StatusCode,
) -> Result<Bytes, FlowError> {
    let (status, body) = c
        .request(Method::POST, &format!("{API}{path}"), body)
        .await?;
    if status != want {
        return Err(FlowError::Status { step, status });
    }
    Ok(body)
}

/// The integrity token from a no-TPM attestation.
pub async fn attest(c: &mut Client, sim: &SimDevice, uuid: &str) -> Result<Vec<u8>, FlowError> {
    let quote = ZAttestReq {
        req_type: ZAttestReqType::AttestReqQuote as i32,
        ..Default::default()
    };
    let body = expect(
        c,
        &format!("/id/{uuid}/attest"),
        sim.sign(quote.encode_to_vec())?,
        "attest",
        StatusCode::CREATED,
    )
    .await?;
    ZAttestResponse::decode(sim.open(&body)?.as_slice())
        .ok()
        .and_then(|r| r.quote_resp)
        .map(|q| q.integrity_token)
        .ok_or(FlowError::Decode("attest"))
}

/// Onboards `sim` through the real API, given the `/certs` answer.
pub async fn onboard(
    c: &mut Client,
    mut sim: SimDevice,
    certs: &[u8],
    root_pem: &str,
) -> Result<Onboarded, FlowError> {
    sim.accept_certs(certs, root_pem)?;
    let (status, _) = c
        .request(
            Method::POST,
            &format!("{API}/register"),
            sim.register_body()?,
        )
        .await?;
    if status != StatusCode::CREATED && status != StatusCode::OK {
        return Err(FlowError::Status {
            step: "register",
            status,
        });
    }
    let body = expect(c, "/uuid", sim.sign(Vec::new())?, "uuid", StatusCode::OK).await?;
    let uuid = UuidResponse::decode(sim.open(&body)?.as_slice())
        .map_err(|_| FlowError::Decode("uuid"))?
        .uuid;
    let token = attest(c, &sim, &uuid).await?;
    let req = ConfigRequest {
        config_hash: String::new(),
        integrity_token: token.clone(),
    };
    let body = expect(
        c,
        &format!("/id/{uuid}/config"),
        sim.sign(req.encode_to_vec())?,
        "config",
        StatusCode::OK,
    )
    .await?;
    let resp = ConfigResponse::decode(sim.open(&body)?.as_slice())
        .map_err(|_| FlowError::Decode("config"))?;
    Ok(Onboarded {
        sim,
        uuid,
        token,
        hash: resp.config_hash,
        config: resp.config.unwrap_or_default(),
    })
}
