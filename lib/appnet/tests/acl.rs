//! EVE's ACL actions through the engine: rate limits over simulated time,
//! `host` rules learned from DNS, first match wins, flow logs of what the
//! rules did.

mod support;

use std::net::Ipv4Addr;

use appnet::{Duration, Engine, PortId};
use eve_proto::flowlog::AclAction;
use support::frames::{self, read};
use support::*;

fn drain(engine: &mut Engine) -> Vec<(PortId, Vec<u8>)> {
    std::iter::from_fn(|| engine.pop_transmit().map(|t| (t.port, t.frame))).collect()
}

fn with_app(acls: Vec<eve_proto::config::Ace>) -> (Engine, Ipv4Addr) {
    let mut engine = local_engine();
    let ip = engine.attach(START, port_config(1, acls)).unwrap().unwrap();
    engine.receive(
        START,
        UPLINK,
        &frames::arp_request(OUTSIDE_MAC, OUTSIDE_IP, UPLINK_IP),
    );
    drain(&mut engine);
    (engine, ip)
}

#[test]
fn a_rate_limit_holds_the_rate_within_ten_percent() {
    // 100 packets a second, bursts of 10, UDP to the outside host.
    let rule = ace(
        4,
        &[("ip", "192.0.2.0/24"), ("protocol", "udp")],
        Some(limit_action(100, "s", 10)),
    );
    let (mut engine, ip) = with_app(vec![rule]);
    let mut passed = 0usize;
    let mut now = START;
    // 500 packets a second for 10 simulated seconds.
    for i in 0..5000u32 {
        let frame = frames::udp(
            mac(1),
            BRIDGE_MAC,
            (ip, 5000),
            (OUTSIDE_IP, 9),
            &i.to_be_bytes(),
        );
        engine.receive(now, PortId(1), &frame);
        passed += drain(&mut engine)
            .iter()
            .filter(|(p, _)| *p == UPLINK)
            .count();
        now += Duration::from_millis(2);
    }
    let expected = 100.0 * 10.0;
    let error = (passed as f64 - expected).abs() / expected;
    assert!(
        error <= 0.10,
        "{passed} packets passed, expected about {expected}"
    );
    let counters = engine.port_counters(PortId(1)).unwrap();
    assert_eq!(counters.tx_rate_limit_drops as usize, 5000 - passed);
    // Replies are limited on their own bucket.
    let outside_port = {
        let frame = frames::udp(mac(1), BRIDGE_MAC, (ip, 5000), (OUTSIDE_IP, 9), b"last");
        engine.receive(now + Duration::from_secs(1), PortId(1), &frame);
        read(&drain(&mut engine)[0].1).unwrap().sport
    };
    let mut delivered = 0;
    for _ in 0..50 {
        let reply = frames::udp(
            OUTSIDE_MAC,
            UPLINK_MAC,
            (OUTSIDE_IP, 9),
            (UPLINK_IP, outside_port),
            b"r",
        );
        engine.receive(now + Duration::from_secs(1), UPLINK, &reply);
        delivered += drain(&mut engine).len();
    }
    assert_eq!(delivered, 10, "one burst of replies");
    assert_eq!(
        engine.port_counters(PortId(1)).unwrap().rx_rate_limit_drops,
        40
    );
}

/// A DNS answer for `name` from the outside host to the engine's
/// forwarder, for the query the engine just sent upstream.
fn answer_upstream(engine: &mut Engine, asked: &[u8], from_port: u16, addr: Ipv4Addr) {
    let mut answer = asked.to_vec();
    answer[2] |= 0x80;
    answer[7] = 1;
    answer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    answer.extend_from_slice(&addr.octets());
    let frame = frames::udp(
        OUTSIDE_MAC,
        UPLINK_MAC,
        (OUTSIDE_IP, 53),
        (UPLINK_IP, from_port),
        &answer,
    );
    engine.receive(START, UPLINK, &frame);
}

