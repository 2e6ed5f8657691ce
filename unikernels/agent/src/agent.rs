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
    ZDeviceState, ZInfoDevSw, ZInfoDevice, ZInfoManufacturer, ZInfoMsg, ZInfoTypes, ZSwState,
    z_info_msg::InfoContent,
};
use eve_proto::metrics::{
    AppCpuMetric, DeviceMemoryMetric, DeviceMetric, DiskMetric, NetworkMetric, ZMetricMsg,
    z_metric_msg::MetricContent,
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
/// State-volume record: sealed log batches waiting for upload.
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
fn log_interval_ms(batches: usize) -> u64 {
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

    fn write(&mut self, name: &str, data: &[u8]) {
        if let Err(e) = self.deps.persist.write(name, data) {
            self.counters.persist_errors += 1;
            self.note(Level::Error, format!("checkpointing {name}: {e:?}"));
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
        if let Some(rec) = self.read(REC_LOG_QUEUE)
            && !self.logs.restore(&rec)
        {
            self.note(Level::Warning, String::from("log queue record damaged"));
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
        if self.logs.push(&record, &meta, now_unix) {
            self.persist_logs();
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

    fn persist_logs(&mut self) {
        let rec = self.logs.encode();
        self.write(REC_LOG_QUEUE, &rec);
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
            if self.phase == Phase::Running {
                self.refresh_info(now);
            }
            let Some(job) = self.next_job(now) else {
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
            self.handle(job, result);
        }
        self.now()
    }

    fn next_job(&mut self, now: u64) -> Option<Job> {
        let onboarding = match self.phase {
            Phase::FetchCerts => Some(Job::Certs),
            Phase::Register => Some(Job::Register),
            Phase::FetchUuid => Some(Job::Uuid),
            Phase::Attest => Some(Job::Attest),
            Phase::Running if self.certs_stale => Some(Job::Certs),
            Phase::Running => None,
        };
        if let Some(job) = onboarding {
            return (now >= self.retry_ms).then_some(job);
        }
        if now >= self.timers.config_ms {
            return Some(Job::Config);
        }
        if self.info.due(now).is_some() {
            return Some(Job::Info);
        }
        if now >= self.timers.metrics_ms {
            return Some(Job::Metrics);
        }
        if now >= self.timers.logs_ms {
            let meta = self.log_metadata();
            if self.logs.seal(&meta, (self.unix_ms() / 1000) as u32) {
                self.persist_logs();
            }
            if self.logs.front().is_some() {
                return Some(Job::Logs);
            }
            self.timers.logs_ms = now + log_interval_ms(0);
        }
        None
    }

    fn next_wake(&self) -> u64 {
        if self.phase != Phase::Running || self.certs_stale {
            return self.retry_ms;
        }
        let mut wake = self
            .timers
            .config_ms
            .min(self.timers.metrics_ms)
            .min(self.timers.logs_ms)
            .min(self.timers.info_ms);
        if let Some(due) = self.info.next_due() {
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
            minfo: Some(ZInfoManufacturer {
                manufacturer: f.manufacturer.clone(),
                product_name: f.product_name.clone(),
                serial_number: if self.hw_serial.is_empty() {
                    self.soft_serial.clone()
                } else {
                    self.hw_serial.clone()
                },
                uuid: uuid.to_string(),
                ..Default::default()
            }),
            boot_time: Some(timestamp(f.boot_unix_ms)),
            sw_list,
            host_name: f.host_name.clone(),
            last_reboot_reason: f.last_reboot_reason.clone(),
            last_reboot_time: (f.last_reboot_unix_ms != 0)
                .then(|| timestamp(f.last_reboot_unix_ms)),
            restart_counter: f.restart_counter,
            state: state as i32,
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
            ..Default::default()
        };
        ZMetricMsg {
            dev_id: uuid.to_string(),
            at_time_stamp: Some(timestamp(self.unix_ms())),
            metric_content: Some(MetricContent::Dm(dm)),
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
                if job == Job::Register {
                    self.register = RegisterStatus::Failed;
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

    fn on_attest(&mut self, resp: Response) {
        if !(200..300).contains(&resp.status) {
            self.attest = AttestStatus::Refused;
            self.unexpected("attest", resp.status);
            return self.retry_later();
        }
        let parsed = self
            .open(&resp.body, MAX_CERTS_RESPONSE)
            .and_then(|p| ZAttestResponse::decode(p.as_slice()).map_err(|_| Rejection::Malformed));
        let resp = match parsed {
            Ok(r) => r,
            Err(r) => {
                self.reject("attest", r);
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
                self.advance(Phase::Running);
                let now = self.now();
                self.timers.config_ms = now;
                self.info_due = true;
            }
            None => {
                self.attest = AttestStatus::Refused;
                self.note(
                    Level::Warning,
                    String::from("attest: the controller issued no integrity token"),
                );
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
            self.logs.pop_front();
            self.log_backoff.reset();
            self.counters.log_batches_sent += 1;
            self.persist_logs();
            self.timers.logs_ms = now + log_interval_ms(self.logs.sealed_batches());
        } else if non_retryable(resp.status) {
            if let Some(b) = self.logs.pop_front() {
                self.logs.count_dropped(b.lines);
            }
            self.counters.log_batches_dropped += 1;
            self.persist_logs();
            self.unexpected("newlogs", resp.status);
            self.timers.logs_ms = now + log_interval_ms(self.logs.sealed_batches());
        } else {
            self.unexpected("newlogs", resp.status);
            self.timers.logs_ms = now + self.log_backoff.fail(&mut *self.deps.rng);
        }
    }
}
