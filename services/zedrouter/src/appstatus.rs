//! `app-network-status`: what the engine knows of each app's attached
//! interfaces (eve-api `ZInfoNetwork`: MAC, addresses, the instance's
//! router, DNS and NTP), in NIC order, for zedmanager's `ZInfoApp.network`.
//! Published when it changed and withdrawn when the app's last interface
//! goes.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use appnet::Engine;
use runtime::service;
use topics::{AppNetworkState, AppNetworkStatus};

use crate::router::Router;

/// The items as last published.
#[derive(Default)]
pub struct AppPublished {
    items: BTreeMap<String, AppNetworkState>,
}

/// Each app's interfaces as the engine reports them, ordered by the NIC
/// each VIF belongs to.
fn states(engine: &Engine, router: &Router) -> BTreeMap<String, AppNetworkState> {
    let mut nics: BTreeMap<&str, Vec<(u32, &str)>> = BTreeMap::new();
    for (app, nic, vif) in router.attached() {
        nics.entry(app).or_default().push((nic, vif));
    }
    nics.into_iter()
        .map(|(app, vifs)| {
            let mut networks = engine.app_networks(app);
            networks.sort_by_key(|n| {
                vifs.iter()
                    .find(|(_, vif)| *vif == n.local_name)
                    .map_or(u32::MAX, |(nic, _)| *nic)
            });
            let state = AppNetworkState {
                app_uuid: String::from(app),
                networks,
            };
            (String::from(app), state)
        })
        .collect()
}

impl AppPublished {
    pub fn publish(&mut self, engine: &Engine, router: &Router) {
        let now = states(engine, router);
        service::sync_table::<AppNetworkStatus>(&mut self.items, &now);
    }
}
