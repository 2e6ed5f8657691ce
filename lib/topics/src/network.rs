//! App networking: the config's network instances (zedagent publishes
//! them), what zedrouter reports of each, and the app-port contract by
//! which zedmanager tells zedrouter which app interfaces to attach.
//!
//! Network instances are keyed by their UUID, app networks by the app
//! instance's UUID (canonical lowercase form).

use alloc::string::String;
use alloc::vec::Vec;

use crate::Topic;

/// `network-instance-config`: the config's network instances (EVE's
/// `NetworkInstanceConfig`), published by zedagent for zedrouter.
pub struct NetworkInstanceConfig;

impl Topic for NetworkInstanceConfig {
    const NAME: &'static str = "network-instance-config";
    type Value = eve_proto::config::NetworkInstanceConfig;
}

/// `network-instance-status`: each network instance as zedrouter runs it,
/// in the form zedagent sends to the controller (EVE's
/// `ZInfoNetworkInstance`: state, address assignments, VIFs, errors).
pub struct NetworkInstanceStatus;

impl Topic for NetworkInstanceStatus {
    const NAME: &'static str = "network-instance-status";
    type Value = eve_proto::info::ZInfoNetworkInstance;
}

/// `flow-log`: zedrouter's flow records, eve-api `FlowMessage`s (each up to
/// 125 records of one app interface, with its DNS answers), for zedagent
/// to send to the controller's flowlog path. The table is a sliding
/// window: keys are `<run>-<sequence>` (the run a random 32-bit hex, the
/// sequence 8 decimal digits), and zedrouter withdraws the oldest items
/// beyond [`FlowLog::WINDOW`], so a subscriber takes each message as it
/// is created.
pub struct FlowLog;

impl Topic for FlowLog {
    const NAME: &'static str = "flow-log";
    type Value = eve_proto::flowlog::FlowMessage;
}

impl FlowLog {
    /// Messages kept on the bus.
    pub const WINDOW: usize = 256;
}

/// `app-network-config`: the interfaces of each app that zedrouter attaches
/// to their network instances, published by zedmanager. zedrouter carries
/// an interface's frames over the host's `ports` target, whose port is
/// named by the app's UUID and the interface's NIC index: the same name
/// the app's domain uses for its NIC.
pub struct AppNetworkConfig;

impl Topic for AppNetworkConfig {
    const NAME: &'static str = "app-network-config";
    type Value = AppNetwork;
}

/// `app-network-status`: what zedrouter knows of each app's interfaces
/// (MAC, addresses, the instance's router and DNS), keyed by the app's
/// UUID, for zedmanager's `ZInfoApp.network`.
pub struct AppNetworkStatus;

impl Topic for AppNetworkStatus {
    const NAME: &'static str = "app-network-status";
    type Value = AppNetworkState;
}

/// The interfaces zedrouter carries for one app.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppNetworkState {
    /// The app instance's UUID.
    #[prost(string, tag = "1")]
    pub app_uuid: String,
    /// eve-api `ZInfoNetwork` per attached interface, in NIC order.
    #[prost(message, repeated, tag = "2")]
    pub networks: Vec<eve_proto::info::ZInfoNetwork>,
}

/// The network side of one app instance.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppNetwork {
    /// The app instance's UUID.
    #[prost(string, tag = "1")]
    pub app_uuid: String,
    /// EVE's `displayname`: the app's default host name on its instances.
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// Whether the interfaces should carry frames (the app is activated).
    #[prost(bool, tag = "3")]
    pub activate: bool,
    /// In the app's NIC order.
    #[prost(message, repeated, tag = "4")]
    pub adapters: Vec<AppAdapter>,
    /// Cloud-init user data, decoded (EVE's `userData` is base64), for the
    /// metadata server; empty for none.
    #[prost(bytes = "vec", tag = "5")]
    pub user_data: Vec<u8>,
    /// eve-api `MetaDataType`: how the app finds its user data.
    #[prost(int32, tag = "6")]
    pub meta_data_type: i32,
}

/// One interface of an app.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppAdapter {
    /// The NIC's index in the app's domain (0 first): with the app's UUID
    /// it names the host port.
    #[prost(uint32, tag = "1")]
    pub nic: u32,
    /// EVE's `NetworkAdapter` of the config (adapter name, network
    /// instance, static address, MAC, host name, ACLs), as it came.
    #[prost(message, optional, tag = "2")]
    pub adapter: Option<eve_proto::config::NetworkAdapter>,
    /// The MAC address the domain's NIC has: the adapter's own, or the
    /// one zedmanager generated when the config gives none
    /// (`xx:xx:xx:xx:xx:xx`).
    #[prost(string, tag = "3")]
    pub mac: String,
}

impl AppAdapter {
    /// The network instance the interface belongs to (EVE's `networkId`).
    pub fn network_instance(&self) -> &str {
        self.adapter.as_ref().map_or("", |a| a.network_id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use eve_proto::config::{Ace, AceMatch, NetworkAdapter};

    use super::*;
    use crate::{decode, encode};

    #[test]
    fn an_app_network_round_trips_with_its_eve_adapter() {
        let value = AppNetwork {
            app_uuid: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
            display_name: "web".into(),
            activate: true,
            adapters: alloc::vec![AppAdapter {
                nic: 1,
                adapter: Some(NetworkAdapter {
                    name: "eth1".into(),
                    network_id: "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b".into(),
                    acls: alloc::vec![Ace {
                        matches: alloc::vec![AceMatch {
                            r#type: "protocol".into(),
                            value: "tcp".into(),
                        }],
                        id: 4,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                mac: "02:16:3e:00:00:01".into(),
            }],
            user_data: b"#cloud-config\n".to_vec(),
            meta_data_type: 1,
        };
        let bytes = encode::<AppNetworkConfig>(&value);
        let back = decode::<AppNetworkConfig>(&bytes).unwrap();
        assert_eq!(back, value);
        assert_eq!(
            back.adapters[0].network_instance(),
            "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b"
        );
        assert_eq!(AppAdapter::default().network_instance(), "");
        // A truncated adapter is an error, not a guess.
        assert!(decode::<AppNetworkConfig>(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn an_app_network_state_round_trips() {
        let value = AppNetworkState {
            app_uuid: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
            networks: alloc::vec![eve_proto::info::ZInfoNetwork {
                mac_addr: "02:16:3e:00:00:01".into(),
                ip_addrs: alloc::vec!["10.1.0.2".into()],
                ..Default::default()
            }],
        };
        let bytes = encode::<AppNetworkStatus>(&value);
        assert_eq!(decode::<AppNetworkStatus>(&bytes), Ok(value));
        assert!(decode::<AppNetworkStatus>(&bytes[..bytes.len() - 2]).is_err());
    }

    #[test]
    fn network_instances_are_eve_messages() {
        let info = eve_proto::info::ZInfoNetworkInstance {
            network_id: "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b".into(),
            activated: true,
            ..Default::default()
        };
        let bytes = encode::<NetworkInstanceStatus>(&info);
        assert_eq!(
            <eve_proto::info::ZInfoNetworkInstance as prost::Message>::decode(bytes.as_slice()),
            Ok(info)
        );
        assert!(decode::<NetworkInstanceConfig>(&[0x0a, 0x05, 0x01]).is_err());
    }
}
