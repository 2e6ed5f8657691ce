//! Network instances in a device's config (`evectl network add|remove`):
//! each command reads the current config through the admin API, changes
//! its `networkInstances` as EVE's controllers do, and stores it again.
//!
//! A *local* instance (`ZnetInstLocal`) is a subnet of its own behind NAT:
//! the node serves DHCP and DNS on it and its gateway; its `port` is the
//! device port it reaches the world through (`uplink`, every management
//! port, by default). A *switch* instance (`ZnetInstSwitch`) is an L2
//! segment between apps and, with `--port`, a device port.

use std::net::Ipv4Addr;

use controller::configspec::derived_uuid;
use serde_json::{Value, json};

/// A local instance's addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSpec {
    /// `A.B.C.D/N`, N 8-30.
    pub subnet: String,
    /// The gateway (EVE's default: the subnet's first host).
    pub gateway: Option<String>,
    /// `A-B`, both in the subnet (default: the hosts after the gateway).
    pub dhcp_range: Option<String>,
    /// DNS servers handed out (default: the gateway, which forwards).
    pub dns: Vec<String>,
}

/// What kind of instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkKind {
    /// NAT and DHCP on a subnet.
    Local(LocalSpec),
    /// An L2 segment.
    Switch,
}

/// A network instance to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Display name; the UUID is derived from it.
    pub name: String,
    /// Local or switch.
    pub kind: NetworkKind,
    /// The device port's logical label; a local instance defaults to
    /// `uplink`, a switch to none (apps only).
    pub port: Option<String>,
    /// Whether the node sends flow logs for it (EVE's `disable_flowlog`
    /// is the opposite).
    pub flowlog: bool,
}

/// Why a network command was refused before reaching the controller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    /// An empty name or one with edge spaces.
    #[error("a network instance needs a name without leading or trailing spaces")]
    BadName,
    /// Not `A.B.C.D/N` with N 8-30.
    #[error("--subnet {0:?}: expected an IPv4 subnet A.B.C.D/N, N from 8 to 30")]
    BadSubnet(String),
    /// An address that does not parse or lies outside the subnet.
    #[error("{what} {value:?}: expected an IPv4 address in {subnet}")]
    OutsideSubnet {
        /// Which option.
        what: &'static str,
        /// Its value.
        value: String,
        /// The subnet.
        subnet: String,
    },
    /// Not `A-B` with A <= B.
    #[error("--dhcp-range {0:?}: expected FIRST-LAST, two addresses in the subnet, in order")]
    BadRange(String),
    /// Not an IPv4 address.
    #[error("--dns {0:?}: expected an IPv4 address")]
    BadDns(String),
    /// An empty or odd port label.
    #[error("--port {0:?}: expected a port label (letters, digits, - _ .)")]
    BadPort(String),
    /// No instance by that name or UUID.
    #[error("no network instance {0:?} in the device's config")]
    NotFound(String),
    /// Apps still have interfaces on it.
    #[error(
        "network instance {name:?} is used by app(s) {apps}: delete them or deploy them elsewhere first"
    )]
    InUse {
        /// The instance.
        name: String,
        /// The apps, comma-separated.
        apps: String,
    },
}

fn list<'a>(config: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    config[field].as_array().into_iter().flatten()
}

fn list_mut<'a>(config: &'a mut Value, field: &str) -> &'a mut Vec<Value> {
    if !config[field].is_array() {
        config[field] = json!([]);
    }
    match config.get_mut(field).and_then(Value::as_array_mut) {
        Some(v) => v,
        None => unreachable!("{field} was just made an array"),
    }
}

/// An instance's UUID: given, or derived from its name as the controller
/// derives it.
pub fn network_uuid(ni: &Value) -> String {
    ni["uuidandversion"]["uuid"].as_str().map_or_else(
        || derived_uuid("network instance", ni["displayname"].as_str().unwrap_or("")),
        str::to_owned,
    )
}

fn is_named(ni: &Value, name: &str) -> bool {
    ni["displayname"] == name || network_uuid(ni) == name
}

fn subnet_of(s: &str) -> Result<(u32, u32), NetworkError> {
    let bad = || NetworkError::BadSubnet(s.to_owned());
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u32 = len
        .parse()
        .ok()
        .filter(|n| (8..=30).contains(n))
        .ok_or_else(bad)?;
    let mask = u32::MAX << (32 - len);
    Ok((u32::from(addr) & mask, mask))
}

