//! What the engine reports, as eve-api messages: `ZInfoNetworkInstance`
//! and `ZMetricNetworkInstance` per instance, `ZInfoNetwork` and
//! `networkMetric` per app interface (the app's side: `tx` is what the app
//! sent, as EVE reports apps).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use eve_proto::config::ZNetworkInstType;
use eve_proto::info::{
    ErrorInfo, IpRoute, Severity, ZInfoDns, ZInfoNetwork, ZInfoNetworkInstance,
    ZNetworkInstanceState, ZmetIpAssignmentEntry, ZmetVifInfo,
};
use eve_proto::metrics::{
    NetworkMetric, NetworkStats, ZMetricNetworkInstance, ZMetricNetworkStats,
};
use smoltcp::wire::EthernetAddress;

use super::flowlog::timestamp;
use super::{AppPort, Engine, Instance, PortCounters};

/// A MAC address as EVE writes it (Go's `net.HardwareAddr`).
pub fn mac_string(mac: EthernetAddress) -> String {
    let b = mac.as_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

fn inst_type(inst: &Instance) -> u32 {
    if inst.cfg.is_local() {
        ZNetworkInstType::ZnetInstLocal as u32
    } else {
        ZNetworkInstType::ZnetInstSwitch as u32
    }
}

/// As EVE's zedagent names an app's interface in `appMetric.network`:
/// `iName` is the adapter's name in the config, `localName` the VIF, as in
/// `ZInfoNetwork` (`devName`, `localName`).
fn app_metric(app: &AppPort) -> NetworkMetric {
    let c = &app.counters;
    NetworkMetric {
        i_name: app.cfg.adapter.clone(),
        tx_bytes: c.tx_bytes,
        rx_bytes: c.rx_bytes,
        tx_drops: c.tx_drops,
        rx_drops: c.rx_drops,
        tx_pkts: c.tx_packets,
        rx_pkts: c.rx_packets,
        tx_errors: c.tx_errors,
        rx_errors: 0,
        tx_acl_drops: c.tx_acl_drops,
        rx_acl_drops: c.rx_acl_drops,
        tx_acl_rate_limit_drops: c.tx_rate_limit_drops,
        rx_acl_rate_limit_drops: c.rx_rate_limit_drops,
        local_name: app.cfg.vif.clone(),
        alias: String::new(),
    }
}

impl Engine {
    fn instance_by_uuid(&self, uuid: &str) -> Option<&Instance> {
        self.instances.get(self.by_uuid.get(uuid)?)
    }

    fn apps_of<'a>(&'a self, inst: &'a Instance) -> impl Iterator<Item = &'a AppPort> + 'a {
        inst.ports.iter().filter_map(|p| self.apps.get(p))
    }

    fn device_label(&self, inst: &Instance) -> Option<&str> {
        let port = inst.cfg.device_port?;
        self.uplinks
            .get(&port)
            .map(|u| u.cfg.label.as_str())
            .or_else(|| self.externals.get(&port).map(|e| e.label.as_str()))
    }

    /// EVE's `ZInfoNetworkInstance` for an instance.
    pub fn instance_info(&self, uuid: &str) -> Option<ZInfoNetworkInstance> {
        let inst = self.instance_by_uuid(uuid)?;
        let label = self.device_label(inst);
        let device_missing = inst.cfg.device_port.is_some() && label.is_none();
        let state = if !inst.cfg.activated {
            ZNetworkInstanceState::ZnetinstStateInit
        } else if device_missing {
            ZNetworkInstanceState::ZnetinstStateError
        } else {
            ZNetworkInstanceState::ZnetinstStateOnline
        };
        let mut errors: Vec<ErrorInfo> = inst
            .errors
            .iter()
            .map(|e| ErrorInfo {
                description: e.clone(),
                severity: Severity::Error as i32,
                ..Default::default()
            })
            .collect();
        if device_missing {
            errors.push(ErrorInfo {
                description: "the instance's device port is not configured".into(),
                severity: Severity::Error as i32,
                ..Default::default()
            });
        }
        let ip_assignments = self
            .apps_of(inst)
            .filter_map(|a| {
                a.ip.map(|ip| ZmetIpAssignmentEntry {
                    mac_address: mac_string(a.cfg.mac),
                    ip_address: vec![ip.to_string()],
                })
            })
            .collect();
        let vifs = self
            .apps_of(inst)
            .map(|a| ZmetVifInfo {
                vif_name: a.cfg.vif.clone(),
                mac_address: mac_string(a.cfg.mac),
                app_id: a.cfg.app_uuid.clone(),
            })
            .collect();
        let local = inst.local.as_ref();
        let mut ip_routes = Vec::new();
        if let Some(local) = local {
            let uplink = inst.cfg.device_port.and_then(|p| self.uplinks.get(&p));
            if let Some(uplink) = uplink
                && let Some(gateway) = uplink.cfg.gateway
            {
                ip_routes.push(IpRoute {
                    destination_network: "0.0.0.0/0".into(),
                    gateway: gateway.to_string(),
                    port: uplink.cfg.label.clone(),
                    gateway_app: String::new(),
                });
            }
            for route in &local.cfg.static_routes {
                let gateway_app = local
                    .by_ip
                    .get(&route.gateway)
                    .and_then(|p| self.apps.get(p))
                    .map(|a| a.cfg.app_uuid.clone())
                    .unwrap_or_default();
                ip_routes.push(IpRoute {
                    destination_network: route.destination.to_string(),
                    gateway: route.gateway.to_string(),
                    port: String::new(),
                    gateway_app,
                });
            }
        }
        Some(ZInfoNetworkInstance {
            network_id: inst.cfg.uuid.clone(),
            network_version: inst.cfg.version.clone(),
            inst_type: inst_type(inst),
            displayname: inst.cfg.name.clone(),
            activated: inst.cfg.activated,
            up_time_stamp: Some(timestamp(inst.started_ms)),
            ports: label.into_iter().map(String::from).collect(),
            bridge_num: inst.cfg.bridge_num,
            bridge_name: format!("bn{}", inst.cfg.bridge_num),
            bridge_ip_addr: local.map(|l| l.cfg.gateway.to_string()).unwrap_or_default(),
            ip_assignments,
            vifs,
            network_err: errors,
            state: state as i32,
            mtu: u32::from(inst.cfg.mtu),
            ip_routes,
            ..Default::default()
        })
    }

    /// EVE's `ZMetricNetworkInstance` for an instance: its bridge's
    /// counters (what its apps sent is what it received).
    pub fn instance_metrics(&self, uuid: &str) -> Option<ZMetricNetworkInstance> {
        let inst = self.instance_by_uuid(uuid)?;
        let mut total = PortCounters::default();
        for app in self.apps_of(inst) {
            let c = &app.counters;
            total.tx_packets += c.tx_packets;
            total.tx_bytes += c.tx_bytes;
            total.rx_packets += c.rx_packets;
            total.rx_bytes += c.rx_bytes;
            total.tx_drops += c.tx_drops;
            total.rx_drops += c.rx_drops;
            total.tx_errors += c.tx_errors;
            total.tx_acl_drops += c.tx_acl_drops;
            total.rx_acl_drops += c.rx_acl_drops;
            total.tx_rate_limit_drops += c.tx_rate_limit_drops;
            total.rx_rate_limit_drops += c.rx_rate_limit_drops;
        }
        let bridge = format!("bn{}", inst.cfg.bridge_num);
        let bridge_metric = NetworkMetric {
            i_name: bridge.clone(),
            tx_bytes: total.rx_bytes,
            rx_bytes: total.tx_bytes,
            tx_drops: total.rx_drops,
            rx_drops: total.tx_drops,
            tx_pkts: total.rx_packets,
            rx_pkts: total.tx_packets,
            tx_errors: 0,
            rx_errors: total.tx_errors,
            tx_acl_drops: total.rx_acl_drops,
            rx_acl_drops: total.tx_acl_drops,
            tx_acl_rate_limit_drops: total.rx_rate_limit_drops,
            rx_acl_rate_limit_drops: total.tx_rate_limit_drops,
            local_name: bridge,
            alias: String::new(),
        };
        Some(ZMetricNetworkInstance {
            network_id: inst.cfg.uuid.clone(),
            network_version: inst.cfg.version.clone(),
            inst_type: inst_type(inst),
            displayname: inst.cfg.name.clone(),
            activated: inst.cfg.activated,
            network: vec![bridge_metric],
            network_stats: Some(ZMetricNetworkStats {
                rx: Some(NetworkStats {
                    total_packets: total.tx_packets,
                    errors: total.tx_errors,
                    drops: total.tx_drops + total.tx_acl_drops + total.tx_rate_limit_drops,
                    total_bytes: total.tx_bytes,
                }),
                tx: Some(NetworkStats {
                    total_packets: total.rx_packets,
                    errors: 0,
                    drops: total.rx_drops + total.rx_acl_drops + total.rx_rate_limit_drops,
                    total_bytes: total.rx_bytes,
                }),
            }),
            ..Default::default()
        })
    }

    /// `ZInfoApp.network`: one entry per interface of the app.
    pub fn app_networks(&self, app_uuid: &str) -> Vec<ZInfoNetwork> {
        self.apps
            .values()
            .filter(|a| a.cfg.app_uuid == app_uuid)
            .map(|a| {
                let inst = self.instances.get(&a.inst);
                let local = inst.and_then(|i| i.local.as_ref());
                let dns = local.map(|l| {
                    let servers = if l.cfg.dns_servers.is_empty() {
                        vec![l.cfg.gateway.to_string()]
                    } else {
                        l.cfg.dns_servers.iter().map(|s| s.to_string()).collect()
                    };
                    ZInfoDns {
                        dn_sservers: servers,
                        dn_sdomain: l.cfg.domain.clone(),
                        dn_ssearch: Vec::new(),
                    }
                });
                ZInfoNetwork {
                    mac_addr: mac_string(a.cfg.mac),
                    dev_name: a.cfg.adapter.clone(),
                    ip_addrs: a.ip.iter().map(|ip| ip.to_string()).collect(),
                    default_routers: local
                        .map(|l| vec![l.cfg.gateway.to_string()])
                        .unwrap_or_default(),
                    dns,
                    ipv4_up: a.ip.is_some(),
                    local_name: a.cfg.vif.clone(),
                    ntp_servers: local
                        .map(|l| l.cfg.ntp_servers.iter().map(|s| s.to_string()).collect())
                        .unwrap_or_default(),
                    ..Default::default()
                }
            })
            .collect()
    }

    /// `appMetric.network`: one `networkMetric` per interface of the app.
    pub fn app_network_metrics(&self, app_uuid: &str) -> Vec<NetworkMetric> {
        self.apps
            .values()
            .filter(|a| a.cfg.app_uuid == app_uuid)
            .map(app_metric)
            .collect()
    }
}
