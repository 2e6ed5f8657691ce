//! Reading frames: Ethernet (with at most one 802.1Q tag), ARP, IPv4 and
//! the transport fields the engine decides on, through smoltcp's checked
//! views. Every length is checked before it is used; a frame that does not
//! hold what its headers claim is [`Malformed`], never a panic.

mod build;
mod rewrite;

pub(crate) use build::{
    arp_reply, arp_request, icmp_echo_reply, icmp_frag_needed, ipv4_udp_frame, with_ethernet,
};
pub(crate) use rewrite::{Side, decrement_ttl, rewrite_address, rewrite_icmp_error, set_macs};

use core::net::Ipv4Addr;

use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, Icmpv4Packet, Ipv4Packet, TcpPacket,
    UdpPacket,
};
use wirebytes::{be_u16_at, u8_at};

pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(crate) const ETHERTYPE_ARP: u16 = 0x0806;
pub(crate) const ETHERTYPE_VLAN: u16 = 0x8100;
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;

pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;

pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;

/// Why a frame was refused while reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than an Ethernet header (and its VLAN tag).
    Ethernet,
    /// An ARP packet that is not Ethernet/IPv4 or is cut short.
    Arp,
    /// An IPv4 header that is short, not version 4, or longer than the frame.
    Ipv4Header,
    /// The IPv4 header checksum does not match.
    Ipv4Checksum,
    /// A TCP, UDP or ICMP header that does not fit its packet.
    Transport,
}

/// The Ethernet header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Eth {
    pub dst: EthernetAddress,
    pub src: EthernetAddress,
    /// The VLAN ID of an 802.1Q tag, if the frame carries one.
    pub vlan: Option<u16>,
    /// The EtherType after any tag.
    pub ethertype: u16,
    /// Where the payload starts.
    pub l3: usize,
}

pub(crate) fn ethernet(frame: &[u8]) -> Result<Eth, Malformed> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Malformed::Ethernet)?;
    let outer = u16::from(eth.ethertype());
    let (vlan, ethertype, l3) = if outer == ETHERTYPE_VLAN {
        let tci = be_u16_at(frame, 14).map_err(|_| Malformed::Ethernet)?;
        let inner = be_u16_at(frame, 16).map_err(|_| Malformed::Ethernet)?;
        (Some(tci & 0x0fff), inner, 18)
    } else {
        (None, outer, 14)
    };
    Ok(Eth {
        dst: eth.dst_addr(),
        src: eth.src_addr(),
        vlan,
        ethertype,
        l3,
    })
}

pub(crate) fn arp(frame: &[u8], eth: &Eth) -> Result<ArpRepr, Malformed> {
    let payload = frame.get(eth.l3..).ok_or(Malformed::Arp)?;
    let packet = ArpPacket::new_checked(payload).map_err(|_| Malformed::Arp)?;
    ArpRepr::parse(&packet).map_err(|_| Malformed::Arp)
}

/// The IPv4 header fields of a packet whose header checksum was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ip {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Offset of this fragment in the datagram, in bytes.
    pub frag_offset: u16,
    /// Where the IPv4 header starts in the frame.
    pub l3: usize,
    pub header_len: usize,
    pub total_len: usize,
}

impl Ip {
    /// Where the transport header (or fragment data) starts in the frame.
    pub fn l4(&self) -> usize {
        self.l3 + self.header_len
    }

    /// The end of the packet in the frame (Ethernet padding excluded).
    pub fn end(&self) -> usize {
        self.l3 + self.total_len
    }

    pub fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }

    /// A fragment other than the first: it carries no transport header.
    pub fn is_later_fragment(&self) -> bool {
        self.frag_offset != 0
    }
}

pub(crate) fn ipv4(frame: &[u8], l3: usize) -> Result<Ip, Malformed> {
    let bytes = frame.get(l3..).ok_or(Malformed::Ipv4Header)?;
    let packet = Ipv4Packet::new_checked(bytes).map_err(|_| Malformed::Ipv4Header)?;
    if packet.version() != 4 {
        return Err(Malformed::Ipv4Header);
    }
    if !packet.verify_checksum() {
        return Err(Malformed::Ipv4Checksum);
    }
    Ok(Ip {
        src: packet.src_addr(),
        dst: packet.dst_addr(),
        proto: packet.next_header().into(),
        ttl: packet.hop_limit(),
        ident: packet.ident(),
        dont_frag: packet.dont_frag(),
        more_frags: packet.more_frags(),
        frag_offset: packet.frag_offset(),
        l3,
        header_len: usize::from(packet.header_len()),
        total_len: usize::from(packet.total_len()),
    })
}

