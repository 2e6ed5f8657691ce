use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber, UdpPacket,
};
use wirebytes::testing::XorShift;

use super::*;

const A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const SRC: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn ip_packet(proto: u8, payload: &[u8]) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: SRC,
        dst_addr: DST,
        next_header: IpProtocol::from(proto),
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut packet = vec![0u8; 20 + payload.len()];
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut packet[..]),
        &ChecksumCapabilities::default(),
    );
    packet[20..].copy_from_slice(payload);
    packet
}

fn udp_frame(payload: &[u8]) -> Vec<u8> {
    build::ipv4_udp_frame(B, A, (SRC, 40000), (DST, 53), payload)
}

fn tcp_frame() -> Vec<u8> {
    let repr = TcpRepr {
        src_port: 40000,
        dst_port: 80,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(7),
        ack_number: None,
        window_len: 1000,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: b"hello",
    };
    let mut segment = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut segment[..]),
        &SRC.into(),
        &DST.into(),
        &ChecksumCapabilities::default(),
    );
    build::with_ethernet(B, A, ETHERTYPE_IPV4, &ip_packet(PROTO_TCP, &segment))
}

fn checksums_hold(frame: &[u8]) -> bool {
    let eth = ethernet(frame).unwrap();
    let ip = Ipv4Packet::new_checked(&frame[eth.l3..]).unwrap();
    if !ip.verify_checksum() {
        return false;
    }
    let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
    match u8::from(ip.next_header()) {
        PROTO_TCP => TcpPacket::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(&src, &dst),
        PROTO_UDP => UdpPacket::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(&src, &dst),
        _ => build::internet_checksum(ip.payload()) == 0,
    }
}

#[test]
fn reads_ethernet_with_and_without_a_vlan_tag() {
    let frame = udp_frame(b"x");
    let eth = ethernet(&frame).unwrap();
    assert_eq!(
        (eth.dst, eth.src, eth.vlan, eth.ethertype, eth.l3),
        (B, A, None, ETHERTYPE_IPV4, 14)
    );
    let mut tagged = frame[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x20, 0x05]);
    tagged.extend_from_slice(&frame[12..]);
    let eth = ethernet(&tagged).unwrap();
    assert_eq!(
        (eth.vlan, eth.ethertype, eth.l3),
        (Some(5), ETHERTYPE_IPV4, 18)
    );
    assert_eq!(ethernet(&tagged[..15]), Err(Malformed::Ethernet));
    assert_eq!(ethernet(&frame[..13]), Err(Malformed::Ethernet));
}

#[test]
fn reads_udp_and_tcp_ports_and_flags() {
    let frame = udp_frame(b"query");
    let ip = ipv4(&frame, 14).unwrap();
    assert_eq!(
        (ip.src, ip.dst, ip.proto, ip.total_len),
        (SRC, DST, PROTO_UDP, 33)
    );
    assert_eq!(
        transport(&frame, &ip),
        Ok(L4::Udp {
            sport: 40000,
            dport: 53
        })
    );
    let frame = tcp_frame();
    let ip = ipv4(&frame, 14).unwrap();
    assert_eq!(
        transport(&frame, &ip),
        Ok(L4::Tcp {
            sport: 40000,
            dport: 80,
            flags: TCP_SYN
        })
    );
}

#[test]
fn refuses_bad_headers() {
    let mut frame = udp_frame(b"query");
    frame[14 + 10] ^= 1;
    assert_eq!(ipv4(&frame, 14), Err(Malformed::Ipv4Checksum));
    let mut frame = udp_frame(b"query");
    frame[14] = 0x65;
    assert_eq!(ipv4(&frame, 14), Err(Malformed::Ipv4Header));
    // Total length beyond the frame.
    let frame = udp_frame(b"query");
    assert_eq!(
        ipv4(&frame[..frame.len() - 1], 14),
        Err(Malformed::Ipv4Header)
    );
    // A UDP length beyond its packet, with a valid IP header.
    let mut frame = udp_frame(b"query");
    frame[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&500u16.to_be_bytes());
    let ip = ipv4(&frame, 14).unwrap();
    assert_eq!(transport(&frame, &ip), Err(Malformed::Transport));
    // A TCP data offset beyond its packet.
    let mut frame = tcp_frame();
    frame[14 + 20 + 12] = 0xf0;
    let ip = ipv4(&frame, 14).unwrap();
    assert_eq!(transport(&frame, &ip), Err(Malformed::Transport));
}

