//! DHCPv4 messages for the shim's one-shot lease: DISCOVER and REQUEST
//! out, OFFER, ACK or NAK in. The replies come from whatever network the
//! app's NIC is on, so every read is bounded and checked.

use std::net::Ipv4Addr;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// op .. file: the fixed BOOTP part.
const FIXED: usize = 236;

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;

const OPT_PAD: u8 = 0;
const OPT_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_REQUESTED: u8 = 50;
const OPT_LEASE: u8 = 51;
const OPT_TYPE: u8 = 53;
const OPT_SERVER: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_END: u8 = 255;

/// What a server offered or acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub lease_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Offer(Lease),
    Ack(Lease),
    Nak,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    #[error("not a DHCP reply ({0})")]
    NotReply(&'static str),
    #[error("a reply for another client")]
    NotOurs,
    #[error("bad option {0}")]
    BadOption(u8),
    #[error("netmask {0} is not a prefix")]
    Mask(Ipv4Addr),
}

fn message(kind: u8, xid: u32, mac: [u8; 6], extra: &[(u8, &[u8])]) -> Vec<u8> {
    let mut m = vec![0u8; FIXED];
    m[0] = BOOTREQUEST;
    m[1] = 1; // Ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    // Broadcast replies: we have no address to receive unicast on yet.
    m[10] = 0x80;
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&[OPT_TYPE, 1, kind]);
    for (code, value) in extra {
        m.push(*code);
        m.push(value.len() as u8);
        m.extend_from_slice(value);
    }
    m.extend_from_slice(&[
        OPT_PARAMS, 4, OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_LEASE, OPT_END,
    ]);
    m
}

pub fn discover(xid: u32, mac: [u8; 6]) -> Vec<u8> {
    message(DISCOVER, xid, mac, &[])
}

pub fn request(xid: u32, mac: [u8; 6], offer: &Lease) -> Vec<u8> {
    message(
        REQUEST,
        xid,
        mac,
        &[
            (OPT_REQUESTED, &offer.address.octets()),
            (OPT_SERVER, &offer.server.octets()),
        ],
    )
}

fn addr(value: &[u8], code: u8) -> Result<Ipv4Addr, DhcpError> {
    let octets: [u8; 4] = value
        .get(..4)
        .and_then(|v| v.try_into().ok())
        .ok_or(DhcpError::BadOption(code))?;
    Ok(Ipv4Addr::from(octets))
}

/// Reads a reply to transaction `xid` of client `mac`.
pub fn parse(bytes: &[u8], xid: u32, mac: [u8; 6]) -> Result<Reply, DhcpError> {
    if bytes.len() < FIXED + 4 || bytes[0] != BOOTREPLY {
        return Err(DhcpError::NotReply("too short or not a BOOTREPLY"));
    }
    if bytes[FIXED..FIXED + 4] != MAGIC {
        return Err(DhcpError::NotReply("no DHCP magic"));
    }
    if bytes[4..8] != xid.to_be_bytes() || bytes[28..34] != mac {
        return Err(DhcpError::NotOurs);
    }
    let yiaddr = Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]);
    let (mut kind, mut mask, mut router, mut dns, mut server, mut lease_secs) =
        (None, None, None, Vec::new(), None, None);
    let mut options = &bytes[FIXED + 4..];
    while let Some((&code, rest)) = options.split_first() {
        if code == OPT_END {
            break;
        }
        if code == OPT_PAD {
            options = rest;
            continue;
        }
        let (&len, rest) = rest.split_first().ok_or(DhcpError::BadOption(code))?;
        let value = rest.get(..len as usize).ok_or(DhcpError::BadOption(code))?;
        options = &rest[len as usize..];
        match code {
            OPT_TYPE => kind = value.first().copied(),
            OPT_MASK => mask = Some(addr(value, code)?),
            OPT_ROUTER => router = Some(addr(value, code)?),
            OPT_DNS => {
                dns = value
                    .chunks_exact(4)
                    .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                    .collect()
            }
            OPT_SERVER => server = Some(addr(value, code)?),
            OPT_LEASE => {
                lease_secs = Some(u32::from_be_bytes(
                    value
                        .get(..4)
                        .and_then(|v| v.try_into().ok())
                        .ok_or(DhcpError::BadOption(code))?,
                ))
            }
            _ => {}
        }
    }
    let lease = || -> Result<Lease, DhcpError> {
        let mask = mask.unwrap_or(Ipv4Addr::new(255, 255, 255, 0));
        let bits = u32::from(mask);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            return Err(DhcpError::Mask(mask));
        }
        Ok(Lease {
            address: yiaddr,
            prefix_len: bits.leading_ones() as u8,
            router,
            dns: dns.clone(),
            server: server.ok_or(DhcpError::BadOption(OPT_SERVER))?,
            lease_secs,
        })
    };
    match kind {
        Some(OFFER) => Ok(Reply::Offer(lease()?)),
        Some(ACK) => Ok(Reply::Ack(lease()?)),
        Some(NAK) => Ok(Reply::Nak),
        _ => Err(DhcpError::NotReply("no OFFER, ACK or NAK type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 1, 2, 3];

    fn reply(kind: u8, xid: u32) -> Vec<u8> {
        let mut m = discover(xid, MAC);
        m[0] = BOOTREPLY;
        m[16..20].copy_from_slice(&[10, 0, 2, 15]);
        m.truncate(FIXED + 4);
        m.extend_from_slice(&[OPT_TYPE, 1, kind, OPT_PAD, OPT_MASK, 4, 255, 255, 255, 0]);
        m.extend_from_slice(&[
            OPT_ROUTER, 4, 10, 0, 2, 2, OPT_DNS, 8, 10, 0, 2, 3, 1, 1, 1, 1,
        ]);
        m.extend_from_slice(&[
            OPT_SERVER, 4, 10, 0, 2, 2, OPT_LEASE, 4, 0, 1, 81, 128, OPT_END,
        ]);
        m
    }

    #[test]
    fn offers_and_acks_are_read() {
        let Reply::Offer(lease) = parse(&reply(OFFER, 7), 7, MAC).unwrap() else {
            panic!()
        };
        assert_eq!(lease.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(lease.prefix_len, 24);
        assert_eq!(lease.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(lease.dns.len(), 2);
        assert_eq!(lease.lease_secs, Some(86400));
        let req = request(7, MAC, &lease);
        assert!(
            req.windows(6)
                .any(|w| w == [OPT_REQUESTED, 4, 10, 0, 2, 15])
        );
        assert!(matches!(parse(&reply(ACK, 7), 7, MAC), Ok(Reply::Ack(_))));
        assert_eq!(parse(&reply(NAK, 7), 7, MAC), Ok(Reply::Nak));
    }

    #[test]
    fn strangers_and_garbage_are_refused() {
        assert_eq!(parse(&reply(OFFER, 7), 8, MAC), Err(DhcpError::NotOurs));
        assert!(parse(&discover(7, MAC), 7, MAC).is_err());
        let full = reply(OFFER, 7);
        for cut in 0..full.len() {
            let _ = parse(&full[..cut], 7, MAC);
        }
        for at in FIXED + 4..full.len() {
            let mut bad = full.clone();
            bad[at] = 0xff - bad[at];
            let _ = parse(&bad, 7, MAC);
        }
        let mut odd_mask = full.clone();
        let at = odd_mask
            .windows(3)
            .position(|w| w == [OPT_MASK, 4, 255])
            .unwrap();
        odd_mask[at + 5] = 1;
        assert!(matches!(parse(&odd_mask, 7, MAC), Err(DhcpError::Mask(_))));
    }
}
