//! The agent: onboarding (certs, register, UUID, attestation) and then the
//! config, info, metrics and logs loops, one HTTP exchange at a time from
//! [`Agent::poll`], which returns when it next wants to run.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use base64ct::{Base64, Encoding};
use eve_proto::Message;
use eve_proto::attest::{ZAttestReq, ZAttestReqType, ZAttestResponse, ZAttestResponseCode};
use eve_proto::common::HashAlgorithm;
use eve_proto::config::{ConfigRequest, ConfigResponse, EdgeDevConfig};
use eve_proto::info::{
    AttestationInfo, AttestationState, DeviceEntity, Entity, ErrorInfo, HwSecurityModuleStatus,
    Severity, ZDeviceState, ZInfoDevSw, ZInfoDevice, ZInfoMsg, ZInfoTypes, ZSwState,
    z_info_msg::InfoContent,
};
use eve_proto::metrics::{
    AppCpuMetric, DeviceMemoryMetric, DeviceMetric, DiskMetric, LogMetric, MetricItem,
    MetricItemType, NetworkMetric, UrlcloudMetric, ZMetricMsg, ZedcloudMetric,
    metric_item::MetricItemValue, z_metric_msg::MetricContent,
};
use eve_proto::prost_types::Timestamp;
use eve_proto::register::ZRegisterMsg;
use eve_proto::sign::{self, SenderIdentity, TrustedSigner};
use eve_proto::uuid::{UuidRequest, UuidResponse};
use eve_proto::x509::Certificate;

use crate::backoff::{Backoff, poll_delay};
use crate::identity::{
    DeviceIdentity, DeviceKeySource, Onboarding, Rejection, SetupError, canonical_uuid, open_certs,
    parse_root, valid_uuid,
};
use crate::io::{
    Clock, DeviceFacts, Http, MIME_PROTO, Method, Persist, Platform, Request, Response, Rng,
    TransportError,
};
use crate::logs::{Level, LogQueue, LogRecord, batch_metadata};
use crate::queue::{DeferredQueue, Outcome, non_retryable};
use crate::settings::Settings;

/// Prefix of every device API path.
pub const API: &str = "/api/v2/edgedevice";
/// State-volume record: the last verified `/certs` envelope.
pub const REC_CONTROLLER_CERTS: &str = "controller-certs";
/// State-volume record: the device UUID.
pub const REC_UUID: &str = "uuid";
/// State-volume record: the last accepted config, as the signed envelope.
pub const REC_CONFIG: &str = "config";
/// State-volume record: log lines waiting for upload, sealed or not.
pub const REC_LOG_QUEUE: &str = "log-queue";

/// Largest config answer accepted.
pub const MAX_CONFIG_RESPONSE: usize = 1 << 20;
/// Largest `/certs` or attest answer accepted.
const MAX_CERTS_RESPONSE: usize = 64 << 10;
/// Largest answer to anything else (register, uuid, telemetry posts).
const MAX_SMALL_RESPONSE: usize = 8 << 10;
/// Bound on the sealed log batches kept for upload.
const MAX_LOG_QUEUE_BYTES: usize = 1 << 20;
/// Bound on queued info messages.
const MAX_INFO_ITEMS: usize = 16;
/// Exchanges done by one `poll` at most, so the caller's other work runs.
const MAX_EXCHANGES_PER_POLL: usize = 8;
/// Name this agent logs under.
const SOURCE: &str = "zedagent";
/// Shortest spacing of the writes that save unsealed log lines. Lines not
/// yet written are lost on power loss, and every write is a statestore
/// commit that rewrites the whole snapshot: 5 s puts at most the last 5 s
/// of lines at risk for at most one commit per 5 s while the node logs.
const LOG_PERSIST_MIN_MS: u64 = 5_000;
/// Average write rate those writes keep under: when the controller is
/// away the queue grows (up to [`MAX_LOG_QUEUE_BYTES`]) and so does every
/// commit, so the spacing grows with the record (1 MiB: about 2 minutes)
/// instead of wearing the disk; lines are still saved at every seal.
const LOG_PERSIST_BYTES_PER_S: u64 = 8 << 10;
/// EVE's fast upload schedule (`newlog.allow.fastupload`): a batch is
/// sealed when its oldest line is this old...
const FAST_SEAL_AGE_MS: u64 = 10_000;
/// ...and uploads are tried this often.
const FAST_UPLOAD_INTERVAL_MS: u64 = 3_000;
/// `HSMInfo` when the device key is held outside this VM.
const HSM_INFO_TPM: &str = "TPM 2.0 through the host; the device key never leaves it";
/// `HSMInfo` when the device key is in software.
const HSM_INFO_NONE: &str = "none; the device key is in software on the state volume";
/// Prefix of the `metricItems` keys counting rejected controller answers.
pub const METRIC_REJECTED: &str = "zedagent.rejected.";
/// `metricItems` key counting failed state-volume writes.
pub const METRIC_PERSIST_ERRORS: &str = "zedagent.persist.errors";

/// Where onboarding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Fetching and verifying the controller certificates.
    FetchCerts,
    /// Registering with the onboarding certificate.
    Register,
    /// Asking for the device UUID.
    FetchUuid,
    /// Getting an integrity token.
    Attest,
    /// Onboarded: config, info, metrics and logs loops.
    Running,
}

/// Outcome of the last registration attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterStatus {
    /// Not tried yet (or no onboarding key).
    NotTried,
    /// 201 or 200: the controller knows this device.
    Onboarded,
    /// 409: the onboarding cert and serial belong to another device cert;
    /// retried with backoff (the operator may delete the other device).
    Conflict,
    /// 403: the onboarding cert (or serial) is not pre-registered; retried.
    NotPreRegistered,
    /// Another status or no answer; retried.
    Failed,
}

