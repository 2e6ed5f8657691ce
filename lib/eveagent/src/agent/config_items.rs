//! The config's global items other services act on (`config-items`):
//! validated here against the values in force before, and kept on the
//! state volume, so a refused value keeps the last good one across
//! zedagent's restarts as it does while it runs.

use alloc::format;

use eve_proto::Message;
use topics::configitems::GlobalConfig;

use crate::logs::Level;

use super::Agent;

/// State-volume record: the global config items in force.
pub const REC_CONFIG_ITEMS: &str = "config-items";

impl Agent {
    /// The global config items in force, for `config-items`.
    pub fn config_items(&self) -> &GlobalConfig {
        &self.config_items
    }

    /// Restores the items in force before this run (before the
    /// checkpointed config is applied over them).
    pub(super) fn load_config_items(&mut self) {
        if let Some(rec) = self.read(REC_CONFIG_ITEMS) {
            match GlobalConfig::decode(rec.as_slice()) {
                Ok(items) => self.config_items = items,
                Err(e) => self.note(
                    Level::Warning,
                    format!("checkpointed config items unusable: {e}"),
                ),
            }
        }
    }

    /// Takes a config's items over the ones in force, and saves them.
    pub(super) fn apply_config_items(&mut self, items: &[eve_proto::config::ConfigItem]) {
        let next = GlobalConfig::from_items(items, &self.config_items);
        for key in &next.refused {
            self.note(
                Level::Warning,
                format!("config item {key} refused: the value before stays"),
            );
        }
        if next != self.config_items {
            self.write(REC_CONFIG_ITEMS, &next.encode_to_vec());
            self.config_items = next;
        }
    }
}
