//! Onboarding: the controller's certificates, registration with the
//! onboarding certificate, the UUID and the attestation (the no-TPM
//! request here; with a TPM the quote of `attest`), each retried with
//! backoff until it succeeds.
//!
//! A refused registration is not the end of a round: as EVE's client does
//! (`pkg/pillar/cmd/client`: after `selfRegister` fails it tries `getUuid`
//! with the device certificate at once), the agent asks `/uuid` straight
//! away, whatever the controller answered. A controller that knows the
//! device answers it and onboarding goes on; this is how a rebooted device
//! comes back to Adam, which answers a repeat registration with 409. Only
//! when `/uuid` fails too does the round back off and register again.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::Message;
use eve_proto::attest::{ZAttestRespType, ZAttestResponse, ZAttestResponseCode};
use eve_proto::info::{
    AttestationInfo, AttestationState, DeviceEntity, Entity, ErrorInfo, Severity,
};
use eve_proto::sign;
use eve_proto::uuid::UuidResponse;

use crate::identity::{Rejection, canonical_uuid, open_certs, valid_uuid};
use crate::io::Response;
use crate::logs::Level;

use super::attest::AttestSent;
use super::{
    Agent, AttestStatus, Event, MAX_CERTS_RESPONSE, MAX_SMALL_RESPONSE, Phase,
    REC_CONTROLLER_CERTS, REC_UUID, RegisterStatus, timestamp,
};

impl Agent {
    pub(super) fn on_certs(&mut self, resp: Response) {
        if resp.status != 200 {
            self.unexpected("certs", resp.status);
            return self.retry_later();
        }
        if resp.body.len() > MAX_CERTS_RESPONSE {
            self.reject("certs", Rejection::Oversized);
            return self.retry_later();
        }
        let now_unix = self.unix_ms() / 1000;
        match open_certs(&resp.body, &self.root, now_unix) {
            Ok((trusted, ecdh)) => {
                self.controller = Some(trusted);
                self.controller_ecdh = ecdh;
                self.write(REC_CONTROLLER_CERTS, &resp.body);
                if self.phase == Phase::Running {
                    self.certs_stale = false;
                    self.backoff.reset();
                } else if self.onboarding.is_some() {
                    self.advance(Phase::Register);
                } else {
                    self.advance(Phase::FetchUuid);
                }
            }
            Err(r) => {
                self.reject("certs", r);
                self.retry_later();
            }
        }
    }

    pub(super) fn on_register(&mut self, resp: Response) {
        match resp.status {
            200 | 201 => {
                self.register = RegisterStatus::Onboarded;
                self.note(
                    Level::Info,
                    format!("registered with the controller ({})", resp.status),
                );
                return self.advance(Phase::FetchUuid);
            }
            409 => {
                self.register = RegisterStatus::Conflict;
                self.counters.register_conflicts += 1;
                self.note(
                    Level::Warning,
                    String::from(
                        "register: onboarding cert and serial are taken (409); asking for our UUID",
                    ),
                );
            }
            403 => {
                self.register = RegisterStatus::NotPreRegistered;
                self.note(
                    Level::Warning,
                    String::from(
                        "register: onboarding certificate not pre-registered (403); asking for our UUID",
                    ),
                );
            }
            s => {
                self.register = RegisterStatus::Failed;
                self.unexpected("register", s);
            }
        }
        self.fall_back_to_uuid();
    }

    /// After a refused registration: `/uuid` with the device certificate,
    /// right away and without a backoff step (the round backs off once, if
    /// the fallback fails too).
    fn fall_back_to_uuid(&mut self) {
        self.counters.register_fallbacks += 1;
        self.uuid_fallback = true;
        self.phase = Phase::FetchUuid;
        self.retry_ms = self.now();
    }

    /// `/uuid` failed: after a refused registration the round is over and
    /// registration is tried again after the backoff; otherwise `/uuid` is.
    pub(super) fn uuid_failed(&mut self) {
        if core::mem::take(&mut self.uuid_fallback) {
            self.phase = Phase::Register;
        }
        self.retry_later();
    }

    /// Opens a controller envelope with the signing certificate from
    /// `/certs`, refusing oversized bodies.
    pub(super) fn open(&self, body: &[u8], max: usize) -> Result<Vec<u8>, Rejection> {
        if body.len() > max {
            return Err(Rejection::Oversized);
        }
        let trusted = self.controller.as_ref().ok_or(Rejection::UnknownSigner)?;
        Ok(sign::open_auth_container(body, trusted)?)
    }

    pub(super) fn on_uuid(&mut self, resp: Response) {
        if resp.status != 200 {
            // A refused registration's fallback expects refusals (the
            // controller does not know the device yet): not unexpected.
            if !self.uuid_fallback {
                self.unexpected("uuid", resp.status);
            }
            return self.uuid_failed();
        }
        let parsed = self.open(&resp.body, MAX_SMALL_RESPONSE).and_then(|p| {
            UuidResponse::decode(p.as_slice())
                .ok()
                .filter(|u| valid_uuid(&u.uuid))
                .ok_or(Rejection::Malformed)
        });
        match parsed {
            Ok(u) => {
                let uuid = canonical_uuid(&u.uuid);
                if core::mem::take(&mut self.uuid_fallback) {
                    self.register = RegisterStatus::Recognized;
                    self.note(
                        Level::Info,
                        format!("the controller knows this device as {uuid}; not registering"),
                    );
                }
                if self.uuid.as_deref() != Some(uuid.as_str()) {
                    self.write(REC_UUID, uuid.as_bytes());
                    self.uuid = Some(uuid.clone());
                }
                self.events.push(Event::Onboarded(uuid));
                self.advance(Phase::Attest);
            }
            Err(r) => {
                self.reject("uuid", r);
                self.uuid_failed();
            }
        }
    }

