//! The device API: EVE API v2 under `/api/v2/edgedevice/`, over TLS.
//!
//! Semantics follow EVE's client and the open Adam controller: bodies are
//! signed `AuthContainer`s (`application/x-proto-binary`), telemetry posts
//! answer 201, attest answers 201 with a signed `ZAttestResponse`, config
//! answers 304 when the device's `configHash` is current. A request is
//! checked completely (size, envelope, signer, signature, payload) before
//! anything is stored, and every request is counted by route and status.
//!
//! The hot path is the config poll: devices, their verifying keys, their
//! integrity tokens and their current signed config are cached in memory,
//! device signatures are checked with `ring` (assembly P-256), an identical
//! envelope that verified before is not verified again (our devices sign
//! deterministically), and last-seen times are written to the store in
//! batches once a second.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use eve_proto::Message;
use eve_proto::attest::{
    AttestStorageKeys, AttestStorageKeysResp, AttestStorageKeysResponseCode, ZAttestNonceResp,
    ZAttestQuoteResp, ZAttestReq, ZAttestReqType, ZAttestRespType, ZAttestResponse,
    ZAttestResponseCode,
};
use eve_proto::auth::AuthContainer;
use eve_proto::certs::ZCertType;
use eve_proto::common::HashAlgorithm;
use eve_proto::config::{ConfigRequest, ConfigResponse, EdgeDevConfig};
use eve_proto::info::ZInfoMsg;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::logs::{LogBundle, LogEntry};
use eve_proto::register::ZRegisterMsg;
use eve_proto::sign::{self, SenderIdentity, TrustedSigner, VerifyError};
use eve_proto::uuid::UuidResponse;
use eve_proto::{flowlog, metrics, sha256};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::configspec;
use crate::identity::Identity;
use crate::quote;
use crate::store::{AttestState, Device, LogRecord, RegisterOutcome, Store, StoreError};

/// The protobuf media type EVE uses in both directions.
pub const MIME_PROTO: &str = "application/x-proto-binary";
/// Nonce length handed to devices (fits a TPM's `qualifyingData`).
const NONCE_LEN: usize = 32;
/// Integrity token length.
const TOKEN_LEN: usize = 32;
/// A client must send its headers, and then its body, within these: slow
/// senders must not hold connections and memory forever.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Limits and retention.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body (413 above).
    pub max_body: usize,
    /// Largest decompressed `newlogs` batch (413 above).
    pub max_log_bytes: usize,
    /// How long metrics are kept.
    pub metrics_retention: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 4 << 20,
            max_log_bytes: 32 << 20,
            metrics_retention: Duration::from_secs(7 * 24 * 3600),
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
}

struct CachedConfig {
    hash: String,
    envelope: Bytes,
}

#[derive(Default)]
struct DevCache {
    config: Option<Arc<CachedConfig>>,
    attest: AttestState,
    last_verified: Option<[u8; 32]>,
}

struct Dev {
    uuid: String,
    /// SHA-256 of the device certificate DER (EVE's `senderCertHash`).
    cert_hash: [u8; 32],
    /// The device key for `ring`'s P-256 verifier, whose assembly is several
    /// times faster than the portable one: the config poll is bound by it.
    key: ring::signature::UnparsedPublicKey<Vec<u8>>,
    last_seen: AtomicI64,
    seen_dirty: AtomicBool,
    cache: Mutex<DevCache>,
}

#[derive(Default)]
struct Devices {
    by_hash: HashMap<[u8; 16], Arc<Dev>>,
    by_uuid: HashMap<String, Arc<Dev>>,
}

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

/// A refused request: status and a short reason for the body.
#[derive(Debug)]
struct Reject(StatusCode, String);

impl Reject {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self(status, reason.into())
    }
}

impl From<StoreError> for Reject {
    fn from(e: StoreError) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, format!("storage: {e}"))
    }
}

type Reply = Result<(StatusCode, Option<Bytes>), Reject>;

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

