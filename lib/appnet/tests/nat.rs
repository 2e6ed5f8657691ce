//! NAT details with crafted frames: ARP towards the next hop, pings, ICMP
//! errors about NATed packets, fragments, the outside port table.

mod support;

use std::net::Ipv4Addr;

use appnet::{Engine, PortId};
use support::frames::{self, read, read_ip};
use support::*;

const APP: PortId = PortId(1);

fn allow_all() -> Vec<eve_proto::config::Ace> {
    vec![ace(1, &[("ip", "0.0.0.0/0")], None)]
}

/// An engine with app 1 on the local instance; the uplink has learned
/// the outside host's MAC.
fn setup() -> (Engine, Ipv4Addr) {
    let mut engine = local_engine();
    let ip = engine
        .attach(START, port_config(1, allow_all()))
        .unwrap()
        .unwrap();
    let arp = frames::arp_request(OUTSIDE_MAC, OUTSIDE_IP, UPLINK_IP);
    engine.receive(START, UPLINK, &arp);
    let reply = engine.pop_transmit().unwrap();
    assert_eq!(reply.port, UPLINK);
    assert!(engine.pop_transmit().is_none());
    (engine, ip)
}

fn drain(engine: &mut Engine) -> Vec<(PortId, Vec<u8>)> {
    std::iter::from_fn(|| engine.pop_transmit().map(|t| (t.port, t.frame))).collect()
}

#[test]
fn frames_wait_for_the_next_hops_mac() {
    let mut engine = local_engine();
    let ip = engine
        .attach(START, port_config(1, allow_all()))
        .unwrap()
        .unwrap();
    let out = frames::udp(
        mac(1),
        BRIDGE_MAC,
        (ip, 5000),
        (Ipv4Addr::new(203, 0, 113, 9), 7),
        b"x",
    );
    engine.receive(START, APP, &out);
    let sent = drain(&mut engine);
    // Only the ARP request for the router went out.
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0].1[12..14], &[0x08, 0x06]);
    let answer = {
        use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr};
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: OUTSIDE_MAC,
            source_protocol_addr: OUTSIDE_IP,
            target_hardware_addr: UPLINK_MAC,
            target_protocol_addr: UPLINK_IP,
        };
        let mut body = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut body[..]));
        frames::raw(UPLINK_MAC, OUTSIDE_MAC, 0x0806, &body)
    };
    engine.receive(START, UPLINK, &answer);
    let sent = drain(&mut engine);
    assert_eq!(sent.len(), 1);
    let seen = read(&sent[0].1).unwrap();
    assert_eq!(
        (seen.dst_mac, seen.src_mac, seen.src),
        (OUTSIDE_MAC, UPLINK_MAC, UPLINK_IP)
    );
}

#[test]
fn pings_and_their_replies_cross_nat() {
    let (mut engine, ip) = setup();
    let far = Ipv4Addr::new(203, 0, 113, 9);
    engine.receive(
        START,
        APP,
        &frames::echo(mac(1), BRIDGE_MAC, ip, far, true, 77),
    );
    let sent = drain(&mut engine);
    assert_eq!(sent.len(), 1);
    let (src, dst, proto, icmp) = read_ip(&sent[0].1).unwrap();
    assert_eq!((src, dst, proto), (UPLINK_IP, far, 1));
    assert_eq!(frames::checksum(&icmp), 0);
    let outside_ident = u16::from_be_bytes([icmp[4], icmp[5]]);
    let reply = frames::echo(
        OUTSIDE_MAC,
        UPLINK_MAC,
        far,
        UPLINK_IP,
        false,
        outside_ident,
    );
    engine.receive(START, UPLINK, &reply);
    let sent = drain(&mut engine);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, APP);
    let (src, dst, _, icmp) = read_ip(&sent[0].1).unwrap();
    assert_eq!((src, dst), (far, ip));
    assert_eq!(u16::from_be_bytes([icmp[4], icmp[5]]), 77);
    assert_eq!(frames::checksum(&icmp), 0);
    // A reply nobody asked for goes nowhere.
    let stray = frames::echo(
        OUTSIDE_MAC,
        UPLINK_MAC,
        far,
        UPLINK_IP,
        false,
        outside_ident ^ 1,
    );
    engine.receive(START, UPLINK, &stray);
    assert!(drain(&mut engine).is_empty());
}

#[test]
fn a_ping_of_the_uplinks_address_is_answered_round_the_hairpin() {
    let (mut engine, ip) = setup();
    engine.receive(
        START,
        APP,
        &frames::echo(mac(1), BRIDGE_MAC, ip, UPLINK_IP, true, 77),
    );
    let sent = drain(&mut engine);
    assert_eq!(sent.len(), 1, "the answer only, nothing on the uplink");
    assert_eq!(sent[0].0, APP);
    let (src, dst, proto, icmp) = read_ip(&sent[0].1).unwrap();
    assert_eq!((src, dst, proto), (UPLINK_IP, ip, 1));
    assert_eq!(icmp[0], 0, "an echo reply");
    assert_eq!(u16::from_be_bytes([icmp[4], icmp[5]]), 77);
    assert_eq!(frames::checksum(&icmp), 0);
}

