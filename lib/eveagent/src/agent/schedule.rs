//! Which exchange runs next and when the agent wants to wake: onboarding
//! steps first, then config, info, metrics and logs; building each request
//! and dispatching its answer.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use base64ct::{Base64, Encoding};
use eve_proto::Message;
use eve_proto::attest::{ZAttestReq, ZAttestReqType};
use eve_proto::common::HashAlgorithm;
use eve_proto::config::ConfigRequest;
use eve_proto::register::ZRegisterMsg;
use eve_proto::sign::{self, SenderIdentity};
use eve_proto::uuid::UuidRequest;

use crate::identity::Rejection;
use crate::io::{Http, MIME_PROTO, Method, Request, Response, TransportError};
use crate::logs::Level;

use super::attest::AttestSent;
use super::{
    API, Agent, MAX_CERTS_RESPONSE, MAX_CONFIG_RESPONSE, MAX_SMALL_RESPONSE, Phase, RegisterStatus,
    SOURCE,
};

/// Exchanges done by one `poll` at most, so the caller's other work runs.
const MAX_EXCHANGES_PER_POLL: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Job {
    Certs,
    Register,
    Uuid,
    Attest,
    Config,
    Info,
    Metrics,
    Logs,
    AppLogs,
    FlowLog,
}

/// Number of [`Job`] kinds, each with its own request counters.
pub(super) const JOB_KINDS: usize = Job::FlowLog as usize + 1;

/// When each loop is next due (monotonic ms).
pub(super) struct Timers {
    pub(super) config_ms: u64,
    pub(super) info_ms: u64,
    pub(super) metrics_ms: u64,
    pub(super) logs_ms: u64,
    pub(super) app_logs_ms: u64,
    pub(super) flows_ms: u64,
}

impl Agent {
    /// Runs every exchange that is due (at most a few) and returns the
    /// monotonic time at which it wants to be polled again.
    pub fn poll(&mut self, http: &mut dyn Http) -> u64 {
        for _ in 0..MAX_EXCHANGES_PER_POLL {
            let now = self.now();
            self.maintain_logs(now);
            self.maintain_app_logs(now);
            if self.reports_allowed() {
                self.refresh_info(now);
            }
            let Some(job) = self.next_job(now) else {
                // Lines logged while handling the last answer.
                self.maintain_logs(now);
                return self.next_wake();
            };
            let Some(request) = self.request(job) else {
                self.fail(job, None);
                continue;
            };
            self.counters.requests += 1;
            let result = http.send(&request);
            if result.is_err() {
                self.counters.transport_errors += 1;
            }
            self.count_exchange(job, &request, &result, now);
            self.handle(job, result);
        }
        self.now()
    }

    /// Whether info, metrics and logs go out: once the UUID is known and
    /// only attestation or the running loops remain, so a controller that
    /// refuses to attest the device still hears its state and why.
    fn reports_allowed(&self) -> bool {
        matches!(self.phase, Phase::Attest | Phase::Running) && self.uuid.is_some()
    }

    /// The onboarding step still to do, if any.
    fn onboarding_job(&self) -> Option<Job> {
        match self.phase {
            Phase::FetchCerts => Some(Job::Certs),
            Phase::Register => Some(Job::Register),
            Phase::FetchUuid => Some(Job::Uuid),
            Phase::Attest => Some(Job::Attest),
            Phase::Running if self.certs_stale => Some(Job::Certs),
            Phase::Running => None,
        }
    }

    /// Whether the config is polled: running with usable controller
    /// certificates (the answer could not be verified otherwise).
    fn config_polled(&self) -> bool {
        self.phase == Phase::Running && !self.certs_stale
    }

    fn next_job(&mut self, now: u64) -> Option<Job> {
        if let Some(job) = self.onboarding_job()
            && now >= self.retry_ms
        {
            return Some(job);
        }
        if !self.reports_allowed() {
            return None;
        }
        if self.config_polled() && now >= self.timers.config_ms {
            return Some(Job::Config);
        }
        if self.info.due(now).is_some() {
            return Some(Job::Info);
        }
        if now >= self.timers.metrics_ms {
            return Some(Job::Metrics);
        }
        if now >= self.timers.logs_ms {
            // On the fast schedule batches are sealed by age instead.
            if !self.settings.log_fast_upload {
                self.seal_logs();
            }
            if self.logs.front().is_some() {
                return Some(Job::Logs);
            }
            self.timers.logs_ms = now + self.log_interval_ms();
        }
        if self.app_logs_due(now) {
            return Some(Job::AppLogs);
        }
        if self.flows_due(now) {
            return Some(Job::FlowLog);
        }
        None
    }

