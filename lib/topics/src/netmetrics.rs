//! `network-metrics`: zedrouter's traffic counters, for zedagent's device
//! metrics: each network instance's eve-api `ZMetricNetworkInstance`
//! (`ZMetricMsg.nm`) and each app's interfaces' `networkMetric`s
//! (`appMetric.network`, the app's view: `tx` is what the app sent).
//!
//! Items are keyed by kind and UUID (`instance/<uuid>`, `app/<uuid>`), so an
//! instance and an app that a controller gave the same UUID cannot shadow
//! each other. Counters change with every frame, so zedrouter publishes
//! them at its metrics period only, and only the items that changed.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::metrics::{NetworkMetric, ZMetricNetworkInstance};

use crate::Topic;

/// `network-metrics`: zedrouter's counters per instance and per app.
pub struct NetworkMetrics;

impl Topic for NetworkMetrics {
    const NAME: &'static str = "network-metrics";
    type Value = NetworkCounters;
}

impl NetworkMetrics {
    /// Interfaces kept per app, and `networkMetric`s per instance: an app
    /// has at most 64 NICs (`hostops::ports::MAX_NICS`).
    pub const MAX_INTERFACES: usize = 64;
    /// Items a subscriber keeps: zedrouter's engine runs at most 256
    /// instances and 1024 app interfaces, so at most as many apps.
    pub const MAX_ITEMS: usize = 256 + 1024;

    /// The key of instance `uuid`'s counters.
    pub fn instance_key(uuid: &str) -> String {
        format!("instance/{uuid}")
    }

    /// The key of app `uuid`'s interfaces' counters.
    pub fn app_key(uuid: &str) -> String {
        format!("app/{uuid}")
    }
}

/// One item: an instance's counters or an app's interfaces' counters.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NetworkCounters {
    #[prost(oneof = "Counted", tags = "1, 2")]
    pub counted: Option<Counted>,
}

/// What an item counts.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Counted {
    /// A network instance: its bridge's counters and totals (boxed: it
    /// is far larger than an app's item).
    #[prost(message, boxed, tag = "1")]
    Instance(Box<ZMetricNetworkInstance>),
    /// An app: one `networkMetric` per interface on a network instance,
    /// in NIC order.
    #[prost(message, tag = "2")]
    App(AppInterfaces),
}

/// An app's interfaces' counters.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppInterfaces {
    #[prost(message, repeated, tag = "1")]
    pub interfaces: Vec<NetworkMetric>,
}

impl NetworkCounters {
    /// An instance's item.
    pub fn instance(metric: ZMetricNetworkInstance) -> Self {
        Self {
            counted: Some(Counted::Instance(Box::new(metric))),
        }
    }

    /// An app's item.
    pub fn app(interfaces: Vec<NetworkMetric>) -> Self {
        Self {
            counted: Some(Counted::App(AppInterfaces { interfaces })),
        }
    }

    /// The item cut to [`NetworkMetrics::MAX_INTERFACES`] metrics: what a
    /// subscriber keeps of a value from another service, and what a
    /// publisher sends.
    pub fn bounded(mut self) -> Self {
        match &mut self.counted {
            Some(Counted::Instance(m)) => m.network.truncate(NetworkMetrics::MAX_INTERFACES),
            Some(Counted::App(a)) => a.interfaces.truncate(NetworkMetrics::MAX_INTERFACES),
            None => {}
        }
        self
    }

    /// The instance's counters, if the item is an instance's.
    pub fn as_instance(&self) -> Option<&ZMetricNetworkInstance> {
        match &self.counted {
            Some(Counted::Instance(m)) => Some(m),
            _ => None,
        }
    }

    /// The app's interfaces' counters (none if the item is not an app's).
    pub fn app_interfaces(&self) -> &[NetworkMetric] {
        match &self.counted {
            Some(Counted::App(a)) => &a.interfaces,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode};

    fn vif(n: u64) -> NetworkMetric {
        NetworkMetric {
            i_name: "eth0".into(),
            local_name: format!("nbu1x{n}"),
            tx_bytes: 1500 * n,
            rx_pkts: n,
            ..Default::default()
        }
    }

    #[test]
    fn both_kinds_round_trip_and_keys_do_not_collide() {
        let uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
        let instance = NetworkCounters::instance(ZMetricNetworkInstance {
            network_id: uuid.into(),
            network: alloc::vec![vif(1)],
            ..Default::default()
        });
        let bytes = encode::<NetworkMetrics>(&instance);
        let back = decode::<NetworkMetrics>(&bytes).unwrap();
        assert_eq!(back, instance);
        assert_eq!(back.as_instance().unwrap().network_id, uuid);
        assert!(back.app_interfaces().is_empty());

        let app = NetworkCounters::app(alloc::vec![vif(1), vif(2)]);
        let back = decode::<NetworkMetrics>(&encode::<NetworkMetrics>(&app)).unwrap();
        assert_eq!(back.app_interfaces(), &[vif(1), vif(2)]);
        assert!(back.as_instance().is_none());

        assert_ne!(
            NetworkMetrics::instance_key(uuid),
            NetworkMetrics::app_key(uuid)
        );
        for key in [
            NetworkMetrics::instance_key(uuid),
            NetworkMetrics::app_key(uuid),
        ] {
            assert!(evebus::name::valid_key(&key), "{key}");
        }
        // A value cut short is an error, not a guess.
        assert!(decode::<NetworkMetrics>(&bytes[..bytes.len() - 2]).is_err());
        assert!(decode::<NetworkMetrics>(&[0x12, 0x7f, 0x0a]).is_err());
    }

    #[test]
    fn bounded_keeps_at_most_the_interface_limit() {
        let many: Vec<NetworkMetric> = (0..=NetworkMetrics::MAX_INTERFACES as u64)
            .map(vif)
            .collect();
        let app = NetworkCounters::app(many.clone()).bounded();
        assert_eq!(app.app_interfaces().len(), NetworkMetrics::MAX_INTERFACES);
        assert_eq!(app.app_interfaces()[0], vif(0));
        let instance = NetworkCounters::instance(ZMetricNetworkInstance {
            network: many,
            ..Default::default()
        })
        .bounded();
        assert_eq!(
            instance.as_instance().unwrap().network.len(),
            NetworkMetrics::MAX_INTERFACES
        );
        let few = NetworkCounters::app(alloc::vec![vif(3)]);
        assert_eq!(few.clone().bounded(), few);
        assert_eq!(
            NetworkCounters::default().bounded(),
            NetworkCounters::default()
        );
    }
}
