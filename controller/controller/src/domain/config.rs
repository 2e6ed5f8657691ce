//! Configs: the device's poll (from memory when nothing changed) and the
//! operator's changes.

use std::sync::Arc;

use eve_proto::Message;
use eve_proto::config::{ConfigRequest, ConfigResponse, EdgeDevConfig};
use eve_proto::sha256;
use hyper::StatusCode;

use super::cache::CachedConfig;
use super::{Controller, ControllerError, Dev, Reject, Reply, lock, now};
use crate::configspec;

/// The `configHash` of a serialized config: base64url of its SHA-256. Any
/// change to the stored bytes (a new version, a new timestamp) changes it.
pub fn config_hash(config: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.encode(sha256(config))
}

impl Controller {
    /// `config`: the signed current config, or 304 when the device's
    /// `configHash` is current. Needs the integrity token from `attest`.
    pub fn config(&self, dev: &Dev, payload: &[u8]) -> Reply {
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
}
