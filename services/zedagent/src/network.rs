//! The config's network instances as the `network-instance-config` table,
//! for zedrouter, keyed by each instance's UUID.

use alloc::collections::BTreeMap;
use alloc::string::String;

use eve_proto::config::EdgeDevConfig;
use runtime::service;
use topics::{NetworkInstanceConfig, Topic};

/// The table as last published.
#[derive(Default)]
pub struct NetworkPublisher {
    instances: BTreeMap<String, <NetworkInstanceConfig as Topic>::Value>,
    synchronized: bool,
}

impl NetworkPublisher {
    /// Publishes the accepted config's network instances (an instance
    /// without a UUID is skipped: nothing could name it); the first time,
    /// declares the table complete.
    pub fn publish(&mut self, config: &EdgeDevConfig) {
        let mut instances = BTreeMap::new();
        for ni in &config.network_instances {
            match ni.uuidandversion.as_ref().map(|u| u.uuid.as_str()) {
                Some(uuid) if !uuid.is_empty() => {
                    instances.insert(String::from(uuid), ni.clone());
                }
                _ => log::warn!("network instance {:?} has no UUID", ni.displayname),
            }
        }
        service::sync_table::<NetworkInstanceConfig>(&mut self.instances, &instances);
        if !self.synchronized {
            self.synchronized = true;
            if let Err(e) = service::synchronized::<NetworkInstanceConfig>() {
                log::warn!("declaring the network instances synchronized: {e}");
            }
        }
    }
}
