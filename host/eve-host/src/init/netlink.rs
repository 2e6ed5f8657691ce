//! rtnetlink requests, built by hand: bring a link up, give it an
//! address, add a route. Each is sent with an acknowledgement requested
//! and the kernel's answer (0 or an errno) read back.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, recv, sendto, socket};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;

const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const RT_TABLE_MAIN: u8 = 254;
/// Routes from DHCP.
const RTPROT_DHCP: u8 = 16;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

/// One request: header, fixed body, attributes (each padded to 4 bytes).
struct Message {
    bytes: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16, body: &[u8]) -> Message {
        let mut bytes = vec![0u8; 16];
        bytes[4..6].copy_from_slice(&kind.to_ne_bytes());
        bytes[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        bytes[8..12].copy_from_slice(&1u32.to_ne_bytes());
        bytes.extend_from_slice(body);
        Message { bytes }
    }

    fn attribute(mut self, kind: u16, value: &[u8]) -> Message {
        let len = 4 + value.len();
        self.bytes
            .extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        self.bytes[..4].copy_from_slice(&len.to_ne_bytes());
        self.bytes
    }
}

/// `ip link set dev <index> up`.
pub fn link_up(index: u32) -> Vec<u8> {
    let mut body = vec![0u8; 16];
    body[4..8].copy_from_slice(&index.to_ne_bytes());
    body[8..12].copy_from_slice(&IFF_UP.to_ne_bytes());
    body[12..16].copy_from_slice(&IFF_UP.to_ne_bytes());
    Message::new(RTM_NEWLINK, 0, &body).finish()
}

/// `ip addr replace <address>/<prefix> dev <index>`.
pub fn address_add(index: u32, address: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut body = vec![AF_INET, prefix, 0, RT_SCOPE_UNIVERSE];
    body.extend_from_slice(&index.to_ne_bytes());
    Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &body)
        .attribute(IFA_LOCAL, &address.octets())
        .attribute(IFA_ADDRESS, &address.octets())
        .finish()
}

/// `ip route replace <dst>/<prefix> [via <gateway>] dev <index>`: a link
/// route when there is no gateway.
pub fn route_add(index: u32, dst: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr>) -> Vec<u8> {
    let scope = if gateway.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    let body = [
        AF_INET,
        prefix,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_DHCP,
        scope,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ];
    let mut message = Message::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &body);
    if prefix > 0 {
        message = message.attribute(RTA_DST, &dst.octets());
    }
    if let Some(gateway) = gateway {
        message = message.attribute(RTA_GATEWAY, &gateway.octets());
    }
    message.attribute(RTA_OIF, &index.to_ne_bytes()).finish()
}

/// The kernel's answer to a request: `Ok` for an ACK, the errno otherwise.
pub fn parse_ack(reply: &[u8]) -> io::Result<()> {
    let field = |at: usize| -> io::Result<[u8; 4]> {
        reply
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short netlink reply"))
    };
    let kind = u16::from_ne_bytes([field(4)?[0], field(4)?[1]]);
    if kind != NLMSG_ERROR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected netlink reply type {kind}"),
        ));
    }
    match i32::from_ne_bytes(field(16)?) {
        0 => Ok(()),
        negative => Err(io::Error::from_raw_os_error(-negative)),
    }
}

/// A route netlink socket.
pub struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // NETLINK_ROUTE is protocol 0.
        let fd = socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
        Ok(Netlink { fd })
    }

    /// Sends one request and waits for its acknowledgement.
    pub fn request(&self, message: &[u8]) -> io::Result<()> {
        sendto(
            &self.fd,
            message,
            SendFlags::empty(),
            &rustix::net::netlink::SocketAddrNetlink::new(0, 0),
        )?;
        let mut buf = [0u8; 4096];
        let (_, len) = recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
        parse_ack(&buf[..len.min(buf.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(m: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(m[at..at + 4].try_into().unwrap())
    }

    fn u16_at(m: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes(m[at..at + 2].try_into().unwrap())
    }

    #[test]
    fn link_up_sets_and_masks_iff_up() {
        let m = link_up(3);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32_at(&m, 16 + 4), 3);
        assert_eq!(u32_at(&m, 16 + 8), IFF_UP);
        assert_eq!(u32_at(&m, 16 + 12), IFF_UP);
    }

    #[test]
    fn an_address_carries_local_and_address_attributes() {
        let m = address_add(2, Ipv4Addr::new(10, 7, 0, 15), 24);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, RT_SCOPE_UNIVERSE]);
        assert_eq!(u32_at(&m, 20), 2);
        // Two 8-byte attributes after the 8-byte ifaddrmsg.
        assert_eq!(m.len(), 16 + 8 + 16);
        assert_eq!(u16_at(&m, 26), IFA_LOCAL);
        assert_eq!(&m[28..32], &[10, 7, 0, 15]);
        assert_eq!(u16_at(&m, 34), IFA_ADDRESS);
    }

    #[test]
    fn routes_by_gateway_or_on_link() {
        let default = route_add(
            2,
            Ipv4Addr::UNSPECIFIED,
            0,
            Some(Ipv4Addr::new(10, 7, 0, 2)),
        );
        assert_eq!(default[16 + 1], 0, "prefix 0");
        assert_eq!(default[16 + 6], RT_SCOPE_UNIVERSE);
        // Gateway then OIF, no destination.
        assert_eq!(u16_at(&default, 30), RTA_GATEWAY);
        assert_eq!(&default[32..36], &[10, 7, 0, 2]);
        assert_eq!(u16_at(&default, 38), RTA_OIF);
        assert_eq!(default.len(), 44);
        let broadcast = route_add(2, Ipv4Addr::BROADCAST, 32, None);
        assert_eq!(broadcast[16 + 6], RT_SCOPE_LINK);
        assert_eq!(u16_at(&broadcast, 30), RTA_DST);
        assert_eq!(&broadcast[32..36], &[255; 4]);
    }

    #[test]
    fn acknowledgements_and_errors() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert!(parse_ack(&ack).is_ok());
        ack[16..20].copy_from_slice(&(-17i32).to_ne_bytes());
        assert_eq!(parse_ack(&ack).unwrap_err().raw_os_error(), Some(17));
        assert!(parse_ack(&ack[..10]).is_err());
        ack[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        assert!(parse_ack(&ack).is_err());
    }
}
