//! DHCPv4 messages (RFC 2131/2132), the few a client sends and the
//! replies it reads. A reply is parsed with every length checked: what
//! comes off the network is hostile until proven otherwise.

use std::net::Ipv4Addr;

/// The BOOTP fixed part, up to the magic cookie.
const FIXED_LEN: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
/// Ethernet.
const HTYPE_ETHERNET: u8 = 1;
/// Asks the server to broadcast its reply: we have no address to receive
/// a unicast on.
const FLAG_BROADCAST: u16 = 0x8000;

const OPT_PAD: u8 = 0;
const OPT_SUBNET_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMETER_LIST: u8 = 55;
const OPT_CLIENT_ID: u8 = 61;
const OPT_END: u8 = 255;

/// The DHCP message types a client meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Ack,
    Nak,
}

impl MessageType {
    fn code(self) -> u8 {
        match self {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
        }
    }

    fn from_code(code: u8) -> Option<MessageType> {
        Some(match code {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            _ => return None,
        })
    }
}

/// Why a datagram is not a reply for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    #[error("shorter than a DHCP message")]
    Truncated,
    #[error("not a BOOTP reply")]
    NotAReply,
    #[error("for another transaction or client")]
    NotOurs,
    #[error("no DHCP magic cookie")]
    NoCookie,
    #[error("an option runs past the message")]
    BadOption,
    #[error("no or unknown DHCP message type")]
    NoMessageType,
}

/// A client's request: DISCOVER, or REQUEST for an offered address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientMessage {
    pub kind: MessageType,
    pub xid: u32,
    pub mac: [u8; 6],
    /// REQUEST in SELECTING: the offered address and the offering server.
    pub requested: Option<(Ipv4Addr, Ipv4Addr)>,
    /// REQUEST when renewing: the address we hold (no server id then).
    pub ciaddr: Option<Ipv4Addr>,
}

impl ClientMessage {
    /// The message as a UDP payload.
    pub fn emit(&self) -> Vec<u8> {
        let mut m = vec![0u8; FIXED_LEN];
        m[0] = BOOTREQUEST;
        m[1] = HTYPE_ETHERNET;
        m[2] = 6;
        m[4..8].copy_from_slice(&self.xid.to_be_bytes());
        if self.ciaddr.is_none() {
            m[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
        }
        if let Some(ciaddr) = self.ciaddr {
            m[12..16].copy_from_slice(&ciaddr.octets());
        }
        m[28..34].copy_from_slice(&self.mac);
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, self.kind.code()]);
        m.extend_from_slice(&[OPT_CLIENT_ID, 7, HTYPE_ETHERNET]);
        m.extend_from_slice(&self.mac);
        if let Some((address, server)) = self.requested {
            m.extend_from_slice(&[OPT_REQUESTED_IP, 4]);
            m.extend_from_slice(&address.octets());
            m.extend_from_slice(&[OPT_SERVER_ID, 4]);
            m.extend_from_slice(&server.octets());
        }
        m.extend_from_slice(&[
            OPT_PARAMETER_LIST,
            4,
            OPT_SUBNET_MASK,
            OPT_ROUTER,
            OPT_DNS,
            OPT_LEASE_TIME,
        ]);
        m.push(OPT_END);
        m
    }
}

/// A server's reply to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MessageType,
    /// The address offered or acknowledged.
    pub yiaddr: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: Option<u32>,
}