fn prefix16(h: &[u8]) -> [u8; 16] {
    let mut p = [0u8; 16];
    p.copy_from_slice(&h[..16]);
    p
}

fn dev_from(device: &Device) -> Option<Arc<Dev>> {
    use eve_proto::p256::elliptic_curve::sec1::ToEncodedPoint;
    let cert = eve_proto::x509::parse_pem(device.device_cert_pem.as_bytes()).ok()?;
    let der = eve_proto::x509::to_der(&cert).ok()?;
    let point = eve_proto::x509::p256_public_key(&cert)
        .ok()?
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    Some(Arc::new(Dev {
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
    }))
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
            if let Some(dev) = dev_from(&d) {
                devices
                    .by_hash
                    .insert(prefix16(&dev.cert_hash), dev.clone());
                devices.by_uuid.insert(d.uuid.clone(), dev);
            }
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

    fn count(&self, route: &'static str, status: StatusCode) {
        *lock(&self.counters)
            .entry((route, status.as_u16()))
            .or_default() += 1;
    }

    /// Signs a payload with the controller signing certificate.
    fn envelope(&self, payload: Vec<u8>) -> Bytes {
        let sender = SenderIdentity {
            cert_hash: self.identity.signing_cert_hash,
            algo: HashAlgorithm::Sha25632bytes,
            embed_cert_pem: None,
        };
        let container = sign::sign_auth_container(payload, &self.identity.signer, &sender)
            .expect("the software signing key signs");
        Bytes::from(container.encode_to_vec())
    }

    fn dev(&self, uuid: &str) -> Option<Arc<Dev>> {
        self.devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_uuid
            .get(uuid)
            .cloned()
    }

    /// Writes batched last-seen times; called periodically.
    pub fn flush_last_seen(&self) -> Result<(), StoreError> {
        let dirty: Vec<(String, i64)> = self
            .devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_uuid
            .values()
            .filter(|d| d.seen_dirty.swap(false, Ordering::Relaxed))
            .map(|d| (d.uuid.clone(), d.last_seen.load(Ordering::Relaxed)))
            .collect();
        if dirty.is_empty() {
            return Ok(());
        }
        self.store.touch_devices(&dirty)
    }

    /// Drops metrics older than the retention limit.
    pub fn prune(&self) -> Result<usize, StoreError> {
        let keep_ms = self.limits.metrics_retention.as_millis() as i64;
        self.store.prune_metrics(unix_ms() - keep_ms)
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
        let mut devs = self.devices.write().unwrap_or_else(|e| e.into_inner());
        if let Some(dev) = devs.by_uuid.remove(uuid) {
            devs.by_hash.remove(&prefix16(&dev.cert_hash));
        }
        Ok(found)
    }

    /// Builds and stores a new config from a YAML/JSON description.
    pub fn set_config(
        &self,
        uuid: &str,
        text: &str,
    ) -> Result<(i64, EdgeDevConfig), ControllerError> {
        let dev = self
            .dev(uuid)
            .ok_or_else(|| ControllerError::NoDevice(uuid.into()))?;
        // One config change per device at a time, and no poll may cache
        // the old config while it is being replaced.
        let mut cache = lock(&dev.cache);
        let previous = self.current_config(uuid)?;
        let next = self.store.latest_config(uuid)?.map_or(1, |c| c.version + 1);
        let cfg = configspec::build(text, uuid, next, previous.as_ref(), now())?;
        let version = self.store.put_config(uuid, &cfg.encode_to_vec())?;
        cache.config = None;
        Ok((version, cfg))
    }

    /// The current config of a device.
    pub fn current_config(&self, uuid: &str) -> Result<Option<EdgeDevConfig>, ControllerError> {
        match self.store.latest_config(uuid)? {
            None => Ok(None),
            Some(c) => EdgeDevConfig::decode(c.config.as_slice())
                .map(Some)
                .map_err(|_| ControllerError::CorruptConfig(uuid.into())),
        }
    }

    /// Handles one device API request; never fails at the HTTP level.
    pub async fn handle_device(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (route, result) = self.route(req).await;
        let (status, body) = match result {
            Ok((status, body)) => (status, body),
            Err(Reject(status, reason)) => (status, Some(Bytes::from(reason + "\n"))),
        };
        self.count(route, status);
        let mut resp = Response::builder().status(status);
        let body = match body {
            Some(b) if status.is_success() => {
                resp = resp.header(CONTENT_TYPE, MIME_PROTO);
                b
            }
            Some(b) => {
                resp = resp.header(CONTENT_TYPE, "text/plain");
                b
            }
            None => Bytes::new(),
        };
        Ok(resp
            .body(Full::new(body))
            .expect("static response parts are valid"))
    }

    async fn route(&self, req: Request<Incoming>) -> (&'static str, Reply) {
        let path = req.uri().path().to_owned();
        let Some(rest) = path.strip_prefix("/api/v2/edgedevice/") else {
            return (
                "unknown",
                Err(Reject::new(StatusCode::NOT_FOUND, "not found")),
            );
        };
        let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let (path_uuid, op, app) = match segs.as_slice() {
            [op] => (None, *op, None),
            ["id", uuid, op] => (Some(*uuid), *op, None),
            ["id", uuid, "apps", "instanceid", app, "newlogs"] => {
                (Some(*uuid), "appnewlogs", Some(*app))
            }
            _ => {
                return (
                    "unknown",
                    Err(Reject::new(StatusCode::NOT_FOUND, "not found")),
                );
            }
        };
        let route: &'static str = match op {
            "ping" => "ping",
            "certs" => "certs",
            "register" => "register",
            "uuid" => "uuid",
            "config" => "config",
            "attest" => "attest",
            "info" => "info",
            "metrics" => "metrics",
            "logs" => "logs",
            "newlogs" => "newlogs",
            "appnewlogs" => "appnewlogs",
            "flowlog" => "flowlog",
            _ => {
                return (
                    "unknown",
                    Err(Reject::new(StatusCode::NOT_FOUND, "not found")),
                );
            }
        };
        let want = if matches!(route, "ping" | "certs") {
            Method::GET
        } else {
            Method::POST
        };
        if req.method() != want {
            return (
                route,
                Err(Reject::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed",
                )),
            );
        }
        if route == "ping" {
            return (route, Ok((StatusCode::OK, None)));
        }
        if route == "certs" {
            return (
                route,
                Ok((StatusCode::OK, Some(self.certs_envelope.clone()))),
            );
        }
        let body = match self.read_body(req).await {
            Ok(b) => b,
            Err(r) => return (route, Err(r)),
        };
        let reply = if route == "register" {
            self.register(&body)
        } else {
            match self.authenticate(&body, path_uuid) {
                Err(r) => Err(r),
                Ok((dev, payload)) => match route {
                    "uuid" => self.uuid(&dev),
                    "config" => self.config(&dev, &payload),
                    "attest" => self.attest(&dev, &payload),
                    "info" => self.info(&dev, &payload),
                    "metrics" => self.metrics(&dev, &payload),
                    "logs" => self.logs(&dev, &payload),
                    "newlogs" => self.newlogs(&dev, None, &payload),
                    "appnewlogs" => self.newlogs(&dev, app, &payload),
                    _ => self.flowlog(&dev, &payload),
                },
            }
        };
        (route, reply)
    }

    async fn read_body(&self, req: Request<Incoming>) -> Result<Bytes, Reject> {
        let max = self.limits.max_body;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(Reject::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {max} bytes"),
            ));
        }
        let collect = Limited::new(req.into_body(), max).collect();
        let Ok(collected) = tokio::time::timeout(BODY_TIMEOUT, collect).await else {
            return Err(Reject::new(
                StatusCode::REQUEST_TIMEOUT,
                "body not received in time",
            ));
        };
        match collected {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Reject::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {max} bytes"),
            )),
            Err(e) => Err(Reject::new(
                StatusCode::BAD_REQUEST,
                format!("reading body: {e}"),
            )),
        }
    }

    /// Opens a device-signed envelope: the signer must be a registered
    /// device and, on `id/{uuid}/` paths, the device named there.
    fn authenticate(
        &self,
        body: &[u8],
        path_uuid: Option<&str>,
    ) -> Result<(Arc<Dev>, Vec<u8>), Reject> {
        let container = AuthContainer::decode(body)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "body is not an AuthContainer"))?;
        let hash = &container.sender_cert_hash;
        if hash.len() != 16 && hash.len() != 32 {
            return Err(Reject::new(
                StatusCode::BAD_REQUEST,
                "senderCertHash must be 16 or 32 bytes",
            ));
        }
        let dev = self
            .devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_hash
            .get(&prefix16(hash))
            .cloned()
            .ok_or_else(|| Reject::new(StatusCode::UNAUTHORIZED, "unknown device certificate"))?;
        let memo = sha256(body);
        let verified_before = lock(&dev.cache).last_verified == Some(memo);
        let payload = if verified_before {
            container
                .protected_payload
                .map(|p| p.payload)
                .unwrap_or_default()
        } else {
            let payload = verify_device_envelope(&container, &dev)?;
            let payload = payload.to_vec();
            lock(&dev.cache).last_verified = Some(memo);
            payload
        };
        if path_uuid.is_some_and(|u| u != dev.uuid) {
            return Err(Reject::new(
                StatusCode::FORBIDDEN,
                "path names another device",
            ));
        }
        dev.last_seen.store(unix_secs(), Ordering::Relaxed);
        dev.seen_dirty.store(true, Ordering::Relaxed);
        Ok((dev, payload))
    }

    fn register(&self, body: &[u8]) -> Reply {
        let container = AuthContainer::decode(body)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "body is not an AuthContainer"))?;
        if container.sender_cert.is_empty() {
            return Err(Reject::new(
                StatusCode::BAD_REQUEST,
                "register needs senderCert (the onboarding certificate)",
            ));
        }
        let onboard = TrustedSigner::from_embedded_sender_cert(&container)
            .map_err(|e| Reject::new(StatusCode::BAD_REQUEST, format!("senderCert: {e:?}")))?;
        let payload = sign::verify_auth_container(&container, &onboard).map_err(|e| match e {
            VerifyError::BadSignature | VerifyError::UnknownSenderCert => Reject::new(
                StatusCode::UNAUTHORIZED,
                format!("onboarding signature: {e:?}"),
            ),
            other => Reject::new(StatusCode::BAD_REQUEST, format!("bad envelope: {other:?}")),
        })?;
        let onboard_hash = hex(onboard.cert_hash());
        let msg = ZRegisterMsg::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a ZRegisterMsg"))?;
        let entry = self.store.onboard_find(&onboard_hash)?.ok_or_else(|| {
            Reject::new(
                StatusCode::FORBIDDEN,
                "onboarding certificate is not pre-registered",
            )
        })?;
        let serial = [&msg.serial, &msg.soft_serial]
            .into_iter()
            .find(|s| !s.is_empty() && (entry.serials.is_empty() || entry.serials.contains(s)))
            .cloned()
            .ok_or_else(|| {
                Reject::new(
                    StatusCode::FORBIDDEN,
                    "serial is not allowed for this onboarding certificate",
                )
            })?;
        let pem = device_cert_pem(&msg.pem_cert)?;
        let cert = eve_proto::x509::parse_pem(&pem).map_err(|_| {
            Reject::new(StatusCode::BAD_REQUEST, "pemCert is not a PEM certificate")
        })?;
        let der = eve_proto::x509::to_der(&cert).map_err(|_| {
            Reject::new(StatusCode::BAD_REQUEST, "pemCert is not a PEM certificate")
        })?;
        TrustedSigner::from_device_der(&der).map_err(|e| {
            Reject::new(
                StatusCode::BAD_REQUEST,
                format!("device certificate: {e:?}"),
            )
        })?;
        let uuid = configspec::format_uuid(&{
            let mut b = random::<16>();
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            b
        });
        let device = Device {
            uuid: uuid.clone(),
            device_cert_pem: String::from_utf8_lossy(&pem).into_owned(),
            device_cert_hash: hex(&sha256(&der)),
            onboard_cert_hash: onboard_hash,
            serial,
            registered: unix_secs(),
            last_seen: unix_secs(),
            attest: AttestState {
                state: "none".into(),
                ..Default::default()
            },
        };
        let initial = configspec::initial(&uuid, now()).encode_to_vec();
        match self.store.register_device(&device, &initial)? {
            RegisterOutcome::Created => {
                if let Some(dev) = dev_from(&device) {
                    let mut devs = self.devices.write().unwrap_or_else(|e| e.into_inner());
                    devs.by_hash.insert(prefix16(&dev.cert_hash), dev.clone());
                    devs.by_uuid.insert(uuid, dev);
                }
                Ok((StatusCode::CREATED, None))
            }
            RegisterOutcome::Repeat(_) => Ok((StatusCode::OK, None)),
            RegisterOutcome::Conflict => Err(Reject::new(
                StatusCode::CONFLICT,
                "onboarding certificate and serial are used by another device",
            )),
        }
    }

    fn uuid(&self, dev: &Dev) -> Reply {
        let resp = UuidResponse {
            uuid: dev.uuid.clone(),
            ..Default::default()
        };
        Ok((StatusCode::OK, Some(self.envelope(resp.encode_to_vec()))))
    }

    fn config(&self, dev: &Dev, payload: &[u8]) -> Reply {
        let req = ConfigRequest::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a ConfigRequest"))?;
        // Held while a missing cache entry is filled, so that a config set
        // in between cannot be overwritten by the older one read here.
        let mut cache = lock(&dev.cache);
        let token_ok = cache.attest.integrity_token.as_deref().is_some_and(|t| {
            !req.integrity_token.is_empty() && t == req.integrity_token.as_slice()
        });
        if !token_ok {
            return Err(Reject::new(
                StatusCode::FORBIDDEN,
                "integrity token missing or wrong: attest first",
            ));
        }
        let cfg = match &cache.config {
            Some(c) => c.clone(),
            None => {
                let stored = self
                    .store
                    .latest_config(&dev.uuid)?
                    .ok_or_else(|| Reject::new(StatusCode::NOT_FOUND, "device has no config"))?;
                let config = EdgeDevConfig::decode(stored.config.as_slice()).map_err(|_| {
                    Reject::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "stored config does not decode",
                    )
                })?;
                let hash = config_hash(&stored.config);
                let resp = ConfigResponse {
                    config: Some(config),
                    config_hash: hash.clone(),
                };
                let c = Arc::new(CachedConfig {
                    hash,
                    envelope: self.envelope(resp.encode_to_vec()),
                });
                cache.config = Some(c.clone());
                c
            }
        };
        drop(cache);
        if req.config_hash == cfg.hash {
            return Ok((StatusCode::NOT_MODIFIED, None));
        }
        Ok((StatusCode::OK, Some(cfg.envelope.clone())))
    }

    fn attest(&self, dev: &Dev, payload: &[u8]) -> Reply {
        let req = ZAttestReq::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a ZAttestReq"))?;
        // Held to the end, so that concurrent requests cannot both spend one nonce.
        let mut cache = lock(&dev.cache);
        let mut state = cache.attest.clone();
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
                let cert = req
                    .certs
                    .iter()
                    .find(|c| c.r#type == ZCertType::CertTypeDeviceRestrictedSigning as i32)
                    .ok_or_else(|| {
                        Reject::new(
                            StatusCode::BAD_REQUEST,
                            "no restricted signing (attestation) certificate",
                        )
                    })?;
                eve_proto::x509::parse_pem(&cert.cert)
                    .and_then(|c| eve_proto::x509::p256_public_key(&c))
                    .map_err(|e| {
                        Reject::new(
                            StatusCode::BAD_REQUEST,
                            format!("attestation certificate: {e:?}"),
                        )
                    })?;
                state.attest_cert_pem = Some(String::from_utf8_lossy(&cert.cert).into_owned());
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
                                Err(
                                    quote::QuoteError::BadSignature | quote::QuoteError::Malformed,
                                ) => ZAttestResponseCode::Invalid,
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
                let keys = req.storage_keys.ok_or_else(|| {
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
        self.store.set_attest(&dev.uuid, &state)?;
        cache.attest = state;
        drop(cache);
        Ok((
            StatusCode::CREATED,
            Some(self.envelope(resp.encode_to_vec())),
        ))
    }

    fn info(&self, dev: &Dev, payload: &[u8]) -> Reply {
        let msg = ZInfoMsg::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a ZInfoMsg"))?;
        let key = match &msg.info_content {
            Some(InfoContent::Dinfo(_)) => "device".to_owned(),
            Some(InfoContent::Ainfo(a)) => format!("app/{}", a.app_id),
            Some(InfoContent::Niinfo(n)) => format!("network/{}", n.network_id),
            Some(InfoContent::Vinfo(v)) => format!("volume/{}", v.uuid),
            Some(InfoContent::Cinfo(c)) => format!("content/{}", c.uuid),
            Some(InfoContent::Amdinfo(m)) => format!("app-metadata/{}", m.uuid),
            Some(InfoContent::PatchInfo(p)) => format!("patch/{}", p.id),
            // One report of each of the other kinds describes the whole device.
            _ => format!("type/{}", msg.ztype),
        };
        self.store.put_info(&dev.uuid, &key, payload, unix_ms())?;
        Ok((StatusCode::CREATED, None))
    }

    fn metrics(&self, dev: &Dev, payload: &[u8]) -> Reply {
        metrics::ZMetricMsg::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a ZMetricMsg"))?;
        self.store.put_metrics(&dev.uuid, payload, unix_ms())?;
        Ok((StatusCode::CREATED, None))
    }

    fn flowlog(&self, dev: &Dev, payload: &[u8]) -> Reply {
        flowlog::FlowMessage::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a FlowMessage"))?;
        self.store.put_flowlog(&dev.uuid, payload, unix_ms())?;
        Ok((StatusCode::CREATED, None))
    }

    fn logs(&self, dev: &Dev, payload: &[u8]) -> Reply {
        let bundle = LogBundle::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a LogBundle"))?;
        let records: Vec<_> = bundle
            .log
            .iter()
            .map(|e| log_record(&dev.uuid, None, e))
            .collect();
        self.store.put_logs(&records)?;
        Ok((StatusCode::CREATED, None))
    }

    /// `newlogs`: gzip of newline-separated JSON `LogEntry`s in the form
    /// EVE writes them (see [`crate::newlog`]). The whole batch is parsed
    /// before anything is stored; a bad line refuses it, naming the line.
    fn newlogs(&self, dev: &Dev, app: Option<&str>, payload: &[u8]) -> Reply {
        let max = self.limits.max_log_bytes;
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(payload)
            .take(max as u64 + 1)
            .read_to_end(&mut text)
            .map_err(|e| Reject::new(StatusCode::BAD_REQUEST, format!("not gzip: {e}")))?;
        if text.len() > max {
            return Err(Reject::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("logs larger than {max} bytes uncompressed"),
            ));
        }
        let text = String::from_utf8(text)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "logs are not UTF-8"))?;
        let mut records = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let entry = crate::newlog::parse_line(line).map_err(|e| {
                Reject::new(StatusCode::BAD_REQUEST, format!("log line {}: {e}", n + 1))
            })?;
            records.push(log_record(&dev.uuid, app, &entry));
        }
        self.store.put_logs(&records)?;
        Ok((StatusCode::CREATED, None))
    }
}

