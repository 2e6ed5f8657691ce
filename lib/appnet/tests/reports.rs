//! EVE's reports from the engine: ZInfoNetworkInstance,
//! ZMetricNetworkInstance, ZInfoApp.network, appMetric.network.

mod support;

use appnet::{PortId, mac_string};
use eve_proto::Message;
use eve_proto::info::{ZInfoNetworkInstance, ZNetworkInstanceState};
use support::frames;
use support::*;

#[test]
fn instance_info_lists_addresses_interfaces_routes_and_errors() {
    let mut engine = local_engine();
    let bad_rule = ace(3, &[("fport", "80")], None);
    let ip1 = engine
        .attach(START, port_config(1, vec![bad_rule]))
        .unwrap()
        .unwrap();
    let ip2 = engine
        .attach(START, port_config(2, vec![]))
        .unwrap()
        .unwrap();
    let info = engine.instance_info(NI).unwrap();
    assert_eq!(info.network_id, NI);
    assert_eq!(info.inst_type, 2, "ZnetInstLocal");
    assert_eq!(
        info.state,
        ZNetworkInstanceState::ZnetinstStateOnline as i32
    );
    assert_eq!(info.bridge_name, "bn1");
    assert_eq!(info.bridge_ip_addr, "10.1.0.1");
    assert_eq!(info.ports, vec!["eth0"]);
    assert_eq!(info.mtu, 1500);
    let mut assigned: Vec<(String, Vec<String>)> = info
        .ip_assignments
        .iter()
        .map(|a| (a.mac_address.clone(), a.ip_address.clone()))
        .collect();
    assigned.sort();
    assert_eq!(
        assigned,
        vec![
            ("02:16:3e:00:00:01".into(), vec![ip1.to_string()]),
            ("02:16:3e:00:00:02".into(), vec![ip2.to_string()]),
        ]
    );
    assert_eq!(info.vifs[0].vif_name, "nbu1x1");
    assert_eq!(info.vifs[0].app_id, app_uuid(1));
    assert_eq!(info.ip_routes[0].destination_network, "0.0.0.0/0");
    assert_eq!(info.ip_routes[0].gateway, OUTSIDE_IP.to_string());
    assert_eq!(info.network_err.len(), 1);
    assert!(
        info.network_err[0]
            .description
            .contains("ACL rule 3 skipped"),
        "{:?}",
        info.network_err
    );
    // It is a valid message on the wire.
    let bytes = info.encode_to_vec();
    assert_eq!(ZInfoNetworkInstance::decode(&bytes[..]).unwrap(), info);
}

#[test]
fn metrics_count_from_the_apps_side() {
    let mut engine = local_engine();
    let ip = engine
        .attach(START, port_config(1, vec![]))
        .unwrap()
        .unwrap();
    let ping = frames::echo(mac(1), BRIDGE_MAC, ip, GATEWAY, true, 1);
    engine.receive(START, PortId(1), &ping);
    let reply = engine.pop_transmit().unwrap();
    // And one the ACL drops.
    engine.receive(
        START,
        PortId(1),
        &frames::udp(mac(1), BRIDGE_MAC, (ip, 1), (OUTSIDE_IP, 2), b"x"),
    );
    let app = engine.app_network_metrics(&app_uuid(1));
    assert_eq!(app.len(), 1);
    let m = &app[0];
    assert_eq!(
        (m.i_name.as_str(), m.local_name.as_str()),
        ("eth0", "nbu1x1")
    );
    assert_eq!((m.tx_pkts, m.rx_pkts, m.tx_acl_drops), (2, 1, 1));
    assert_eq!(m.rx_bytes, reply.frame.len() as u64);
    let ni = engine.instance_metrics(NI).unwrap();
    assert_eq!(ni.network[0].i_name, "bn1");
    assert_eq!(
        ni.network[0].rx_pkts, 2,
        "the bridge received what the app sent"
    );
    let stats = ni.network_stats.unwrap();
    assert_eq!(stats.rx.unwrap().total_packets, 2);
    assert_eq!(stats.tx.unwrap().total_packets, 1);
}

#[test]
fn app_networks_say_each_interfaces_mac_and_address() {
    let mut engine = local_engine();
    let ip = engine
        .attach(START, port_config(1, vec![]))
        .unwrap()
        .unwrap();
    let networks = engine.app_networks(&app_uuid(1));
    assert_eq!(networks.len(), 1);
    let n = &networks[0];
    assert_eq!(n.mac_addr, mac_string(mac(1)));
    assert_eq!(n.ip_addrs, vec![ip.to_string()]);
    assert_eq!(n.default_routers, vec!["10.1.0.1"]);
    assert_eq!(n.dns.as_ref().unwrap().dn_sservers, vec!["10.1.0.1"]);
    assert_eq!(
        (n.dev_name.as_str(), n.local_name.as_str()),
        ("eth0", "nbu1x1")
    );
    assert!(n.ipv4_up);
    assert!(engine.app_networks("no-such-app").is_empty());
}

#[test]
fn a_port_map_taken_twice_is_an_error_of_the_instance() {
    let mut engine = local_engine();
    let map = || {
        vec![ace(
            8,
            &[("protocol", "tcp"), ("lport", "8080")],
            Some(portmap_action(80)),
        )]
    };
    engine.attach(START, port_config(1, map())).unwrap();
    engine.attach(START, port_config(2, map())).unwrap();
    let info = engine.instance_info(NI).unwrap();
    assert!(
        info.network_err.iter().any(|e| e
            .description
            .contains("port map 8080 of rule 8 already taken")),
        "{:?}",
        info.network_err
    );
}
