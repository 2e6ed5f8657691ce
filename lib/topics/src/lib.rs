//! Every topic of the node bus, each with the one type of its values.
//!
//! EVE's pubsub is the model: a topic is a keyed table of typed values,
//! published by one service (the manifest says which) and mirrored by its
//! subscribers. Here each topic is a type implementing [`Topic`]: its name
//! on the bus and its value, a protobuf message. The publisher, the
//! subscribers, the host's status file and xtask all name topics through
//! these types, so a topic's name and layout are written down once.
//!
//! # Versioning
//!
//! Values are protobuf, so they evolve by protobuf's rules: a new field
//! takes a new tag, a field is never renumbered or given another type, and
//! a removed field's tag is never reused. A reader skips fields it does
//! not know and sees defaults for fields an older writer did not send, so
//! publishers and subscribers of different builds keep understanding each
//! other. A change those rules cannot express is a new topic.
//!
//! # Topics of the broker
//!
//! Topics whose name starts with `@` are published by the host, not by a
//! service ([`BROKER_TOPICS`]); services subscribe to them when the
//! manifest grants it. (`@log`, the stream of log records, is part of the
//! bus protocol itself: `evebus::LOG_TOPIC`.)
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod applogs;
pub mod apps;
pub mod baseos;
pub mod configitems;
pub mod content;
pub mod diag;
pub mod facts;
pub mod netmetrics;
pub mod network;
pub mod nodestatus;
pub mod onboard;

use alloc::vec::Vec;

pub use applogs::{AppLogBatch, AppLogLine, AppLogs};
pub use apps::{
    AppInstanceConfig, AppMetrics, AppStatus, Domain, DomainConfig, DomainDisk, DomainKind,
    DomainNic, DomainState, DomainStatus, PortMap,
};
pub use baseos::{BaseOsConfig, BaseOsStatus};
pub use configitems::ConfigItems;
pub use content::{
    BlobStatus, ContentSettings, ContentTreeConfig, ContentTreeStatus, ContentUsage,
    DatastoreConfig, DownloadRequests, DownloadStatus, VolumeConfig, VolumeStatus,
};
pub use diag::DiagReport;
pub use facts::DeviceFacts;
pub use netmetrics::NetworkMetrics;
pub use network::{
    AppAdapter, AppNetwork, AppNetworkConfig, AppNetworkState, AppNetworkStatus, FlowLog,
    NetworkInstanceConfig, NetworkInstanceStatus,
};
pub use nodestatus::NodeStatus;
pub use onboard::OnboardStatus;

/// A bus topic: its name and the type of its values.
pub trait Topic {
    /// The name on the bus and in the manifest (`evebus::name` rule).
    const NAME: &'static str;
    /// What each item of the topic's table holds.
    type Value: prost::Message + Default;
}

/// Encodes a value of topic `T` for the bus.
pub fn encode<T: Topic>(value: &T::Value) -> Vec<u8> {
    prost::Message::encode_to_vec(value)
}

/// Decodes a value of topic `T` received from the bus. Values come from
/// other services, so a subscriber must expect this to fail: it logs and
/// counts such a value and carries on.
pub fn decode<T: Topic>(bytes: &[u8]) -> Result<T::Value, prost::DecodeError> {
    <T::Value as prost::Message>::decode(bytes)
}

/// `edge-config`: the config zedagent accepted from the controller, EVE's
/// `EdgeDevConfig`, for the node's other services.
pub struct EdgeConfig;

impl Topic for EdgeConfig {
    const NAME: &'static str = "edge-config";
    type Value = eve_proto::config::EdgeDevConfig;
}

impl EdgeConfig {
    /// The one item: the whole device config.
    pub const KEY: &'static str = "device";
}

/// The broker's own tables, which the host publishes.
pub const BROKER_TOPICS: &[&str] = &[DeviceFacts::NAME];

/// Every topic services publish.
pub const SERVICE_TOPICS: &[&str] = &[
    EdgeConfig::NAME,
    OnboardStatus::NAME,
    DiagReport::NAME,
    DatastoreConfig::NAME,
    ContentTreeConfig::NAME,
    VolumeConfig::NAME,
    ContentSettings::NAME,
    DownloadRequests::NAME,
    DownloadStatus::NAME,
    ContentTreeStatus::NAME,
    VolumeStatus::NAME,
    BlobStatus::NAME,
    ContentUsage::NAME,
    AppInstanceConfig::NAME,
    AppStatus::NAME,
    AppMetrics::NAME,
    AppLogs::NAME,
    DomainConfig::NAME,
    DomainStatus::NAME,
    NetworkInstanceConfig::NAME,
    NetworkInstanceStatus::NAME,
    AppNetworkConfig::NAME,
    AppNetworkStatus::NAME,
    FlowLog::NAME,
    NetworkMetrics::NAME,
    BaseOsConfig::NAME,
    BaseOsStatus::NAME,
    ConfigItems::NAME,
    NodeStatus::NAME,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_bus_rule_and_are_distinct() {
        for name in SERVICE_TOPICS {
            assert_eq!(evebus::name::check_name(name), Ok(()), "{name}");
        }
        for name in BROKER_TOPICS {
            assert!(evebus::name::is_broker_topic(name), "{name}");
            assert_eq!(evebus::name::check_topic(name), Ok(()), "{name}");
        }
        let mut all: Vec<&str> = SERVICE_TOPICS
            .iter()
            .chain(BROKER_TOPICS)
            .copied()
            .collect();
        all.push(evebus::LOG_TOPIC);
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a topic name is used twice");
    }

    #[test]
    fn values_round_trip_and_garbage_is_an_error() {
        let report = onboard::Report {
            phase: onboard::Phase::Running as i32,
            uuid: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
            last_config_ms: Some(900),
            ..Default::default()
        };
        let bytes = encode::<OnboardStatus>(&report);
        assert_eq!(decode::<OnboardStatus>(&bytes), Ok(report));
        // A field number this build does not know is skipped.
        let mut newer = bytes.clone();
        newer.extend_from_slice(&[0xf8, 0x07, 0x01]);
        assert!(decode::<OnboardStatus>(&newer).is_ok());
        // A length running past the end is not a value.
        assert!(decode::<OnboardStatus>(&[0x12, 0x40, b'x']).is_err());
        assert!(decode::<DiagReport>(&[0xff; 7]).is_err());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn values_are_json_with_their_field_names_and_missing_fields_default() {
        let verdict = diag::Verdict {
            reachable: true,
            steps: alloc::vec![diag::Step {
                check: diag::Check::Ping as i32,
                outcome: diag::Outcome::Pass as i32,
                detail: "answered 200".into(),
                micros: 1200,
            }],
            ..Default::default()
        };
        let json = serde_json::to_value(&verdict).unwrap();
        assert_eq!(json["reachable"], true);
        assert_eq!(json["steps"][0]["check"], diag::Check::Ping as i32);
        assert_eq!(
            serde_json::from_value::<diag::Verdict>(json).unwrap(),
            verdict
        );
        let sparse: onboard::Report =
            serde_json::from_str(r#"{"uuid": "u", "future": 1}"#).unwrap();
        assert_eq!(sparse.uuid, "u");
        assert_eq!(sparse.last_info_ms, None);
    }
}
