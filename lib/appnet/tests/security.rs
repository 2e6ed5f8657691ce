//! Spoofing, hostile frames and floods: dropped, counted, and never at
//! another app's expense.

mod support;

use std::net::Ipv4Addr;

use appnet::{Engine, PortId};
use support::frames;
use support::*;
use wirebytes::testing::XorShift;

fn drain(engine: &mut Engine) -> Vec<(PortId, Vec<u8>)> {
    std::iter::from_fn(|| engine.pop_transmit().map(|t| (t.port, t.frame))).collect()
}

fn allow_all() -> Vec<eve_proto::config::Ace> {
    vec![ace(1, &[("ip", "0.0.0.0/0")], None)]
}

#[test]
fn an_app_sending_from_a_mac_or_address_it_was_not_given_is_dropped() {
    let mut engine = local_engine();
    let ip1 = engine
        .attach(START, port_config(1, allow_all()))
        .unwrap()
        .unwrap();
    let ip2 = engine
        .attach(START, port_config(2, allow_all()))
        .unwrap()
        .unwrap();
    let far = (Ipv4Addr::new(203, 0, 113, 9), 7);
    // Another MAC.
    engine.receive(
        START,
        PortId(1),
        &frames::udp(mac(2), BRIDGE_MAC, (ip1, 5), far, b"x"),
    );
    // Another app's address.
    engine.receive(
        START,
        PortId(1),
        &frames::udp(mac(1), BRIDGE_MAC, (ip2, 5), far, b"x"),
    );
    // An address outside the subnet.
    engine.receive(
        START,
        PortId(1),
        &frames::udp(
            mac(1),
            BRIDGE_MAC,
            ((Ipv4Addr::new(8, 8, 8, 8)), 5),
            far,
            b"x",
        ),
    );
    // ARP claiming app 2's address.
    engine.receive(START, PortId(1), &frames::arp_request(mac(1), ip2, GATEWAY));
    // ARP naming another MAC inside an honest frame.
    let mut inner = frames::arp_request(mac(7), ip1, GATEWAY);
    inner[6..12].copy_from_slice(mac(1).as_bytes());
    engine.receive(START, PortId(1), &inner);
    assert!(drain(&mut engine).is_empty());
    let counters = engine.port_counters(PortId(1)).unwrap();
    assert_eq!(counters.spoofed, 5);
    assert_eq!(counters.tx_drops, 5);
    assert_eq!(engine.flow_count(), 0);
    // Its own MAC and address work.
    engine.receive(START, PortId(1), &frames::arp_request(mac(1), ip1, GATEWAY));
    let sent = drain(&mut engine);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, PortId(1));
}

/// DHCP from app `n`'s stack: a discover and what came back.
fn dhcp_answered(engine: &mut Engine, n: u8, now: appnet::Instant) -> bool {
    let discover = {
        use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr};
        let repr = DhcpRepr {
            message_type: DhcpMessageType::Discover,
            transaction_id: 9,
            secs: 0,
            client_hardware_address: mac(n),
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: Ipv4Addr::UNSPECIFIED,
            server_ip: Ipv4Addr::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: false,
            requested_ip: None,
            client_identifier: None,
            server_identifier: None,
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: None,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut bytes[..]))
            .unwrap();
        frames::udp(
            mac(n),
            appnet::EthernetAddress::BROADCAST,
            (Ipv4Addr::UNSPECIFIED, 68),
            (Ipv4Addr::BROADCAST, 67),
            &bytes,
        )
    };
    engine.receive(now, PortId(u16::from(n)), &discover);
    drain(engine).iter().any(|(p, _)| p.0 == u16::from(n))
}

#[test]
fn a_flooding_app_spends_its_own_budget_only() {
    let mut engine = local_engine();
    engine.attach(START, port_config(1, vec![])).unwrap();
    engine.attach(START, port_config(2, vec![])).unwrap();
    // App 1 sends 10 000 DHCP discovers within one millisecond.
    let answered = (0..10_000)
        .filter(|_| dhcp_answered(&mut engine, 1, START))
        .count();
    let limits = appnet::Limits::default();
    assert_eq!(answered, limits.slow_path_burst as usize);
    assert!(engine.port_counters(PortId(1)).unwrap().over_budget >= 9_000);
    // App 2, at the same moment, is served.
    assert!(dhcp_answered(&mut engine, 2, START));
    // App 1 gets its budget back with time.
    assert!(dhcp_answered(
        &mut engine,
        1,
        START + appnet::Duration::from_millis(100)
    ));
}

