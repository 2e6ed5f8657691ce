//! Config verification: a config envelope is accepted only when its
//! signature, device UUID and timestamp check out; then its settings take
//! effect.

use alloc::format;
use alloc::string::String;

use eve_proto::Message;
use eve_proto::config::{ConfigResponse, EdgeDevConfig};

use crate::backoff::poll_delay;
use crate::identity::{Rejection, canonical_uuid};
use crate::io::Response;
use crate::logs::Level;
use crate::settings::Settings;

use super::log_upload::FAST_UPLOAD_INTERVAL_MS;
use super::{Agent, AttestStatus, Event, MAX_CONFIG_RESPONSE, Phase, REC_CONFIG};

/// The accepted config and what identifies it.
pub(super) struct Current {
    pub(super) config: EdgeDevConfig,
    pub(super) hash: String,
    pub(super) timestamp: (i64, i32),
}

fn config_timestamp(cfg: &EdgeDevConfig) -> (i64, i32) {
    cfg.config_timestamp
        .as_ref()
        .map_or((0, 0), |t| (t.seconds, t.nanos))
}

impl Agent {
    /// Checks a config envelope completely: size, signature, decoding,
    /// device UUID, and that it is not older than the current config.
    pub(super) fn verify_config(
        &self,
        body: &[u8],
    ) -> Result<(ConfigResponse, Current), Rejection> {
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

    pub(super) fn on_config(&mut self, resp: Response) {
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

    pub(super) fn apply_config(&mut self, current: Current, from_checkpoint: bool) {
        let (settings, bad) = Settings::from_items(&current.config.config_items);
        for item in bad {
            self.note(
                Level::Warning,
                format!("config item {} = {:?} refused", item.key, item.value),
            );
        }
        self.apply_config_items(&current.config.config_items);
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

    pub(super) fn schedule_config(&mut self, now: u64) {
        let period = self.settings.config_interval_s * 1000;
        self.timers.config_ms = now + poll_delay(&mut *self.deps.rng, period);
    }
}
