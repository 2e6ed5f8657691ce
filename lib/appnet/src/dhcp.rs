//! The DHCP server of a local instance. Every interface already has its
//! address (see [`crate::addresses`]); DHCP hands it out with the options
//! EVE's dnsmasq gives: netmask, router, DNS servers, domain, NTP servers,
//! MTU, a 60-minute lease and classless static routes (the subnet on-link,
//! the instance's static routes, and the default route, which RFC 3442
//! says clients must take from here rather than from the router option).

use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::wire::{DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr, EthernetAddress, Ipv4Cidr};

use crate::config::{LocalConfig, StaticRoute};

pub(crate) const SERVER_PORT: u16 = 67;
pub(crate) const CLIENT_PORT: u16 = 68;
/// dnsmasq's `dhcp-range=...,60m` in EVE.
pub(crate) const LEASE_SECS: u32 = 3600;

const OPT_DNS: u8 = 6;
const OPT_DOMAIN: u8 = 15;
const OPT_MTU: u8 = 26;
const OPT_NTP: u8 = 42;
const OPT_RENEW: u8 = 58;
const OPT_REBIND: u8 = 59;
const OPT_CLASSLESS_ROUTES: u8 = 121;

/// What the client at an interface gets.
pub(crate) struct Client {
    pub mac: EthernetAddress,
    pub ip: Ipv4Addr,
    pub mtu: u16,
}

/// A reply to send, and to which IP address (the Ethernet destination is
/// always the interface's MAC).
pub(crate) struct Reply {
    pub payload: Vec<u8>,
    pub dst: Ipv4Addr,
    /// An ACK: the client now uses its address.
    pub bound: bool,
}

/// What a request did besides a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Released,
    Declined,
    Ignored,
}

fn addresses(list: &[Ipv4Addr]) -> Vec<u8> {
    list.iter().take(63).flat_map(|a| a.octets()).collect()
}

/// RFC 3442's encoding, within one option's 255 bytes.
fn classless_routes(local: &LocalConfig) -> Vec<u8> {
    let mut routes: Vec<StaticRoute> = vec![StaticRoute {
        destination: local.subnet.network(),
        gateway: Ipv4Addr::UNSPECIFIED,
    }];
    routes.extend(local.static_routes.iter().copied());
    routes.push(StaticRoute {
        destination: Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0),
        gateway: local.gateway,
    });
    let encode = |r: &StaticRoute| {
        let len = r.destination.prefix_len();
        let mut out = vec![len];
        out.extend_from_slice(&r.destination.address().octets()[..usize::from(len).div_ceil(8)]);
        out.extend_from_slice(&r.gateway.octets());
        out
    };
    let default = encode(routes.last().expect("default route pushed"));
    let mut data = Vec::new();
    for route in &routes[..routes.len() - 1] {
        let bytes = encode(route);
        if data.len() + bytes.len() + default.len() > 255 {
            break;
        }
        data.extend_from_slice(&bytes);
    }
    data.extend_from_slice(&default);
    data
}

fn emit(repr: &DhcpRepr<'_>) -> Option<Vec<u8>> {
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut DhcpPacket::new_unchecked(&mut out[..]))
        .ok()?;
    Some(out)
}