#[test]
fn one_app_cannot_take_the_whole_flow_table() {
    let limits = appnet::Limits {
        max_flows: 100,
        max_flows_per_port: 40,
        slow_path_burst: 1000,
        ..Default::default()
    };
    let mut engine = Engine::new(appnet::EngineConfig {
        limits,
        seed: 3,
        ..Default::default()
    });
    engine.set_uplink(uplink_config()).unwrap();
    engine
        .set_instance(
            START,
            instance(appnet::InstanceKind::Local(local_config()), Some(UPLINK)),
        )
        .unwrap();
    let ip1 = engine
        .attach(START, port_config(1, allow_all()))
        .unwrap()
        .unwrap();
    let ip2 = engine
        .attach(START, port_config(2, allow_all()))
        .unwrap()
        .unwrap();
    for port in 0..500u16 {
        let f = frames::udp(
            mac(1),
            BRIDGE_MAC,
            (ip1, 1000 + port),
            (OUTSIDE_IP, 7),
            b"x",
        );
        engine.receive(START, PortId(1), &f);
    }
    assert_eq!(engine.flow_count(), 40);
    assert_eq!(engine.counters().flow_port_full, 460);
    for port in 0..10u16 {
        let f = frames::udp(
            mac(2),
            BRIDGE_MAC,
            (ip2, 1000 + port),
            (OUTSIDE_IP, 7),
            b"x",
        );
        engine.receive(START, PortId(2), &f);
    }
    assert_eq!(engine.flow_count(), 50);
}

#[test]
fn hostile_frames_never_crash_the_engine_nor_starve_another_app() {
    let mut lab = Lab::local();
    lab.app(1, allow_all());
    lab.app(2, allow_all());
    let ip1 = lab.lease(1);
    let mut rng = XorShift::new(0xbad);
    let seeds = [
        frames::udp(
            mac(1),
            BRIDGE_MAC,
            (ip1, 5000),
            (OUTSIDE_IP, 53),
            b"seed datagram",
        ),
        frames::tcp_syn(mac(1), BRIDGE_MAC, (ip1, 5000), (OUTSIDE_IP, 80)),
        frames::arp_request(mac(1), ip1, GATEWAY),
        frames::echo(mac(1), BRIDGE_MAC, ip1, GATEWAY, true, 1),
        frames::udp(
            mac(1),
            BRIDGE_MAC,
            (ip1, 5353),
            (GATEWAY, 53),
            &[0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1],
        ),
        frames::tcp_syn(mac(1), BRIDGE_MAC, (ip1, 5001), (appnet::METADATA_ADDR, 80)),
    ];
    let from_outside = [
        frames::udp(
            OUTSIDE_MAC,
            UPLINK_MAC,
            (OUTSIDE_IP, 53),
            (UPLINK_IP, 40000),
            b"answer?",
        ),
        frames::tcp_syn(OUTSIDE_MAC, UPLINK_MAC, (OUTSIDE_IP, 80), (UPLINK_IP, 8080)),
        frames::echo(OUTSIDE_MAC, UPLINK_MAC, OUTSIDE_IP, UPLINK_IP, false, 3),
    ];
    for round in 0..30_000u32 {
        let (port, seed) = if round % 4 == 3 {
            (UPLINK, &from_outside[round as usize % from_outside.len()])
        } else {
            (PortId(1), &seeds[round as usize % seeds.len()])
        };
        let mut frame = if round % 7 == 0 {
            let mut random = vec![0u8; rng.below(1600)];
            rng.fill(&mut random);
            random
        } else {
            seed.clone()
        };
        // Keep the sender's MAC most of the time, so frames get past the
        // first check and into the parsers behind it.
        for _ in 0..rng.below(5) {
            if frame.len() > 12 {
                let at = 12 + rng.below(frame.len() - 12);
                frame[at] ^= 1 << rng.below(8);
            }
        }
        if rng.below(4) == 0 {
            frame.truncate(rng.below(frame.len() + 1));
        }
        lab.engine.receive(lab.now, port, &frame);
        if round % 100 == 0 {
            lab.step();
        }
    }
    lab.run(50);
    // App 2 still gets its lease and reaches the outside.
    let ip2 = lab.lease(2);
    assert!(ip2.octets()[0] == 10);
    let before = lab.engine.port_counters(PortId(2)).unwrap().rx_packets;
    let ping = frames::echo(mac(2), BRIDGE_MAC, ip2, GATEWAY, true, 9);
    lab.engine.receive(lab.now, PortId(2), &ping);
    lab.deliver();
    assert_eq!(
        lab.engine.port_counters(PortId(2)).unwrap().rx_packets,
        before + 1
    );
    assert!(lab.engine.counters().malformed > 0);
}
