//! How the interface gets its IPv4 address: DHCP unless the command line
//! says `ip=A.B.C.D/N` (with optional `gw=` and `dns=`).

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
}

impl core::fmt::Display for AddressingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AddressingError::BadAddress(key) => write!(f, "{key}= is not an IPv4 address"),
            AddressingError::GatewayWithoutAddress => f.write_str("gw= or dns= given without ip="),
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
        let dns = address("dns")?;
        match params.get("ip") {
            None | Some("dhcp") if gateway.is_none() && dns.is_none() => Ok(Addressing::Dhcp),
            None | Some("dhcp") => Err(AddressingError::GatewayWithoutAddress),
            Some(ip) => Ok(Addressing::Static(Ipv4Config {
                address: parse_cidr(ip).ok_or(AddressingError::BadAddress("ip"))?,
                gateway,
                dns,
            })),
        }
    }
}
