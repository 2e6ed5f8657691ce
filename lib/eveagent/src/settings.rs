//! The config items (EVE's global config properties) this agent acts on.
//! A value that does not parse or is out of range leaves the default in
//! place and is reported, as EVE does, so a typo cannot stop the device.

use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::config::ConfigItem;

use crate::logs::Level;

/// `timer.config.interval`
pub const KEY_CONFIG_INTERVAL: &str = "timer.config.interval";
/// `timer.metric.interval`
pub const KEY_METRIC_INTERVAL: &str = "timer.metric.interval";
/// `timer.deviceinfo.interval`
pub const KEY_INFO_INTERVAL: &str = "timer.deviceinfo.interval";
/// `debug.default.loglevel`: what services log locally.
pub const KEY_LOG_LEVEL: &str = "debug.default.loglevel";
/// `debug.default.remote.loglevel`: what is uploaded.
pub const KEY_REMOTE_LOG_LEVEL: &str = "debug.default.remote.loglevel";
/// `newlog.allow.fastupload`: EVE's fast log schedule (a batch is sealed
/// when its oldest line is 10 s old, uploads are tried every 3 s), for
/// tests and debugging; off by default because it multiplies requests.
pub const KEY_LOG_FAST_UPLOAD: &str = "newlog.allow.fastupload";

/// Effective settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Config poll period T, seconds (polls land in [0.3 T, T]).
    pub config_interval_s: u64,
    /// Metrics period, seconds.
    pub metric_interval_s: u64,
    /// Device info period, seconds.
    pub info_interval_s: u64,
    /// Local log level (for the glue's logger).
    pub log_level: Level,
    /// Least severe level uploaded to the controller.
    pub remote_log_level: Level,
    /// Logs on EVE's fast upload schedule.
    pub log_fast_upload: bool,
}

impl Default for Settings {
    /// EVE's defaults: config 60 s, metrics 60 s, device info 600 s, the
    /// normal log schedule.
    fn default() -> Self {
        Self {
            config_interval_s: 60,
            metric_interval_s: 60,
            info_interval_s: 600,
            log_level: Level::Info,
            remote_log_level: Level::Info,
            log_fast_upload: false,
        }
    }
}

/// An item that was refused, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadItem {
    /// The key.
    pub key: String,
    /// The value as sent.
    pub value: String,
}

fn seconds(value: &str, min: u64, max: u64) -> Option<u64> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
}

/// A boolean in the spellings of Go's `strconv.ParseBool`, which EVE reads
/// config items with (surrounding blanks ignored, as for the other items).
fn boolean(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl Settings {
    /// Settings from a config's items: defaults for everything not set,
    /// plus the items that were refused. Unknown keys belong to other
    /// services and are ignored here.
    pub fn from_items(items: &[ConfigItem]) -> (Self, Vec<BadItem>) {
        let mut s = Self::default();
        let mut bad = Vec::new();
        for item in items {
            let v = item.value.as_str();
            let ok = match item.key.as_str() {
                KEY_CONFIG_INTERVAL => seconds(v, 5, 3600).map(|x| s.config_interval_s = x),
                KEY_METRIC_INTERVAL => seconds(v, 5, 3600).map(|x| s.metric_interval_s = x),
                KEY_INFO_INTERVAL => seconds(v, 30, 86_400).map(|x| s.info_interval_s = x),
                KEY_LOG_LEVEL => Level::parse(v).map(|l| s.log_level = l),
                KEY_REMOTE_LOG_LEVEL => Level::parse(v).map(|l| s.remote_log_level = l),
                KEY_LOG_FAST_UPLOAD => boolean(v).map(|b| s.log_fast_upload = b),
                _ => Some(()),
            };
            if ok.is_none() {
                bad.push(BadItem {
                    key: item.key.clone(),
                    value: item.value.clone(),
                });
            }
        }
        (s, bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(k: &str, v: &str) -> ConfigItem {
        ConfigItem {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn items_apply_and_bad_ones_keep_defaults() {
        let (s, bad) = Settings::from_items(&[
            item(KEY_CONFIG_INTERVAL, "10"),
            item(KEY_METRIC_INTERVAL, "0"),
            item(KEY_INFO_INTERVAL, " 120 "),
            item(KEY_REMOTE_LOG_LEVEL, "warn"),
            item(KEY_LOG_LEVEL, "loud"),
            item("app.allow.vnc", "true"),
        ]);
        assert_eq!(s.config_interval_s, 10);
        assert_eq!(s.metric_interval_s, 60);
        assert_eq!(s.info_interval_s, 120);
        assert_eq!(s.remote_log_level, Level::Warning);
        assert_eq!(s.log_level, Level::Info);
        let keys: Vec<_> = bad.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(keys, [KEY_METRIC_INTERVAL, KEY_LOG_LEVEL]);
        assert!(!s.log_fast_upload);
    }

    #[test]
    fn fast_upload_is_a_go_boolean_defaulting_to_off() {
        for (value, expected) in [("true", true), (" T ", true), ("1", true), ("False", false)] {
            let (s, bad) = Settings::from_items(&[item(KEY_LOG_FAST_UPLOAD, value)]);
            assert_eq!(s.log_fast_upload, expected, "{value}");
            assert!(bad.is_empty());
        }
        for value in ["yes", "on", "tRUE", ""] {
            let (s, bad) = Settings::from_items(&[item(KEY_LOG_FAST_UPLOAD, value)]);
            assert!(!s.log_fast_upload, "{value}");
            assert_eq!(bad.len(), 1, "{value}");
        }
    }
}