/// Attestation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestStatus {
    /// No integrity token.
    None,
    /// Holding a token from the no-TPM quote.
    Attested,
    /// The controller refused the last request.
    Refused,
}

/// Something the rest of the node must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A config was accepted (read [`Agent::config`]); `from_checkpoint`
    /// when it is the checkpoint loaded at boot.
    ConfigAccepted {
        /// Loaded from the state volume rather than received.
        from_checkpoint: bool,
    },
    /// The effective settings (timers, log levels) changed.
    SettingsChanged(Settings),
    /// The controller assigned (or confirmed) this UUID.
    Onboarded(String),
}

/// Counts of rejected controller answers, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    /// Undecodable or truncated.
    pub malformed: u64,
    /// Over the size limit.
    pub oversized: u64,
    /// Signature did not verify.
    pub bad_signature: u64,
    /// Signed by a certificate we do not know.
    pub unknown_signer: u64,
    /// `/certs` did not chain to the root.
    pub bad_chain: u64,
    /// Config for another device.
    pub wrong_uuid: u64,
    /// Config older than ours.
    pub stale_timestamp: u64,
}

impl Rejections {
    fn count(&mut self, r: Rejection) {
        let c = match r {
            Rejection::Malformed => &mut self.malformed,
            Rejection::Oversized => &mut self.oversized,
            Rejection::BadSignature => &mut self.bad_signature,
            Rejection::UnknownSigner => &mut self.unknown_signer,
            Rejection::BadChain => &mut self.bad_chain,
            Rejection::WrongUuid => &mut self.wrong_uuid,
            Rejection::StaleTimestamp => &mut self.stale_timestamp,
        };
        *c += 1;
    }

    /// Each count with its stable name (the suffix of its `metricItems`
    /// key after [`METRIC_REJECTED`]).
    pub fn by_reason(&self) -> [(&'static str, u64); 7] {
        [
            ("malformed", self.malformed),
            ("oversized", self.oversized),
            ("bad_signature", self.bad_signature),
            ("unknown_signer", self.unknown_signer),
            ("bad_chain", self.bad_chain),
            ("wrong_uuid", self.wrong_uuid),
            ("stale_timestamp", self.stale_timestamp),
        ]
    }

    /// All rejections.
    pub fn total(&self) -> u64 {
        self.malformed
            + self.oversized
            + self.bad_signature
            + self.unknown_signer
            + self.bad_chain
            + self.wrong_uuid
            + self.stale_timestamp
    }
}

/// Cumulative counters since this agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests sent.
    pub requests: u64,
    /// Requests without an answer.
    pub transport_errors: u64,
    /// Answers with an unexpected status.
    pub unexpected_status: u64,
    /// Rejected answers.
    pub rejected: Rejections,
    /// Registration answered 409.
    pub register_conflicts: u64,
    /// Configs accepted from the controller.
    pub configs_accepted: u64,
    /// Config polls answered 304.
    pub configs_unchanged: u64,
    /// Info messages accepted by the controller.
    pub info_sent: u64,
    /// Info messages dropped (refused for good, or pushed out of the queue).
    pub info_dropped: u64,
    /// Metrics messages accepted.
    pub metrics_sent: u64,
    /// Metrics messages lost (not retried, as EVE).
    pub metrics_failed: u64,
    /// Log batches accepted.
    pub log_batches_sent: u64,
    /// Log lines in the batches accepted.
    pub log_lines_sent: u64,
    /// gzip bytes of the batches accepted.
    pub log_bytes_sent: u64,
    /// Log batches refused for good.
    pub log_batches_dropped: u64,
    /// State-volume writes that failed.
    pub persist_errors: u64,
}

/// What the console and the host's status line show.
#[derive(Debug, Clone, Copy)]
pub struct Status<'a> {
    /// Onboarding phase.
    pub phase: Phase,
    /// Device UUID once known.
    pub uuid: Option<&'a str>,
    /// `configHash` of the current config (empty: none).
    pub config_hash: &'a str,
    /// Registration outcome.
    pub register: RegisterStatus,
    /// Attestation state.
    pub attest: AttestStatus,
    /// Last config poll answered 200 or 304 (monotonic ms).
    pub last_config_ms: Option<u64>,
    /// Last info accepted (monotonic ms).
    pub last_info_ms: Option<u64>,
    /// Last metrics accepted (monotonic ms).
    pub last_metrics_ms: Option<u64>,
    /// Log batches waiting.
    pub log_batches_queued: usize,
    /// Log lines dropped (queue bound or refusal).
    pub log_lines_dropped: u64,
    /// Counters.
    pub counters: &'a Counters,
}

/// The node around the agent.
pub struct Deps {
    /// Time.
    pub clock: Box<dyn Clock>,
    /// Entropy.
    pub rng: Box<dyn Rng>,
    /// The state volume.
    pub persist: Box<dyn Persist>,
    /// The machine.
    pub platform: Box<dyn Platform>,
}

/// What the CONFIG partition provides (the glue parses the files; `server`
/// and `hosts` belong to its HTTP and DNS setup).
pub struct Bootstrap {
    /// `root-certificate.pem`.
    pub root_cert_pem: Vec<u8>,
    /// `onboard.cert.pem` + `onboard.key.pem`, when present.
    pub onboarding: Option<Onboarding>,
    /// `soft_serial`, empty when absent.
    pub soft_serial: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Certs,
    Register,
    Uuid,
    Attest,
    Config,
    Info,
    Metrics,
    Logs,
}

/// Number of [`Job`] kinds, each with its own request counters.
const JOB_KINDS: usize = Job::Logs as usize + 1;

