//! Switch instances: one L2 segment, non-IP frames included, ACLs on
//! IPv4, addresses learned from DHCP and ARP.

mod support;

use std::net::Ipv4Addr;

use appnet::{Engine, ExternalPortConfig, InstanceKind, PortId};
use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr};
use support::frames;
use support::*;

const OUTSIDE_PORT: PortId = PortId(200);
const STATION: appnet::EthernetAddress = appnet::EthernetAddress([0x02, 0x55, 0, 0, 0, 9]);

fn switch(acls: [Vec<eve_proto::config::Ace>; 2]) -> Engine {
    let mut engine = engine();
    engine
        .set_external_port(ExternalPortConfig {
            port: OUTSIDE_PORT,
            label: "eth1".into(),
        })
        .unwrap();
    engine
        .set_instance(START, instance(InstanceKind::Switch, Some(OUTSIDE_PORT)))
        .unwrap();
    let [a, b] = acls;
    assert_eq!(engine.attach(START, port_config(1, a)).unwrap(), None);
    engine.attach(START, port_config(2, b)).unwrap();
    engine
}

fn drain(engine: &mut Engine) -> Vec<(PortId, Vec<u8>)> {
    std::iter::from_fn(|| engine.pop_transmit().map(|t| (t.port, t.frame))).collect()
}

fn ports(sent: &[(PortId, Vec<u8>)]) -> Vec<u16> {
    let mut ports: Vec<u16> = sent.iter().map(|(p, _)| p.0).collect();
    ports.sort();
    ports
}

#[test]
fn carries_non_ip_frames_and_learns_where_macs_are() {
    let mut engine = switch([vec![], vec![]]);
    // An experimental EtherType, broadcast: everyone else gets it as sent.
    let hello = frames::raw(
        appnet::EthernetAddress::BROADCAST,
        mac(1),
        0x88b5,
        b"hello segment",
    );
    engine.receive(START, PortId(1), &hello);
    let sent = drain(&mut engine);
    assert_eq!(ports(&sent), vec![2, 200]);
    assert!(sent.iter().all(|(_, f)| *f == hello));
    // App 2 answers app 1 by MAC: only app 1 gets it (learned).
    let answer = frames::raw(mac(1), mac(2), 0x88b5, b"hello back");
    engine.receive(START, PortId(2), &answer);
    let sent = drain(&mut engine);
    assert_eq!(ports(&sent), vec![1]);
    // Now app 2 is known too.
    engine.receive(START, PortId(1), &frames::raw(mac(2), mac(1), 0x88b5, b"x"));
    assert_eq!(ports(&drain(&mut engine)), vec![2]);
    // A station outside may not take over an app's MAC.
    engine.receive(
        START,
        OUTSIDE_PORT,
        &frames::raw(STATION, mac(1), 0x88b5, b"spoof"),
    );
    drain(&mut engine);
    engine.receive(
        START,
        PortId(2),
        &frames::raw(mac(1), mac(2), 0x88b5, b"to one"),
    );
    assert_eq!(ports(&drain(&mut engine)), vec![1]);
}

#[test]
fn ipv4_between_apps_obeys_both_acls_and_ipv6_never_passes() {
    let a = vec![ace(1, &[("protocol", "udp"), ("fport", "9000")], None)];
    let b = vec![ace(2, &[("protocol", "udp"), ("lport", "9000")], None)];
    let mut engine = switch([a, b]);
    let ip1 = Ipv4Addr::new(192, 168, 1, 11);
    let ip2 = Ipv4Addr::new(192, 168, 1, 12);
    // Learn where app 2 is.
    engine.receive(START, PortId(2), &frames::raw(mac(1), mac(2), 0x88b5, b"x"));
    drain(&mut engine);
    engine.receive(
        START,
        PortId(1),
        &frames::udp(mac(1), mac(2), (ip1, 5000), (ip2, 9000), b"ok"),
    );
    assert_eq!(ports(&drain(&mut engine)), vec![2]);
    engine.receive(
        START,
        PortId(1),
        &frames::udp(mac(1), mac(2), (ip1, 5000), (ip2, 9001), b"no"),
    );
    assert!(drain(&mut engine).is_empty());
    assert_eq!(engine.port_counters(PortId(1)).unwrap().tx_acl_drops, 1);
    // App 2's reply on the allowed flow passes back.
    engine.receive(
        START,
        PortId(2),
        &frames::udp(mac(2), mac(1), (ip2, 9000), (ip1, 5000), b"re"),
    );
    assert_eq!(ports(&drain(&mut engine)), vec![1]);
    // IPv6 is dropped, whatever it holds.
    engine.receive(
        START,
        PortId(1),
        &frames::raw(mac(2), mac(1), 0x86dd, &[0x60; 60]),
    );
    assert!(drain(&mut engine).is_empty());
    assert_eq!(engine.counters().ipv6_dropped, 1);
}

#[test]
fn dhcp_passes_and_teaches_the_apps_address() {
    let mut engine = switch([vec![], vec![]]);
    let discover = frames::udp(
        mac(1),
        appnet::EthernetAddress::BROADCAST,
        (Ipv4Addr::UNSPECIFIED, 68),
        (Ipv4Addr::BROADCAST, 67),
        b"discover",
    );
    engine.receive(START, PortId(1), &discover);
    assert_eq!(ports(&drain(&mut engine)), vec![2, 200]);
    let leased = Ipv4Addr::new(192, 168, 1, 50);
    let repr = DhcpRepr {
        message_type: DhcpMessageType::Ack,
        transaction_id: 1,
        secs: 0,
        client_hardware_address: mac(1),
        client_ip: Ipv4Addr::UNSPECIFIED,
        your_ip: leased,
        server_ip: Ipv4Addr::UNSPECIFIED,
        router: None,
        subnet_mask: None,
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(Ipv4Addr::new(192, 168, 1, 1)),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: Some(600),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let mut ack = vec![0u8; repr.buffer_len()];
    repr.emit(&mut DhcpPacket::new_unchecked(&mut ack[..]))
        .unwrap();
    let frame = frames::udp(
        STATION,
        mac(1),
        (Ipv4Addr::new(192, 168, 1, 1), 67),
        (leased, 68),
        &ack,
    );
    engine.receive(START, OUTSIDE_PORT, &frame);
    assert_eq!(ports(&drain(&mut engine)), vec![1]);
    assert_eq!(engine.port_address(PortId(1)), Some(leased));
    let info = engine.instance_info(NI).unwrap();
    assert_eq!(info.ip_assignments.len(), 1);
    assert_eq!(info.ip_assignments[0].ip_address, vec![leased.to_string()]);
}

#[test]
fn an_app_sending_from_another_mac_is_dropped() {
    let mut engine = switch([vec![], vec![]]);
    engine.receive(
        START,
        PortId(1),
        &frames::raw(appnet::EthernetAddress::BROADCAST, mac(9), 0x88b5, b"x"),
    );
    assert!(drain(&mut engine).is_empty());
    assert_eq!(engine.port_counters(PortId(1)).unwrap().spoofed, 1);
}