/// The transport fields of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    EchoRequest {
        ident: u16,
    },
    EchoReply {
        ident: u16,
    },
    /// Destination unreachable or time exceeded, quoting a packet.
    IcmpError {
        kind: u8,
        code: u8,
        inner: Inner,
    },
    /// Any other ICMP message.
    IcmpOther,
    /// A protocol other than TCP, UDP and ICMP.
    Other,
    /// A fragment after the first: the transport header is elsewhere.
    LaterFragment,
}

/// The start of the packet an ICMP error quotes: enough to find its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inner {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// Source and destination port (TCP, UDP), or the echo identifier twice.
    pub sport: u16,
    pub dport: u16,
    /// Where the quoted IPv4 header starts in the frame.
    pub l3: usize,
    pub header_len: usize,
}

impl L4 {
    /// The ports a flow is keyed on: (source, destination), the echo
    /// identifier on both sides for ICMP echo.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match *self {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => Some((sport, dport)),
            L4::EchoRequest { ident } | L4::EchoReply { ident } => Some((ident, ident)),
            _ => None,
        }
    }
}

pub(crate) fn transport(frame: &[u8], ip: &Ip) -> Result<L4, Malformed> {
    if ip.is_later_fragment() {
        return Ok(L4::LaterFragment);
    }
    let payload = frame.get(ip.l4()..ip.end()).ok_or(Malformed::Transport)?;
    let err = |_| Malformed::Transport;
    match ip.proto {
        PROTO_TCP if ip.is_fragment() => {
            if payload.len() < 20 {
                return Err(Malformed::Transport);
            }
            Ok(L4::Tcp {
                sport: be_u16_at(payload, 0).map_err(err)?,
                dport: be_u16_at(payload, 2).map_err(err)?,
                flags: u8_at(payload, 13).map_err(err)?,
            })
        }
        PROTO_TCP => {
            let tcp = TcpPacket::new_checked(payload).map_err(|_| Malformed::Transport)?;
            let flags = u8_at(payload, 13).map_err(err)?;
            Ok(L4::Tcp {
                sport: tcp.src_port(),
                dport: tcp.dst_port(),
                flags,
            })
        }
        PROTO_UDP if ip.is_fragment() => {
            if payload.len() < 8 {
                return Err(Malformed::Transport);
            }
            Ok(L4::Udp {
                sport: be_u16_at(payload, 0).map_err(err)?,
                dport: be_u16_at(payload, 2).map_err(err)?,
            })
        }
        PROTO_UDP => {
            let udp = UdpPacket::new_checked(payload).map_err(|_| Malformed::Transport)?;
            Ok(L4::Udp {
                sport: udp.src_port(),
                dport: udp.dst_port(),
            })
        }
        PROTO_ICMP => icmp(frame, ip, payload),
        _ => Ok(L4::Other),
    }
}

fn icmp(frame: &[u8], ip: &Ip, payload: &[u8]) -> Result<L4, Malformed> {
    let packet = Icmpv4Packet::new_checked(payload).map_err(|_| Malformed::Transport)?;
    let kind = u8_at(payload, 0).map_err(|_| Malformed::Transport)?;
    let code = u8_at(payload, 1).map_err(|_| Malformed::Transport)?;
    let ident = be_u16_at(payload, 4).map_err(|_| Malformed::Transport)?;
    Ok(match kind {
        ICMP_ECHO_REQUEST => L4::EchoRequest { ident },
        ICMP_ECHO_REPLY => L4::EchoReply { ident },
        ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED if !ip.is_fragment() => {
            if !packet.verify_checksum() {
                return Err(Malformed::Transport);
            }
            match inner(frame, ip.l4() + 8, ip.end()) {
                Some(inner) => L4::IcmpError { kind, code, inner },
                None => L4::IcmpOther,
            }
        }
        _ => L4::IcmpOther,
    })
}

/// The quoted packet of an ICMP error, from `at` to `end` in the frame:
/// an IPv4 header and the first 8 bytes after it.
fn inner(frame: &[u8], at: usize, end: usize) -> Option<Inner> {
    let quoted = frame.get(at..end)?;
    let first = u8_at(quoted, 0).ok()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 || quoted.len() < header_len + 8 {
        return None;
    }
    let addr = |off: usize| -> Option<Ipv4Addr> {
        let octets: [u8; 4] = quoted.get(off..off + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(octets))
    };
    let proto = u8_at(quoted, 9).ok()?;
    let (sport, dport) = match proto {
        PROTO_TCP | PROTO_UDP => (
            be_u16_at(quoted, header_len).ok()?,
            be_u16_at(quoted, header_len + 2).ok()?,
        ),
        PROTO_ICMP => {
            let ident = be_u16_at(quoted, header_len + 4).ok()?;
            (ident, ident)
        }
        _ => return None,
    };
    Some(Inner {
        src: addr(12)?,
        dst: addr(16)?,
        proto,
        sport,
        dport,
        l3: at,
        header_len,
    })
}

#[cfg(test)]
mod tests;