/// EVE's counters of the requests to one controller URL (`urlcloudMetric`):
/// "tried" are the attempts that failed, "sent" those that succeeded.
#[derive(Debug, Clone, Default)]
struct UrlStats {
    /// The path last requested; it changes only with the UUID.
    url: String,
    tried: u64,
    tried_bytes: u64,
    sent: u64,
    sent_bytes: u64,
    received: u64,
    received_bytes: u64,
    /// Milliseconds the successful requests took.
    time_ms: u64,
}

struct Timers {
    config_ms: u64,
    info_ms: u64,
    metrics_ms: u64,
    logs_ms: u64,
}

/// The accepted config and what identifies it.
struct Current {
    config: EdgeDevConfig,
    hash: String,
    timestamp: (i64, i32),
}

/// The zedagent state machine.
pub struct Agent {
    deps: Deps,
    root: Certificate,
    onboarding: Option<Onboarding>,
    soft_serial: String,
    hw_serial: String,
    device: DeviceIdentity,
    controller: Option<TrustedSigner>,
    uuid: Option<String>,
    token: Option<Vec<u8>>,
    current: Option<Current>,
    settings: Settings,
    phase: Phase,
    backoff: Backoff,
    retry_ms: u64,
    certs_stale: bool,
    register: RegisterStatus,
    attest: AttestStatus,
    timers: Timers,
    info: DeferredQueue,
    info_due: bool,
    last_facts: Option<DeviceFacts>,
    logs: LogQueue,
    log_backoff: Backoff,
    /// Failures of the config poll that send us back to attestation or
    /// UUID (403/404): a controller that keeps refusing must not be
    /// hammered with attest and config requests.
    config_backoff: Backoff,
    events: Vec<Event>,
    counters: Counters,
    last_config_ms: Option<u64>,
    last_info_ms: Option<u64>,
    last_metrics_ms: Option<u64>,
    last_config_received_unix_ms: Option<u64>,
    last_config_applied_unix_ms: Option<u64>,
    /// `HSMStatus` and `HSMInfo`, from where the device key lives.
    hsm: (HwSecurityModuleStatus, &'static str),
    /// The last attestation failure and when (Unix ms); cleared by success.
    attest_error: Option<(String, u64)>,
    /// Controller requests by kind.
    urls: [UrlStats; JOB_KINDS],
    last_request_ok_unix_ms: Option<u64>,
    last_request_failed_unix_ms: Option<u64>,
    last_log_sent_unix_ms: Option<u64>,
    /// When the oldest unsealed log line was queued (monotonic ms).
    log_open_since_ms: Option<u64>,
    /// Unsealed lines changed since the log queue was last written.
    log_dirty: bool,
    /// When the log queue was last written (monotonic ms) and its size.
    log_persisted: Option<(u64, usize)>,
}

fn timestamp(unix_ms: u64) -> Timestamp {
    Timestamp {
        seconds: (unix_ms / 1000) as i64,
        nanos: ((unix_ms % 1000) * 1_000_000) as i32,
    }
}

fn config_timestamp(cfg: &EdgeDevConfig) -> (i64, i32) {
    cfg.config_timestamp
        .as_ref()
        .map_or((0, 0), |t| (t.seconds, t.nanos))
}

fn to_level(level: Level) -> log::Level {
    match level {
        Level::Trace => log::Level::Trace,
        Level::Debug => log::Level::Debug,
        Level::Info => log::Level::Info,
        Level::Warning => log::Level::Warn,
        Level::Error | Level::Fatal | Level::Panic => log::Level::Error,
    }
}

/// Interval of log uploads by backlog, after EVE's loguploader: a larger
/// backlog is sent faster.
fn backlog_interval_ms(batches: usize) -> u64 {
    match batches {
        0..5 => 90_000,
        5..25 => 45_000,
        25..50 => 30_000,
        _ => 15_000,
    }
}

impl Agent {
    /// Sets the agent up: loads or creates the device identity, loads the
    /// checkpoints (controller certificates, UUID, config, log queue) and
    /// publishes a checkpointed config at once, so the node runs its last
    /// config even when no controller is reachable.
    pub fn new(
        bootstrap: Bootstrap,
        key: DeviceKeySource,
        mut deps: Deps,
    ) -> Result<Self, SetupError> {
        let root = parse_root(&bootstrap.root_cert_pem)?;
        let hsm = match &key {
            DeviceKeySource::External(_) => (HwSecurityModuleStatus::Enabled, HSM_INFO_TPM),
            DeviceKeySource::Software => (HwSecurityModuleStatus::Notfound, HSM_INFO_NONE),
        };
        let hw_serial = deps.platform.hardware_serial();
        let common_name = if hw_serial.is_empty() {
            bootstrap.soft_serial.clone()
        } else {
            hw_serial.clone()
        };
        let now_unix = deps.clock.unix_ms() / 1000;
        let (device, created) = DeviceIdentity::load_or_create(
            &mut *deps.persist,
            &mut *deps.rng,
            key,
            &common_name,
            now_unix,
        )?;
        let now = deps.clock.now_ms();
        let mut agent = Self {
            deps,
            root,
            onboarding: bootstrap.onboarding,
            soft_serial: bootstrap.soft_serial,
            hw_serial,
            device,
            controller: None,
            uuid: None,
            token: None,
            current: None,
            settings: Settings::default(),
            phase: Phase::FetchCerts,
            backoff: Backoff::default(),
            retry_ms: now,
            certs_stale: false,
            register: RegisterStatus::NotTried,
            attest: AttestStatus::None,
            timers: Timers {
                config_ms: now,
                info_ms: now,
                metrics_ms: now,
                logs_ms: now,
            },
            info: DeferredQueue::new(MAX_INFO_ITEMS),
            info_due: true,
            last_facts: None,
            logs: LogQueue::new(MAX_LOG_QUEUE_BYTES),
            log_backoff: Backoff::default(),
            config_backoff: Backoff::default(),
            events: Vec::new(),
            counters: Counters::default(),
            last_config_ms: None,
            last_info_ms: None,
            last_metrics_ms: None,
            last_config_received_unix_ms: None,
            last_config_applied_unix_ms: None,
            hsm,
            attest_error: None,
            urls: Default::default(),
            last_request_ok_unix_ms: None,
            last_request_failed_unix_ms: None,
            last_log_sent_unix_ms: None,
            log_open_since_ms: None,
            log_dirty: false,
            log_persisted: None,
        };
        if created {
            agent.note(Level::Info, String::from("created the device certificate"));
        }
        agent.load_checkpoints();
        Ok(agent)
    }

