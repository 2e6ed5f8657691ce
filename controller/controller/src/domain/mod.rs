//! What the controller does, apart from how requests reach it: device
//! onboarding, attestation, configs and telemetry, and the operator's
//! changes. Every operation is synchronous and may touch the [`Store`];
//! the listeners ([`crate::device_api`], [`crate::admin`]) decide on which
//! threads they run.
//!
//! The hot path is the config poll: devices, their verifying keys, their
//! integrity tokens and their current signed config are cached in memory
//! ([`cache`]), device signatures are checked with `ring` (assembly P-256),
//! an identical envelope that verified before is not verified again (our
//! devices sign deterministically), and last-seen times are written to the
//! store in batches once a second.

mod apps;
pub mod attest;
mod cache;
mod config;
mod envelope;
mod register;
mod telemetry;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use eve_proto::common::HashAlgorithm;
use eve_proto::sign::{self, SenderIdentity};
use eve_proto::{Message, sha256};
use hyper::StatusCode;
use serde::Serialize;

use crate::configspec;
use crate::identity::Identity;
use crate::store::{Change, Pruned, Store, StoreError};

pub use apps::NewApp;
pub use cache::Dev;
use cache::{Cached, Devices};
pub use config::config_hash;

/// Limits and retention.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body (413 above).
    pub max_body: usize,
    /// Largest decompressed `newlogs` batch (413 above).
    pub max_log_bytes: usize,
    /// How long metrics are kept.
    pub metrics_retention: Duration,
    /// How long log lines are kept (from when they were received).
    pub log_retention: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 4 << 20,
            max_log_bytes: 32 << 20,
            metrics_retention: Duration::from_secs(7 * 24 * 3600),
            log_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Why an operation on the controller failed (admin side).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The device does not exist.
    #[error("no device {0}")]
    NoDevice(String),
    /// The config description was refused.
    #[error(transparent)]
    Spec(#[from] configspec::SpecError),
    /// A stored config does not decode (database damaged).
    #[error("stored config of {0} does not decode")]
    CorruptConfig(String),
    /// The onboarding certificate is unusable.
    #[error("onboarding certificate: {0}")]
    BadCert(String),
    /// The request makes no sense.
    #[error("{0}")]
    Invalid(String),
}

/// A refused device request: the status EVE's API gives the refusal and a
/// short reason for the body.
#[derive(Debug)]
pub struct Reject(pub StatusCode, pub String);

impl Reject {
    /// A refusal with `status` and `reason`.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self(status, reason.into())
    }
}

impl From<StoreError> for Reject {
    fn from(e: StoreError) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, format!("storage: {e}"))
    }
}

/// The answer to a device request: a status and, for some, a signed body.
pub type Reply = Result<(StatusCode, Option<Bytes>), Reject>;

/// One counter line: how many requests on `route` ended with `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    /// Route name (`config`, `info`, ...).
    pub route: &'static str,
    /// HTTP status answered.
    pub status: u16,
    /// Number of requests.
    pub count: u64,
}