#[test]
fn host_rules_follow_the_apps_dns_answers() {
    let rule = ace(
        9,
        &[
            ("host", "example.org"),
            ("protocol", "tcp"),
            ("fport", "443"),
        ],
        None,
    );
    let (mut engine, ip) = with_app(vec![rule]);
    let web = Ipv4Addr::new(198, 51, 100, 7);
    // Before any answer, the address is nobody's.
    engine.receive(
        START,
        PortId(1),
        &frames::tcp_syn(mac(1), BRIDGE_MAC, (ip, 40000), (web, 443)),
    );
    assert!(drain(&mut engine).is_empty());
    // The app asks the instance for www.example.org.
    let mut query = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["www", "example", "org"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    engine.receive(
        START,
        PortId(1),
        &frames::udp(mac(1), BRIDGE_MAC, (ip, 5353), (GATEWAY, 53), &query),
    );
    let sent = drain(&mut engine);
    let upstream = read(&sent[0].1).unwrap();
    assert_eq!((upstream.dst, upstream.dport), (OUTSIDE_IP, 53));
    answer_upstream(&mut engine, &upstream.payload, upstream.sport, web);
    let relayed = drain(&mut engine);
    assert_eq!(relayed.len(), 1);
    // Now the rule knows the address; another port is still refused.
    engine.receive(
        START,
        PortId(1),
        &frames::tcp_syn(mac(1), BRIDGE_MAC, (ip, 40001), (web, 443)),
    );
    assert_eq!(drain(&mut engine).len(), 1);
    engine.receive(
        START,
        PortId(1),
        &frames::tcp_syn(mac(1), BRIDGE_MAC, (ip, 40002), (web, 80)),
    );
    assert!(drain(&mut engine).is_empty());
    // The flow log has the DNS request, and the flows once they end.
    engine.poll(START + Duration::from_secs(600));
    let messages = engine.take_flow_messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.dns_reqs.len(), 1);
    assert_eq!(m.dns_reqs[0].host_name, "www.example.org");
    assert_eq!(m.dns_reqs[0].addrs, vec![web.to_string()]);
    let mut verdicts: Vec<(u16, i32, i32)> = m
        .flows
        .iter()
        .map(|f| {
            let flow = f.flow.as_ref().unwrap();
            (flow.src_port as u16, f.acl_id, f.action)
        })
        .collect();
    verdicts.sort();
    assert_eq!(
        verdicts,
        vec![
            (40000, 0, AclAction::ActionDrop as i32),
            (40001, 9, AclAction::ActionAccept as i32),
            (40002, 0, AclAction::ActionDrop as i32),
        ]
    );
}

#[test]
fn host_rules_follow_the_instances_own_names() {
    // The instance's static DNS entry names a server outside: the app
    // learns its address from the instance itself, not from upstream.
    let web = Ipv4Addr::new(198, 51, 100, 8);
    let mut local = local_config();
    local.static_hosts.push(appnet::StaticHost {
        name: "web.test".into(),
        addresses: vec![web],
    });
    let mut engine = engine();
    engine.set_uplink(uplink_config()).unwrap();
    engine
        .set_instance(
            START,
            instance(appnet::InstanceKind::Local(local), Some(UPLINK)),
        )
        .unwrap();
    let rule = ace(12, &[("host", "web.test"), ("protocol", "tcp")], None);
    let ip = engine
        .attach(START, port_config(1, vec![rule]))
        .unwrap()
        .unwrap();
    engine.receive(
        START,
        UPLINK,
        &frames::arp_request(OUTSIDE_MAC, OUTSIDE_IP, UPLINK_IP),
    );
    drain(&mut engine);
    let syn = |sport| frames::tcp_syn(mac(1), BRIDGE_MAC, (ip, sport), (web, 80));
    engine.receive(START, PortId(1), &syn(40000));
    assert!(drain(&mut engine).is_empty(), "not yet resolved");
    let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["web", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    engine.receive(
        START,
        PortId(1),
        &frames::udp(mac(1), BRIDGE_MAC, (ip, 5353), (GATEWAY, 53), &query),
    );
    let answered = drain(&mut engine);
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].0, PortId(1), "answered by the instance");
    engine.receive(START, PortId(1), &syn(40001));
    let sent = drain(&mut engine);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, UPLINK, "the rule now knows web.test");
}

#[test]
fn dhcp_dns_and_metadata_pass_without_rules() {
    let (mut engine, ip) = with_app(vec![ace(1, &[("ip", "10.9.9.9")], Some(drop_action()))]);
    let ping = frames::echo(mac(1), BRIDGE_MAC, ip, GATEWAY, true, 5);
    engine.receive(START, PortId(1), &ping);
    assert_eq!(drain(&mut engine).len(), 1, "the gateway answers pings");
    engine.receive(
        START,
        PortId(1),
        &frames::tcp_syn(mac(1), BRIDGE_MAC, (ip, 4000), (appnet::METADATA_ADDR, 80)),
    );
    let sent = drain(&mut engine);
    assert_eq!(sent.len(), 1);
    let synack = read(&sent[0].1).unwrap();
    assert_eq!((synack.src, synack.sport), (appnet::METADATA_ADDR, 80));
    assert_eq!(engine.port_counters(PortId(1)).unwrap().tx_acl_drops, 0);
}

