//! Frames crafted by hand, and reading the engine's.

use std::net::Ipv4Addr;

use appnet::EthernetAddress;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

fn ethernet(dst: EthernetAddress, src: EthernetAddress, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + payload.len()];
    let repr = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: EthernetProtocol::from(ethertype),
    };
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    repr.emit(&mut eth);
    eth.payload_mut().copy_from_slice(payload);
    frame
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::from(proto),
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut packet = vec![0u8; repr.buffer_len() + payload.len()];
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut packet[..]),
        &ChecksumCapabilities::default(),
    );
    packet[20..].copy_from_slice(payload);
    packet
}

pub fn udp(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    let mut datagram = vec![0u8; 8 + payload.len()];
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut datagram[..]),
        &src.0.into(),
        &dst.0.into(),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    ethernet(dst_mac, src_mac, 0x0800, &ipv4(src.0, dst.0, 17, &datagram))
}

pub fn tcp_syn(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: src.1,
        dst_port: dst.1,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let mut segment = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut segment[..]),
        &src.0.into(),
        &dst.0.into(),
        &ChecksumCapabilities::default(),
    );
    ethernet(dst_mac, src_mac, 0x0800, &ipv4(src.0, dst.0, 6, &segment))
}

pub fn arp_request(src_mac: EthernetAddress, src_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: src_mac,
        source_protocol_addr: src_ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let mut body = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut body[..]));
    ethernet(EthernetAddress::BROADCAST, src_mac, 0x0806, &body)
}

pub fn raw(dst: EthernetAddress, src: EthernetAddress, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(dst, src, ethertype, payload)
}

/// The IPv4 header fields of an Ethernet frame carrying IPv4.
pub struct Seen {
    pub dst_mac: EthernetAddress,
    pub src_mac: EthernetAddress,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
}

/// Reads an IPv4 TCP or UDP frame, checking every checksum.
pub fn read(frame: &[u8]) -> Option<Seen> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if u16::from(eth.ethertype()) != 0x0800 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    assert!(ip.verify_checksum(), "IPv4 checksum");
    let src = ip.src_addr();
    let dst = ip.dst_addr();
    let proto: u8 = ip.next_header().into();
    let (sport, dport, payload) = match proto {
        17 => {
            let udp = UdpPacket::new_checked(ip.payload()).ok()?;
            assert!(
                udp.verify_checksum(&src.into(), &dst.into()),
                "UDP checksum"
            );
            (udp.src_port(), udp.dst_port(), udp.payload().to_vec())
        }
        6 => {
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            assert!(
                tcp.verify_checksum(&src.into(), &dst.into()),
                "TCP checksum"
            );
            (tcp.src_port(), tcp.dst_port(), tcp.payload().to_vec())
        }
        _ => (0, 0, ip.payload().to_vec()),
    };
    Some(Seen {
        dst_mac: eth.dst_addr(),
        src_mac: eth.src_addr(),
        src,
        dst,
        proto,
        sport,
        dport,
        payload,
    })
}

/// An ICMP echo request or reply.
pub fn echo(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    request: bool,
    ident: u16,
) -> Vec<u8> {
    let mut icmp = vec![if request { 8 } else { 0 }, 0, 0, 0];
    icmp.extend_from_slice(&ident.to_be_bytes());
    icmp.extend_from_slice(&[0, 1, b'p', b'i', b'n', b'g']);
    let check = checksum(&icmp);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    ethernet(dst_mac, src_mac, 0x0800, &ipv4(src, dst, 1, &icmp))
}

/// An ICMP error of `kind`/`code` from `src` to `dst` quoting `packet`
/// (an IPv4 packet; its header and 8 bytes are quoted).
pub fn icmp_error(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    kind: u8,
    code: u8,
    packet: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![kind, code, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&packet[..packet.len().min(28)]);
    let check = checksum(&icmp);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    ethernet(dst_mac, src_mac, 0x0800, &ipv4(src, dst, 1, &icmp))
}

/// A UDP datagram cut into two IPv4 fragments at byte `cut` of its
/// payload (a multiple of 8 counted from the UDP header).
pub fn udp_fragments(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
    cut: usize,
    ident: u16,
) -> (Vec<u8>, Vec<u8>) {
    let whole = udp(src_mac, dst_mac, src, dst, payload);
    let datagram = &whole[14 + 20..];
    let piece = |data: &[u8], offset: usize, more: bool| {
        let mut packet = ipv4(src.0, dst.0, 17, data);
        packet[4..6].copy_from_slice(&ident.to_be_bytes());
        let flags_offset = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
        packet[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut packet[..]).fill_checksum();
        ethernet(dst_mac, src_mac, 0x0800, &packet)
    };
    (
        piece(&datagram[..cut], 0, true),
        piece(&datagram[cut..], cut, false),
    )
}

/// The IPv4 packet of an Ethernet frame.
pub fn ip_of(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Reads any IPv4 frame's header fields without checking the transport.
pub fn read_ip(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, Vec<u8>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    assert!(ip.verify_checksum(), "IPv4 checksum");
    Some((
        ip.src_addr(),
        ip.dst_addr(),
        ip.next_header().into(),
        ip.payload().to_vec(),
    ))
}