#[test]
fn icmp_errors_about_natted_packets_reach_the_app_translated() {
    let (mut engine, ip) = setup();
    let far = Ipv4Addr::new(203, 0, 113, 9);
    engine.receive(
        START,
        APP,
        &frames::udp(mac(1), BRIDGE_MAC, (ip, 5000), (far, 9999), b"hi"),
    );
    let sent = drain(&mut engine);
    let outside = read(&sent[0].1).unwrap();
    assert_eq!((outside.src, outside.dst), (UPLINK_IP, far));
    let unreachable = frames::icmp_error(
        OUTSIDE_MAC,
        UPLINK_MAC,
        far,
        UPLINK_IP,
        3,
        3,
        &frames::ip_of(&sent[0].1),
    );
    engine.receive(START, UPLINK, &unreachable);
    let sent = drain(&mut engine);
    assert_eq!(sent.len(), 1, "the error reaches the app");
    let (src, dst, proto, icmp) = read_ip(&sent[0].1).unwrap();
    assert_eq!((src, dst, proto, icmp[0], icmp[1]), (far, ip, 1, 3, 3));
    assert_eq!(frames::checksum(&icmp), 0);
    // The quoted packet is the app's own again.
    let quoted = &icmp[8..];
    assert_eq!(&quoted[12..16], &ip.octets());
    assert_eq!(u16::from_be_bytes([quoted[20], quoted[21]]), 5000);
}

#[test]
fn fragments_follow_their_first() {
    let (mut engine, ip) = setup();
    let far = Ipv4Addr::new(203, 0, 113, 9);
    let payload = vec![0x5a; 100];
    let (first, second) = frames::udp_fragments(
        mac(1),
        BRIDGE_MAC,
        (ip, 5000),
        (far, 7),
        &payload,
        56,
        0x4242,
    );
    // The second before the first has nothing to follow.
    engine.receive(START, APP, &second);
    assert!(drain(&mut engine).is_empty());
    assert_eq!(engine.counters().fragments_unmatched, 1);
    engine.receive(START, APP, &first);
    engine.receive(START, APP, &second);
    let sent = drain(&mut engine);
    assert_eq!(sent.len(), 2);
    for (_, frame) in &sent {
        let (src, dst, _, _) = read_ip(frame).unwrap();
        assert_eq!((src, dst), (UPLINK_IP, far));
    }
    // Reassembled, the datagram's checksum holds over the new addresses.
    let mut datagram = read_ip(&sent[0].1).unwrap().3;
    datagram.extend_from_slice(&read_ip(&sent[1].1).unwrap().3);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&UPLINK_IP.octets());
    pseudo.extend_from_slice(&far.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(datagram.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&datagram);
    assert_eq!(frames::checksum(&pseudo), 0);
}

#[test]
fn the_flow_table_bound_drops_and_counts() {
    let limits = appnet::Limits {
        max_flows: 4,
        max_flows_per_port: 4,
        ..Default::default()
    };
    let mut engine = Engine::new(appnet::EngineConfig {
        limits,
        seed: 1,
        ..Default::default()
    });
    engine.set_uplink(uplink_config()).unwrap();
    engine
        .set_instance(
            START,
            instance(appnet::InstanceKind::Local(local_config()), Some(UPLINK)),
        )
        .unwrap();
    let ip = engine
        .attach(START, port_config(1, allow_all()))
        .unwrap()
        .unwrap();
    engine.receive(
        START,
        UPLINK,
        &frames::arp_request(OUTSIDE_MAC, OUTSIDE_IP, UPLINK_IP),
    );
    drain(&mut engine);
    for port in 0..10u16 {
        let frame = frames::udp(mac(1), BRIDGE_MAC, (ip, 6000 + port), (OUTSIDE_IP, 7), b"x");
        engine.receive(START, APP, &frame);
    }
    assert_eq!(drain(&mut engine).len(), 4);
    assert_eq!(engine.flow_count(), 4);
    assert_eq!(engine.counters().flow_table_full, 6);
}

#[test]
fn oversized_packets_get_fragmentation_needed() {
    let mut engine = local_engine();
    let mut up = uplink_config();
    up.mtu = 1000;
    engine.set_uplink(up).unwrap();
    let ip = engine
        .attach(START, port_config(1, allow_all()))
        .unwrap()
        .unwrap();
    let big = frames::tcp_syn(mac(1), BRIDGE_MAC, (ip, 5000), (OUTSIDE_IP, 80));
    let mut big = big;
    // Pad the SYN to 1200 bytes of IP with DF set, fixing lengths.
    let extra = 1200 - (big.len() - 14);
    big.extend(std::iter::repeat_n(0u8, extra));
    let total = (big.len() - 14) as u16;
    big[16..18].copy_from_slice(&total.to_be_bytes());
    big[20] = 0x40;
    big[24..26].copy_from_slice(&[0, 0]);
    let check = frames::checksum(&big[14..34]);
    big[24..26].copy_from_slice(&check.to_be_bytes());
    engine.receive(START, APP, &big);
    let sent = drain(&mut engine);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, APP);
    let (src, dst, proto, icmp) = read_ip(&sent[0].1).unwrap();
    assert_eq!((src, dst, proto, icmp[0], icmp[1]), (GATEWAY, ip, 1, 3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1000);
    assert_eq!(engine.counters().too_big, 1);
}
