//! `network-instance-status`: each running instance's `ZInfoNetworkInstance`
//! as the engine reports it, published when it changed and withdrawn when
//! the instance goes.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use appnet::Engine;
use runtime::service;
use topics::{NetworkInstanceStatus, Topic};

use crate::router::Router;

/// The items as last published.
#[derive(Default)]
pub struct Published {
    items: BTreeMap<String, <NetworkInstanceStatus as Topic>::Value>,
}

impl Published {
    pub fn publish(&mut self, engine: &Engine, router: &Router) {
        let mut now = BTreeMap::new();
        for uuid in router.instance_uuids() {
            if let Some(info) = engine.instance_info(uuid) {
                now.insert(String::from(uuid), info);
            }
        }
        let gone: Vec<String> = self
            .items
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            match service::unpublish::<NetworkInstanceStatus>(&key) {
                Ok(()) => {
                    self.items.remove(&key);
                }
                Err(e) => log::warn!("withdrawing the status of {key}: {e}"),
            }
        }
        for (key, info) in now {
            if self.items.get(&key) == Some(&info) {
                continue;
            }
            match service::publish::<NetworkInstanceStatus>(&key, &info) {
                Ok(()) => {
                    self.items.insert(key, info);
                }
                Err(e) => log::warn!("publishing the status of {key}: {e}"),
            }
        }
    }
}