/// EVE's envelope rules (see `eve_proto::sign`): `algo` picks the 16- or
/// 32-byte truncation of the certificate hash, which must name the device;
/// the signature is raw `r || s` over SHA-256 of the payload.
fn verify_device_envelope<'a>(container: &'a AuthContainer, dev: &Dev) -> Result<&'a [u8], Reject> {
    let expected: &[u8] = match HashAlgorithm::try_from(container.algo) {
        Ok(HashAlgorithm::Sha25632bytes) => &dev.cert_hash,
        Ok(HashAlgorithm::Sha25616bytes) => &dev.cert_hash[..16],
        _ => {
            return Err(Reject::new(
                StatusCode::BAD_REQUEST,
                format!("unsupported hash algorithm {}", container.algo),
            ));
        }
    };
    if container.sender_cert_hash != expected {
        return Err(Reject::new(
            StatusCode::UNAUTHORIZED,
            "unknown device certificate",
        ));
    }
    let payload = container
        .protected_payload
        .as_ref()
        .map_or(&[][..], |p| p.payload.as_slice());
    dev.key
        .verify(payload, &container.signature_hash)
        .map_err(|_| Reject::new(StatusCode::UNAUTHORIZED, "signature does not verify"))?;
    Ok(payload)
}

/// A stored log line; a line without a timestamp is stamped on arrival.
/// Saturating: a hostile timestamp must not overflow.
fn log_record(device: &str, app: Option<&str>, e: &LogEntry) -> LogRecord {
    let ts_ms = e.timestamp.as_ref().map_or_else(unix_ms, |t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos) / 1_000_000)
    });
    LogRecord {
        id: 0,
        device: device.to_owned(),
        app: app.map(str::to_owned),
        ts_ms,
        severity: e.severity.clone(),
        source: e.source.clone(),
        content: e.content.clone(),
    }
}

