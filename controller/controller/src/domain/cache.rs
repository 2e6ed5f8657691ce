//! The devices the controller knows, in memory: what a request needs to
//! authenticate and to be answered without the store (the verifying key,
//! the attestation state, the signed current config), and the last-seen
//! times waiting to be written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use eve_proto::sha256;

use crate::store::{AttestState, Device};

/// A device's current config, ready to send.
pub(super) struct CachedConfig {
    /// Its `configHash`.
    pub hash: String,
    /// The signed `ConfigResponse`.
    pub envelope: Bytes,
}

/// What changes about a device while it is served. Each cached value
/// carries the epoch of its kind it was read at; another replica's change
/// bumps the device's epoch ([`Dev::invalidate`]), which makes it stale.
#[derive(Default)]
pub(super) struct DevCache {
    pub config: Option<(u64, Arc<CachedConfig>)>,
    pub attest: AttestState,
    pub attest_epoch: u64,
    pub last_verified: Option<[u8; 32]>,
}

/// The kinds of cached state other replicas can make stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// The signed current config.
    Config,
    /// The attestation state (nonce, integrity token).
    Attest,
}

/// One known device.
pub struct Dev {
    /// The UUID the controller assigned.
    pub uuid: String,
    /// SHA-256 of the device certificate DER (EVE's `senderCertHash`).
    pub(super) cert_hash: [u8; 32],
    /// The device key for `ring`'s P-256 verifier, whose assembly is several
    /// times faster than the portable one: the config poll is bound by it.
    pub(super) key: ring::signature::UnparsedPublicKey<Vec<u8>>,
    pub(super) last_seen: AtomicI64,
    pub(super) seen_dirty: AtomicBool,
    pub(super) cache: Mutex<DevCache>,
    config_epoch: AtomicU64,
    attest_epoch: AtomicU64,
}

impl Dev {
    /// The in-memory form of a stored device; `None` when its certificate
    /// does not parse (a damaged row must not stop the controller).
    pub(super) fn from_device(device: &Device) -> Option<Arc<Self>> {
        use eve_proto::p256::elliptic_curve::sec1::ToEncodedPoint;
        let cert = eve_proto::x509::parse_pem(device.device_cert_pem.as_bytes()).ok()?;
        let der = eve_proto::x509::to_der(&cert).ok()?;
        let point = eve_proto::x509::p256_public_key(&cert)
            .ok()?
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        Some(Arc::new(Self {
            uuid: device.uuid.clone(),
            cert_hash: sha256(&der),
            key: ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                point,
            ),
            last_seen: AtomicI64::new(device.last_seen),
            seen_dirty: AtomicBool::new(false),
            cache: Mutex::new(DevCache {
                attest: device.attest.clone(),
                ..Default::default()
            }),
            config_epoch: AtomicU64::new(0),
            attest_epoch: AtomicU64::new(0),
        }))
    }

    fn epoch_of(&self, kind: Cached) -> &AtomicU64 {
        match kind {
            Cached::Config => &self.config_epoch,
            Cached::Attest => &self.attest_epoch,
        }
    }

    /// The current epoch of `kind`.
    pub(super) fn epoch(&self, kind: Cached) -> u64 {
        self.epoch_of(kind).load(Ordering::Acquire)
    }

    /// Makes what is cached of `kind` stale. Touches no lock, so the
    /// store's notification thread may call it at any time.
    pub(super) fn invalidate(&self, kind: Cached) {
        self.epoch_of(kind).fetch_add(1, Ordering::AcqRel);
    }

    /// Notes an authenticated request at `now` (Unix seconds).
    pub(super) fn seen(&self, now: i64) {
        self.last_seen.store(now, Ordering::Relaxed);
        self.seen_dirty.store(true, Ordering::Relaxed);
    }
}

/// The 16-byte prefix devices may send as `senderCertHash`.
pub(super) fn prefix16(h: &[u8]) -> [u8; 16] {
    let mut p = [0u8; 16];
    p.copy_from_slice(&h[..16]);
    p
}

/// Known devices by certificate hash prefix and by UUID.
#[derive(Default)]
pub(super) struct Devices {
    by_hash: HashMap<[u8; 16], Arc<Dev>>,
    by_uuid: HashMap<String, Arc<Dev>>,
}

impl Devices {
    /// Adds (or replaces) a stored device; returns it, or `None` when its
    /// certificate is unusable.
    pub fn insert_device(&mut self, device: &Device) -> Option<Arc<Dev>> {
        let dev = Dev::from_device(device)?;
        self.by_hash.insert(prefix16(&dev.cert_hash), dev.clone());
        self.by_uuid.insert(device.uuid.clone(), dev.clone());
        Some(dev)
    }

    pub fn remove(&mut self, uuid: &str) {
        if let Some(dev) = self.by_uuid.remove(uuid) {
            self.by_hash.remove(&prefix16(&dev.cert_hash));
        }
    }

    pub fn by_uuid(&self, uuid: &str) -> Option<Arc<Dev>> {
        self.by_uuid.get(uuid).cloned()
    }

    pub fn by_hash(&self, hash: &[u8]) -> Option<Arc<Dev>> {
        self.by_hash.get(&prefix16(hash)).cloned()
    }

    /// Every known device.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Dev>> {
        self.by_uuid.values()
    }

    /// The last-seen times changed since the previous call.
    pub fn take_dirty_last_seen(&self) -> Vec<(String, i64)> {
        self.by_uuid
            .values()
            .filter(|d| d.seen_dirty.swap(false, Ordering::Relaxed))
            .map(|d| (d.uuid.clone(), d.last_seen.load(Ordering::Relaxed)))
            .collect()
    }
}
