//! What zedmanager has published: each table is brought to the manager's
//! view by publishing what changed and withdrawing what went; once the
//! first complete view is out, each table is declared synchronized, so
//! domains and reports a previous boot left and this one does not have
//! disappear.

use alloc::collections::BTreeMap;
use alloc::string::String;

use appmgr::Manager;
use runtime::service;
use topics::{AppNetworkConfig, AppStatus, DomainConfig, Topic};

/// The tables as last published.
#[derive(Default)]
pub struct Published {
    domains: BTreeMap<String, <DomainConfig as Topic>::Value>,
    statuses: BTreeMap<String, <AppStatus as Topic>::Value>,
    networks: BTreeMap<String, <AppNetworkConfig as Topic>::Value>,
    synchronized: bool,
}

impl Published {
    /// Publishes the manager's view; whether all of it went out (if not,
    /// the caller tries again).
    pub fn update(&mut self, manager: &Manager) -> bool {
        let domains = service::sync_table::<DomainConfig>(&mut self.domains, manager.domains());
        let statuses = service::sync_table::<AppStatus>(&mut self.statuses, manager.statuses());
        let networks =
            service::sync_table::<AppNetworkConfig>(&mut self.networks, manager.app_networks());
        if !self.synchronized {
            self.synchronized = true;
            for result in [
                service::synchronized::<DomainConfig>(),
                service::synchronized::<AppStatus>(),
                service::synchronized::<AppNetworkConfig>(),
            ] {
                if let Err(e) = result {
                    log::warn!("declaring a table synchronized: {e}");
                    self.synchronized = false;
                }
            }
        }
        domains && statuses && networks && self.synchronized
    }
}