#[test]
fn first_and_later_fragments() {
    let mut payload = vec![0u8; 16];
    payload[..4].copy_from_slice(&[0x9c, 0x40, 0, 53]);
    let mut packet = ip_packet(PROTO_UDP, &payload);
    // More fragments, offset 0: the ports are there.
    packet[6] = 0x20;
    Ipv4Packet::new_unchecked(&mut packet[..]).fill_checksum();
    let frame = build::with_ethernet(B, A, ETHERTYPE_IPV4, &packet);
    let ip = ipv4(&frame, 14).unwrap();
    assert!(ip.is_fragment() && !ip.is_later_fragment());
    assert_eq!(
        transport(&frame, &ip),
        Ok(L4::Udp {
            sport: 40000,
            dport: 53
        })
    );
    // Offset 8: no transport header.
    packet[6] = 0x00;
    packet[7] = 0x01;
    Ipv4Packet::new_unchecked(&mut packet[..]).fill_checksum();
    let frame = build::with_ethernet(B, A, ETHERTYPE_IPV4, &packet);
    let ip = ipv4(&frame, 14).unwrap();
    assert_eq!((ip.frag_offset, ip.is_later_fragment()), (8, true));
    assert_eq!(transport(&frame, &ip), Ok(L4::LaterFragment));
    // A first fragment too short for a TCP header.
    let mut packet = ip_packet(PROTO_TCP, &[0u8; 8]);
    packet[6] = 0x20;
    Ipv4Packet::new_unchecked(&mut packet[..]).fill_checksum();
    let frame = build::with_ethernet(B, A, ETHERTYPE_IPV4, &packet);
    let ip = ipv4(&frame, 14).unwrap();
    assert_eq!(transport(&frame, &ip), Err(Malformed::Transport));
}

#[test]
fn nat_rewrites_keep_checksums_valid() {
    for frame in [udp_frame(b"some payload"), tcp_frame()] {
        let mut out = frame.clone();
        let ip = ipv4(&frame, 14).unwrap();
        let l4 = transport(&frame, &ip).unwrap();
        let outside = Ipv4Addr::new(198, 51, 100, 9);
        rewrite_address(&mut out, &ip, &l4, Side::Src, outside, Some(61000)).unwrap();
        assert!(checksums_hold(&out));
        let ip2 = ipv4(&out, 14).unwrap();
        assert_eq!(ip2.src, outside);
        assert_eq!(transport(&out, &ip2).unwrap().ports().unwrap().0, 61000);
        decrement_ttl(&mut out, &ip2).unwrap();
        assert!(checksums_hold(&out));
        assert_eq!(ipv4(&out, 14).unwrap().ttl, 63);
        rewrite_address(&mut out, &ip2, &l4, Side::Dst, SRC, Some(7)).unwrap();
        assert!(checksums_hold(&out));
    }
}

#[test]
fn a_bad_transport_checksum_stays_bad() {
    let mut frame = udp_frame(b"payload");
    frame[14 + 20 + 8] ^= 0xff;
    assert!(!checksums_hold(&frame));
    let ip = ipv4(&frame, 14).unwrap();
    let l4 = transport(&frame, &ip).unwrap();
    rewrite_address(
        &mut frame,
        &ip,
        &l4,
        Side::Src,
        Ipv4Addr::new(1, 2, 3, 4),
        Some(1),
    )
    .unwrap();
    assert!(!checksums_hold(&frame));
}