    fn read(&mut self, name: &str) -> Option<Vec<u8>> {
        match self.deps.persist.read(name) {
            Ok(v) => v,
            Err(e) => {
                self.counters.persist_errors += 1;
                self.note(Level::Error, format!("reading {name}: {e:?}"));
                None
            }
        }
    }

    /// Writes a record; a failure is counted and logged, and `false`.
    fn write(&mut self, name: &str, data: &[u8]) -> bool {
        match self.deps.persist.write(name, data) {
            Ok(()) => true,
            Err(e) => {
                self.counters.persist_errors += 1;
                self.note(Level::Error, format!("checkpointing {name}: {e:?}"));
                false
            }
        }
    }

    fn load_checkpoints(&mut self) {
        let now_unix = self.deps.clock.unix_ms() / 1000;
        if let Some(body) = self.read(REC_CONTROLLER_CERTS) {
            match open_certs(&body, &self.root, now_unix) {
                Ok(t) => self.controller = Some(t),
                Err(r) => self.note(
                    Level::Warning,
                    format!("checkpointed controller certificates unusable: {r:?}"),
                ),
            }
        }
        if let Some(raw) = self.read(REC_UUID) {
            match core::str::from_utf8(&raw) {
                Ok(u) if valid_uuid(u) => self.uuid = Some(canonical_uuid(u)),
                _ => self.note(Level::Warning, String::from("checkpointed UUID unusable")),
            }
        }
        if let Some(rec) = self.read(REC_LOG_QUEUE) {
            let meta = self.log_metadata();
            let intact = self
                .logs
                .restore(&rec, &meta, (self.unix_ms() / 1000) as u32);
            if self.logs.open_lines() > 0 {
                self.log_open_since_ms = Some(self.now());
            }
            if !intact {
                self.note(Level::Warning, String::from("log queue record damaged"));
            }
        }
        if let Some(body) = self.read(REC_CONFIG) {
            match self.verify_config(&body) {
                Ok((resp, current)) => {
                    self.note(
                        Level::Info,
                        format!("using the checkpointed config {}", resp.config_hash),
                    );
                    self.apply_config(current, true);
                }
                Err(r) => self.note(
                    Level::Warning,
                    format!("checkpointed config not used: {r:?}"),
                ),
            }
        }
    }

    fn now(&self) -> u64 {
        self.deps.clock.now_ms()
    }

    fn unix_ms(&self) -> u64 {
        self.deps.clock.unix_ms()
    }

    /// Logs locally through `log` and queues the record for upload.
    fn note(&mut self, level: Level, content: String) {
        log::log!(target: SOURCE, to_level(level), "{content}");
        let record = LogRecord {
            level,
            source: String::from(SOURCE),
            content,
            unix_ms: self.unix_ms(),
            filename: String::new(),
            function: String::new(),
        };
        self.log(record);
    }

    /// Queues a log record of any service for upload; records less severe
    /// than `debug.default.remote.loglevel` are not uploaded.
    pub fn log(&mut self, record: LogRecord) {
        if record.level < self.settings.remote_log_level {
            return;
        }
        let meta = self.log_metadata();
        let now_unix = (self.unix_ms() / 1000) as u32;
        let sealed = self.logs.push(&record, &meta, now_unix);
        if self.logs.open_lines() == 1 {
            self.log_open_since_ms = Some(self.now());
        }
        if sealed {
            self.persist_logs();
        } else {
            self.log_dirty = true;
        }
    }

    fn log_metadata(&self) -> String {
        let facts = self.last_facts.as_ref();
        let active = facts.and_then(|f| f.partitions.iter().find(|p| p.activated));
        batch_metadata(
            self.uuid.as_deref().unwrap_or(""),
            active.map_or("", |p| p.label.as_str()),
            active.map_or("", |p| p.short_version.as_str()),
        )
    }

    /// Writes the log queue, sealed batches and open lines. After a
    /// failure the lines stay marked, for the next write in
    /// [`Agent::maintain_logs`].
    fn persist_logs(&mut self) {
        let rec = self.logs.encode();
        self.log_persisted = Some((self.now(), rec.len()));
        self.log_dirty = false;
        if !self.write(REC_LOG_QUEUE, &rec) {
            self.log_dirty = true;
        }
    }

    /// Seals the open log lines into a batch and writes the queue.
    fn seal_logs(&mut self) {
        let meta = self.log_metadata();
        if self.logs.seal(&meta, (self.unix_ms() / 1000) as u32) {
            self.log_open_since_ms = None;
            self.persist_logs();
        }
    }

