//! Building the frames the engine sends on its own: ARP, UDP answers from
//! its DHCP and DNS servers, ICMP echo replies and "fragmentation needed".

use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket,
    UdpRepr,
};

use super::{ETHERTYPE_ARP, ETHERTYPE_IPV4, Ip, PROTO_ICMP};

const TTL: u8 = 64;

/// The Internet checksum (RFC 1071) of `data`.
pub(crate) fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame around `payload`.
pub(crate) fn with_ethernet(
    dst: EthernetAddress,
    src: EthernetAddress,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(dst.as_bytes());
    frame.extend_from_slice(src.as_bytes());
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn arp_frame(dst: EthernetAddress, src: EthernetAddress, repr: &ArpRepr) -> Vec<u8> {
    let mut body = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut body[..]));
    with_ethernet(dst, src, ETHERTYPE_ARP, &body)
}

/// "`our_ip` is at `our_mac`", to the asker.
pub(crate) fn arp_reply(
    our_mac: EthernetAddress,
    our_ip: Ipv4Addr,
    to_mac: EthernetAddress,
    to_ip: Ipv4Addr,
) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: our_mac,
        source_protocol_addr: our_ip,
        target_hardware_addr: to_mac,
        target_protocol_addr: to_ip,
    };
    arp_frame(to_mac, our_mac, &repr)
}

/// "Who has `target`?", broadcast.
pub(crate) fn arp_request(our_mac: EthernetAddress, our_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: our_mac,
        source_protocol_addr: our_ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    arp_frame(EthernetAddress::BROADCAST, our_mac, &repr)
}

fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize) -> Ipv4Repr {
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::from(proto),
        payload_len,
        hop_limit: TTL,
    }
}

/// A UDP datagram in IPv4 in Ethernet, checksums filled.
pub(crate) fn ipv4_udp_frame(
    dst_mac: EthernetAddress,
    src_mac: EthernetAddress,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    let udp_len = udp.header_len() + payload.len();
    let ip = ipv4_header(src.0, dst.0, 17, udp_len);
    let mut body = vec![0u8; ip.buffer_len() + udp_len];
    let caps = ChecksumCapabilities::default();
    let (head, tail) = body.split_at_mut(ip.buffer_len());
    ip.emit(&mut Ipv4Packet::new_unchecked(head), &caps);
    udp.emit(
        &mut UdpPacket::new_unchecked(tail),
        &src.0.into(),
        &dst.0.into(),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &caps,
    );
    with_ethernet(dst_mac, src_mac, ETHERTYPE_IPV4, &body)
}

fn icmp_frame(
    dst_mac: EthernetAddress,
    src_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    mut icmp: Vec<u8>,
) -> Vec<u8> {
    let check = internet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    let ip = ipv4_header(src, dst, PROTO_ICMP, icmp.len());
    let mut body = vec![0u8; ip.buffer_len()];
    ip.emit(
        &mut Ipv4Packet::new_unchecked(&mut body[..]),
        &ChecksumCapabilities::default(),
    );
    body.extend_from_slice(&icmp);
    with_ethernet(dst_mac, src_mac, ETHERTYPE_IPV4, &body)
}

/// The echo reply to the echo request `ip` in `frame`, from `our_ip`.
pub(crate) fn icmp_echo_reply(
    frame: &[u8],
    ip: &Ip,
    our_mac: EthernetAddress,
    to_mac: EthernetAddress,
) -> Option<Vec<u8>> {
    let request = frame.get(ip.l4()..ip.end())?;
    if request.len() < 8 || internet_checksum(request) != 0 {
        return None;
    }
    let mut icmp = request.to_vec();
    icmp[0] = 0;
    icmp[2..4].copy_from_slice(&[0, 0]);
    Some(icmp_frame(to_mac, our_mac, ip.dst, ip.src, icmp))
}

/// "Fragmentation needed" (type 3, code 4) for the packet `ip`, telling its
/// sender the `mtu` of the next hop; quotes its header and 8 more bytes.
pub(crate) fn icmp_frag_needed(
    frame: &[u8],
    ip: &Ip,
    from: Ipv4Addr,
    our_mac: EthernetAddress,
    to_mac: EthernetAddress,
    mtu: u16,
) -> Option<Vec<u8>> {
    let quoted_end = (ip.l4() + 8).min(ip.end());
    let quoted = frame.get(ip.l3..quoted_end)?;
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(quoted);
    Some(icmp_frame(to_mac, our_mac, from, ip.src, icmp))
}
