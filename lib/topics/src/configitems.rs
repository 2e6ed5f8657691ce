//! `config-items`: the config's global items (EVE's `ConfigItemValueMap`)
//! that services other than zedagent act on, typed and validated once by
//! zedagent, so no service parses the controller's strings itself.
//!
//! Names, defaults and ranges are EVE's (`pkg/pillar/types/global.go`).
//! As in EVE, an item missing from the config takes its default, and an
//! item whose value does not parse or is out of range keeps the value in
//! force before (or the default when there was none) and is listed in
//! [`GlobalConfig::refused`].

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use eve_proto::config::ConfigItem;

use crate::Topic;

/// zedagent's validated global config items, one item under [`Self::KEY`].
pub struct ConfigItems;

impl Topic for ConfigItems {
    const NAME: &'static str = "config-items";
    type Value = GlobalConfig;
}

impl ConfigItems {
    /// The one item.
    pub const KEY: &'static str = "global";
}

/// `timer.test.baseimage.update`: seconds a trial base OS gets to reach
/// the controller before it is given up.
pub const KEY_TEST_BASEIMAGE_UPDATE: &str = "timer.test.baseimage.update";
/// `timer.update.fallback.no.network`: seconds a trial base OS may go
/// without the controller before the node falls back.
pub const KEY_UPDATE_FALLBACK_NO_NETWORK: &str = "timer.update.fallback.no.network";
/// `timer.reboot.no.network`: seconds without the controller before the
/// node reboots.
pub const KEY_REBOOT_NO_NETWORK: &str = "timer.reboot.no.network";
/// `maintenance.mode`: EVE's tristate (`none`, `enabled`, `disabled`).
pub const KEY_MAINTENANCE_MODE: &str = "maintenance.mode";
/// `force.fallback.counter`: raising it asks for a fallback to the other
/// base OS partition.
pub const KEY_FORCE_FALLBACK_COUNTER: &str = "force.fallback.counter";

/// One integer item's range (EVE's `AddIntItem`; the defaults are the
/// fields' own, in [`GlobalConfig`]).
struct IntSpec {
    min: u32,
    max: u32,
}

const TEST_BASEIMAGE_UPDATE: IntSpec = IntSpec { min: 30, max: 3600 };
const UPDATE_FALLBACK_NO_NETWORK: IntSpec = IntSpec {
    min: 60,
    max: u32::MAX,
};
const REBOOT_NO_NETWORK: IntSpec = IntSpec {
    min: 120,
    max: u32::MAX,
};
const FORCE_FALLBACK_COUNTER: IntSpec = IntSpec {
    min: 0,
    max: u32::MAX,
};

/// EVE's `TriState`, with its numbers (`TS_NONE`, `TS_DISABLED`,
/// `TS_ENABLED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum TriState {
    /// Not set: the controller's `EdgeDevConfig.maintenance_mode` decides.
    None = 0,
    Disabled = 1,
    Enabled = 2,
}

impl TriState {
    /// EVE's `ParseTriState`: exact spellings, nothing trimmed.
    pub fn parse(value: &str) -> Option<TriState> {
        match value {
            "none" => Some(TriState::None),
            "enabled" | "enable" | "on" => Some(TriState::Enabled),
            "disabled" | "disable" | "off" => Some(TriState::Disabled),
            _ => None,
        }
    }
}

/// The value of [`ConfigItems`]. Fields a publisher did not send decode
/// as EVE's defaults, so a subscriber never sees a zero timer it was not
/// given.
#[derive(Clone, PartialEq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct GlobalConfig {
    /// `timer.test.baseimage.update`, seconds.
    #[prost(uint32, tag = "1", default = "600")]
    pub test_baseimage_update_s: u32,
    /// `timer.update.fallback.no.network`, seconds.
    #[prost(uint32, tag = "2", default = "300")]
    pub update_fallback_no_network_s: u32,
    /// `timer.reboot.no.network`, seconds.
    #[prost(uint32, tag = "3", default = "604800")]
    pub reboot_no_network_s: u32,
    /// `maintenance.mode`.
    #[prost(enumeration = "TriState", tag = "4")]
    pub maintenance_mode: i32,
    /// `force.fallback.counter`.
    #[prost(uint32, tag = "5")]
    pub force_fallback_counter: u32,
    /// Keys of this config whose values were refused (kept as before).
    #[prost(string, repeated, tag = "6")]
    pub refused: Vec<String>,
}

/// EVE's `strconv.ParseUint(value, 10, 32)` and the item's range.
fn int(value: &str, spec: &IntSpec) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value
        .parse::<u32>()
        .ok()
        .filter(|v| (spec.min..=spec.max).contains(v))
}