    /// When the unsealed log lines are next to be written, if they changed:
    /// [`LOG_PERSIST_MIN_MS`] after the last write, or longer for a large
    /// record (see [`LOG_PERSIST_BYTES_PER_S`]).
    fn log_persist_due(&self) -> Option<u64> {
        if !self.log_dirty {
            return None;
        }
        Some(self.log_persisted.map_or(0, |(at, len)| {
            at + LOG_PERSIST_MIN_MS.max(len as u64 * 1000 / LOG_PERSIST_BYTES_PER_S)
        }))
    }

    /// When the open batch must be sealed on the fast schedule.
    fn log_seal_due(&self) -> Option<u64> {
        if !self.settings.log_fast_upload {
            return None;
        }
        self.log_open_since_ms.map(|t| t + FAST_SEAL_AGE_MS)
    }

    /// Seals and writes the log queue when due, whatever the phase.
    fn maintain_logs(&mut self, now: u64) {
        if self.log_seal_due().is_some_and(|t| now >= t) {
            self.seal_logs();
        }
        if self.log_persist_due().is_some_and(|t| now >= t) {
            self.persist_logs();
        }
    }

    /// Upload interval: EVE's fast schedule, or by backlog.
    fn log_interval_ms(&self) -> u64 {
        if self.settings.log_fast_upload {
            FAST_UPLOAD_INTERVAL_MS
        } else {
            backlog_interval_ms(self.logs.sealed_batches())
        }
    }

    /// Whether info, metrics and logs go out: once the UUID is known and
    /// only attestation or the running loops remain, so a controller that
    /// refuses to attest the device still hears its state and why.
    fn reports_allowed(&self) -> bool {
        matches!(self.phase, Phase::Attest | Phase::Running) && self.uuid.is_some()
    }

    /// Asks for a `ZInfoDevice` report at the next poll (the glue calls it
    /// when something it reports changed; facts are also compared at every
    /// poll).
    pub fn notify_info_changed(&mut self) {
        self.info_due = true;
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.events)
    }

    /// The accepted config.
    pub fn config(&self) -> Option<&EdgeDevConfig> {
        self.current.as_ref().map(|c| &c.config)
    }

    /// The effective settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The device certificate, PEM.
    pub fn device_cert_pem(&self) -> &[u8] {
        self.device.cert_pem()
    }

