//! The agent: onboarding (certs, register, UUID, attestation) and then the
//! config, info, metrics and logs loops, one HTTP exchange at a time from
//! [`Agent::poll`], which returns when it next wants to run.
//!
//! One state machine, split by concern: [`Agent`] and its setup here, what
//! it reports outwards in `status`, the exchange scheduler in `schedule`,
//! the onboarding steps in `onboarding`, config verification in `config`,
//! device info and metrics in `reports`, and the log queue's upload in
//! `log_upload`.

mod app_config;
mod app_disks;
mod app_log_upload;
mod apps;
mod attest;
mod baseos;
mod config;
mod config_items;
mod content;
mod keycert;
mod log_upload;
mod net_metrics;
mod network;
mod node_status;
mod onboarding;
mod reports;
mod schedule;
mod status;

pub use app_config::{AppTable, app_table};
pub use apps::deleted_app_info;
pub use attest::{QUOTED_PCRS, Quoter, REC_ATTEST_CERT, TpmQuote};
pub use config_items::REC_CONFIG_ITEMS;
pub use content::{ContentInfo, ContentTables};
pub use status::{AttestStatus, Counters, Event, Phase, RegisterStatus, Rejections, Status};

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::config::EdgeDevConfig;
use eve_proto::info::{HwSecurityModuleStatus, ZInfoDevSw};
use eve_proto::prost_types::Timestamp;
use eve_proto::sign::TrustedSigner;
use eve_proto::x509::{Certificate, ControllerCert};

use crate::app_logs::AppLogQueue;
use crate::backoff::Backoff;
use crate::flow_logs::FlowQueue;
use crate::identity::{
    DeviceIdentity, DeviceKeySource, Onboarding, SecretKey, SetupError, canonical_uuid, open_certs,
    parse_root, valid_uuid,
};
use crate::io::{Clock, DeviceFacts, Persist, Platform, Rng};
use crate::logs::{Level, LogQueue};
use crate::queue::DeferredQueue;
use crate::settings::Settings;

use config::Current;
use reports::UrlStats;
use schedule::{JOB_KINDS, Timers};

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
/// Bound on the sealed batches of apps' logs kept for upload.
const MAX_APP_LOG_QUEUE_BYTES: usize = 512 << 10;
/// Bound on queued info messages (one per object: the device, each
/// content tree, volume and app, the blob list).
const MAX_INFO_ITEMS: usize = 128;
/// Name this agent logs under.
const SOURCE: &str = "zedagent";
/// `HSMInfo` when the device key is held outside this VM.
const HSM_INFO_TPM: &str = "TPM 2.0 through the host; the device key never leaves it";
/// `HSMInfo` when the device key is in software.
const HSM_INFO_NONE: &str = "none; the device key is in software on the state volume";
/// Prefix of the `metricItems` keys counting rejected controller answers.
pub const METRIC_REJECTED: &str = "zedagent.rejected.";
/// `metricItems` key counting failed state-volume writes.
pub const METRIC_PERSIST_ERRORS: &str = "zedagent.persist.errors";

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

