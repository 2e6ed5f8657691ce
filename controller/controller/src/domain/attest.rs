//! Attestation: nonces, the attestation and ECDH certificates, quotes and
//! the integrity token config requests must carry, and key escrow.

use std::collections::BTreeMap;

use eve_proto::Message;
use eve_proto::attest::{
    AttestStorageKeys, AttestStorageKeysResp, AttestStorageKeysResponseCode, TpmHashAlgo,
    ZAttestNonceResp, ZAttestQuote, ZAttestQuoteResp, ZAttestReq, ZAttestReqType, ZAttestRespType,
    ZAttestResponse, ZAttestResponseCode,
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
/// Oldest nonce a quote may carry, in seconds: long enough for a slow TPM
/// and a slow link, short enough that a nonce captured on its way to the
/// device is useless soon after.
pub const NONCE_MAX_AGE_S: i64 = 300;

/// The PCR values a device's quotes must show: PCR index to its SHA-256
/// value. Stored as `index=hex` pairs joined by `,`, lowest index first.
pub type PcrPolicy = BTreeMap<u32, Vec<u8>>;

/// Parses a stored or operator-given policy; `None` for a malformed one.
pub fn parse_pcr_policy(text: &str) -> Option<PcrPolicy> {
    let mut policy = PcrPolicy::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (index, value) = pair.split_once('=')?;
        let index: u32 = index.trim().parse().ok().filter(|i| *i < 24)?;
        let value = unhex(value.trim()).filter(|v| v.len() == 32)?;
        if policy.insert(index, value).is_some() {
            return None;
        }
    }
    (!policy.is_empty()).then_some(policy)
}