fn port_label(p: &str) -> Result<String, NetworkError> {
    let ok = !p.is_empty()
        && p.len() <= 64
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then(|| p.to_owned())
        .ok_or_else(|| NetworkError::BadPort(p.to_owned()))
}

/// The `ipspec` of a local instance, checked: every address in the
/// subnet, neither the network nor the broadcast address.
fn ipspec(spec: &LocalSpec) -> Result<Value, NetworkError> {
    let (net, mask) = subnet_of(&spec.subnet)?;
    let subnet = format!("{}/{}", Ipv4Addr::from(net), mask.count_ones());
    let host = |what: &'static str, s: &str| {
        s.parse::<Ipv4Addr>()
            .ok()
            .map(u32::from)
            .filter(|a| a & mask == net && *a != net && *a != net | !mask)
            .ok_or_else(|| NetworkError::OutsideSubnet {
                what,
                value: s.to_owned(),
                subnet: subnet.clone(),
            })
    };
    let mut ip = json!({"subnet": subnet});
    if let Some(gw) = &spec.gateway {
        ip["gateway"] = json!(Ipv4Addr::from(host("--gateway", gw)?).to_string());
    }
    if let Some(range) = &spec.dhcp_range {
        let bad = || NetworkError::BadRange(range.clone());
        let (a, b) = range.split_once('-').ok_or_else(bad)?;
        let (a, b) = (
            host("--dhcp-range", a.trim())?,
            host("--dhcp-range", b.trim())?,
        );
        if a > b {
            return Err(bad());
        }
        ip["dhcpRange"] = json!({
            "start": Ipv4Addr::from(a).to_string(),
            "end": Ipv4Addr::from(b).to_string(),
        });
    }
    if !spec.dns.is_empty() {
        let dns = spec
            .dns
            .iter()
            .map(|d| {
                d.parse::<Ipv4Addr>()
                    .map(|a| a.to_string())
                    .map_err(|_| NetworkError::BadDns(d.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        ip["dns"] = json!(dns);
    }
    Ok(ip)
}

/// `config` with instance `spec` added, or replacing the one of that name
/// (which keeps its UUID and gets the next version).
pub fn add(mut config: Value, spec: &NetworkSpec) -> Result<Value, NetworkError> {
    let name = spec.name.trim();
    if name.is_empty() || name != spec.name {
        return Err(NetworkError::BadName);
    }
    let port = spec.port.as_deref().map(port_label).transpose()?;
    let mut ni = json!({"displayname": name, "activate": true});
    match &spec.kind {
        NetworkKind::Local(local) => {
            ni["instType"] = json!("ZnetInstLocal");
            ni["ipType"] = json!("IPV4");
            ni["ip"] = ipspec(local)?;
            let port = port.unwrap_or_else(|| "uplink".to_owned());
            ni["port"] = json!({"type": "PhyIoNetEth", "name": port});
        }
        NetworkKind::Switch => {
            ni["instType"] = json!("ZnetInstSwitch");
            if let Some(port) = port {
                ni["port"] = json!({"type": "PhyIoNetEth", "name": port});
            }
        }
    }
    if !spec.flowlog {
        ni["disableFlowlog"] = json!(true);
    }
    let instances = list_mut(&mut config, "networkInstances");
    let (uuid, version) = match instances.iter().position(|n| is_named(n, name)) {
        Some(at) => {
            let old = instances.remove(at);
            let version = crate::admin::proto_json_u64(&old["uuidandversion"]["version"]) + 1;
            (network_uuid(&old), version)
        }
        None => (derived_uuid("network instance", name), 1),
    };
    ni["uuidandversion"] = json!({"uuid": uuid, "version": version.to_string()});
    instances.push(ni);
    Ok(config)
}

/// The display names of the apps with an interface on instance `uuid`.
pub fn apps_on(config: &Value, uuid: &str) -> Vec<String> {
    list(config, "apps")
        .filter(|a| list(a, "interfaces").any(|i| i["networkId"] == uuid))
        .map(|a| a["displayname"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// `config` without instance `name`, refused while an app uses it.
pub fn remove(mut config: Value, name: &str) -> Result<Value, NetworkError> {
    let ni = list(&config, "networkInstances")
        .find(|n| is_named(n, name))
        .ok_or_else(|| NetworkError::NotFound(name.to_owned()))?;
    let uuid = network_uuid(ni);
    let apps = apps_on(&config, &uuid);
    if !apps.is_empty() {
        return Err(NetworkError::InUse {
            name: name.to_owned(),
            apps: apps.join(", "),
        });
    }
    list_mut(&mut config, "networkInstances").retain(|n| network_uuid(n) != uuid);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(subnet: &str) -> NetworkSpec {
        NetworkSpec {
            name: "lan".into(),
            kind: NetworkKind::Local(LocalSpec {
                subnet: subnet.into(),
                gateway: None,
                dhcp_range: None,
                dns: Vec::new(),
            }),
            port: None,
            flowlog: true,
        }
    }

    #[test]
    fn a_switch_port_is_written_as_eve_api_reads_it() {
        // EVE's zedagent takes `port.name` as the instance's port's
        // logical label; a switch has no IP type (AddressTypeNone, 0).
        let spec = NetworkSpec {
            name: "segment".into(),
            kind: NetworkKind::Switch,
            port: Some("eth1".into()),
            flowlog: true,
        };
        let c = add(json!({}), &spec).unwrap();
        let ni = &c["networkInstances"][0];
        let bytes = controller::pbuf::encode_from_json(
            "org.lfedge.eve.config.NetworkInstanceConfig",
            &ni.to_string(),
        )
        .unwrap();
        let decoded =
            <eve_proto::config::NetworkInstanceConfig as prost::Message>::decode(bytes.as_slice())
                .unwrap();
        let port = decoded.port.unwrap();
        assert_eq!(port.name, "eth1");
        assert_eq!(
            port.r#type,
            eve_proto::common::PhyIoType::PhyIoNetEth as i32
        );
        assert_eq!(
            decoded.inst_type,
            eve_proto::config::ZNetworkInstType::ZnetInstSwitch as i32
        );
        assert_eq!(decoded.ip_type, 0);
        assert_eq!(decoded.ip, None);
    }

    #[test]
    fn local_instances_are_checked_against_their_subnet() {
        let mut spec = local("10.1.0.9/24");
        if let NetworkKind::Local(l) = &mut spec.kind {
            l.gateway = Some("10.1.0.1".into());
            l.dhcp_range = Some("10.1.0.10-10.1.0.20".into());
            l.dns = vec!["10.1.0.1".into()];
        }
        let c = add(json!({}), &spec).unwrap();
        let ni = &c["networkInstances"][0];
        assert_eq!(ni["ip"]["subnet"], "10.1.0.0/24");
        assert_eq!(ni["ip"]["dhcpRange"]["end"], "10.1.0.20");
        assert_eq!(ni["port"]["name"], "uplink");
        assert_eq!(ni["uuidandversion"]["version"], "1");
        // Replacing keeps the UUID and bumps the version.
        let c = add(c, &spec).unwrap();
        assert_eq!(c["networkInstances"].as_array().unwrap().len(), 1);
        assert_eq!(c["networkInstances"][0]["uuidandversion"]["version"], "2");
        for bad in ["10.1.0.0", "10.1.0.0/31", "10.1.0.0/7", "10.1.0/24", "x/24"] {
            assert_eq!(
                add(json!({}), &local(bad)),
                Err(NetworkError::BadSubnet(bad.into()))
            );
        }
        for gw in ["10.2.0.1", "10.1.0.0", "10.1.0.255", "nope"] {
            let mut s = local("10.1.0.0/24");
            if let NetworkKind::Local(l) = &mut s.kind {
                l.gateway = Some(gw.into());
            }
            assert!(
                matches!(add(json!({}), &s), Err(NetworkError::OutsideSubnet { .. })),
                "{gw}"
            );
        }
        let mut s = local("10.1.0.0/24");
        if let NetworkKind::Local(l) = &mut s.kind {
            l.dhcp_range = Some("10.1.0.20-10.1.0.10".into());
        }
        assert!(matches!(add(json!({}), &s), Err(NetworkError::BadRange(_))));
    }

    #[test]
    fn removal_is_refused_while_an_app_uses_the_instance() {
        let c = add(json!({}), &local("10.1.0.0/24")).unwrap();
        let uuid = derived_uuid("network instance", "lan");
        let used = {
            let mut c = c.clone();
            c["apps"] = json!([{"displayname": "web", "interfaces": [{"networkId": uuid}]}]);
            c
        };
        assert_eq!(
            remove(used, "lan"),
            Err(NetworkError::InUse {
                name: "lan".into(),
                apps: "web".into()
            })
        );
        let c = remove(c, &uuid).unwrap();
        assert_eq!(c["networkInstances"], json!([]));
        assert_eq!(remove(c, "lan"), Err(NetworkError::NotFound("lan".into())));
    }
}