/// The zedagent state machine.
pub struct Agent {
    deps: Deps,
    root: Certificate,
    onboarding: Option<Onboarding>,
    soft_serial: String,
    hw_serial: String,
    device: DeviceIdentity,
    controller: Option<TrustedSigner>,
    /// The controller's ECDH certificates, from `/certs`: the other half
    /// of every sealed secret.
    controller_ecdh: Vec<ControllerCert>,
    /// The keys that open secrets sealed for this device.
    secret_keys: Vec<SecretKey>,
    /// The disk's use by content, as volumemgr last reported it.
    content_usage: Option<topics::content::Usage>,
    /// Each app's latest status from zedmanager, by app UUID.
    apps: BTreeMap<String, eve_proto::info::ZInfoApp>,
    /// Each running app's metrics from domainmgr, by app UUID.
    app_metrics: BTreeMap<String, eve_proto::metrics::AppMetric>,
    /// zedrouter's counters of instances and app interfaces, by bus key.
    net_metrics: BTreeMap<String, topics::netmetrics::NetworkCounters>,
    /// The TPM ECDH key's certificate, and whether the controller still
    /// has to be given it.
    ecdh_cert: Option<(Vec<u8>, bool)>,
    /// What the attestation request in flight is.
    attest_sent: attest::AttestSent,
    /// The TPM path of attestation, when the node has a TPM.
    tpm_attest: Option<attest::TpmAttest>,
    uuid: Option<String>,
    token: Option<Vec<u8>>,
    current: Option<Current>,
    settings: Settings,
    /// The global config items other services act on.
    config_items: topics::configitems::GlobalConfig,
    phase: Phase,
    backoff: Backoff,
    retry_ms: u64,
    certs_stale: bool,
    register: RegisterStatus,
    /// The `/uuid` request due is the fallback of a refused registration:
    /// if it fails too, onboarding goes back to registering.
    uuid_fallback: bool,
    attest: AttestStatus,
    timers: Timers,
    info: DeferredQueue,
    info_due: bool,
    last_facts: Option<DeviceFacts>,
    /// baseosmgr's partitions for `swList`; empty until it reports.
    base_os: Vec<ZInfoDevSw>,
    /// nodeagent's `node-status`; `None` until it reports.
    node_status: Option<topics::nodestatus::Node>,
    logs: LogQueue,
    log_backoff: Backoff,
    /// Apps' console lines waiting for their `newlogs` (memory only).
    app_logs: AppLogQueue,
    app_log_backoff: Backoff,
    /// zedrouter's flow messages waiting for `flowlog`.
    flows: FlowQueue,
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
        let secret_keys = device.secret_key().into_iter().collect();
        let mut agent = Self {
            deps,
            root,
            onboarding: bootstrap.onboarding,
            soft_serial: bootstrap.soft_serial,
            hw_serial,
            device,
            controller: None,
            controller_ecdh: Vec::new(),
            secret_keys,
            content_usage: None,
            apps: BTreeMap::new(),
            app_metrics: BTreeMap::new(),
            net_metrics: BTreeMap::new(),
            ecdh_cert: None,
            attest_sent: attest::AttestSent::Nothing,
            tpm_attest: None,
            uuid: None,
            token: None,
            current: None,
            settings: Settings::default(),
            config_items: topics::configitems::GlobalConfig::default(),
            phase: Phase::FetchCerts,
            backoff: Backoff::default(),
            retry_ms: now,
            certs_stale: false,
            register: RegisterStatus::NotTried,
            uuid_fallback: false,
            attest: AttestStatus::None,
            timers: Timers {
                config_ms: now,
                info_ms: now,
                metrics_ms: now,
                logs_ms: now,
                app_logs_ms: now,
                flows_ms: now,
            },
            info: DeferredQueue::new(MAX_INFO_ITEMS),
            info_due: true,
            last_facts: None,
            base_os: Vec::new(),
            node_status: None,
            logs: LogQueue::new(MAX_LOG_QUEUE_BYTES),
            log_backoff: Backoff::default(),
            app_logs: AppLogQueue::new(MAX_APP_LOG_QUEUE_BYTES),
            app_log_backoff: Backoff::default(),
            flows: FlowQueue::new(),
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

    fn now(&self) -> u64 {
        self.deps.clock.now_ms()
    }

    fn unix_ms(&self) -> u64 {
        self.deps.clock.unix_ms()
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

    fn load_checkpoints(&mut self) {
        let now_unix = self.deps.clock.unix_ms() / 1000;
        if let Some(body) = self.read(REC_CONTROLLER_CERTS) {
            match open_certs(&body, &self.root, now_unix) {
                Ok((trusted, ecdh)) => {
                    self.controller = Some(trusted);
                    self.controller_ecdh = ecdh;
                }
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
        self.load_config_items();
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
}