    fn next_wake(&self) -> u64 {
        let mut wake = u64::MAX;
        if self.onboarding_job().is_some() {
            wake = self.retry_ms;
        }
        if self.reports_allowed() {
            if self.config_polled() {
                wake = wake.min(self.timers.config_ms);
            }
            wake = wake
                .min(self.timers.metrics_ms)
                .min(self.timers.logs_ms)
                .min(self.timers.info_ms);
            if let Some(due) = self.info.next_due() {
                wake = wake.min(due);
            }
            if let Some(due) = self.app_uploads_wake() {
                wake = wake.min(due);
            }
        }
        for due in [
            self.log_persist_due(),
            self.log_seal_due(),
            self.app_log_seal_due(),
        ]
        .into_iter()
        .flatten()
        {
            wake = wake.min(due);
        }
        wake
    }

    fn handle(&mut self, job: Job, result: Result<Response, TransportError>) {
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                if matches!(
                    job,
                    Job::Certs | Job::Register | Job::Uuid | Job::Attest | Job::Config
                ) {
                    log::debug!(target: SOURCE, "{job:?}: no answer: {e:?}");
                }
                self.fail(job, Some(e));
                return;
            }
        };
        match job {
            Job::Certs => self.on_certs(resp),
            Job::Register => self.on_register(resp),
            Job::Uuid => self.on_uuid(resp),
            Job::Attest => self.on_attest(resp),
            Job::Config => self.on_config(resp),
            Job::Info => self.on_info(resp),
            Job::Metrics => self.on_metrics(resp),
            Job::Logs => self.on_logs(resp),
            Job::AppLogs => self.on_app_logs(Some(resp)),
            Job::FlowLog => self.on_flowlog(Some(resp)),
        }
    }

    /// A job could not even be sent (signing failed, nothing to send).
    fn fail(&mut self, job: Job, transport: Option<TransportError>) {
        let now = self.now();
        match job {
            // No answer to a registration: no controller to ask for our
            // UUID either, so no fallback; the next round registers again.
            Job::Certs | Job::Register | Job::Attest => {
                match job {
                    Job::Register => self.register = RegisterStatus::Failed,
                    Job::Attest => self.attest_failed(match transport {
                        Some(e) => format!("attest: no answer from the controller ({e:?})"),
                        None => String::from("attest: the request could not be signed"),
                    }),
                    _ => {}
                }
                self.retry_later();
            }
            Job::Uuid => self.uuid_failed(),
            Job::Config => {
                if transport == Some(TransportError::TooLarge) {
                    self.reject("config", Rejection::Oversized);
                }
                self.schedule_config(now);
            }
            Job::Info => {
                if let Some(key) = self.info.due(now).map(|d| d.key.clone()) {
                    self.info.settle(&key, None, now, &mut *self.deps.rng);
                }
            }
            Job::Metrics => {
                self.counters.metrics_failed += 1;
                self.timers.metrics_ms = now + self.settings.metric_interval_s * 1000;
            }
            Job::Logs => {
                self.timers.logs_ms = now + self.log_backoff.fail(&mut *self.deps.rng);
            }
            Job::AppLogs => self.on_app_logs(None),
            Job::FlowLog => self.on_flowlog(None),
        }
    }

    fn request(&mut self, job: Job) -> Option<Request> {
        let uuid = self.uuid.clone().unwrap_or_default();
        Some(match job {
            Job::Certs => Request {
                method: Method::Get,
                path: format!("{API}/certs"),
                body: Vec::new(),
                content_type: MIME_PROTO,
                max_response: MAX_CERTS_RESPONSE,
            },
            Job::Register => {
                let onboarding = self.onboarding.as_ref()?;
                let msg = ZRegisterMsg {
                    pem_cert: Base64::encode_string(self.device.cert_pem()).into_bytes(),
                    serial: self.hw_serial.clone(),
                    soft_serial: self.soft_serial.clone(),
                    ..Default::default()
                };
                let sender = SenderIdentity {
                    cert_hash: onboarding.cert_hash(),
                    algo: HashAlgorithm::Sha25632bytes,
                    embed_cert_pem: Some(onboarding.cert_pem()),
                };
                let body =
                    sign::sign_auth_container(msg.encode_to_vec(), onboarding.signer(), &sender)
                        .ok()?
                        .encode_to_vec();
                self.post(format!("{API}/register"), body, MAX_SMALL_RESPONSE)
            }
            Job::Uuid => {
                let body = self.sign(UuidRequest::default().encode_to_vec())?;
                self.post(format!("{API}/uuid"), body, MAX_SMALL_RESPONSE)
            }
            Job::Attest => {
                // The ECDH key's certificate first, when the controller
                // has not taken it; then, with a TPM, the attestation
                // certificate, a nonce and the quote; without one a quote
                // request without PCRs. Either way the controller answers
                // the quote with an integrity token.
                let (req, sent) = match self.ecdh_cert_request() {
                    Some(cert) => (cert, AttestSent::EcdhCert),
                    None => self.tpm_attest_request().unwrap_or((
                        ZAttestReq {
                            req_type: ZAttestReqType::AttestReqQuote as i32,
                            ..Default::default()
                        },
                        AttestSent::Quote,
                    )),
                };
                self.attest_sent = sent;
                let body = self.sign(req.encode_to_vec())?;
                self.post(format!("{API}/id/{uuid}/attest"), body, MAX_CERTS_RESPONSE)
            }
            Job::Config => {
                let req = ConfigRequest {
                    config_hash: self
                        .current
                        .as_ref()
                        .map(|c| c.hash.clone())
                        .unwrap_or_default(),
                    integrity_token: self.token.clone().unwrap_or_default(),
                };
                let body = self.sign(req.encode_to_vec())?;
                self.post(format!("{API}/id/{uuid}/config"), body, MAX_CONFIG_RESPONSE)
            }
            Job::Info => {
                let item = self.info.due(self.now())?;
                self.post(item.path.clone(), item.body.clone(), MAX_SMALL_RESPONSE)
            }
            Job::Metrics => {
                let body = self.sign(self.metrics_msg(&uuid).encode_to_vec())?;
                self.post(format!("{API}/id/{uuid}/metrics"), body, MAX_SMALL_RESPONSE)
            }
            Job::Logs => {
                let gzip = self.logs.front()?.gzip.clone();
                let body = self.sign(gzip)?;
                self.post(format!("{API}/id/{uuid}/newlogs"), body, MAX_SMALL_RESPONSE)
            }
            Job::AppLogs => {
                let batch = self.app_logs.front()?;
                let path = format!("{API}/id/{uuid}/apps/instanceid/{}/newlogs", batch.app);
                let body = self.sign(batch.gzip.clone())?;
                self.post(path, body, MAX_SMALL_RESPONSE)
            }
            Job::FlowLog => {
                let body = self.sign(self.flows.front()?.to_vec())?;
                self.post(format!("{API}/id/{uuid}/flowlog"), body, MAX_SMALL_RESPONSE)
            }
        })
    }

    fn post(&self, path: String, body: Vec<u8>, max_response: usize) -> Request {
        Request {
            method: Method::Post,
            path,
            body,
            content_type: MIME_PROTO,
            max_response,
        }
    }

    /// Wraps a payload in an envelope signed by the device key.
    pub(super) fn sign(&self, payload: Vec<u8>) -> Option<Vec<u8>> {
        let sender = SenderIdentity {
            cert_hash: self.device.cert_hash(),
            algo: HashAlgorithm::Sha25632bytes,
            embed_cert_pem: None,
        };
        sign::sign_auth_container(payload, self.device.signer(), &sender)
            .ok()
            .map(|c| c.encode_to_vec())
    }

    pub(super) fn reject(&mut self, what: &str, r: Rejection) {
        self.counters.rejected.count(r);
        if r == Rejection::UnknownSigner {
            // The controller may have rotated its signing certificate.
            self.certs_stale = true;
        }
        self.note(Level::Error, format!("rejected {what} answer: {r:?}"));
    }

    pub(super) fn unexpected(&mut self, what: &str, status: u16) {
        self.counters.unexpected_status += 1;
        self.note(
            Level::Warning,
            format!("{what}: unexpected status {status}"),
        );
    }
}
