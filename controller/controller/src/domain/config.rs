//! Configs: the device's poll (from memory when nothing changed) and the
//! operator's changes.

use std::sync::Arc;

use eve_proto::Message;
use eve_proto::config::{ConfigRequest, ConfigResponse, EdgeDevConfig};
use eve_proto::sha256;
use hyper::StatusCode;

use super::cache::{Cached, CachedConfig};
use super::{Controller, ControllerError, Dev, Reject, Reply, lock, now};
use crate::configspec;
use crate::store::AttestState;

/// The `configHash` of a serialized config: base64url of its SHA-256. Any
/// change to the stored bytes (a new version, a new timestamp) changes it.
pub fn config_hash(config: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.encode(sha256(config))
}

/// What the poll decided from memory alone.
enum FromMemory {
    /// The answer.
    Reply(Reply),
    /// Memory has no trustworthy answer: read the store.
    Unknown,
}

impl Controller {
    /// `config`: the signed current config, or 304 when the device's
    /// `configHash` is current. Needs the integrity token from `attest`.
    pub fn config(&self, dev: &Dev, payload: &[u8]) -> Reply {
        let req = ConfigRequest::decode(payload)
            .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "payload is not a ConfigRequest"))?;
        if let FromMemory::Reply(reply) = self.config_from_memory(dev, &req) {
            return reply;
        }
        // Held while the cache is filled, so that a config set in between
        // cannot be overwritten by the older one read here.
        let mut cache = lock(&dev.cache);
        let attest_epoch = dev.epoch(Cached::Attest);
        if cache.attest_epoch != attest_epoch || !token_ok(&cache.attest, &req) {
            // Another replica may have attested the device since.
            if let Some(stored) = self.store.device(&dev.uuid)? {
                cache.attest = stored.attest;
                cache.attest_epoch = attest_epoch;
            }
        }
        if !token_ok(&cache.attest, &req) {
            return Err(no_token());
        }
        let config_epoch = dev.epoch(Cached::Config);
        let cfg = match &cache.config {
            Some((epoch, c)) if *epoch == config_epoch => c.clone(),
            _ => {
                let c = Arc::new(self.signed_config(&dev.uuid)?);
                cache.config = Some((config_epoch, c.clone()));
                c
            }
        };
        drop(cache);
        Ok(answer(&req, &cfg))
    }

    /// The poll answered from memory: the hot path, no store access.
    fn config_from_memory(&self, dev: &Dev, req: &ConfigRequest) -> FromMemory {
        let cache = lock(&dev.cache);
        if cache.attest_epoch != dev.epoch(Cached::Attest) {
            return FromMemory::Unknown;
        }
        if !token_ok(&cache.attest, req) {
            // On a shared store the token may be newer than our memory.
            return if self.store.shared() {
                FromMemory::Unknown
            } else {
                FromMemory::Reply(Err(no_token()))
            };
        }
        match &cache.config {
            Some((epoch, c)) if *epoch == dev.epoch(Cached::Config) => {
                FromMemory::Reply(Ok(answer(req, c)))
            }
            _ => FromMemory::Unknown,
        }
    }

    /// A config poll that memory alone can answer, or `None`: lets the
    /// device API answer the hot path without a blocking thread.
    pub fn config_poll_from_memory(&self, body: &[u8], path_uuid: Option<&str>) -> Option<Reply> {
        let (dev, payload) = match self.authenticate_from_memory(body, path_uuid)? {
            Ok(opened) => opened,
            Err(reject) => return Some(Err(reject)),
        };
        let req = match ConfigRequest::decode(payload.as_slice()) {
            Ok(req) => req,
            Err(_) => {
                return Some(Err(Reject::new(
                    StatusCode::BAD_REQUEST,
                    "payload is not a ConfigRequest",
                )));
            }
        };
        match self.config_from_memory(&dev, &req) {
            FromMemory::Reply(reply) => Some(reply),
            FromMemory::Unknown => None,
        }
    }

    /// The current config of `uuid`, signed and ready to send.
    fn signed_config(&self, uuid: &str) -> Result<CachedConfig, Reject> {
        let stored = self
            .store
            .latest_config(uuid)?
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
        Ok(CachedConfig {
            hash,
            envelope: self.envelope(resp.encode_to_vec()),
        })
    }

    /// Builds and stores a new config from a YAML/JSON description.
    pub fn set_config(
        &self,
        uuid: &str,
        text: &str,
    ) -> Result<(i64, EdgeDevConfig), ControllerError> {
        let dev = self
            .dev_or_load(uuid)?
            .ok_or_else(|| ControllerError::NoDevice(uuid.into()))?;
        // One config change per device at a time on this replica, and no
        // poll may cache the old config while it is being replaced.
        let _cache = lock(&dev.cache);
        let previous = self.current_config(uuid)?;
        let next = self.store.latest_config(uuid)?.map_or(1, |c| c.version + 1);
        let mut cfg = configspec::build(text, uuid, next, previous.as_ref(), now())?;
        if configspec::has_clear_secrets(&cfg) {
            self.seal_secrets(uuid, &mut cfg)?;
        }
        let version = self.store.put_config(uuid, &cfg.encode_to_vec())?;
        dev.invalidate(Cached::Config);
        Ok((version, cfg))
    }

    /// Seals the clear datastore credentials and app user data of `cfg`
    /// for device `uuid`.
    fn seal_secrets(&self, uuid: &str, cfg: &mut EdgeDevConfig) -> Result<(), ControllerError> {
        use eve_proto::p256::pkcs8::DecodePrivateKey;
        let device = self
            .store
            .device(uuid)?
            .ok_or_else(|| ControllerError::NoDevice(uuid.into()))?;
        let key = eve_proto::p256::SecretKey::from_pkcs8_pem(&self.identity.ecdh_key_pem)
            .map_err(|e| configspec::SpecError::Seal(format!("controller ECDH key: {e}")))?;
        // A device whose key is in a TPM opens secrets with its TPM's ECDH
        // key, whose certificate it gave at attestation; one whose key is in
        // software, with its device key.
        let sealed_for = device
            .attest
            .ecdh_cert_pem
            .as_deref()
            .unwrap_or(&device.device_cert_pem);
        let sealer = configspec::Sealer {
            controller_key: &key,
            controller_cert_pem: &self.identity.ecdh_cert_pem,
            device_cert_pem: sealed_for,
        };
        configspec::seal_secrets(cfg, &sealer, super::random::<16>)?;
        Ok(())
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
}

fn token_ok(attest: &AttestState, req: &ConfigRequest) -> bool {
    attest
        .integrity_token
        .as_deref()
        .is_some_and(|t| !req.integrity_token.is_empty() && t == req.integrity_token.as_slice())
}

fn no_token() -> Reject {
    Reject::new(
        StatusCode::FORBIDDEN,
        "integrity token missing or wrong: attest first",
    )
}

fn answer(req: &ConfigRequest, cfg: &CachedConfig) -> (StatusCode, Option<bytes::Bytes>) {
    if req.config_hash == cfg.hash {
        (StatusCode::NOT_MODIFIED, None)
    } else {
        (StatusCode::OK, Some(cfg.envelope.clone()))
    }
}