/// Answers one DHCP message from `client`'s interface; `Err` says what
/// the message did instead when there is nothing to send.
pub(crate) fn serve(
    local: &LocalConfig,
    client: &Client,
    payload: &[u8],
) -> Result<Reply, Outcome> {
    let packet = DhcpPacket::new_checked(payload).map_err(|_| Outcome::Ignored)?;
    let request = DhcpRepr::parse(&packet).map_err(|_| Outcome::Ignored)?;
    if request.client_hardware_address != client.mac {
        return Err(Outcome::Ignored);
    }
    let server = local.gateway;
    let (message_type, your_ip) = match request.message_type {
        DhcpMessageType::Discover => (DhcpMessageType::Offer, client.ip),
        DhcpMessageType::Request => {
            if request.server_identifier.is_some_and(|s| s != server) {
                // The client took another server's offer.
                return Err(Outcome::Ignored);
            }
            let wanted = request.requested_ip.unwrap_or(request.client_ip);
            if wanted == client.ip {
                (DhcpMessageType::Ack, client.ip)
            } else {
                (DhcpMessageType::Nak, Ipv4Addr::UNSPECIFIED)
            }
        }
        DhcpMessageType::Inform => (DhcpMessageType::Ack, Ipv4Addr::UNSPECIFIED),
        DhcpMessageType::Release => return Err(Outcome::Released),
        DhcpMessageType::Decline => return Err(Outcome::Declined),
        _ => return Err(Outcome::Ignored),
    };
    let nak = message_type == DhcpMessageType::Nak;
    let inform = request.message_type == DhcpMessageType::Inform;
    let dns = if local.dns_servers.is_empty() {
        vec![local.gateway]
    } else {
        local.dns_servers.clone()
    };
    let dns = addresses(&dns);
    let ntp = addresses(&local.ntp_servers);
    let domain = local.domain.as_bytes();
    let mtu = client.mtu.to_be_bytes();
    let renew = (LEASE_SECS / 2).to_be_bytes();
    let rebind = (LEASE_SECS / 8 * 7).to_be_bytes();
    let routes = classless_routes(local);
    let mut options = vec![
        DhcpOption {
            kind: OPT_DNS,
            data: &dns,
        },
        DhcpOption {
            kind: OPT_MTU,
            data: &mtu,
        },
        DhcpOption {
            kind: OPT_CLASSLESS_ROUTES,
            data: &routes,
        },
    ];
    if !ntp.is_empty() {
        options.push(DhcpOption {
            kind: OPT_NTP,
            data: &ntp,
        });
    }
    if !domain.is_empty() && domain.len() <= 255 {
        options.push(DhcpOption {
            kind: OPT_DOMAIN,
            data: domain,
        });
    }
    if !inform {
        options.push(DhcpOption {
            kind: OPT_RENEW,
            data: &renew,
        });
        options.push(DhcpOption {
            kind: OPT_REBIND,
            data: &rebind,
        });
    }
    let reply = DhcpRepr {
        message_type,
        transaction_id: request.transaction_id,
        secs: 0,
        client_hardware_address: client.mac,
        client_ip: if inform {
            request.client_ip
        } else {
            Ipv4Addr::UNSPECIFIED
        },
        your_ip,
        server_ip: Ipv4Addr::UNSPECIFIED,
        router: (!nak).then_some(local.gateway),
        subnet_mask: (!nak).then(|| local.subnet.netmask()),
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: request.broadcast,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(server),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: (!nak && !inform).then_some(LEASE_SECS),
        renew_duration: None,
        rebind_duration: None,
        additional_options: if nak { &[] } else { &options },
    };
    let payload = emit(&reply).ok_or(Outcome::Ignored)?;
    let dst = if nak || request.broadcast {
        Ipv4Addr::BROADCAST
    } else if !request.client_ip.is_unspecified() {
        request.client_ip
    } else if !your_ip.is_unspecified() {
        your_ip
    } else {
        Ipv4Addr::BROADCAST
    };
    Ok(Reply {
        payload,
        dst,
        bound: message_type == DhcpMessageType::Ack && !inform,
    })
}

/// The client address a DHCP ACK from another server gives `mac` (how a
/// switch instance learns its apps' addresses).
pub(crate) fn snoop_ack(payload: &[u8], mac: EthernetAddress) -> Option<Ipv4Addr> {
    let packet = DhcpPacket::new_checked(payload).ok()?;
    let repr = DhcpRepr::parse(&packet).ok()?;
    (repr.message_type == DhcpMessageType::Ack
        && repr.client_hardware_address == mac
        && !repr.your_ip.is_unspecified())
    .then_some(repr.your_ip)
}

#[cfg(test)]
mod tests;