/// EVE sends `pemCert` as base64 of the PEM; raw PEM is accepted too.
fn device_cert_pem(field: &[u8]) -> Result<Vec<u8>, Reject> {
    if field.starts_with(b"-----BEGIN") {
        return Ok(field.to_vec());
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(field)
        .map_err(|_| {
            Reject::new(
                StatusCode::BAD_REQUEST,
                "pemCert is neither PEM nor base64 of PEM",
            )
        })
}

/// The `configHash` of a serialized config: base64url of its SHA-256. Any
/// change to the stored bytes (a new version, a new timestamp) changes it.
pub fn config_hash(config: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.encode(sha256(config))
}

/// Why a listener stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding or accepting failed.
    #[error("{addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// The device API's TLS configuration: TLS 1.2 and 1.3, our server cert.
pub fn tls_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let tls = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let certs = rustls_pemfile::certs(&mut identity.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&e))?;
    let key = rustls_pemfile::private_key(&mut identity.server_key_pem.as_bytes())
        .map_err(|e| tls(&e))?
        .ok_or_else(|| ServeError::Tls("no private key in server-key.pem".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    Ok(Arc::new(cfg))
}

/// Serves the device API on `listener` until the task is dropped.
pub async fn serve_devices(
    ctl: Arc<Controller>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> Result<(), ServeError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a: SocketAddr| a.to_string());
    loop {
        let (tcp, _) = listener.accept().await.map_err(|source| ServeError::Io {
            addr: addr.clone(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                ctl.count("tls-handshake", StatusCode::BAD_REQUEST);
                return;
            };
            let service = hyper::service::service_fn(move |req| ctl.clone().handle_device(req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Periodic housekeeping: last-seen flush every second, metrics pruning
/// every minute.
pub async fn housekeeping(ctl: Arc<Controller>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        if let Err(e) = ctl.flush_last_seen() {
            eprintln!("controller: recording last-seen times: {e}");
        }
        if n.is_multiple_of(60)
            && let Err(e) = ctl.prune()
        {
            eprintln!("controller: pruning metrics: {e}");
        }
        n += 1;
    }
}
