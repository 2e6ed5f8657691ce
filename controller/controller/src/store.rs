//! What the controller keeps, behind the [`Store`] trait: the embedded
//! SQLite one ([`sqlite::SqliteStore`]) by default, PostgreSQL
//! ([`postgres::PgStore`]) for fleets, where several controller replicas
//! share one database.
//!
//! Every method is one atomic unit: an implementation must either apply all
//! of a call's writes or none (one transaction per call), and calls from
//! several processes on one shared store must be as safe as calls from one.
//! [`suite`] is the test suite every implementation passes.

pub mod postgres;
pub mod sqlite;
pub mod suite;

use serde::Serialize;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// PostgreSQL reported an error, or the connection failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A stored value does not read back (a damaged row).
    #[error("damaged row: {0}")]
    Corrupt(String),
    /// The store's connection set-up is unusable (a bad URL).
    #[error("{0}")]
    Config(String),
    /// The database was written by a newer controller.
    #[error("database schema version {found} is newer than this controller's {supported}")]
    TooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The data directory could not be prepared.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One onboarding allow-list entry: a device onboarding certificate and the
/// serials it may register (empty: any serial).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OnboardEntry {
    /// Row id, used to remove the entry.
    pub id: i64,
    /// The onboarding certificate, PEM.
    pub cert_pem: String,
    /// Hex SHA-256 of the certificate's DER.
    pub cert_hash: String,
    /// Allowed serials; empty means any.
    pub serials: Vec<String>,
    /// When it was added (Unix seconds).
    pub created: i64,
}

/// Attestation and integrity state of a device.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AttestState {
    /// `none`, `nonce-issued`, `attested-notpm`, `attested-tpm` or `failed`.
    pub state: String,
    /// The outstanding nonce, consumed by the next quote.
    #[serde(skip)]
    pub nonce: Option<Vec<u8>>,
    /// The integrity token config requests must carry.
    #[serde(skip)]
    pub integrity_token: Option<Vec<u8>>,
    /// The device's attestation (restricted signing) certificate, PEM.
    pub attest_cert_pem: Option<String>,
    /// Escrowed volume keys: a serialized `AttestStorageKeys`.
    #[serde(skip)]
    pub storage_keys: Option<Vec<u8>>,
    /// The device's ECDH certificate (`CERT_TYPE_DEVICE_ECDH_EXCHANGE`,
    /// issued by its device certificate), PEM: secrets are sealed for it
    /// when the device has one (the key is in its TPM).
    pub ecdh_cert_pem: Option<String>,
    /// When the outstanding nonce was issued (Unix seconds): a quote over
    /// an older nonce is refused, so a captured nonce cannot be quoted
    /// later.
    #[serde(skip)]
    pub nonce_issued: Option<i64>,
    /// The PCR values quotes must show, as `index=hex` pairs joined by
    /// `,` (see `domain::attest::PcrPolicy`): the first attested values,
    /// or those an operator set; none until the first TPM attestation.
    pub pcr_policy: Option<String>,
}

/// An onboarded device.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Device {
    /// The UUID the controller assigned.
    pub uuid: String,
    /// The device certificate, PEM.
    pub device_cert_pem: String,
    /// Hex SHA-256 of the device certificate's DER (EVE's sender hash).
    pub device_cert_hash: String,
    /// Hex SHA-256 of the onboarding certificate used.
    pub onboard_cert_hash: String,
    /// The serial it registered with.
    pub serial: String,
    /// Registration time (Unix seconds).
    pub registered: i64,
    /// Last authenticated request (Unix seconds).
    pub last_seen: i64,
    /// Attestation state.
    pub attest: AttestState,
}

/// Result of [`Store::register_device`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// A new device was stored.
    Created,
    /// The same device certificate registered before: nothing changed.
    Repeat(String),
    /// The onboarding certificate and serial belong to another device cert.
    Conflict,
}

/// A stored configuration version.
#[derive(Debug, Clone, Serialize)]
pub struct StoredConfig {
    /// Monotonic per device, starting at 1.
    pub version: i64,
    /// Serialized `EdgeDevConfig`.
    #[serde(skip)]
    pub config: Vec<u8>,
    /// When it was set (Unix seconds).
    pub created: i64,
}

/// One stored info or metrics message.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Row id.
    pub id: i64,
    /// For info: the object it describes (`device`, `app/<uuid>`, ...);
    /// `metrics` or `flowlog` for those.
    pub key: String,
    /// Receive time (Unix milliseconds).
    pub received_ms: i64,
    /// The serialized message (`ZInfoMsg`, `ZMetricMsg` or `FlowMessage`).
    #[serde(skip)]
    pub msg: Vec<u8>,
}

/// One log line, from `newlogs` or an app's `newlogs`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogRecord {
    /// Row id (0 before storing).
    pub id: i64,
    /// Device UUID.
    pub device: String,
    /// App instance UUID for app logs.
    pub app: Option<String>,
    /// Entry time (Unix milliseconds).
    pub ts_ms: i64,
    /// Severity as sent (`info`, `error`, ...).
    pub severity: String,
    /// Source (agent or app).
    pub source: String,
    /// The message text.
    pub content: String,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Rows deleted one by one.
    pub rows: u64,
    /// Whole time partitions dropped (their rows are not counted).
    pub partitions: u64,
}

/// A change another process made to a shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A device was registered.
    DeviceAdded(String),
    /// A device was deleted.
    DeviceDeleted(String),
    /// A device got a new config.
    Config(String),
    /// A device's attestation state changed.
    Attest(String),
    /// Changes may have been missed (the notification link was lost):
    /// nothing cached can be trusted.
    Resync,
}

