//! The config's base OS for baseosmgr: `base-os-config`, one item, present
//! while the accepted config names a base OS.

use runtime::service;
use topics::{BaseOsConfig, Topic};

/// The item as last published.
#[derive(Default)]
pub struct BaseOsPublisher {
    published: Option<<BaseOsConfig as Topic>::Value>,
}

impl BaseOsPublisher {
    /// Publishes `baseos` (or withdraws the item when the config has
    /// none) if it changed.
    pub fn publish(&mut self, baseos: Option<&<BaseOsConfig as Topic>::Value>) {
        if self.published.as_ref() == baseos {
            return;
        }
        let result = match baseos {
            Some(value) => service::publish::<BaseOsConfig>(BaseOsConfig::KEY, value),
            None => service::unpublish::<BaseOsConfig>(BaseOsConfig::KEY),
        };
        match result {
            Ok(()) => self.published = baseos.cloned(),
            Err(e) => log::warn!("publishing the base OS config: {e}"),
        }
    }
}
