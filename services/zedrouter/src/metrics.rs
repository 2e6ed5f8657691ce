//! `network-metrics`: each instance's `ZMetricNetworkInstance` and each
//! app's interfaces' `networkMetric`s (in NIC order) as the engine counts
//! them, for zedagent's device metrics.
//!
//! Counters move with every frame, so this runs on its own slow timer
//! (EVE's zedrouter publishes metrics periodically, not per change, and
//! zedagent sends them once a minute by default): at each tick only the
//! items whose counters changed since the last publication go out, and
//! items of instances and apps that went are withdrawn. An idle node
//! publishes nothing.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use appnet::Engine;
use runtime::service;
use topics::NetworkMetrics;
use topics::netmetrics::NetworkCounters;

use crate::router::Router;

/// How often counters are published: EVE publishes metrics every 10 to
/// 20 s, and zedagent sends them every 60 s by default (at most every
/// 5 s when `timer.metric.interval` asks).
pub const METRICS_EVERY: Duration = Duration::from_secs(10);

/// The items as last published.
#[derive(Default)]
pub struct MetricsPublished {
    items: BTreeMap<String, NetworkCounters>,
}

/// Every item the engine's counters make now, by key.
fn items(engine: &Engine, router: &Router) -> BTreeMap<String, NetworkCounters> {
    let mut items = BTreeMap::new();
    for uuid in router.instance_uuids() {
        if let Some(metric) = engine.instance_metrics(uuid) {
            items.insert(
                NetworkMetrics::instance_key(uuid),
                NetworkCounters::instance(metric).bounded(),
            );
        }
    }
    let mut vifs: BTreeMap<&str, Vec<(u32, &str)>> = BTreeMap::new();
    for (app, nic, vif) in router.attached() {
        vifs.entry(app).or_default().push((nic, vif));
    }
    for (app, vifs) in vifs {
        let mut interfaces = engine.app_network_metrics(app);
        interfaces.sort_by_key(|m| {
            vifs.iter()
                .find(|(_, vif)| *vif == m.local_name)
                .map_or(u32::MAX, |(nic, _)| *nic)
        });
        items.insert(
            NetworkMetrics::app_key(app),
            NetworkCounters::app(interfaces).bounded(),
        );
    }
    items
}

impl MetricsPublished {
    pub fn publish(&mut self, engine: &Engine, router: &Router) {
        let now = items(engine, router);
        service::sync_table::<NetworkMetrics>(&mut self.items, &now);
    }
}
