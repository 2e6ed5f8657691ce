//! How the interface gets its IPv4 address: DHCP unless the command line
//! says `ip=A.B.C.D/N` (with optional `gw=`). `dns=A.B.C.D[:PORT]` names
//! the DNS server in either case, overriding DHCP's; `hosts=name=A.B.C.D,...`
//! adds static names, which win over DNS.

use alloc::{string::String, vec::Vec};

use bootinfo::cmdline::Cmdline;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

/// An interface's IPv4 settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Config {
    pub address: Ipv4Cidr,
    pub gateway: Option<Ipv4Address>,
    pub dns: Option<Ipv4Address>,
}

/// Where the settings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    Dhcp,
    Static(Ipv4Config),
}

/// A malformed addressing parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressingError {
    BadAddress(&'static str),
    GatewayWithoutAddress,
    BadHosts,
}

impl core::fmt::Display for AddressingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AddressingError::BadAddress(key) => write!(f, "{key}= is not an IPv4 address"),
            AddressingError::GatewayWithoutAddress => f.write_str("gw= given without ip="),
            AddressingError::BadHosts => f.write_str("hosts= is not a list of name=A.B.C.D"),
        }
    }
}

fn parse_cidr(s: &str) -> Option<Ipv4Cidr> {
    let (address, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some(Ipv4Cidr::new(address.parse().ok()?, prefix))
}

impl Addressing {
    /// Reads `ip=`, `gw=` and `dns=` from the command line.
    pub fn from_cmdline(params: &Cmdline<'_>) -> Result<Addressing, AddressingError> {
        let address = |key: &'static str| -> Result<Option<Ipv4Address>, AddressingError> {
            params
                .get(key)
                .map(|v| v.parse().map_err(|_| AddressingError::BadAddress(key)))
                .transpose()
        };
        let gateway = address("gw")?;
        match params.get("ip") {
            None | Some("dhcp") if gateway.is_none() => Ok(Addressing::Dhcp),
            None | Some("dhcp") => Err(AddressingError::GatewayWithoutAddress),
            Some(ip) => Ok(Addressing::Static(Ipv4Config {
                address: parse_cidr(ip).ok_or(AddressingError::BadAddress("ip"))?,
                gateway,
                dns: dns_server(params)?.map(|(addr, _)| addr),
            })),
        }
    }
}

/// `dns=A.B.C.D[:PORT]`: the DNS server to use instead of DHCP's.
pub fn dns_server(params: &Cmdline<'_>) -> Result<Option<(Ipv4Address, u16)>, AddressingError> {
    let Some(value) = params.get("dns") else {
        return Ok(None);
    };
    let bad = AddressingError::BadAddress("dns");
    let (addr, port) = match value.split_once(':') {
        Some((addr, port)) => (addr, port.parse().map_err(|_| bad)?),
        None => (value, 53),
    };
    Ok(Some((addr.parse().map_err(|_| bad)?, port)))
}

/// `hosts=name=A.B.C.D,name2=A.B.C.D`: static names.
pub fn static_hosts(params: &Cmdline<'_>) -> Result<Vec<(String, Ipv4Address)>, AddressingError> {
    let Some(list) = params.get("hosts") else {
        return Ok(Vec::new());
    };
    list.split(',')
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (name, addr) = entry.split_once('=').ok_or(AddressingError::BadHosts)?;
            if !dnswire::valid_name(name) {
                return Err(AddressingError::BadHosts);
            }
            let addr = addr.parse().map_err(|_| AddressingError::BadHosts)?;
            Ok((name.to_ascii_lowercase(), addr))
        })
        .collect()
}