impl Reply {
    /// Parses `bytes` as a reply to transaction `xid` for `mac`.
    pub fn parse(bytes: &[u8], xid: u32, mac: [u8; 6]) -> Result<Reply, DhcpError> {
        let fixed = bytes.get(..FIXED_LEN).ok_or(DhcpError::Truncated)?;
        if fixed[0] != BOOTREPLY {
            return Err(DhcpError::NotAReply);
        }
        if fixed[4..8] != xid.to_be_bytes() || fixed[28..34] != mac {
            return Err(DhcpError::NotOurs);
        }
        let yiaddr = Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]);
        if bytes.get(FIXED_LEN..FIXED_LEN + 4) != Some(&MAGIC_COOKIE[..]) {
            return Err(DhcpError::NoCookie);
        }
        let mut reply = Reply {
            kind: MessageType::Discover,
            yiaddr,
            server: None,
            subnet_mask: None,
            routers: Vec::new(),
            dns: Vec::new(),
            lease_secs: None,
        };
        let mut kind = None;
        let mut options = &bytes[FIXED_LEN + 4..];
        while let Some((&code, rest)) = options.split_first() {
            match code {
                OPT_PAD => {
                    options = rest;
                    continue;
                }
                OPT_END => break,
                _ => {}
            }
            let (&len, rest) = rest.split_first().ok_or(DhcpError::BadOption)?;
            let value = rest.get(..usize::from(len)).ok_or(DhcpError::BadOption)?;
            options = &rest[usize::from(len)..];
            let addresses = || {
                value
                    .chunks_exact(4)
                    .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            };
            match (code, value.len()) {
                (OPT_MESSAGE_TYPE, 1) => kind = MessageType::from_code(value[0]),
                (OPT_SERVER_ID, 4) => reply.server = addresses().next(),
                (OPT_SUBNET_MASK, 4) => reply.subnet_mask = addresses().next(),
                (OPT_LEASE_TIME, 4) => {
                    reply.lease_secs =
                        Some(u32::from_be_bytes([value[0], value[1], value[2], value[3]]));
                }
                (OPT_ROUTER, _) => reply.routers = addresses().collect(),
                (OPT_DNS, _) => reply.dns = addresses().collect(),
                _ => {}
            }
        }
        reply.kind = kind.ok_or(DhcpError::NoMessageType)?;
        Ok(reply)
    }

    /// The prefix length of the subnet mask (its leading ones); /24 when
    /// the server gave none or a mask that is not a prefix.
    pub fn prefix_len(&self) -> u8 {
        self.subnet_mask
            .map(u32::from)
            .filter(|m| m.leading_ones() + m.trailing_zeros() == 32)
            .map_or(24, |m| m.leading_ones() as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// A reply as QEMU's user networking sends it.
    fn reply(kind: u8, options: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; FIXED_LEN];
        m[0] = BOOTREPLY;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        m[16..20].copy_from_slice(&[10, 7, 0, 15]);
        m[28..34].copy_from_slice(&MAC);
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, kind]);
        m.extend_from_slice(options);
        m.push(OPT_END);
        m
    }

    fn lease_options() -> Vec<u8> {
        let mut o = vec![OPT_SERVER_ID, 4, 10, 7, 0, 2];
        o.extend_from_slice(&[OPT_SUBNET_MASK, 4, 255, 255, 255, 0]);
        o.extend_from_slice(&[OPT_ROUTER, 4, 10, 7, 0, 2]);
        o.extend_from_slice(&[OPT_DNS, 8, 10, 7, 0, 3, 1, 1, 1, 1]);
        o.extend_from_slice(&[OPT_LEASE_TIME, 4, 0, 1, 81, 128]);
        o.push(OPT_PAD);
        o
    }

    #[test]
    fn reads_an_offer_with_its_lease() {
        let r = Reply::parse(&reply(2, &lease_options()), 0x1234_5678, MAC).unwrap();
        assert_eq!(r.kind, MessageType::Offer);
        assert_eq!(r.yiaddr, Ipv4Addr::new(10, 7, 0, 15));
        assert_eq!(r.server, Some(Ipv4Addr::new(10, 7, 0, 2)));
        assert_eq!(r.routers, [Ipv4Addr::new(10, 7, 0, 2)]);
        assert_eq!(
            r.dns,
            [Ipv4Addr::new(10, 7, 0, 3), Ipv4Addr::new(1, 1, 1, 1)]
        );
        assert_eq!(r.lease_secs, Some(86_400));
        assert_eq!(r.prefix_len(), 24);
    }

    #[test]
    fn refuses_what_is_not_our_reply() {
        let good = reply(5, &lease_options());
        assert_eq!(
            Reply::parse(&good, 1, MAC),
            Err(DhcpError::NotOurs),
            "other transaction"
        );
        assert_eq!(
            Reply::parse(&good, 0x1234_5678, [0; 6]),
            Err(DhcpError::NotOurs)
        );
        let mut request = good.clone();
        request[0] = BOOTREQUEST;
        assert_eq!(
            Reply::parse(&request, 0x1234_5678, MAC),
            Err(DhcpError::NotAReply)
        );
        let mut no_cookie = good.clone();
        no_cookie[FIXED_LEN] = 0;
        assert_eq!(
            Reply::parse(&no_cookie, 0x1234_5678, MAC),
            Err(DhcpError::NoCookie)
        );
        assert_eq!(
            Reply::parse(&reply(9, &[]), 0x1234_5678, MAC),
            Err(DhcpError::NoMessageType)
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let good = reply(5, &lease_options());
        for len in 0..good.len() {
            let _ = Reply::parse(&good[..len], 0x1234_5678, MAC);
        }
        assert_eq!(
            Reply::parse(&good[..100], 0x1234_5678, MAC),
            Err(DhcpError::Truncated)
        );
        // An option claiming more bytes than there are.
        let mut long = good[..FIXED_LEN + 4].to_vec();
        long.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, 5, OPT_DNS, 200, 1, 2]);
        assert_eq!(
            Reply::parse(&long, 0x1234_5678, MAC),
            Err(DhcpError::BadOption)
        );
    }

    #[test]
    fn odd_masks_fall_back_to_24() {
        let mut r = Reply::parse(&reply(5, &lease_options()), 0x1234_5678, MAC).unwrap();
        r.subnet_mask = Some(Ipv4Addr::new(255, 255, 240, 0));
        assert_eq!(r.prefix_len(), 20);
        r.subnet_mask = Some(Ipv4Addr::new(255, 0, 255, 0));
        assert_eq!(r.prefix_len(), 24);
        r.subnet_mask = None;
        assert_eq!(r.prefix_len(), 24);
    }

    #[test]
    fn requests_carry_what_the_server_needs() {
        let discover = ClientMessage {
            kind: MessageType::Discover,
            xid: 7,
            mac: MAC,
            requested: None,
            ciaddr: None,
        }
        .emit();
        assert_eq!(discover[0], BOOTREQUEST);
        assert_eq!(&discover[4..8], &7u32.to_be_bytes());
        assert_eq!(&discover[10..12], &FLAG_BROADCAST.to_be_bytes());
        assert_eq!(&discover[28..34], &MAC);
        assert_eq!(&discover[FIXED_LEN..FIXED_LEN + 4], &MAGIC_COOKIE);
        assert_eq!(&discover[FIXED_LEN + 4..FIXED_LEN + 7], &[53, 1, 1]);
        let request = ClientMessage {
            kind: MessageType::Request,
            xid: 7,
            mac: MAC,
            requested: Some((Ipv4Addr::new(10, 7, 0, 15), Ipv4Addr::new(10, 7, 0, 2))),
            ciaddr: None,
        }
        .emit();
        let options = &request[FIXED_LEN + 4..];
        assert!(options.windows(6).any(|w| w == [50, 4, 10, 7, 0, 15]));
        assert!(options.windows(6).any(|w| w == [54, 4, 10, 7, 0, 2]));
        let renew = ClientMessage {
            kind: MessageType::Request,
            xid: 8,
            mac: MAC,
            requested: None,
            ciaddr: Some(Ipv4Addr::new(10, 7, 0, 15)),
        }
        .emit();
        assert_eq!(&renew[12..16], &[10, 7, 0, 15]);
        assert_eq!(&renew[10..12], &[0, 0]);
    }
}