    /// Status for the console and the host.
    pub fn status(&self) -> Status<'_> {
        Status {
            phase: self.phase,
            uuid: self.uuid.as_deref(),
            config_hash: self.current.as_ref().map_or("", |c| c.hash.as_str()),
            register: self.register,
            attest: self.attest,
            last_config_ms: self.last_config_ms,
            last_info_ms: self.last_info_ms,
            last_metrics_ms: self.last_metrics_ms,
            log_batches_queued: self.logs.sealed_batches(),
            log_lines_dropped: self.logs.dropped_lines(),
            counters: &self.counters,
        }
    }

    /// Runs every exchange that is due (at most a few) and returns the
    /// monotonic time at which it wants to be polled again.
    pub fn poll(&mut self, http: &mut dyn Http) -> u64 {
        for _ in 0..MAX_EXCHANGES_PER_POLL {
            let now = self.now();
            self.maintain_logs(now);
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

    /// Counts one exchange as EVE's zedcloud metrics do: an answer with a
    /// success status (2xx or 304) is a success, anything else (no
    /// answer, an error status) a failure; bytes received count either way.
    fn count_exchange(
        &mut self,
        job: Job,
        request: &Request,
        result: &Result<Response, TransportError>,
        started_ms: u64,
    ) {
        let ok = matches!(result, Ok(r) if (200..300).contains(&r.status) || r.status == 304);
        let (now, unix) = (self.now(), self.unix_ms());
        let stats = &mut self.urls[job as usize];
        if stats.url != request.path {
            stats.url.clone_from(&request.path);
        }
        let sent = request.body.len() as u64;
        if let Ok(r) = result {
            stats.received += 1;
            stats.received_bytes += r.body.len() as u64;
        }
        if ok {
            stats.sent += 1;
            stats.sent_bytes += sent;
            stats.time_ms += now.saturating_sub(started_ms);
            self.last_request_ok_unix_ms = Some(unix);
        } else {
            stats.tried += 1;
            stats.tried_bytes += sent;
            self.last_request_failed_unix_ms = Some(unix);
        }
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
        }
        for due in [self.log_persist_due(), self.log_seal_due()]
            .into_iter()
            .flatten()
        {
            wake = wake.min(due);
        }
        wake
    }

    /// Queues a device info report when due, asked for, or when the facts
    /// changed.
    fn refresh_info(&mut self, now: u64) {
        let facts = self.deps.platform.device_facts();
        let changed = self.last_facts.as_ref() != Some(&facts);
        if !(changed || self.info_due || now >= self.timers.info_ms) {
            return;
        }
        let Some(uuid) = self.uuid.clone() else {
            return;
        };
        let msg = self.info_msg(&uuid, &facts);
        self.last_facts = Some(facts);
        self.info_due = false;
        self.timers.info_ms = now + self.settings.info_interval_s * 1000;
        match self.sign(msg.encode_to_vec()) {
            Some(body) => {
                if self
                    .info
                    .push("device".into(), format!("{API}/id/{uuid}/info"), body, now)
                {
                    self.counters.info_dropped += 1;
                }
            }
            None => self.note(Level::Error, String::from("cannot sign device info")),
        }
    }

    fn info_msg(&self, uuid: &str, f: &DeviceFacts) -> ZInfoMsg {
        let state = if self.phase == Phase::Running {
            ZDeviceState::ZdeviceStateOnline
        } else {
            ZDeviceState::ZdeviceStateBooting
        };
        let sw_list = f
            .partitions
            .iter()
            .map(|p| ZInfoDevSw {
                activated: p.activated,
                partition_label: p.label.clone(),
                partition_state: p.state.clone(),
                status: if p.activated {
                    ZSwState::Running
                } else {
                    ZSwState::Initial
                } as i32,
                short_version: p.short_version.clone(),
                long_version: p.long_version.clone(),
                ..Default::default()
            })
            .collect();
        let device = ZInfoDevice {
            machine_arch: f.machine_arch.clone(),
            cpu_arch: f.cpu_arch.clone(),
            platform: f.platform.clone(),
            ncpu: f.ncpu,
            memory: f.memory_mb,
            storage: f.storage_mb,
            minfo: Some(f.manufacturer_info(if self.hw_serial.is_empty() {
                &self.soft_serial
            } else {
                &self.hw_serial
            })),
            boot_time: Some(timestamp(f.boot_unix_ms)),
            sw_list,
            host_name: f.host_name.clone(),
            last_reboot_reason: f.last_reboot_reason.clone(),
            last_reboot_time: (f.last_reboot_unix_ms != 0)
                .then(|| timestamp(f.last_reboot_unix_ms)),
            restart_counter: f.restart_counter,
            hsm_status: self.hsm.0 as i32,
            hsm_info: String::from(self.hsm.1),
            last_boot_reason: f.boot_reason as i32,
            state: state as i32,
            attestation_info: Some(self.attestation_info(self.now())),
            ..Default::default()
        };
        ZInfoMsg {
            ztype: ZInfoTypes::ZiDevice as i32,
            dev_id: uuid.to_string(),
            info_content: Some(InfoContent::Dinfo(device)),
            at_time_stamp: Some(timestamp(self.unix_ms())),
        }
    }

    fn metrics_msg(&self, uuid: &str) -> ZMetricMsg {
        let m = self.deps.platform.device_metrics();
        let dm = DeviceMetric {
            network: m
                .interfaces
                .iter()
                .map(|i| NetworkMetric {
                    i_name: i.name.clone(),
                    tx_bytes: i.tx_bytes,
                    rx_bytes: i.rx_bytes,
                    tx_pkts: i.tx_packets,
                    rx_pkts: i.rx_packets,
                    tx_drops: i.tx_drops,
                    rx_drops: i.rx_drops,
                    ..Default::default()
                })
                .collect(),
            disk: m
                .disks
                .iter()
                .map(|d| DiskMetric {
                    disk: d.name.clone(),
                    mount_path: d.mount_path.clone(),
                    read_bytes: d.read_bytes,
                    write_bytes: d.write_bytes,
                    read_count: d.read_count,
                    write_count: d.write_count,
                    total: d.total_mb,
                    used: d.used_mb,
                    free: d.free_mb,
                })
                .collect(),
            cpu_metric: Some(AppCpuMetric {
                total: m.cpu_total_ns / 1_000_000_000,
                total_ns: m.cpu_total_ns,
                ..Default::default()
            }),
            device_memory: Some(DeviceMemoryMetric {
                memory_mb: m.memory_mb,
                allocated_apps_mb: m.allocated_apps_mb,
                used_eve_mb: m.used_eve_mb,
                ..Default::default()
            }),
            last_received_config: self.last_config_received_unix_ms.map(timestamp),
            last_processed_config: self.last_config_applied_unix_ms.map(timestamp),
            zedcloud: alloc::vec![self.zedcloud_metric(m.management_interface)],
            metric_items: self.metric_items(),
            log: Some(self.log_metric()),
            ..Default::default()
        };
        ZMetricMsg {
            dev_id: uuid.to_string(),
            at_time_stamp: Some(timestamp(self.unix_ms())),
            metric_content: Some(MetricContent::Dm(dm)),
            ..Default::default()
        }
    }

    /// Controller requests since boot, on the management interface.
    fn zedcloud_metric(&self, if_name: String) -> ZedcloudMetric {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let used = || self.urls.iter().filter(|u| !u.url.is_empty());
        ZedcloudMetric {
            if_name,
            failures: used().map(|u| u.tried).sum(),
            success: used().map(|u| u.sent).sum(),
            last_failure: self.last_request_failed_unix_ms.map(timestamp),
            last_success: self.last_request_ok_unix_ms.map(timestamp),
            url_metrics: used()
                .map(|u| UrlcloudMetric {
                    url: u.url.clone(),
                    try_msg_count: count(u.tried),
                    try_byte_count: count(u.tried_bytes),
                    sent_msg_count: count(u.sent),
                    sent_byte_count: count(u.sent_bytes),
                    recv_msg_count: count(u.received),
                    recv_byte_count: count(u.received_bytes),
                    total_time_spent: count(u.time_ms),
                    sess_resume_count: 0,
                })
                .collect(),
            auth_verify_failure: self.counters.rejected.total(),
        }
    }

    /// Our counters without a field of their own in EVE's API: rejected
    /// controller answers by reason and failed state-volume writes, all
    /// present from boot so a controller sees zeros, not gaps.
    fn metric_items(&self) -> Vec<MetricItem> {
        let counter = |key: String, n: u64| MetricItem {
            key,
            r#type: MetricItemType::MetricItemCounter as i32,
            metric_item_value: Some(MetricItemValue::Uint64Value(n)),
        };
        let mut items: Vec<MetricItem> = self
            .counters
            .rejected
            .by_reason()
            .iter()
            .map(|&(reason, n)| counter(format!("{METRIC_REJECTED}{reason}"), n))
            .collect();
        items.push(counter(
            String::from(METRIC_PERSIST_ERRORS),
            self.counters.persist_errors,
        ));
        items
    }

    /// The log queue in `logMetric` terms: lines in are those queued for
    /// upload, errors those the queue bound dropped, 4xx those in batches
    /// the controller refused.
    fn log_metric(&self) -> LogMetric {
        LogMetric {
            num_device_events_sent: self.counters.log_lines_sent,
            num_device_bundles_sent: self.counters.log_batches_sent,
            num4xx_responses: self.logs.refused_lines(),
            last_device_bundle_send_time: self.last_log_sent_unix_ms.map(timestamp),
            total_device_log_input: self.logs.input_lines(),
            num_device_event_errors: self.logs.bound_dropped_lines(),
            num_device_bundle_proto_bytes_sent: self.counters.log_bytes_sent,
            ..Default::default()
        }
    }

    /// Wraps a payload in an envelope signed by the device key.
    fn sign(&self, payload: Vec<u8>) -> Option<Vec<u8>> {
        let sender = SenderIdentity {
            cert_hash: self.device.cert_hash(),
            algo: HashAlgorithm::Sha25632bytes,
            embed_cert_pem: None,
        };
        sign::sign_auth_container(payload, self.device.signer(), &sender)
            .ok()
            .map(|c| c.encode_to_vec())
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
                // No TPM: a quote request without PCRs, which the
                // controller answers with an integrity token.
                let req = ZAttestReq {
                    req_type: ZAttestReqType::AttestReqQuote as i32,
                    ..Default::default()
                };
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
        })
    }

    /// An onboarding step failed: back off.
    fn retry_later(&mut self) {
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
    fn back_to(&mut self, phase: Phase) {
        self.phase = phase;
        self.retry_ms = self.now() + self.config_backoff.fail(&mut *self.deps.rng);
    }

    fn reject(&mut self, what: &str, r: Rejection) {
        self.counters.rejected.count(r);
        if r == Rejection::UnknownSigner {
            // The controller may have rotated its signing certificate.
            self.certs_stale = true;
        }
        self.note(Level::Error, format!("rejected {what} answer: {r:?}"));
    }

    fn unexpected(&mut self, what: &str, status: u16) {
        self.counters.unexpected_status += 1;
        self.note(
            Level::Warning,
            format!("{what}: unexpected status {status}"),
        );
    }

    /// A job could not even be sent (signing failed, nothing to send).
    fn fail(&mut self, job: Job, transport: Option<TransportError>) {
        let now = self.now();
        match job {
            Job::Certs | Job::Register | Job::Uuid | Job::Attest => {
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
        }
    }

    fn schedule_config(&mut self, now: u64) {
        let period = self.settings.config_interval_s * 1000;
        self.timers.config_ms = now + poll_delay(&mut *self.deps.rng, period);
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
        }
    }

    fn on_certs(&mut self, resp: Response) {
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
            Ok(trusted) => {
                self.controller = Some(trusted);
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

    fn on_register(&mut self, resp: Response) {
        match resp.status {
            200 | 201 => {
                self.register = RegisterStatus::Onboarded;
                self.note(
                    Level::Info,
                    format!("registered with the controller ({})", resp.status),
                );
                self.advance(Phase::FetchUuid);
            }
            409 => {
                self.register = RegisterStatus::Conflict;
                self.counters.register_conflicts += 1;
                self.note(
                    Level::Warning,
                    String::from("register: onboarding cert and serial belong to another device"),
                );
                self.retry_later();
            }
            403 => {
                self.register = RegisterStatus::NotPreRegistered;
                self.note(
                    Level::Warning,
                    String::from("register: onboarding certificate not pre-registered"),
                );
                self.retry_later();
            }
            s => {
                self.register = RegisterStatus::Failed;
                self.unexpected("register", s);
                self.retry_later();
            }
        }
    }

    /// Opens a controller envelope with the signing certificate from
    /// `/certs`, refusing oversized bodies.
    fn open(&self, body: &[u8], max: usize) -> Result<Vec<u8>, Rejection> {
        if body.len() > max {
            return Err(Rejection::Oversized);
        }
        let trusted = self.controller.as_ref().ok_or(Rejection::UnknownSigner)?;
        Ok(sign::open_auth_container(body, trusted)?)
    }

    fn on_uuid(&mut self, resp: Response) {
        if resp.status != 200 {
            self.unexpected("uuid", resp.status);
            return self.retry_later();
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
                if self.uuid.as_deref() != Some(uuid.as_str()) {
                    self.write(REC_UUID, uuid.as_bytes());
                    self.uuid = Some(uuid.clone());
                }
                self.events.push(Event::Onboarded(uuid));
                self.advance(Phase::Attest);
            }
            Err(r) => {
                self.reject("uuid", r);
                self.retry_later();
            }
        }
    }

    /// Records why attestation failed, for `attestation_info`, and reports
    /// it (the state is now RESTART_WAIT).
    fn attest_failed(&mut self, why: String) {
        self.attest_error = Some((why, self.unix_ms()));
        self.info_due = true;
    }

    /// Where attestation stands, in EVE's terms. The no-TPM request asks
    /// for no nonce and needs no quote, so of EVE's waits only ATTEST_WAIT
    /// (the request is due or in flight) and RESTART_WAIT (backing off
    /// after a failure) apply.
    fn attestation_state(&self, now: u64) -> AttestationState {
        if self.token.is_some() {
            AttestationState::Complete
        } else if self.phase != Phase::Attest {
            AttestationState::Unspecified
        } else if now < self.retry_ms {
            AttestationState::RestartWait
        } else {
            AttestationState::AttestWait
        }
    }

    fn attestation_info(&self, now: u64) -> AttestationInfo {
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

    fn on_attest(&mut self, resp: Response) {
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
                let why = String::from("attest: the controller issued no integrity token");
                self.note(Level::Warning, why.clone());
                self.attest_failed(why);
                self.retry_later();
            }
        }
    }

    /// Checks a config envelope completely: size, signature, decoding,
    /// device UUID, and that it is not older than the current config.
    fn verify_config(&self, body: &[u8]) -> Result<(ConfigResponse, Current), Rejection> {
        let payload = self.open(body, MAX_CONFIG_RESPONSE)?;
        let resp = ConfigResponse::decode(payload.as_slice()).map_err(|_| Rejection::Malformed)?;
        let config = resp.config.clone().ok_or(Rejection::Malformed)?;
        let uuid = self.uuid.as_deref().ok_or(Rejection::WrongUuid)?;
        let cfg_uuid = config.id.as_ref().map(|id| canonical_uuid(&id.uuid));
        if cfg_uuid.as_deref() != Some(uuid) {
            return Err(Rejection::WrongUuid);
        }
        let ts = config_timestamp(&config);
        if let Some(cur) = &self.current
            && ts < cur.timestamp
        {
            return Err(Rejection::StaleTimestamp);
        }
        let current = Current {
            config,
            hash: resp.config_hash.clone(),
            timestamp: ts,
        };
        Ok((resp, current))
    }

    fn on_config(&mut self, resp: Response) {
        let now = self.now();
        self.schedule_config(now);
        match resp.status {
            200 => match self.verify_config(&resp.body) {
                Ok((_, current)) => {
                    self.config_backoff.reset();
                    self.last_config_ms = Some(now);
                    self.last_config_received_unix_ms = Some(self.unix_ms());
                    self.write(REC_CONFIG, &resp.body);
                    self.counters.configs_accepted += 1;
                    self.note(Level::Info, format!("accepted config {}", current.hash));
                    self.apply_config(current, false);
                }
                Err(r) => self.reject("config", r),
            },
            304 => {
                self.config_backoff.reset();
                self.last_config_ms = Some(now);
                self.counters.configs_unchanged += 1;
            }
            403 => {
                self.note(Level::Warning, String::from("config: 403, attesting again"));
                self.token = None;
                self.attest = AttestStatus::None;
                self.attest_failed(String::from(
                    "config: the controller refused the integrity token (403)",
                ));
                self.back_to(Phase::Attest);
            }
            404 => {
                self.note(
                    Level::Warning,
                    String::from("config: 404, fetching the UUID again"),
                );
                self.back_to(Phase::FetchUuid);
            }
            s => self.unexpected("config", s),
        }
    }

    fn apply_config(&mut self, current: Current, from_checkpoint: bool) {
        let (settings, bad) = Settings::from_items(&current.config.config_items);
        for item in bad {
            self.note(
                Level::Warning,
                format!("config item {} = {:?} refused", item.key, item.value),
            );
        }
        self.current = Some(current);
        self.last_config_applied_unix_ms = Some(self.unix_ms());
        self.events.push(Event::ConfigAccepted { from_checkpoint });
        if settings != self.settings {
            let old = self.settings;
            self.settings = settings;
            let now = self.now();
            // A shorter period takes effect now, not after the old one.
            if settings.config_interval_s < old.config_interval_s {
                self.schedule_config(now);
            }
            if settings.metric_interval_s < old.metric_interval_s {
                self.timers.metrics_ms = self
                    .timers
                    .metrics_ms
                    .min(now + settings.metric_interval_s * 1000);
            }
            if settings.info_interval_s < old.info_interval_s {
                self.timers.info_ms = self
                    .timers
                    .info_ms
                    .min(now + settings.info_interval_s * 1000);
            }
            if settings.log_fast_upload {
                self.timers.logs_ms = self.timers.logs_ms.min(now + FAST_UPLOAD_INTERVAL_MS);
            }
            self.events.push(Event::SettingsChanged(settings));
        }
    }

    fn on_info(&mut self, resp: Response) {
        let now = self.now();
        let Some(key) = self.info.due(now).map(|d| d.key.clone()) else {
            return;
        };
        match self
            .info
            .settle(&key, Some(resp.status), now, &mut *self.deps.rng)
        {
            Outcome::Sent => {
                self.counters.info_sent += 1;
                self.last_info_ms = Some(now);
            }
            Outcome::Dropped => {
                self.counters.info_dropped += 1;
                self.unexpected("info", resp.status);
            }
            Outcome::Retry => self.unexpected("info", resp.status),
        }
    }

    fn on_metrics(&mut self, resp: Response) {
        let now = self.now();
        self.timers.metrics_ms = now + self.settings.metric_interval_s * 1000;
        if (200..300).contains(&resp.status) {
            self.counters.metrics_sent += 1;
            self.last_metrics_ms = Some(now);
        } else {
            self.counters.metrics_failed += 1;
            self.unexpected("metrics", resp.status);
        }
    }

    fn on_logs(&mut self, resp: Response) {
        let now = self.now();
        if (200..300).contains(&resp.status) {
            if let Some(b) = self.logs.pop_front() {
                self.counters.log_lines_sent += u64::from(b.lines);
                self.counters.log_bytes_sent += b.gzip.len() as u64;
            }
            self.log_backoff.reset();
            self.counters.log_batches_sent += 1;
            self.last_log_sent_unix_ms = Some(self.unix_ms());
            self.persist_logs();
            self.timers.logs_ms = now + self.log_interval_ms();
        } else if non_retryable(resp.status) {
            if let Some(b) = self.logs.pop_front() {
                self.logs.count_refused(b.lines);
            }
            self.counters.log_batches_dropped += 1;
            self.persist_logs();
            self.unexpected("newlogs", resp.status);
            self.timers.logs_ms = now + self.log_interval_ms();
        } else {
            self.unexpected("newlogs", resp.status);
            self.timers.logs_ms = now + self.log_backoff.fail(&mut *self.deps.rng);
        }
    }
}
