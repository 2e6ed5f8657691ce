//! What the engine is told: its device ports, network instances and the
//! app interfaces attached to them. [`crate::eve`] builds these from EVE's
//! config messages; this module checks them.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use eve_proto::config::Ace;
use smoltcp::wire::{EthernetAddress, Ipv4Cidr};

/// A port of the engine: an app's interface or a device port. The caller
/// picks the numbers (zedrouter uses the trunk tag of an app's port) and
/// says on which port each frame came in; the engine says on which port
/// each frame goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

/// A device port with an IPv4 address: where local network instances are
/// NATed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkConfig {
    pub port: PortId,
    /// EVE's logical label of the port (`eth0`, `uplink`...).
    pub label: String,
    pub mac: EthernetAddress,
    pub address: Ipv4Cidr,
    /// The default router, if the port has one.
    pub gateway: Option<Ipv4Addr>,
    /// Where the instances' DNS servers forward names they do not know.
    pub dns_servers: Vec<Ipv4Addr>,
    pub mtu: u16,
}

/// A device port without an address of ours: the outside end of a switch
/// network instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPortConfig {
    pub port: PortId,
    pub label: String,
}

/// An inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl AddressRange {
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&addr)
    }

    /// How many addresses the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.last)
            .saturating_sub(u32::from(self.first))
            .saturating_add(1)
    }

    pub fn is_empty(&self) -> bool {
        self.first > self.last
    }
}

/// A route handed to apps with DHCP (classless static routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticRoute {
    pub destination: Ipv4Cidr,
    pub gateway: Ipv4Addr,
}

/// A name the instance's DNS server answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticHost {
    pub name: String,
    pub addresses: Vec<Ipv4Addr>,
}

/// The addressing and services of a local (NATed) network instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    pub subnet: Ipv4Cidr,
    /// The instance's own address in the subnet: apps' router, DHCP and DNS
    /// server.
    pub gateway: Ipv4Addr,
    /// Where app addresses are taken from.
    pub dhcp_range: AddressRange,
    /// DNS servers announced to apps; empty means the gateway itself.
    pub dns_servers: Vec<Ipv4Addr>,
    pub ntp_servers: Vec<Ipv4Addr>,
    /// DNS domain announced with DHCP.
    pub domain: String,
    pub static_routes: Vec<StaticRoute>,
    pub static_hosts: Vec<StaticHost>,
}

/// Local (routed, NATed, with DHCP and DNS) or switch (one L2 segment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceKind {
    Local(LocalConfig),
    Switch,
}

/// A network instance (EVE's `NetworkInstanceConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    pub uuid: String,
    pub version: String,
    pub name: String,
    pub activated: bool,
    pub kind: InstanceKind,
    /// The device port: the uplink of a local instance (an
    /// [`UplinkConfig`]), the outside of a switch (an
    /// [`ExternalPortConfig`]); `None` for an air-gapped instance.
    pub device_port: Option<PortId>,
    /// The MTU of the instance's apps.
    pub mtu: u16,
    pub flowlog: bool,
    /// The MAC address the instance answers with (its gateway's).
    pub bridge_mac: EthernetAddress,
    /// EVE's bridge number; the bridge is reported as `bn<num>`.
    pub bridge_num: u32,
}

/// How an app finds its cloud-init data (EVE's `MetaDataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetadataKind {
    #[default]
    Drive,
    None,
    OpenStack,
    DriveMultipart,
}

/// A blob an app may download from the metadata server (EVE's app custom
/// blobs): listed in `/eve/v1/app/info.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppBlob {
    pub name: String,
    pub custom_meta: String,
}

/// What the metadata server tells an app about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppMetadata {
    pub kind: MetadataKind,
    /// cloud-init user data, decoded (and decrypted) by the caller.
    pub user_data: Vec<u8>,
    /// SSH public keys for OpenStack's `meta_data.json`.
    pub ssh_keys: Vec<String>,
    pub blobs: Vec<AppBlob>,
}

/// One interface of an app on a network instance (EVE's `NetworkAdapter`
/// with the app it belongs to).
#[derive(Debug, Clone, PartialEq)]
pub struct AppPortConfig {
    pub port: PortId,
    /// The UUID of the network instance.
    pub instance: String,
    pub app_uuid: String,
    pub app_name: String,
    /// The adapter's name in the app config (`NetworkAdapter.name`).
    pub adapter: String,
    /// Our name of the interface (EVE's VIF name, e.g. `nbu1x1`).
    pub vif: String,
    pub mac: EthernetAddress,
    /// A fixed address in the subnet (`NetworkAdapter.addr`).
    pub static_ip: Option<Ipv4Addr>,
    /// The name the instance's DNS server answers with this app's address.
    pub hostname: String,
    pub acls: Vec<Ace>,
    pub metadata: AppMetadata,
}