/// The controller: identity, storage, caches and counters, shared by both
/// listeners.
pub struct Controller {
    store: Arc<dyn Store>,
    identity: Identity,
    certs_envelope: Bytes,
    devices: RwLock<Devices>,
    counters: Mutex<BTreeMap<(&'static str, u16), u64>>,
    limits: Limits,
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn unix_secs() -> i64 {
    now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn unix_ms() -> i64 {
    now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("the OS random source works");
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Controller {
    /// Builds the controller over `store`, loading every device into memory.
    pub fn new(
        store: Arc<dyn Store>,
        identity: Identity,
        limits: Limits,
    ) -> Result<Self, ControllerError> {
        let mut devices = Devices::default();
        for d in store.devices()? {
            devices.insert_device(&d);
        }
        let mut ctl = Self {
            store,
            identity,
            certs_envelope: Bytes::new(),
            devices: RwLock::new(devices),
            counters: Mutex::new(BTreeMap::new()),
            limits,
        };
        ctl.certs_envelope = ctl.envelope(ctl.identity.controller_certs.clone());
        Ok(ctl)
    }

    /// The controller's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The storage backend.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The limits this controller enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The signed `/certs` answer.
    pub fn certs_envelope(&self) -> Bytes {
        self.certs_envelope.clone()
    }

    /// Request counters by route and status.
    pub fn counters(&self) -> Vec<Count> {
        lock(&self.counters)
            .iter()
            .map(|(&(route, status), &count)| Count {
                route,
                status,
                count,
            })
            .collect()
    }

    /// Counts one answered request.
    pub fn count(&self, route: &'static str, status: StatusCode) {
        *lock(&self.counters)
            .entry((route, status.as_u16()))
            .or_default() += 1;
    }

    /// Signs a payload with the controller signing certificate.
    pub fn envelope(&self, payload: Vec<u8>) -> Bytes {
        let sender = SenderIdentity {
            cert_hash: self.identity.signing_cert_hash,
            algo: HashAlgorithm::Sha25632bytes,
            embed_cert_pem: None,
        };
        let container = sign::sign_auth_container(payload, &self.identity.signer, &sender)
            .expect("the software signing key signs");
        Bytes::from(container.encode_to_vec())
    }

    /// Writes batched last-seen times; called periodically.
    pub fn flush_last_seen(&self) -> Result<(), StoreError> {
        let dirty = self
            .devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .take_dirty_last_seen();
        if dirty.is_empty() {
            return Ok(());
        }
        self.store.touch_devices(&dirty)
    }

    /// Drops metrics and logs older than their retention limits.
    pub fn prune(&self) -> Result<Pruned, StoreError> {
        let keep = |d: Duration| unix_ms() - d.as_millis() as i64;
        self.store.prune(
            keep(self.limits.metrics_retention),
            keep(self.limits.log_retention),
        )
    }

    /// Adds an onboarding certificate (PEM) with serials (empty: any).
    pub fn onboard_add(&self, cert_pem: &str, serials: &[String]) -> Result<i64, ControllerError> {
        let cert = eve_proto::x509::parse_pem(cert_pem.as_bytes())
            .map_err(|e| ControllerError::BadCert(format!("{e:?}")))?;
        eve_proto::x509::p256_public_key(&cert)
            .map_err(|e| ControllerError::BadCert(format!("{e:?}")))?;
        let der = eve_proto::x509::to_der(&cert)
            .map_err(|e| ControllerError::BadCert(format!("{e:?}")))?;
        Ok(self
            .store
            .onboard_add(cert_pem, &hex(&sha256(&der)), serials)?)
    }

    /// Deletes a device everywhere.
    pub fn delete_device(&self, uuid: &str) -> Result<bool, ControllerError> {
        let found = self.store.delete_device(uuid)?;
        self.devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uuid);
        Ok(found)
    }

    /// A device by UUID, from memory or, on a shared store, from the store.
    fn dev_or_load(&self, uuid: &str) -> Result<Option<Arc<Dev>>, StoreError> {
        if let Some(dev) = self
            .devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_uuid(uuid)
        {
            return Ok(Some(dev));
        }
        if !self.store.shared() {
            return Ok(None);
        }
        Ok(self.store.device(uuid)?.and_then(|d| self.remember(&d)))
    }

    /// A device by its certificate hash (16 or 32 bytes) from the store.
    fn load_by_cert_hash(&self, hash: &[u8]) -> Result<Option<Arc<Dev>>, StoreError> {
        if !self.store.shared() || hash.len() < 16 {
            return Ok(None);
        }
        let device = self.store.device_by_cert_prefix(&hex(&hash[..16]))?;
        Ok(device.and_then(|d| self.remember(&d)))
    }

    /// Adds a stored device to memory, keeping one we already have.
    fn remember(&self, device: &crate::store::Device) -> Option<Arc<Dev>> {
        let mut devices = self.devices.write().unwrap_or_else(|e| e.into_inner());
        match devices.by_uuid(&device.uuid) {
            Some(dev) => Some(dev),
            None => devices.insert_device(device),
        }
    }

    /// Follows what other replicas change in a shared store, for as long
    /// as the controller lives.
    pub fn watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.store.watch(Box::new(move |change| {
            if let Some(ctl) = weak.upgrade() {
                ctl.apply(change);
            }
        }));
    }

    /// Makes what `change` touched stale. Runs on the store's thread: it
    /// only takes the device map's lock, which is never held across a call
    /// to the store.
    fn apply(&self, change: Change) {
        let devices = || self.devices.read().unwrap_or_else(|e| e.into_inner());
        match change {
            Change::DeviceAdded(_) => {}
            Change::DeviceDeleted(uuid) => {
                self.devices
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&uuid);
            }
            Change::Config(uuid) => {
                if let Some(dev) = devices().by_uuid(&uuid) {
                    dev.invalidate(Cached::Config);
                }
            }
            Change::Attest(uuid) => {
                if let Some(dev) = devices().by_uuid(&uuid) {
                    dev.invalidate(Cached::Attest);
                }
            }
            Change::Resync => {
                for dev in devices().all() {
                    dev.invalidate(Cached::Config);
                    dev.invalidate(Cached::Attest);
                }
            }
        }
    }
}