#[test]
fn flow_records_tell_what_each_rule_did() {
    let rules = vec![
        ace(10, &[("ip", "203.0.113.66")], Some(drop_action())),
        ace(11, &[("ip", "203.0.113.0/24"), ("protocol", "udp")], None),
    ];
    let (mut engine, ip) = with_app(rules);
    let send = |engine: &mut Engine, to: [u8; 4], port: u16| {
        let f = frames::udp(
            mac(1),
            BRIDGE_MAC,
            (ip, port),
            (Ipv4Addr::from(to), 7),
            b"0123456789",
        );
        engine.receive(START, PortId(1), &f);
        drain(engine).len()
    };
    assert_eq!(send(&mut engine, [203, 0, 113, 66], 1000), 0);
    assert_eq!(send(&mut engine, [203, 0, 113, 66], 1000), 0);
    assert_eq!(send(&mut engine, [203, 0, 113, 5], 1001), 1);
    assert_eq!(send(&mut engine, [198, 51, 100, 1], 1002), 0);
    assert!(
        engine.take_flow_messages().is_empty(),
        "flows are logged when they end"
    );
    engine.poll(START + Duration::from_secs(300));
    let messages = engine.take_flow_messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.dev_id, "d0d0d0d0-0000-4000-8000-000000000001");
    let scope = m.scope.as_ref().unwrap();
    assert_eq!(
        (
            scope.uuid.as_str(),
            scope.intf.as_str(),
            scope.local_intf.as_str(),
            scope.net_inst_uuid.as_str()
        ),
        (app_uuid(1).as_str(), "eth0", "bn1", NI)
    );
    let mut records: Vec<_> = m.flows.iter().collect();
    records.sort_by_key(|r| r.flow.as_ref().unwrap().src_port);
    let dropped = records[0];
    let flow = dropped.flow.as_ref().unwrap();
    assert_eq!(
        (
            flow.src.as_str(),
            flow.dest.as_str(),
            flow.dest_port,
            flow.protocol
        ),
        (ip.to_string().as_str(), "203.0.113.66", 7, 17)
    );
    assert_eq!(
        (dropped.acl_id, dropped.acl_name.as_str(), dropped.action),
        (10, "rule-10", AclAction::ActionDrop as i32)
    );
    assert_eq!(
        (
            dropped.tx_pkts,
            dropped.tx_bytes,
            dropped.rx_pkts,
            dropped.inbound
        ),
        (2, 76, 0, false)
    );
    assert_eq!(records[1].acl_id, 11);
    assert_eq!(records[1].action, AclAction::ActionAccept as i32);
    assert_eq!(records[2].acl_id, 0, "the implicit drop");
    let start = dropped.start_time.unwrap();
    assert_eq!(start.seconds, 1_700_000_000);
}

#[test]
fn disable_flowlog_is_respected() {
    let mut engine = engine();
    engine.set_uplink(uplink_config()).unwrap();
    let mut ni = instance(appnet::InstanceKind::Local(local_config()), Some(UPLINK));
    ni.flowlog = false;
    engine.set_instance(START, ni).unwrap();
    let ip = engine
        .attach(START, port_config(1, vec![]))
        .unwrap()
        .unwrap();
    engine.receive(
        START,
        PortId(1),
        &frames::udp(mac(1), BRIDGE_MAC, (ip, 1), (OUTSIDE_IP, 7), b"x"),
    );
    engine.poll(START + Duration::from_secs(300));
    assert!(engine.take_flow_messages().is_empty());
}

#[test]
fn messages_hold_at_most_125_records() {
    let (mut engine, ip) = with_app(vec![]);
    for port in 0..130u16 {
        let f = frames::udp(mac(1), BRIDGE_MAC, (ip, 1000 + port), (OUTSIDE_IP, 7), b"x");
        engine.receive(START, PortId(1), &f);
    }
    engine.poll(START + Duration::from_secs(300));
    let messages = engine.take_flow_messages();
    assert_eq!(
        messages.iter().map(|m| m.flows.len()).collect::<Vec<_>>(),
        vec![125, 5]
    );
}