/// The device as the metadata server describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub device_uuid: String,
    pub device_name: String,
    pub project_name: String,
    pub project_uuid: String,
    pub enterprise_name: String,
    pub enterprise_id: String,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The subnet leaves no room for a gateway and an app (smaller than /30).
    SubnetTooSmall,
    /// The gateway is not a host address of the subnet.
    GatewayOutsideSubnet,
    /// The DHCP range is reversed, leaves the subnet or holds the gateway.
    BadDhcpRange,
    /// A static route's gateway is not in the subnet.
    BadStaticRoute,
    /// The MTU is under 576 or over 9000.
    BadMtu,
    /// An uplink address that is not a host address of its prefix.
    BadUplinkAddress,
    /// Another instance already uses this device port in another way.
    DevicePortConflict,
    /// The named network instance is not configured.
    UnknownInstance,
    /// The port number is taken by another port.
    PortInUse,
    /// Another interface on the instance has this MAC address, or it is
    /// not a unicast address.
    BadMac,
    /// The static address is outside the subnet, is the gateway, or is
    /// another interface's.
    BadStaticIp,
    /// No address left in the instance's DHCP range.
    AddressesExhausted,
    /// The port is not attached.
    UnknownPort,
    /// The engine's limit on instances or ports is reached.
    TooMany,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::SubnetTooSmall => "subnet too small for a gateway and an app",
            ConfigError::GatewayOutsideSubnet => "gateway is not a host address of the subnet",
            ConfigError::BadDhcpRange => {
                "DHCP range is reversed, leaves the subnet or holds the gateway"
            }
            ConfigError::BadStaticRoute => "static route gateway is not in the subnet",
            ConfigError::BadMtu => "MTU must be between 576 and 9000",
            ConfigError::BadUplinkAddress => "uplink address is not a host address",
            ConfigError::DevicePortConflict => "device port already used in another way",
            ConfigError::UnknownInstance => "no such network instance",
            ConfigError::PortInUse => "port number already in use",
            ConfigError::BadMac => "MAC address is not unicast or already used on the instance",
            ConfigError::BadStaticIp => {
                "static address is outside the subnet, the gateway, or taken"
            }
            ConfigError::AddressesExhausted => "no address left in the DHCP range",
            ConfigError::UnknownPort => "no such port",
            ConfigError::TooMany => "too many instances or ports",
        })
    }
}

impl core::error::Error for ConfigError {}

/// Whether `addr` is a host address of `subnet` (neither its network nor
/// its broadcast address).
pub(crate) fn is_host_of(subnet: Ipv4Cidr, addr: Ipv4Addr) -> bool {
    subnet.contains_addr(&addr)
        && addr != subnet.network().address()
        && subnet.broadcast() != Some(addr)
}

pub(crate) const MIN_MTU: u16 = 576;
pub(crate) const MAX_MTU: u16 = 9000;

impl LocalConfig {
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.subnet.prefix_len() > 30 {
            return Err(ConfigError::SubnetTooSmall);
        }
        if !is_host_of(self.subnet, self.gateway) {
            return Err(ConfigError::GatewayOutsideSubnet);
        }
        let range = self.dhcp_range;
        if range.is_empty()
            || !is_host_of(self.subnet, range.first)
            || !is_host_of(self.subnet, range.last)
            || (range.contains(self.gateway) && range.len() == 1)
        {
            return Err(ConfigError::BadDhcpRange);
        }
        if self
            .static_routes
            .iter()
            .any(|r| !self.subnet.contains_addr(&r.gateway))
        {
            return Err(ConfigError::BadStaticRoute);
        }
        Ok(())
    }
}

impl InstanceConfig {
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::BadMtu);
        }
        if let InstanceKind::Local(local) = &self.kind {
            local.check()?;
        }
        Ok(())
    }

    pub fn is_local(&self) -> bool {
        matches!(self.kind, InstanceKind::Local(_))
    }
}

impl UplinkConfig {
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if !is_host_of(self.address, self.address.address()) || self.address.prefix_len() > 30 {
            return Err(ConfigError::BadUplinkAddress);
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::BadMtu);
        }
        Ok(())
    }
}
