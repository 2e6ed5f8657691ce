//! `network-instance-status`: each running instance's `ZInfoNetworkInstance`
//! as the engine reports it, published when it changed and withdrawn when
//! the instance goes.

use alloc::collections::BTreeMap;
use alloc::string::String;

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
        service::sync_table::<NetworkInstanceStatus>(&mut self.items, &now);
    }
}