/// Bytes from lowercase or uppercase hex; `None` for anything else.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The stored form of `policy`.
pub fn format_pcr_policy(policy: &PcrPolicy) -> String {
    policy
        .iter()
        .map(|(i, v)| format!("{i}={}", super::hex(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The seconds since the Unix epoch.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Controller {
    /// `attest`: nonce, attestation certificate, quote (with PCRs, or the
    /// no-TPM request) and key escrow, as Adam answers them.
    pub fn attest(&self, dev: &Dev, payload: &[u8]) -> Reply {
        let req = ZAttestReq::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a ZAttestReq"))?;
        // ECDH and attestation certificates are checked against the
        // device certificate.
        let carries_device_signed = req.certs.iter().any(|c| {
            c.r#type == ZCertType::CertTypeDeviceEcdhExchange as i32
                || c.r#type == ZCertType::CertTypeDeviceRestrictedSigning as i32
        });
        let device_cert_pem = if carries_device_signed {
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
            let decided = decide(&req, state, &device_cert_pem, now_unix());
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

impl Controller {
    /// Sets (`Some`) or clears (`None`) the PCR values `uuid`'s quotes must
    /// show: after a firmware or boot change the operator vouches for the
    /// new values, or clears the policy so the next quote's values become
    /// it. `false` when there is no such device.
    pub fn set_pcr_policy(
        &self,
        uuid: &str,
        policy: Option<&PcrPolicy>,
    ) -> Result<bool, crate::store::StoreError> {
        let text = policy.map(format_pcr_policy);
        let written = self.store.update_attest(uuid, &mut |state| {
            state.pcr_policy = text.clone();
            true
        })?;
        Ok(written.is_some())
    }
}

/// An ECDH or attestation certificate is taken only when the device's own
/// key signed it: secrets sealed for an ECDH key must be for this device,
/// and quotes are trusted only from a key the device key vouched for.
fn check_device_signed(pem: &[u8], device_cert_pem: &str, what: &str) -> Result<(), Reject> {
    let bad = |why: String| Reject::new(StatusCode::BAD_REQUEST, format!("{what}: {why}"));
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

/// Checks a verified quote's PCR values against the device's policy; with
/// none yet, the values become it (the first attested values are trusted).
/// The reason for a refusal names the PCR.
fn check_pcr_policy(quote: &ZAttestQuote, state: &mut AttestState) -> Result<(), String> {
    let quoted: PcrPolicy = quote
        .pcr_values
        .iter()
        .filter(|p| p.hash_algo == TpmHashAlgo::Sha256 as i32)
        .map(|p| (p.index, p.value.clone()))
        .collect();
    let Some(text) = state.pcr_policy.as_deref() else {
        state.pcr_policy = Some(format_pcr_policy(&quoted));
        return Ok(());
    };
    let policy = parse_pcr_policy(text).ok_or("the stored PCR policy is malformed")?;
    for (index, want) in &policy {
        match quoted.get(index) {
            Some(got) if got == want => {}
            Some(_) => return Err(format!("PCR {index} differs from the policy")),
            None => return Err(format!("PCR {index} is in the policy but not quoted")),
        }
    }
    Ok(())
}

/// What `req` does to `state` at `now` (Unix seconds), and the answer.
fn decide(
    req: &ZAttestReq,
    state: &mut AttestState,
    device_cert_pem: &str,
    now: i64,
) -> Result<ZAttestResponse, Reject> {
    let mut resp = ZAttestResponse::default();
    match ZAttestReqType::try_from(req.req_type) {
        Ok(ZAttestReqType::AttestReqNonce) => {
            let nonce = random::<NONCE_LEN>().to_vec();
            state.nonce = Some(nonce.clone());
            state.nonce_issued = Some(now);
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
                check_device_signed(&cert.cert, device_cert_pem, "attestation certificate")?;
                state.attest_cert_pem = Some(String::from_utf8_lossy(&cert.cert).into_owned());
            }
            if let Some(cert) = ecdh {
                check_device_signed(&cert.cert, device_cert_pem, "ECDH certificate")?;
                state.ecdh_cert_pem = Some(String::from_utf8_lossy(&cert.cert).into_owned());
            }
            resp.resp_type = ZAttestRespType::AttestRespCert as i32;
        }
        Ok(ZAttestReqType::AttestReqQuote) => {
            resp.resp_type = ZAttestRespType::AttestRespQuoteResp as i32;
            let tpm = req.quote.as_ref().filter(|q| !q.pcr_values.is_empty());
            let code = match tpm {
                // A device that attested with its TPM has a PCR policy: it
                // must quote, or changed PCRs would pass as "no TPM". The
                // operator's `--clear` lifts this.
                None if state.pcr_policy.is_some() => {
                    state.state =
                        "failed: a request without a quote from a device that attested with its TPM"
                            .into();
                    ZAttestResponseCode::QuoteFailed
                }
                None => {
                    state.state = "attested-notpm".into();
                    ZAttestResponseCode::Success
                }
                Some(q) => {
                    // The nonce is single use, whatever the outcome, and
                    // good for NONCE_MAX_AGE_S only.
                    let issued = state.nonce_issued.take();
                    let nonce = state
                        .nonce
                        .take()
                        .filter(|_| issued.is_some_and(|t| now - t <= NONCE_MAX_AGE_S));
                    let key = state
                        .attest_cert_pem
                        .as_deref()
                        .and_then(|p| eve_proto::x509::parse_pem(p.as_bytes()).ok())
                        .and_then(|c| eve_proto::x509::p256_public_key(&c).ok());
                    let verdict = match (nonce, key) {
                        (None, _) => Err((
                            ZAttestResponseCode::NonceMismatch,
                            String::from("no outstanding nonce, or it is over 300 s old"),
                        )),
                        (_, None) => Err((
                            ZAttestResponseCode::NoCertFound,
                            String::from("no attestation certificate"),
                        )),
                        (Some(n), Some(k)) => match quote::verify_quote(q, &k, &n) {
                            Ok(()) => check_pcr_policy(q, state).map_err(|why| {
                                // A genuine, fresh quote shows the device
                                // is no longer in the attested state: the
                                // token an earlier quote earned is revoked.
                                // (A replay or a forgery revokes nothing.)
                                state.integrity_token = None;
                                (ZAttestResponseCode::QuoteFailed, why)
                            }),
                            Err(e) => Err((
                                match e {
                                    quote::QuoteError::NonceMismatch => {
                                        ZAttestResponseCode::NonceMismatch
                                    }
                                    quote::QuoteError::BadSignature
                                    | quote::QuoteError::Malformed => ZAttestResponseCode::Invalid,
                                    _ => ZAttestResponseCode::QuoteFailed,
                                },
                                e.to_string(),
                            )),
                        },
                    };
                    match verdict {
                        Ok(()) => {
                            state.state = "attested-tpm".into();
                            ZAttestResponseCode::Success
                        }
                        Err((code, why)) => {
                            // The reason shows in `evectl device show`.
                            state.state = format!("failed: {why}");
                            code
                        }
                    }
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
    use eve_proto::sign::{Signer, SoftwareSigner};
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
        let answer = decide(&cert_request(&good), &mut state, &device_pem, 0).unwrap();
        assert_eq!(answer.resp_type, ZAttestRespType::AttestRespCert as i32);
        assert_eq!(state.ecdh_cert_pem.as_deref(), Some(good.as_str()));
        // Signed by another key: refused, and the state keeps what it had.
        let stranger = SoftwareSigner::new(&SecretKey::from_slice(&[7; 32]).unwrap());
        let forged = x509::generate_ecdh_cert(&stranger, &device_cert, &ecdh, &params("x"))
            .and_then(|c| x509::to_pem(&c))
            .unwrap();
        let mut other = state.clone();
        assert!(decide(&cert_request(&forged), &mut other, &device_pem, 0).is_err());
        assert!(
            decide(
                &cert_request("not a certificate"),
                &mut other,
                &device_pem,
                0
            )
            .is_err()
        );
        let empty = ZAttestReq {
            req_type: ZAttestReqType::AttestReqCert as i32,
            ..Default::default()
        };
        assert!(decide(&empty, &mut other, &device_pem, 0).is_err());
        assert_eq!(other, state);
    }

    /// A device with its device key, certificate and attestation key.
    struct Tpm {
        device_pem: String,
        ak: SoftwareSigner,
        ak_pem: String,
        pcrs: Vec<[u8; 32]>,
    }

    impl Tpm {
        fn new() -> Tpm {
            let device = SoftwareSigner::new(&SecretKey::from_slice(&[5; 32]).unwrap());
            let device_cert = x509::generate_device_cert(&device, &params("dev")).unwrap();
            let device_pem = x509::to_pem(&device_cert).unwrap();
            let ak = SoftwareSigner::new(&SecretKey::from_slice(&[8; 32]).unwrap());
            let ak_pem = x509::generate_attestation_cert(
                &device,
                &device_cert,
                &ak.public_key(),
                &params("dev-attest"),
            )
            .and_then(|c| x509::to_pem(&c))
            .unwrap();
            let pcrs = (0..16u8).map(|i| eve_proto::sha256(&[i])).collect();
            Tpm {
                device_pem,
                ak,
                ak_pem,
                pcrs,
            }
        }

        fn cert_req(&self, pem: &str) -> ZAttestReq {
            ZAttestReq {
                req_type: ZAttestReqType::AttestReqCert as i32,
                certs: vec![ZCert {
                    r#type: ZCertType::CertTypeDeviceRestrictedSigning as i32,
                    cert: pem.as_bytes().to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }
        }

        /// A TPM's quote of PCRs 0-15 over `nonce`.
        fn quote_req(&self, nonce: &[u8]) -> ZAttestReq {
            let mut a = Vec::new();
            a.extend_from_slice(&0xff54_4347u32.to_be_bytes());
            a.extend_from_slice(&0x8018u16.to_be_bytes());
            a.extend_from_slice(&[0, 0]);
            a.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
            a.extend_from_slice(nonce);
            a.extend_from_slice(&[0; 25]);
            a.extend_from_slice(&1u32.to_be_bytes());
            a.extend_from_slice(&[0, 0x0b, 3, 0xff, 0xff, 0]);
            a.extend_from_slice(&32u16.to_be_bytes());
            a.extend_from_slice(&eve_proto::sha256(&self.pcrs.concat()));
            let signature = self
                .ak
                .sign_digest(&eve_proto::sha256(&a))
                .unwrap()
                .to_vec();
            ZAttestReq {
                req_type: ZAttestReqType::AttestReqQuote as i32,
                quote: Some(ZAttestQuote {
                    attest_data: a,
                    signature,
                    pcr_values: self
                        .pcrs
                        .iter()
                        .enumerate()
                        .map(|(i, v)| eve_proto::attest::TpmPcrValue {
                            index: i as u32,
                            hash_algo: TpmHashAlgo::Sha256 as i32,
                            value: v.to_vec(),
                        })
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }

        /// Nonce then quote at `now`; the quote's response code.
        fn attest(&self, state: &mut AttestState, now: i64) -> ZAttestResponseCode {
            let nonce_req = ZAttestReq {
                req_type: ZAttestReqType::AttestReqNonce as i32,
                ..Default::default()
            };
            let nonce = decide(&nonce_req, state, &self.device_pem, now)
                .unwrap()
                .nonce
                .unwrap()
                .nonce;
            self.answer(&self.quote_req(&nonce), state, now)
        }

        fn answer(
            &self,
            req: &ZAttestReq,
            state: &mut AttestState,
            now: i64,
        ) -> ZAttestResponseCode {
            let resp = decide(req, state, &self.device_pem, now).unwrap();
            resp.quote_resp.unwrap().response()
        }
    }

    #[test]
    fn an_attestation_certificate_is_taken_only_from_the_device_key() {
        let tpm = Tpm::new();
        let mut state = AttestState::default();
        decide(&tpm.cert_req(&tpm.ak_pem), &mut state, &tpm.device_pem, 0).unwrap();
        assert_eq!(state.attest_cert_pem.as_deref(), Some(tpm.ak_pem.as_str()));
        // Self-issued by the attestation key itself: refused.
        let device_cert = x509::parse_pem(tpm.device_pem.as_bytes()).unwrap();
        let forged = x509::generate_attestation_cert(
            &tpm.ak,
            &device_cert,
            &tpm.ak.public_key(),
            &params("x"),
        )
        .and_then(|c| x509::to_pem(&c))
        .unwrap();
        let mut other = AttestState::default();
        let refused = decide(&tpm.cert_req(&forged), &mut other, &tpm.device_pem, 0);
        assert!(refused.is_err());
        assert_eq!(other.attest_cert_pem, None);
    }

    #[test]
    fn a_quote_is_accepted_and_its_nonce_spent() {
        let tpm = Tpm::new();
        let mut state = AttestState::default();
        decide(&tpm.cert_req(&tpm.ak_pem), &mut state, &tpm.device_pem, 0).unwrap();
        let now = 1_800_000_000;
        let nonce_req = ZAttestReq {
            req_type: ZAttestReqType::AttestReqNonce as i32,
            ..Default::default()
        };
        let nonce = decide(&nonce_req, &mut state, &tpm.device_pem, now)
            .unwrap()
            .nonce
            .unwrap()
            .nonce;
        let quote = tpm.quote_req(&nonce);
        assert_eq!(
            tpm.answer(&quote, &mut state, now + 1),
            ZAttestResponseCode::Success
        );
        assert_eq!(state.state, "attested-tpm");
        assert!(state.integrity_token.is_some());
        // The first attested values became the policy.
        let policy = parse_pcr_policy(state.pcr_policy.as_deref().unwrap()).unwrap();
        assert_eq!(policy.len(), 16);
        assert_eq!(policy[&7], tpm.pcrs[7].to_vec());
        // The same quote again: its nonce is spent.
        assert_eq!(
            tpm.answer(&quote, &mut state, now + 2),
            ZAttestResponseCode::NonceMismatch
        );
        assert!(
            state.state.starts_with("failed: no outstanding nonce"),
            "{}",
            state.state
        );
    }

    #[test]
    fn a_nonce_older_than_300_s_is_refused() {
        let tpm = Tpm::new();
        let mut state = AttestState::default();
        decide(&tpm.cert_req(&tpm.ak_pem), &mut state, &tpm.device_pem, 0).unwrap();
        let nonce_req = ZAttestReq {
            req_type: ZAttestReqType::AttestReqNonce as i32,
            ..Default::default()
        };
        let nonce = decide(&nonce_req, &mut state, &tpm.device_pem, 1000)
            .unwrap()
            .nonce
            .unwrap()
            .nonce;
        let quote = tpm.quote_req(&nonce);
        let mut late = state.clone();
        assert_eq!(
            tpm.answer(&quote, &mut late, 1000 + NONCE_MAX_AGE_S + 1),
            ZAttestResponseCode::NonceMismatch
        );
        assert_eq!(late.nonce, None, "spent all the same");
        assert_eq!(
            tpm.answer(&quote, &mut state, 1000 + NONCE_MAX_AGE_S),
            ZAttestResponseCode::Success
        );
    }

    #[test]
    fn changed_pcrs_are_refused_until_the_operator_sets_or_clears_the_policy() {
        let mut tpm = Tpm::new();
        let mut state = AttestState::default();
        decide(&tpm.cert_req(&tpm.ak_pem), &mut state, &tpm.device_pem, 0).unwrap();
        assert_eq!(tpm.attest(&mut state, 10), ZAttestResponseCode::Success);
        let first = state.pcr_policy.clone();
        // A firmware change moves PCR 0.
        tpm.pcrs[0] = eve_proto::sha256(b"new firmware");
        assert_eq!(tpm.attest(&mut state, 20), ZAttestResponseCode::QuoteFailed);
        assert_eq!(state.state, "failed: PCR 0 differs from the policy");
        assert_eq!(state.integrity_token, None, "the earlier token is revoked");
        assert_eq!(state.pcr_policy, first, "a refused quote changes no policy");
        // The operator vouches for the new value of PCR 0 (and only it).
        let mut policy = PcrPolicy::new();
        policy.insert(0, tpm.pcrs[0].to_vec());
        state.pcr_policy = Some(format_pcr_policy(&policy));
        assert_eq!(tpm.attest(&mut state, 30), ZAttestResponseCode::Success);
        tpm.pcrs[0] = eve_proto::sha256(b"newer firmware");
        assert_eq!(tpm.attest(&mut state, 40), ZAttestResponseCode::QuoteFailed);
        // Nor can the device fall back to the no-TPM request.
        let no_tpm = ZAttestReq {
            req_type: ZAttestReqType::AttestReqQuote as i32,
            ..Default::default()
        };
        assert_eq!(
            tpm.answer(&no_tpm, &mut state, 45),
            ZAttestResponseCode::QuoteFailed
        );
        assert!(state.state.contains("without a quote"), "{}", state.state);
        // Cleared: the next quote's values are taken.
        state.pcr_policy = None;
        assert_eq!(tpm.attest(&mut state, 50), ZAttestResponseCode::Success);
        let taken = parse_pcr_policy(state.pcr_policy.as_deref().unwrap()).unwrap();
        assert_eq!(taken[&0], tpm.pcrs[0].to_vec());
    }

    #[test]
    fn pcr_policies_parse_strictly() {
        let v = "ab".repeat(32);
        let p = parse_pcr_policy(&format!("7={v},0={v}")).unwrap();
        assert_eq!(p.keys().copied().collect::<Vec<_>>(), [0, 7]);
        assert_eq!(format_pcr_policy(&p), format!("0={v},7={v}"));
        for bad in [
            String::new(),
            format!("24={v}"),
            format!("7={}", "ab".repeat(31)),
            format!("7=+{}", &v[1..]),
            format!("7={v},7={v}"),
            format!("x={v}"),
            String::from("7"),
            format!("7={}", "zz".repeat(32)),
        ] {
            assert_eq!(parse_pcr_policy(&bad), None, "{bad}");
        }
    }
}