/// Where a store delivers [`Change`]s; called from the store's own thread,
/// so it must only touch memory.
pub type ChangeSink = Box<dyn Fn(Change) + Send + Sync>;

/// A log search.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Device UUID.
    pub device: String,
    /// Only this app's logs.
    pub app: Option<String>,
    /// Entries at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Entries before (Unix ms).
    pub until_ms: Option<i64>,
    /// Exact severity.
    pub severity: Option<String>,
    /// Substring of the content.
    pub contains: Option<String>,
    /// Only rows with a larger id (for `follow`).
    pub after_id: Option<i64>,
    /// At most this many rows, oldest first.
    pub limit: u32,
}

/// Storage used by the controller. Implementations are shared between
/// request handlers, hence `Send + Sync`.
pub trait Store: Send + Sync {
    /// Adds an onboarding certificate with its serials (empty: any).
    fn onboard_add(
        &self,
        cert_pem: &str,
        cert_hash: &str,
        serials: &[String],
    ) -> Result<i64, StoreError>;
    /// Every allow-list entry.
    fn onboard_list(&self) -> Result<Vec<OnboardEntry>, StoreError>;
    /// The entry for an onboarding certificate (hex SHA-256 of its DER).
    fn onboard_find(&self, cert_hash: &str) -> Result<Option<OnboardEntry>, StoreError>;
    /// Removes an entry; `false` if it did not exist.
    fn onboard_remove(&self, id: i64) -> Result<bool, StoreError>;
    /// Registers a device and stores its first config, atomically deciding
    /// between new, repeat and conflict.
    fn register_device(
        &self,
        device: &Device,
        initial_config: &[u8],
    ) -> Result<RegisterOutcome, StoreError>;
    /// Every device.
    fn devices(&self) -> Result<Vec<Device>, StoreError>;
    /// One device.
    fn device(&self, uuid: &str) -> Result<Option<Device>, StoreError>;
    /// Deletes a device and all its data; `false` if unknown.
    fn delete_device(&self, uuid: &str) -> Result<bool, StoreError>;
    /// Records last-seen times in one transaction.
    fn touch_devices(&self, seen: &[(String, i64)]) -> Result<(), StoreError>;
    /// Replaces a device's attestation state.
    fn set_attest(&self, uuid: &str, state: &AttestState) -> Result<(), StoreError>;
    /// Reads, changes and writes a device's attestation state as one atomic
    /// step, so that two replicas cannot both spend one nonce: `change`
    /// sees the stored state and returns whether to write it. It may be
    /// called again when another writer got there first; its last call is
    /// the one applied. Returns the stored state after the call, or `None`
    /// for an unknown device.
    fn update_attest(
        &self,
        uuid: &str,
        change: &mut dyn FnMut(&mut AttestState) -> bool,
    ) -> Result<Option<AttestState>, StoreError>;
    /// The device whose certificate's SHA-256 starts with `prefix_hex`
    /// (32 hex digits: the 16 bytes EVE may send as `senderCertHash`).
    fn device_by_cert_prefix(&self, prefix_hex: &str) -> Result<Option<Device>, StoreError>;
    /// Whether other processes may write this store at the same time
    /// (controller replicas): then what a controller caches can go stale,
    /// and it must read the store where its memory has no answer.
    fn shared(&self) -> bool {
        false
    }
    /// Calls `sink` with what other processes change, for as long as the
    /// store lives. A store that no other process writes never calls it.
    fn watch(&self, sink: ChangeSink) {
        let _ = sink;
    }
    /// Stores a new config version and returns its number.
    fn put_config(&self, uuid: &str, config: &[u8]) -> Result<i64, StoreError>;
    /// The current config.
    fn latest_config(&self, uuid: &str) -> Result<Option<StoredConfig>, StoreError>;
    /// All config versions, newest first.
    fn config_history(&self, uuid: &str) -> Result<Vec<StoredConfig>, StoreError>;
    /// Stores an info message as the latest for `key` and in the history.
    fn put_info(
        &self,
        uuid: &str,
        key: &str,
        msg: &[u8],
        received_ms: i64,
    ) -> Result<(), StoreError>;
    /// The latest info message per object.
    fn latest_info(&self, uuid: &str) -> Result<Vec<Record>, StoreError>;
    /// Stores a metrics message.
    fn put_metrics(&self, uuid: &str, msg: &[u8], received_ms: i64) -> Result<(), StoreError>;
    /// The newest `limit` metrics messages, newest first.
    fn metrics(&self, uuid: &str, limit: u32) -> Result<Vec<Record>, StoreError>;
    /// Drops metrics received before `metrics_before_ms`, and log lines
    /// and flow logs received before `logs_before_ms`.
    fn prune(&self, metrics_before_ms: i64, logs_before_ms: i64) -> Result<Pruned, StoreError>;
    /// Stores log lines received at `received_ms` in one transaction.
    fn put_logs(&self, logs: &[LogRecord], received_ms: i64) -> Result<(), StoreError>;
    /// Searches logs.
    fn query_logs(&self, query: &LogQuery) -> Result<Vec<LogRecord>, StoreError>;
    /// Bytes the stored data takes (SQLite: the database's pages;
    /// PostgreSQL: the database, without its write-ahead log).
    fn size_bytes(&self) -> Result<u64, StoreError>;
    /// Stores a flow-log message.
    fn put_flowlog(&self, uuid: &str, msg: &[u8], received_ms: i64) -> Result<(), StoreError>;
    /// The newest `limit` flow-log messages (`FlowMessage`), newest
    /// first, for `evectl flowlog show`.
    fn flowlogs(&self, uuid: &str, limit: u32) -> Result<Vec<Record>, StoreError>;
}
