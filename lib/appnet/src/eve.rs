//! Reading EVE's config messages into the engine's config:
//! `NetworkInstanceConfig` into [`InstanceConfig`], an app's
//! `NetworkAdapter` (with its `AppInstanceConfig`) into [`AppPortConfig`],
//! with EVE's defaults: the gateway is the subnet's first host, the DHCP
//! range the rest of the subnet, the MTU 1500, flow logs on unless
//! `disable_flowlog`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use base64ct::{Base64, Encoding};
use eve_proto::config::{
    AddressType, AppInstanceConfig, MetaDataType, NetworkAdapter, NetworkInstanceConfig,
    ZNetworkInstType,
};
use smoltcp::wire::{EthernetAddress, Ipv4Cidr};

use crate::config::{
    AddressRange, AppMetadata, AppPortConfig, InstanceConfig, InstanceKind, LocalConfig,
    MetadataKind, PortId, StaticHost, StaticRoute,
};

/// Why an EVE config message could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EveConfigError {
    MissingUuid,
    /// Cloud, mesh, honeypot and transparent instances are not built.
    UnsupportedKind(i32),
    /// An IPv6 instance (not built).
    NotIpv4,
    BadSubnet,
    BadGateway,
    BadDhcpRange,
    BadDnsServer,
    BadStaticRoute,
    BadStaticHost,
    BadMac,
    BadStaticIp,
    BadUserData,
}

impl core::fmt::Display for EveConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EveConfigError::MissingUuid => f.write_str("no UUID"),
            EveConfigError::UnsupportedKind(k) => {
                write!(f, "network instance type {k} is not supported")
            }
            EveConfigError::NotIpv4 => f.write_str("only IPv4 network instances are supported"),
            EveConfigError::BadSubnet => f.write_str("subnet is not an IPv4 CIDR"),
            EveConfigError::BadGateway => f.write_str("gateway is not an IPv4 address"),
            EveConfigError::BadDhcpRange => f.write_str("DHCP range is not two IPv4 addresses"),
            EveConfigError::BadDnsServer => f.write_str("DNS server is not an IPv4 address"),
            EveConfigError::BadStaticRoute => f.write_str("static route is not CIDR via address"),
            EveConfigError::BadStaticHost => f.write_str("DNS entry address is not IPv4"),
            EveConfigError::BadMac => f.write_str("MAC address does not parse"),
            EveConfigError::BadStaticIp => f.write_str("adapter address is not IPv4"),
            EveConfigError::BadUserData => f.write_str("user data is not base64"),
        }
    }
}

impl core::error::Error for EveConfigError {}

fn addr(s: &str, err: EveConfigError) -> Result<Ipv4Addr, EveConfigError> {
    s.trim().parse().map_err(|_| err)
}

fn cidr(s: &str, err: EveConfigError) -> Result<Ipv4Cidr, EveConfigError> {
    let (a, len) = s.trim().split_once('/').ok_or(err)?;
    let len: u8 = len.parse().map_err(|_| err)?;
    if len > 32 {
        return Err(err);
    }
    Ok(Ipv4Cidr::new(addr(a, err)?, len))
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with dashes).
pub fn parse_mac(s: &str) -> Option<EthernetAddress> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split([':', '-']);
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(EthernetAddress(out))
}

/// The engine's view of a `NetworkInstanceConfig`. The caller picks the
/// device port (from the instance's `port` label), the bridge's MAC and
/// number, as EVE's zedrouter does.
pub fn instance_from_eve(
    ni: &NetworkInstanceConfig,
    device_port: Option<PortId>,
    bridge_mac: EthernetAddress,
    bridge_num: u32,
) -> Result<InstanceConfig, EveConfigError> {
    let uuid = ni
        .uuidandversion
        .as_ref()
        .map(|u| u.uuid.clone())
        .filter(|u| !u.is_empty())
        .ok_or(EveConfigError::MissingUuid)?;
    let version = ni
        .uuidandversion
        .as_ref()
        .map(|u| u.version.clone())
        .unwrap_or_default();
    let kind = match ZNetworkInstType::try_from(ni.inst_type) {
        Ok(ZNetworkInstType::ZnetInstSwitch) => InstanceKind::Switch,
        Ok(ZNetworkInstType::ZnetInstLocal) => InstanceKind::Local(local_from_eve(ni)?),
        _ => return Err(EveConfigError::UnsupportedKind(ni.inst_type)),
    };
    Ok(InstanceConfig {
        uuid,
        version,
        name: ni.displayname.clone(),
        activated: ni.activate,
        kind,
        device_port,
        mtu: if ni.mtu == 0 {
            1500
        } else {
            u16::try_from(ni.mtu).unwrap_or(u16::MAX)
        },
        flowlog: !ni.disable_flowlog,
        bridge_mac,
        bridge_num,
    })
}