impl GlobalConfig {
    /// The items of a config, validated against `previous` (what was in
    /// force before): missing items take EVE's defaults, refused ones keep
    /// `previous`'s value. Keys this topic does not carry are ignored.
    pub fn from_items(items: &[ConfigItem], previous: &GlobalConfig) -> GlobalConfig {
        let mut next = GlobalConfig::default();
        for item in items {
            let value = item.value.as_str();
            let ok = match item.key.as_str() {
                KEY_TEST_BASEIMAGE_UPDATE => {
                    let v = int(value, &TEST_BASEIMAGE_UPDATE);
                    next.test_baseimage_update_s = v.unwrap_or(previous.test_baseimage_update_s);
                    v.is_some()
                }
                KEY_UPDATE_FALLBACK_NO_NETWORK => {
                    let v = int(value, &UPDATE_FALLBACK_NO_NETWORK);
                    next.update_fallback_no_network_s =
                        v.unwrap_or(previous.update_fallback_no_network_s);
                    v.is_some()
                }
                KEY_REBOOT_NO_NETWORK => {
                    let v = int(value, &REBOOT_NO_NETWORK);
                    next.reboot_no_network_s = v.unwrap_or(previous.reboot_no_network_s);
                    v.is_some()
                }
                KEY_FORCE_FALLBACK_COUNTER => {
                    let v = int(value, &FORCE_FALLBACK_COUNTER);
                    next.force_fallback_counter = v.unwrap_or(previous.force_fallback_counter);
                    v.is_some()
                }
                KEY_MAINTENANCE_MODE => {
                    let v = TriState::parse(value);
                    next.maintenance_mode = v.map_or(previous.maintenance_mode, |t| t as i32);
                    v.is_some()
                }
                _ => true,
            };
            if !ok {
                next.refused.push(item.key.to_string());
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode};

    fn item(key: &str, value: &str) -> ConfigItem {
        ConfigItem {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn defaults_are_eves_even_for_an_empty_value() {
        let none = GlobalConfig::default();
        assert_eq!(none.test_baseimage_update_s, 600);
        assert_eq!(none.update_fallback_no_network_s, 300);
        assert_eq!(none.reboot_no_network_s, 7 * 24 * 3600);
        assert_eq!(none.maintenance_mode(), TriState::None);
        assert_eq!(none.force_fallback_counter, 0);
        assert_eq!(decode::<ConfigItems>(&[]), Ok(none.clone()));
        assert_eq!(GlobalConfig::from_items(&[], &none), none);
    }

    #[test]
    fn items_apply_and_refused_ones_keep_the_previous_value() {
        let previous = GlobalConfig {
            test_baseimage_update_s: 900,
            reboot_no_network_s: 3600,
            maintenance_mode: TriState::Enabled as i32,
            ..GlobalConfig::default()
        };
        let next = GlobalConfig::from_items(
            &[
                item(KEY_TEST_BASEIMAGE_UPDATE, "29"),
                item(KEY_UPDATE_FALLBACK_NO_NETWORK, "120"),
                item(KEY_REBOOT_NO_NETWORK, " 600"),
                item(KEY_MAINTENANCE_MODE, "Enabled"),
                item(KEY_FORCE_FALLBACK_COUNTER, "4294967295"),
                item("timer.config.interval", "10"),
            ],
            &previous,
        );
        assert_eq!(next.test_baseimage_update_s, 900);
        assert_eq!(next.update_fallback_no_network_s, 120);
        assert_eq!(next.reboot_no_network_s, 3600);
        assert_eq!(next.maintenance_mode(), TriState::Enabled);
        assert_eq!(next.force_fallback_counter, u32::MAX);
        assert_eq!(
            next.refused,
            [
                KEY_TEST_BASEIMAGE_UPDATE,
                KEY_REBOOT_NO_NETWORK,
                KEY_MAINTENANCE_MODE
            ]
        );
        // Items gone from the config go back to their defaults.
        let later = GlobalConfig::from_items(&[item(KEY_MAINTENANCE_MODE, "off")], &next);
        assert_eq!(later.test_baseimage_update_s, 600);
        assert_eq!(later.maintenance_mode(), TriState::Disabled);
        assert!(later.refused.is_empty());
    }

    #[test]
    fn numbers_are_go_parse_uint_within_range() {
        let d = GlobalConfig::default();
        for (value, ok) in [
            ("3600", true),
            ("30", true),
            ("3601", false),
            ("+60", false),
            ("-1", false),
            ("", false),
            ("4294967296", false),
            ("６0", false),
        ] {
            let c = GlobalConfig::from_items(&[item(KEY_TEST_BASEIMAGE_UPDATE, value)], &d);
            assert_eq!(c.refused.is_empty(), ok, "{value:?}");
        }
    }

    #[test]
    fn values_round_trip() {
        let c = GlobalConfig {
            test_baseimage_update_s: 30,
            update_fallback_no_network_s: 60,
            reboot_no_network_s: 120,
            maintenance_mode: TriState::Disabled as i32,
            force_fallback_counter: 3,
            refused: alloc::vec![String::from("maintenance.mode")],
        };
        assert_eq!(decode::<ConfigItems>(&encode::<ConfigItems>(&c)), Ok(c));
        assert!(decode::<ConfigItems>(&[0x08, 0xff]).is_err());
    }
}
