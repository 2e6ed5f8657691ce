//! Attestation: nonces, the attestation certificate, quotes and the
//! integrity token config requests must carry, and key escrow.

use eve_proto::Message;
use eve_proto::attest::{
    AttestStorageKeys, AttestStorageKeysResp, AttestStorageKeysResponseCode, ZAttestNonceResp,
    ZAttestQuoteResp, ZAttestReq, ZAttestReqType, ZAttestRespType, ZAttestResponse,
    ZAttestResponseCode,
};
use eve_proto::certs::ZCertType;
use hyper::StatusCode;

use super::cache::Cached;
use super::{Controller, Dev, Reject, Reply, lock, random};
use crate::quote;
use crate::store::AttestState;

/// Nonce length handed to devices (fits a TPM's `qualifyingData`).
const NONCE_LEN: usize = 32;
/// Integrity token length.
const TOKEN_LEN: usize = 32;

impl Controller {
    /// `attest`: nonce, attestation certificate, quote (with PCRs, or the
    /// no-TPM request) and key escrow, as Adam answers them.
    pub fn attest(&self, dev: &Dev, payload: &[u8]) -> Reply {
        let req = ZAttestReq::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a ZAttestReq"))?;
        // Read, decide and write in one step of the store, so that requests
        // racing on this replica or another cannot both spend one nonce.
        let mut outcome = None;
        let stored = self.store.update_attest(&dev.uuid, &mut |state| {
            let decided = decide(&req, state);
            let write = decided.is_ok();
            outcome = Some(decided);
            write
        })?;
        let resp = match (stored, outcome) {
            (Some(state), Some(Ok(resp))) => {
                let mut cache = lock(&dev.cache);
                cache.attest = state;
                cache.attest_epoch = dev.epoch(Cached::Attest);
                resp
            }
            (_, Some(Err(reject))) => return Err(reject),
            _ => return Err(Reject::new(StatusCode::UNAUTHORIZED, "unknown device")),
        };
        Ok((
            StatusCode::CREATED,
            Some(self.envelope(resp.encode_to_vec())),
        ))
    }
}

/// What `req` does to `state`, and the answer.
fn decide(req: &ZAttestReq, state: &mut AttestState) -> Result<ZAttestResponse, Reject> {
    let mut resp = ZAttestResponse::default();
    match ZAttestReqType::try_from(req.req_type) {
        Ok(ZAttestReqType::AttestReqNonce) => {
            let nonce = random::<NONCE_LEN>().to_vec();
            state.nonce = Some(nonce.clone());
            state.state = "nonce-issued".into();
            resp.resp_type = ZAttestRespType::AttestRespNonce as i32;
            resp.nonce = Some(ZAttestNonceResp { nonce });
        }
        Ok(ZAttestReqType::AttestReqCert) => {
            let cert = req
                .certs
                .iter()
                .find(|c| c.r#type == ZCertType::CertTypeDeviceRestrictedSigning as i32)
                .ok_or_else(|| {
                    Reject::new(
                        StatusCode::BAD_REQUEST,
                        "no restricted signing (attestation) certificate",
                    )
                })?;
            eve_proto::x509::parse_pem(&cert.cert)
                .and_then(|c| eve_proto::x509::p256_public_key(&c))
                .map_err(|e| {
                    Reject::new(
                        StatusCode::BAD_REQUEST,
                        format!("attestation certificate: {e:?}"),
                    )
                })?;
            state.attest_cert_pem = Some(String::from_utf8_lossy(&cert.cert).into_owned());
            resp.resp_type = ZAttestRespType::AttestRespCert as i32;
        }
        Ok(ZAttestReqType::AttestReqQuote) => {
            resp.resp_type = ZAttestRespType::AttestRespQuoteResp as i32;
            let tpm = req.quote.as_ref().filter(|q| !q.pcr_values.is_empty());
            let code = match tpm {
                None => {
                    state.state = "attested-notpm".into();
                    ZAttestResponseCode::Success
                }
                Some(q) => {
                    // The nonce is single use, whatever the outcome.
                    let nonce = state.nonce.take();
                    let key = state
                        .attest_cert_pem
                        .as_deref()
                        .and_then(|p| eve_proto::x509::parse_pem(p.as_bytes()).ok())
                        .and_then(|c| eve_proto::x509::p256_public_key(&c).ok());
                    let code = match (nonce, key) {
                        (None, _) => ZAttestResponseCode::NonceMismatch,
                        (_, None) => ZAttestResponseCode::NoCertFound,
                        (Some(n), Some(k)) => match quote::verify_quote(q, &k, &n) {
                            Ok(()) => ZAttestResponseCode::Success,
                            Err(quote::QuoteError::NonceMismatch) => {
                                ZAttestResponseCode::NonceMismatch
                            }
                            Err(quote::QuoteError::BadSignature | quote::QuoteError::Malformed) => {
                                ZAttestResponseCode::Invalid
                            }
                            Err(_) => ZAttestResponseCode::QuoteFailed,
                        },
                    };
                    state.state = if code == ZAttestResponseCode::Success {
                        "attested-tpm"
                    } else {
                        "failed"
                    }
                    .into();
                    code
                }
            };
            let mut quote_resp = ZAttestQuoteResp {
                response: code as i32,
                ..Default::default()
            };
            if code == ZAttestResponseCode::Success {
                let token = state
                    .integrity_token
                    .get_or_insert_with(|| random::<TOKEN_LEN>().to_vec());
                quote_resp.integrity_token = token.clone();
                if tpm.is_some() {
                    quote_resp.keys = state
                        .storage_keys
                        .as_deref()
                        .and_then(|k| AttestStorageKeys::decode(k).ok())
                        .map(|k| k.keys)
                        .unwrap_or_default();
                }
            }
            resp.quote_resp = Some(quote_resp);
        }
        Ok(ZAttestReqType::StoreKeys) => {
            resp.resp_type = ZAttestRespType::StoreKeys as i32;
            let keys = req.storage_keys.as_ref().ok_or_else(|| {
                Reject::new(
                    StatusCode::BAD_REQUEST,
                    "store-keys request without storage_keys",
                )
            })?;
            let ok = state.integrity_token.as_deref().is_some_and(|t| {
                !keys.integrity_token.is_empty() && t == keys.integrity_token.as_slice()
            });
            let code = if ok {
                state.storage_keys = Some(keys.encode_to_vec());
                AttestStorageKeysResponseCode::Success
            } else {
                AttestStorageKeysResponseCode::ItokenMismatch
            };
            resp.storage_keys_resp = Some(AttestStorageKeysResp {
                response: code as i32,
            });
        }
        _ => {
            return Err(Reject::new(
                StatusCode::BAD_REQUEST,
                format!("unsupported attest request type {}", req.req_type),
            ));
        }
    }
    Ok(resp)
}