fn local_from_eve(ni: &NetworkInstanceConfig) -> Result<LocalConfig, EveConfigError> {
    if matches!(
        AddressType::try_from(ni.ip_type),
        Ok(AddressType::Ipv6 | AddressType::CryptoIpv6)
    ) {
        return Err(EveConfigError::NotIpv4);
    }
    let spec = ni.ip.clone().unwrap_or_default();
    let subnet = cidr(&spec.subnet, EveConfigError::BadSubnet)?.network();
    let first_host = Ipv4Addr::from(u32::from(subnet.address()).saturating_add(1));
    let last_host = subnet
        .broadcast()
        .map(|b| Ipv4Addr::from(u32::from(b).saturating_sub(1)))
        .unwrap_or(first_host);
    let gateway = if spec.gateway.trim().is_empty() {
        first_host
    } else {
        addr(&spec.gateway, EveConfigError::BadGateway)?
    };
    let dhcp_range = match &spec.dhcp_range {
        Some(range) if !range.start.trim().is_empty() => {
            let first = addr(&range.start, EveConfigError::BadDhcpRange)?;
            let last = if range.end.trim().is_empty() {
                last_host
            } else {
                addr(&range.end, EveConfigError::BadDhcpRange)?
            };
            AddressRange { first, last }
        }
        _ => AddressRange {
            first: first_host,
            last: last_host,
        },
    };
    let dns_servers = spec
        .dns
        .iter()
        .map(|s| addr(s, EveConfigError::BadDnsServer))
        .collect::<Result<Vec<_>, _>>()?;
    // NTP servers may be names; only addresses go out in DHCP.
    let ntp_servers = core::iter::once(&spec.ntp)
        .chain(spec.more_ntp.iter())
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let static_routes = ni
        .static_routes
        .iter()
        .map(|r| {
            Ok(StaticRoute {
                destination: cidr(&r.destination_network, EveConfigError::BadStaticRoute)?
                    .network(),
                gateway: addr(&r.gateway, EveConfigError::BadStaticRoute)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        // Routes through the uplink are the instance's own; apps reach
        // them through the gateway anyway.
        .filter(|r| subnet.contains_addr(&r.gateway))
        .collect();
    let static_hosts = ni
        .dns
        .iter()
        .map(|e| {
            Ok(StaticHost {
                name: e
                    .host_name
                    .trim()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
                addresses: e
                    .address
                    .iter()
                    .filter(|a| !a.contains(':'))
                    .map(|a| addr(a, EveConfigError::BadStaticHost))
                    .collect::<Result<Vec<_>, _>>()?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LocalConfig {
        subnet,
        gateway,
        dhcp_range,
        dns_servers,
        ntp_servers,
        domain: spec.domain.trim().to_string(),
        static_routes,
        static_hosts,
    })
}

/// The SSH keys of a cloud-config's `ssh_authorized_keys` list, for
/// OpenStack's `meta_data.json` (EVE reads them from the user data too).
pub fn ssh_keys(user_data: &[u8]) -> Vec<String> {
    let Ok(text) = core::str::from_utf8(user_data) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    let mut in_list = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("ssh_authorized_keys:") {
            in_list = true;
            continue;
        }
        if !in_list {
            continue;
        }
        match trimmed.strip_prefix('-') {
            Some(item) => {
                let key = item.trim().trim_matches(|c| c == '"' || c == '\'');
                if !key.is_empty() {
                    keys.push(key.to_string());
                }
            }
            None if trimmed.is_empty() || trimmed.starts_with('#') => {}
            None => in_list = false,
        }
    }
    keys
}

/// The engine's view of one of an app's adapters. `mac` is used when the
/// adapter has none (zedrouter generates one); `user_data` overrides the
/// app's `userData` (for data the caller decrypted from `cipherData`).
pub fn port_from_eve(
    app: &AppInstanceConfig,
    adapter: &NetworkAdapter,
    port: PortId,
    vif: &str,
    mac: EthernetAddress,
    user_data: Option<Vec<u8>>,
) -> Result<AppPortConfig, EveConfigError> {
    let app_uuid = app
        .uuidandversion
        .as_ref()
        .map(|u| u.uuid.clone())
        .filter(|u| !u.is_empty())
        .ok_or(EveConfigError::MissingUuid)?;
    let mac = if adapter.mac_address.trim().is_empty() {
        mac
    } else {
        parse_mac(&adapter.mac_address).ok_or(EveConfigError::BadMac)?
    };
    let static_ip = if adapter.addr.trim().is_empty() {
        None
    } else {
        Some(addr(&adapter.addr, EveConfigError::BadStaticIp)?)
    };
    let user_data = match user_data {
        Some(data) => data,
        None if app.user_data.trim().is_empty() => Vec::new(),
        None => {
            Base64::decode_vec(app.user_data.trim()).map_err(|_| EveConfigError::BadUserData)?
        }
    };
    let kind = match MetaDataType::try_from(app.meta_data_type) {
        Ok(MetaDataType::MetaDataNone) => MetadataKind::None,
        Ok(MetaDataType::MetaDataOpenStack) => MetadataKind::OpenStack,
        Ok(MetaDataType::MetaDataDriveMultipart) => MetadataKind::DriveMultipart,
        _ => MetadataKind::Drive,
    };
    Ok(AppPortConfig {
        port,
        instance: adapter.network_id.clone(),
        app_uuid,
        app_name: app.displayname.clone(),
        adapter: adapter.name.clone(),
        vif: vif.to_string(),
        mac,
        static_ip,
        hostname: if adapter.hostname.trim().is_empty() {
            app.displayname.clone()
        } else {
            adapter.hostname.clone()
        },
        acls: adapter.acls.clone(),
        metadata: AppMetadata {
            kind,
            ssh_keys: ssh_keys(&user_data),
            user_data,
            blobs: Vec::new(),
        },
    })
}
