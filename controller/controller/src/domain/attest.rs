//! Attestation: nonces, the attestation and ECDH certificates, quotes and
//! the integrity token config requests must carry, and key escrow.

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
        // An ECDH certificate is checked against the device certificate.
        let carries_ecdh = req
            .certs
            .iter()
            .any(|c| c.r#type == ZCertType::CertTypeDeviceEcdhExchange as i32);
        let device_cert_pem = if carries_ecdh {
            self.store
                .device(&dev.uuid)?
                .map(|d| d.device_cert_pem)
                .unwrap_or_default()
        } else {
            String::new()
        };
        // Read, decide and write in one step of the store, so that requests
        // racing on this replica or another cannot both spend one nonce.
        let mut outcome = None;
        let stored = self.store.update_attest(&dev.uuid, &mut |state| {
            let decided = decide(&req, state, &device_cert_pem);
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
/// An ECDH certificate is taken only when the device's own key signed it:
/// secrets sealed for it must be for this device.
fn check_ecdh_cert(pem: &[u8], device_cert_pem: &str) -> Result<(), Reject> {
    let bad =
        |why: String| Reject::new(StatusCode::BAD_REQUEST, format!("ECDH certificate: {why}"));
    let cert = eve_proto::x509::parse_pem(pem).map_err(|e| bad(format!("{e:?}")))?;
    eve_proto::x509::p256_public_key(&cert).map_err(|e| bad(format!("{e:?}")))?;
    let device = eve_proto::x509::parse_pem(device_cert_pem.as_bytes())
        .and_then(|c| eve_proto::x509::p256_public_key(&c))
        .map_err(|e| bad(format!("the device certificate: {e:?}")))?;
    match eve_proto::x509::verify_signed_by(&cert, &device) {
        Ok(true) => Ok(()),
        _ => Err(bad(String::from("not signed by the device's key"))),
    }
}

fn decide(
    req: &ZAttestReq,
    state: &mut AttestState,
    device_cert_pem: &str,
) -> Result<ZAttestResponse, Reject> {
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
            let of_type = |t: ZCertType| req.certs.iter().find(|c| c.r#type == t as i32);
            let attest = of_type(ZCertType::CertTypeDeviceRestrictedSigning);
            let ecdh = of_type(ZCertType::CertTypeDeviceEcdhExchange);
            if attest.is_none() && ecdh.is_none() {
                return Err(Reject::new(
                    StatusCode::BAD_REQUEST,
                    "neither a restricted signing (attestation) nor an ECDH certificate",
                ));
            }
            if let Some(cert) = attest {
                eve_proto::x509::parse_pem(&cert.cert)
                    .and_then(|c| eve_proto::x509::p256_public_key(&c))
                    .map_err(|e| {
                        Reject::new(
                            StatusCode::BAD_REQUEST,
                            format!("attestation certificate: {e:?}"),
                        )
                    })?;
                state.attest_cert_pem = Some(String::from_utf8_lossy(&cert.cert).into_owned());
            }
            if let Some(cert) = ecdh {
                check_ecdh_cert(&cert.cert, device_cert_pem)?;
                state.ecdh_cert_pem = Some(String::from_utf8_lossy(&cert.cert).into_owned());
            }
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

#[cfg(test)]
mod tests {
    use eve_proto::certs::ZCert;
    use eve_proto::p256::SecretKey;
    use eve_proto::sign::SoftwareSigner;
    use eve_proto::x509::{self, DeviceCertParams};

    use super::*;

    fn params(cn: &str) -> DeviceCertParams<'_> {
        DeviceCertParams {
            common_name: cn,
            serial: &[1, 2, 3],
            not_before_unix: 1_700_000_000,
            not_after_unix: 1_900_000_000,
        }
    }

    fn cert_request(pem: &str) -> ZAttestReq {
        ZAttestReq {
            req_type: ZAttestReqType::AttestReqCert as i32,
            certs: vec![ZCert {
                r#type: ZCertType::CertTypeDeviceEcdhExchange as i32,
                cert: pem.as_bytes().to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn an_ecdh_certificate_is_taken_only_from_the_device_key() {
        let device = SoftwareSigner::new(&SecretKey::from_slice(&[5; 32]).unwrap());
        let device_cert = x509::generate_device_cert(&device, &params("dev")).unwrap();
        let device_pem = x509::to_pem(&device_cert).unwrap();
        let ecdh = SecretKey::from_slice(&[6; 32]).unwrap().public_key();
        let good = x509::generate_ecdh_cert(&device, &device_cert, &ecdh, &params("dev-ecdh"))
            .and_then(|c| x509::to_pem(&c))
            .unwrap();
        let mut state = AttestState::default();
        let answer = decide(&cert_request(&good), &mut state, &device_pem).unwrap();
        assert_eq!(answer.resp_type, ZAttestRespType::AttestRespCert as i32);
        assert_eq!(state.ecdh_cert_pem.as_deref(), Some(good.as_str()));
        // Signed by another key: refused, and the state keeps what it had.
        let stranger = SoftwareSigner::new(&SecretKey::from_slice(&[7; 32]).unwrap());
        let forged = x509::generate_ecdh_cert(&stranger, &device_cert, &ecdh, &params("x"))
            .and_then(|c| x509::to_pem(&c))
            .unwrap();
        let mut other = state.clone();
        assert!(decide(&cert_request(&forged), &mut other, &device_pem).is_err());
        assert!(decide(&cert_request("not a certificate"), &mut other, &device_pem).is_err());
        let empty = ZAttestReq {
            req_type: ZAttestReqType::AttestReqCert as i32,
            ..Default::default()
        };
        assert!(decide(&empty, &mut other, &device_pem).is_err());
        assert_eq!(other, state);
    }
}