    /// Records why attestation failed, for `attestation_info`, and reports
    /// it (the state is now RESTART_WAIT).
    pub(super) fn attest_failed(&mut self, why: String) {
        self.attest_error = Some((why, self.unix_ms()));
        self.info_due = true;
    }

    /// Where attestation stands, in EVE's terms. The no-TPM request asks
    /// for no nonce and needs no quote, so of EVE's waits only ATTEST_WAIT
    /// (the request is due or in flight) and RESTART_WAIT (backing off
    /// after a failure) apply. With a TPM: NONCE_WAIT until the nonce is
    /// in (the attestation certificate goes first, within it),
    /// INTERNAL_QUOTE_WAIT (`TPM_QUOTE_WAIT`) while the TPM quotes, and
    /// ATTEST_WAIT until the controller judged the quote.
    fn attestation_state(&self, now: u64) -> AttestationState {
        if self.token.is_some() {
            AttestationState::Complete
        } else if self.phase != Phase::Attest {
            AttestationState::Unspecified
        } else if now < self.retry_ms {
            AttestationState::RestartWait
        } else if let Some(tpm) = &self.tpm_attest {
            if tpm.nonce.is_some() {
                AttestationState::TpmQuoteWait
            } else if tpm.quote.is_some() || self.attest_sent == AttestSent::Quote {
                AttestationState::AttestWait
            } else {
                AttestationState::NonceWait
            }
        } else {
            AttestationState::AttestWait
        }
    }

    pub(super) fn attestation_info(&self, now: u64) -> AttestationInfo {
        AttestationInfo {
            state: self.attestation_state(now) as i32,
            error: self.attest_error.as_ref().map(|(why, at)| ErrorInfo {
                description: why.clone(),
                timestamp: Some(timestamp(*at)),
                severity: Severity::Error as i32,
                entities: alloc::vec![DeviceEntity {
                    entity: Entity::Attestation as i32,
                    ..Default::default()
                }],
                retry_condition: String::from("retried with backoff (1 s doubling to 10 min)"),
            }),
        }
    }

    pub(super) fn on_attest(&mut self, resp: Response) {
        let sent = core::mem::take(&mut self.attest_sent);
        if matches!(sent, AttestSent::EcdhCert | AttestSent::AttestCert) {
            let taken = (200..300).contains(&resp.status)
                && self
                    .open(&resp.body, MAX_CERTS_RESPONSE)
                    .ok()
                    .and_then(|p| ZAttestResponse::decode(p.as_slice()).ok())
                    .is_some_and(|r| r.resp_type == ZAttestRespType::AttestRespCert as i32);
            if sent == AttestSent::AttestCert {
                return self.on_attest_cert(taken);
            }
            self.ecdh_cert_answered(taken);
            // The quote goes next, at once.
            self.retry_ms = self.now();
            return;
        }
        if !(200..300).contains(&resp.status) {
            self.attest = AttestStatus::Refused;
            self.unexpected("attest", resp.status);
            self.attest_failed(format!("attest: the controller answered {}", resp.status));
            return self.retry_later();
        }
        let parsed = self
            .open(&resp.body, MAX_CERTS_RESPONSE)
            .and_then(|p| ZAttestResponse::decode(p.as_slice()).map_err(|_| Rejection::Malformed));
        let resp = match parsed {
            Ok(r) => r,
            Err(r) => {
                self.reject("attest", r);
                self.attest_failed(format!("attest: answer rejected ({r:?})"));
                return self.retry_later();
            }
        };
        if sent == AttestSent::Nonce {
            let nonce = (resp.resp_type == ZAttestRespType::AttestRespNonce as i32).then_some(resp);
            return self.on_attest_nonce(nonce);
        }
        let code = resp
            .quote_resp
            .as_ref()
            .and_then(|q| ZAttestResponseCode::try_from(q.response).ok());
        let token = resp
            .quote_resp
            .filter(|q| q.response == ZAttestResponseCode::Success as i32)
            .map(|q| q.integrity_token)
            .filter(|t| !t.is_empty());
        match token {
            Some(t) => {
                self.token = Some(t);
                self.attest = AttestStatus::Attested;
                // Success clears the error: shown next to COMPLETE it would
                // suggest something is still wrong.
                self.attest_error = None;
                self.advance(Phase::Running);
                let now = self.now();
                self.timers.config_ms = now;
                self.info_due = true;
            }
            None => {
                self.attest = AttestStatus::Refused;
                let why = if self.tpm_attest.is_some() {
                    self.tpm_quote_refused(code)
                } else {
                    String::from("attest: the controller issued no integrity token")
                };
                self.note(Level::Warning, why.clone());
                self.attest_failed(why);
                self.retry_later();
            }
        }
    }

    /// An onboarding step failed: back off.
    pub(super) fn retry_later(&mut self) {
        let delay = self.backoff.fail(&mut *self.deps.rng);
        self.retry_ms = self.now() + delay;
    }

    /// Moves to `phase` right away (a step succeeded).
    fn advance(&mut self, phase: Phase) {
        self.backoff.reset();
        self.phase = phase;
        self.retry_ms = self.now();
    }

    /// Returns to an onboarding step after a config refusal, after the
    /// config poll's own backoff.
    pub(super) fn back_to(&mut self, phase: Phase) {
        self.phase = phase;
        self.retry_ms = self.now() + self.config_backoff.fail(&mut *self.deps.rng);
    }
}
