//! zedrouter's traffic counters (`network-metrics`) in the device metrics,
//! as EVE's zedagent sends them: every network instance's
//! `ZMetricNetworkInstance` in `ZMetricMsg.nm`, and each app's interfaces'
//! `networkMetric`s in its `appMetric.network` (the app's view, named by
//! the config's adapter name with the VIF as `localName`). An app on no
//! network instance has no interfaces there and so no network metrics.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::metrics::{NetworkMetric, ZMetricNetworkInstance};
use topics::NetworkMetrics;
use topics::netmetrics::NetworkCounters;

use crate::logs::Level;

use super::Agent;

impl Agent {
    /// zedrouter's counters under bus key `key` (`None`: withdrawn), for
    /// the next metrics message. Values come from another service, so
    /// each is cut to the topic's bounds and at most
    /// [`NetworkMetrics::MAX_ITEMS`] are kept.
    pub fn set_network_metrics(&mut self, key: &str, counters: Option<NetworkCounters>) {
        let Some(counters) = counters else {
            self.net_metrics.remove(key);
            return;
        };
        if !self.net_metrics.contains_key(key)
            && self.net_metrics.len() >= NetworkMetrics::MAX_ITEMS
        {
            self.note(
                Level::Warning,
                format!(
                    "network metrics {key} ignored: {} items kept already",
                    NetworkMetrics::MAX_ITEMS
                ),
            );
            return;
        }
        self.net_metrics
            .insert(String::from(key), counters.bounded());
    }

    /// Every network instance's metrics (`ZMetricMsg.nm`), in key order.
    pub(super) fn network_instance_metrics(&self) -> Vec<ZMetricNetworkInstance> {
        self.net_metrics
            .values()
            .filter_map(NetworkCounters::as_instance)
            .cloned()
            .collect()
    }

    /// App `app`'s interfaces' metrics (`appMetric.network`), in NIC order.
    pub(super) fn app_network_metrics(&self, app: &str) -> Vec<NetworkMetric> {
        self.net_metrics
            .get(&NetworkMetrics::app_key(app))
            .map(|c| c.app_interfaces().to_vec())
            .unwrap_or_default()
    }
}