#[test]
fn icmp_errors_quote_their_packet_and_translate_back() {
    // A port unreachable about the UDP packet SRC:40000 -> DST:53.
    let quoted_frame = udp_frame(b"question");
    let quoted = &quoted_frame[14..14 + 28];
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quoted);
    let check = build::internet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    let mut packet = ip_packet(PROTO_ICMP, &icmp);
    // From DST back to SRC.
    packet[12..16].copy_from_slice(&DST.octets());
    packet[16..20].copy_from_slice(&SRC.octets());
    Ipv4Packet::new_unchecked(&mut packet[..]).fill_checksum();
    let frame = build::with_ethernet(A, B, ETHERTYPE_IPV4, &packet);
    let ip = ipv4(&frame, 14).unwrap();
    let l4 = transport(&frame, &ip).unwrap();
    let L4::IcmpError {
        kind: 3,
        code: 3,
        inner,
    } = l4
    else {
        panic!("{l4:?}");
    };
    assert_eq!(
        (inner.src, inner.dst, inner.proto, inner.sport, inner.dport),
        (SRC, DST, PROTO_UDP, 40000, 53)
    );
    let mut out = frame.clone();
    let app = Ipv4Addr::new(172, 16, 0, 5);
    rewrite_icmp_error(&mut out, &ip, &inner, Side::Src, app, 1234).unwrap();
    rewrite_address(&mut out, &ip, &l4, Side::Dst, app, None).unwrap();
    assert!(checksums_hold(&out));
    let ip = ipv4(&out, 14).unwrap();
    let L4::IcmpError { inner, .. } = transport(&out, &ip).unwrap() else {
        panic!()
    };
    assert_eq!((inner.src, inner.sport, ip.dst), (app, 1234, app));
    // A corrupted ICMP checksum is not an error we read.
    let mut bad = frame.clone();
    bad[14 + 20 + 2] ^= 1;
    let ip = ipv4(&bad, 14).unwrap();
    assert_eq!(transport(&bad, &ip), Err(Malformed::Transport));
}

#[test]
fn builders_make_frames_that_read_back() {
    let reply = build::arp_reply(A, SRC, B, DST);
    let eth = ethernet(&reply).unwrap();
    assert_eq!(eth.ethertype, ETHERTYPE_ARP);
    assert!(arp(&reply, &eth).is_ok());
    let frame = udp_frame(b"x");
    assert!(checksums_hold(&frame));
    let ip = ipv4(&frame, 14).unwrap();
    let too_big = build::icmp_frag_needed(&frame, &ip, DST, A, B, 1400).unwrap();
    assert!(checksums_hold(&too_big));
    let ip = ipv4(&too_big, 14).unwrap();
    assert!(matches!(
        transport(&too_big, &ip),
        Ok(L4::IcmpError {
            kind: 3,
            code: 4,
            ..
        })
    ));
}

#[test]
fn hostile_bytes_never_panic() {
    let mut rng = XorShift::new(0x5eed);
    let seeds = [
        udp_frame(b"payload bytes"),
        tcp_frame(),
        build::arp_request(A, SRC, DST),
    ];
    for round in 0..20_000 {
        let mut frame = if round % 3 == 0 {
            let mut random = vec![0u8; rng.below(200)];
            rng.fill(&mut random);
            random
        } else {
            seeds[round % seeds.len()].clone()
        };
        for _ in 0..rng.below(4) {
            if !frame.is_empty() {
                let at = rng.below(frame.len());
                frame[at] ^= 1 << rng.below(8);
            }
        }
        frame.truncate(rng.below(frame.len() + 1));
        if let Ok(eth) = ethernet(&frame) {
            let _ = arp(&frame, &eth);
            if let Ok(ip) = ipv4(&frame, eth.l3)
                && let Ok(l4) = transport(&frame, &ip)
            {
                let mut copy = frame.clone();
                let _ = rewrite_address(&mut copy, &ip, &l4, Side::Src, SRC, Some(1));
                if let L4::IcmpError { inner, .. } = l4 {
                    let _ = rewrite_icmp_error(&mut copy, &ip, &inner, Side::Dst, DST, 2);
                }
            }
        }
    }
}
