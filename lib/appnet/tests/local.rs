//! A local instance end to end: apps are smoltcp stacks that get their
//! lease, resolve names, reach each other and an outside host through NAT
//! as their ACLs allow, are reached through port maps, and ask the
//! metadata server.

mod support;

use std::net::Ipv4Addr;

use appnet::{METADATA_ADDR, PortId};
use smoltcp::socket::tcp;
use support::frames::{self, read};
use support::*;

fn app_port(n: u8) -> PortId {
    PortId(u16::from(n))
}

/// An HTTP-ish exchange: `client` on app `n` connects to `to`, sends
/// `request`, and reads until the server closes. `None` if it never
/// connects.
fn fetch(lab: &mut Lab, n: u8, to: (Ipv4Addr, u16), request: &[u8]) -> Option<Vec<u8>> {
    let port = app_port(n);
    let handle = lab.host(port).tcp_socket();
    lab.host(port).connect(handle, to, 49152 + u16::from(n));
    let connected = lab.run_until(3000, |lab| lab.host(port).tcp(handle).may_send());
    if !connected {
        return None;
    }
    lab.host(port).tcp(handle).send_slice(request).unwrap();
    let mut got = Vec::new();
    lab.run_until(5000, |lab| {
        let socket = lab.host(port).tcp(handle);
        if socket.can_recv() {
            socket
                .recv(|data| {
                    got.extend_from_slice(data);
                    (data.len(), ())
                })
                .unwrap();
        }
        !socket.may_recv()
    });
    lab.host(port).tcp(handle).close();
    Some(got)
}

/// An outside server on `port` that answers every connection with
/// `answer` and closes.
struct Server {
    handle: smoltcp::iface::SocketHandle,
    port: u16,
    answer: Vec<u8>,
    pub peers: Vec<(Ipv4Addr, u16)>,
}

impl Server {
    fn new(lab: &mut Lab, on: PortId, port: u16, answer: &[u8]) -> Server {
        let handle = lab.host(on).tcp_socket();
        lab.host(on).tcp(handle).listen(port).unwrap();
        Server {
            handle,
            port,
            answer: answer.to_vec(),
            peers: Vec::new(),
        }
    }

    fn serve(&mut self, lab: &mut Lab, on: PortId) {
        let socket = lab.host(on).tcp(self.handle);
        if socket.state() == tcp::State::Established && socket.can_recv() {
            let mut buf = [0u8; 1024];
            let _ = socket.recv_slice(&mut buf);
            if let Some(ep) = socket.remote_endpoint() {
                let std::net::IpAddr::V4(ip) = std::net::IpAddr::from(ep.addr) else {
                    unreachable!()
                };
                self.peers.push((ip, ep.port));
            }
            socket.send_slice(&self.answer).unwrap();
            socket.close();
        }
        if matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait) {
            socket.abort();
            socket.listen(self.port).unwrap();
        }
    }
}

/// Runs `fetch` while serving `server` on `on` every step.
fn fetch_from(
    lab: &mut Lab,
    n: u8,
    to: (Ipv4Addr, u16),
    server: &mut Server,
    on: PortId,
) -> Option<Vec<u8>> {
    let port = app_port(n);
    let handle = lab.host(port).tcp_socket();
    lab.host(port).connect(handle, to, 40000 + u16::from(n));
    let mut got = Vec::new();
    let mut sent = false;
    for _ in 0..5000 {
        server.serve(lab, on);
        let socket = lab.host(port).tcp(handle);
        if !sent && socket.may_send() {
            socket.send_slice(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            sent = true;
        }
        if socket.can_recv() {
            socket
                .recv(|data| {
                    got.extend_from_slice(data);
                    (data.len(), ())
                })
                .unwrap();
        }
        if sent && !socket.may_recv() {
            break;
        }
        lab.step();
    }
    lab.host(port).tcp(handle).abort();
    lab.run(10);
    sent.then_some(got)
}

fn allow_outside() -> Vec<eve_proto::config::Ace> {
    vec![ace(
        1,
        &[("ip", "192.0.2.0/24"), ("protocol", "tcp"), ("fport", "80")],
        None,
    )]
}

#[test]
fn apps_get_their_leases() {
    let mut lab = Lab::local();
    let assigned = lab.app(1, vec![]);
    assert_eq!(assigned, Ipv4Addr::new(10, 1, 0, 2));
    assert_eq!(lab.lease(1), assigned);
    let second = lab.app(2, vec![]);
    assert_eq!(lab.lease(2), second);
    assert_ne!(assigned, second);
    assert_eq!(lab.engine.port_address(app_port(2)), Some(second));
}

#[test]
fn an_app_reaches_the_outside_through_nat_only_as_its_acl_allows() {
    let mut lab = Lab::local();
    lab.app(1, allow_outside());
    lab.app(2, vec![]);
    lab.lease(1);
    lab.lease(2);
    let mut server = Server::new(&mut lab, OUTSIDE, 80, b"hello from outside");
    let got = fetch_from(&mut lab, 1, (OUTSIDE_IP, 80), &mut server, OUTSIDE);
    assert_eq!(got.as_deref(), Some(&b"hello from outside"[..]));
    // The outside saw the uplink's address, not the app's.
    assert!(
        server.peers.iter().all(|(ip, _)| *ip == UPLINK_IP),
        "{:?}",
        server.peers
    );
    assert_eq!(server.peers.len(), 1);
    // App 2 has no rule: the implicit drop.
    let before = lab.engine.port_counters(app_port(2)).unwrap().tx_acl_drops;
    let got = fetch_from(&mut lab, 2, (OUTSIDE_IP, 80), &mut server, OUTSIDE);
    assert_eq!(got, None);
    assert!(lab.engine.port_counters(app_port(2)).unwrap().tx_acl_drops > before);
    assert_eq!(server.peers.len(), 1);
}

#[test]
fn a_port_map_reaches_the_apps_server_from_outside() {
    let mut lab = Lab::local();
    let map = ace(
        7,
        &[("protocol", "tcp"), ("lport", "8080")],
        Some(portmap_action(80)),
    );
    lab.app(1, vec![map]);
    lab.lease(1);
    let mut server = Server::new(&mut lab, app_port(1), 80, b"app answers");
    let handle = lab.host(OUTSIDE).tcp_socket();
    lab.host(OUTSIDE).connect(handle, (UPLINK_IP, 8080), 51000);
    let mut got = Vec::new();
    let mut sent = false;
    for _ in 0..5000 {
        server.serve(&mut lab, app_port(1));
        let socket = lab.host(OUTSIDE).tcp(handle);
        if !sent && socket.may_send() {
            socket.send_slice(b"GET /").unwrap();
            sent = true;
        }
        if socket.can_recv() {
            socket
                .recv(|d| {
                    got.extend_from_slice(d);
                    (d.len(), ())
                })
                .unwrap();
        }
        if sent && !socket.may_recv() {
            break;
        }
        lab.step();
    }
    assert_eq!(got, b"app answers");
    // The app saw the outside host's own address.
    assert_eq!(server.peers, vec![(OUTSIDE_IP, 51000)]);
    // Another port is not mapped.
    let before = lab.engine.counters().uplink_unmatched;
    let frame = frames::tcp_syn(
        OUTSIDE_MAC,
        UPLINK_MAC,
        (OUTSIDE_IP, 51001),
        (UPLINK_IP, 8081),
    );
    lab.engine.receive(lab.now, UPLINK, &frame);
    assert_eq!(lab.engine.counters().uplink_unmatched, before + 1);
}

#[test]
fn an_app_reaches_another_apps_port_map_at_the_uplinks_address() {
    let mut lab = Lab::local();
    let map = ace(
        7,
        &[("protocol", "tcp"), ("lport", "8080")],
        Some(portmap_action(80)),
    );
    lab.app(1, vec![map]);
    let uplink_ip = UPLINK_IP.to_string();
    let to_the_uplink = |id, port| {
        ace(
            id,
            &[("ip", &uplink_ip), ("protocol", "tcp"), ("fport", port)],
            None,
        )
    };
    lab.app(2, vec![to_the_uplink(8, "8080"), to_the_uplink(9, "8081")]);
    lab.lease(1);
    lab.lease(2);
    let mut server = Server::new(&mut lab, app_port(1), 80, b"round the hairpin");
    let on_the_uplink = |lab: &Lab| lab.sent.iter().filter(|(p, _)| *p == UPLINK).count();
    let before = on_the_uplink(&lab);
    let got = fetch_from(&mut lab, 2, (UPLINK_IP, 8080), &mut server, app_port(1));
    assert_eq!(got.as_deref(), Some(&b"round the hairpin"[..]));
    // The server saw a NATed client at the uplink's address, as it sees
    // the outside's; nothing went out of the uplink.
    assert_eq!(server.peers.len(), 1);
    assert_eq!(server.peers[0].0, UPLINK_IP);
    assert_eq!(on_the_uplink(&lab), before);
    // A port no map takes is not answered, and not sent out either.
    let unmatched = lab.engine.counters().uplink_unmatched;
    assert_eq!(
        fetch_from(&mut lab, 2, (UPLINK_IP, 8081), &mut server, app_port(1)),
        None
    );
    assert!(lab.engine.counters().uplink_unmatched > unmatched);
    assert_eq!(on_the_uplink(&lab), before);
}

#[test]
fn two_apps_reach_each_other_only_as_both_acls_allow() {
    let mut lab = Lab::local();
    // App 1 may open TCP 80 anywhere on the subnet; app 2 accepts TCP 80
    // from the subnet; app 3 accepts nothing.
    let a = vec![ace(
        1,
        &[("ip", "10.1.0.0/24"), ("protocol", "tcp"), ("fport", "80")],
        None,
    )];
    let b = vec![ace(
        2,
        &[("ip", "10.1.0.0/24"), ("protocol", "tcp"), ("lport", "80")],
        None,
    )];
    lab.app(1, a);
    let ip2 = lab.app(2, b);
    let ip3 = lab.app(3, vec![]);
    for n in 1..=3 {
        lab.lease(n);
    }
    let mut server2 = Server::new(&mut lab, app_port(2), 80, b"from two");
    let got = fetch_from(&mut lab, 1, (ip2, 80), &mut server2, app_port(2));
    assert_eq!(got.as_deref(), Some(&b"from two"[..]));
    assert_eq!(
        server2.peers[0].0,
        lab.engine.port_address(app_port(1)).unwrap()
    );
    let mut server3 = Server::new(&mut lab, app_port(3), 80, b"from three");
    assert_eq!(
        fetch_from(&mut lab, 1, (ip3, 80), &mut server3, app_port(3)),
        None
    );
    assert!(server3.peers.is_empty());
    assert!(lab.engine.port_counters(app_port(3)).unwrap().rx_acl_drops > 0);
    // And app 2 may not open connections to app 1.
    let ip1 = lab.engine.port_address(app_port(1)).unwrap();
    let mut server1 = Server::new(&mut lab, app_port(1), 80, b"from one");
    assert_eq!(
        fetch_from(&mut lab, 2, (ip1, 80), &mut server1, app_port(1)),
        None
    );
}

#[test]
fn the_metadata_server_answers_with_the_callers_own_data() {
    let mut lab = Lab::local();
    lab.app(1, vec![]);
    lab.app(2, vec![]);
    lab.lease(1);
    lab.lease(2);
    let one = fetch(
        &mut lab,
        1,
        (METADATA_ADDR, 80),
        b"GET /eve/v1/hostname HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let one = String::from_utf8(one).unwrap();
    assert!(one.starts_with("HTTP/1.1 200 OK\r\n"), "{one}");
    assert!(
        one.ends_with(&format!("\r\n\r\n{}\n", app_uuid(1))),
        "{one}"
    );
    let two = fetch(
        &mut lab,
        2,
        (METADATA_ADDR, 80),
        b"GET /eve/v1/network.json HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    let two = String::from_utf8(two).unwrap();
    let body = two.split("\r\n\r\n").nth(1).unwrap();
    let ip2 = lab.engine.port_address(app_port(2)).unwrap();
    assert!(body.starts_with(&format!(
        "{{\"app-instance-uuid\":\"{}\",\"caller-ip\":\"{ip2}:49154\",\"device-name\":\"edge-1\"",
        app_uuid(2)
    )), "{body}");
    assert!(body.contains("\"external-ipv4\":\"192.0.2.2\""), "{body}");
    let missing = fetch(
        &mut lab,
        1,
        (METADATA_ADDR, 80),
        b"GET /nothing HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    assert!(
        String::from_utf8(missing)
            .unwrap()
            .starts_with("HTTP/1.1 404")
    );
}

#[test]
fn dns_answers_local_names_and_forwards_the_rest() {
    let mut lab = Lab::local();
    lab.app(1, vec![]);
    let ip2 = lab.app(2, vec![]);
    let ip1 = lab.lease(1);
    // The outside host's DNS server answers example.org with 198.51.100.7.
    let dns = lab.host(OUTSIDE).udp_socket(53);
    let client = lab.host(app_port(1)).udp_socket(5353);
    let query = |id: u16, name: &str| {
        let mut q = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    };
    let gateway = smoltcp::wire::IpEndpoint::new(GATEWAY.into(), 53);
    lab.host(app_port(1))
        .udp(client)
        .send_slice(&query(0x1234, "app2"), gateway)
        .unwrap();
    let mut answer = Vec::new();
    assert!(lab.run_until(2000, |lab| {
        let socket = lab.host(app_port(1)).udp(client);
        if let Ok((data, _)) = socket.recv() {
            answer = data.to_vec();
        }
        !answer.is_empty()
    }));
    assert_eq!(&answer[..2], &[0x12, 0x34]);
    assert_eq!(&answer[answer.len() - 4..], &ip2.octets());
    // A name the instance does not know goes upstream.
    lab.host(app_port(1))
        .udp(client)
        .send_slice(&query(0x4321, "www.example.org"), gateway)
        .unwrap();
    let mut upstream = None;
    assert!(lab.run_until(2000, |lab| {
        if let Ok((data, meta)) = lab.host(OUTSIDE).udp(dns).recv() {
            upstream = Some((data.to_vec(), meta.endpoint));
        }
        upstream.is_some()
    }));
    let (asked, from) = upstream.unwrap();
    assert_eq!(from.addr, smoltcp::wire::IpAddress::Ipv4(UPLINK_IP));
    assert_ne!(&asked[..2], &[0x43, 0x21], "the ID is the forwarder's own");
    // A forged answer (wrong ID) is ignored; the real one is relayed.
    let mut forged = asked.clone();
    forged[2] |= 0x80;
    forged[0] ^= 0xff;
    lab.host(OUTSIDE)
        .udp(dns)
        .send_slice(&forged, from)
        .unwrap();
    lab.run(5);
    assert!(lab.engine.counters().dns_unmatched >= 1);
    let mut real = asked.clone();
    real[2] |= 0x80;
    real[7] = 1;
    real.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, 7]);
    lab.host(OUTSIDE).udp(dns).send_slice(&real, from).unwrap();
    let mut relayed = Vec::new();
    assert!(lab.run_until(2000, |lab| {
        if let Ok((data, _)) = lab.host(app_port(1)).udp(client).recv() {
            relayed = data.to_vec();
        }
        !relayed.is_empty()
    }));
    assert_eq!(&relayed[..2], &[0x43, 0x21]);
    assert_eq!(&relayed[relayed.len() - 4..], &[198, 51, 100, 7]);
    // The relayed frame came from the gateway to the app.
    let (_, frame) = lab
        .sent
        .iter()
        .rev()
        .find(|(p, _)| *p == app_port(1))
        .unwrap();
    let seen = read(frame).unwrap();
    assert_eq!((seen.src, seen.sport, seen.dst), (GATEWAY, 53, ip1));
}

#[test]
fn a_query_the_uplinks_dns_never_answers_gets_servfail_after_the_timeout() {
    let mut lab = Lab::local();
    lab.app(1, vec![]);
    lab.lease(1);
    let client = lab.host(app_port(1)).udp_socket(5353);
    let mut query = vec![0x77, 0x01, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["down", "example", "org"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let gateway = smoltcp::wire::IpEndpoint::new(GATEWAY.into(), 53);
    lab.host(app_port(1))
        .udp(client)
        .send_slice(&query, gateway)
        .unwrap();
    // Nothing answers upstream (no server on the outside host).
    let mut answer = Vec::new();
    lab.run(4000);
    assert_eq!(
        lab.engine.counters().dns_timeouts,
        0,
        "still waiting at 4 s"
    );
    assert!(lab.run_until(4000, |lab| {
        if let Ok((data, _)) = lab.host(app_port(1)).udp(client).recv() {
            answer = data.to_vec();
        }
        !answer.is_empty()
    }));
    assert_eq!(lab.engine.counters().dns_timeouts, 1);
    assert_eq!(&answer[..2], &[0x77, 0x01], "the app's own ID");
    assert_eq!(answer[2] & 0x80, 0x80, "an answer");
    assert_eq!(answer[3] & 0x0f, 2, "SERVFAIL");
    assert_eq!(
        &answer[12..12 + query.len() - 12],
        &query[12..],
        "its question"
    );
}

#[test]
fn changing_an_instances_names_keeps_its_flows_and_changing_its_subnet_renumbers() {
    let mut lab = Lab::local();
    let ip = lab.app(1, vec![ace(1, &[("ip", "0.0.0.0/0")], None)]);
    let frame = frames::udp(mac(1), BRIDGE_MAC, (ip, 5000), (OUTSIDE_IP, 7), b"x");
    lab.engine.receive(lab.now, app_port(1), &frame);
    assert_eq!(lab.engine.flow_count(), 1);
    let mut renamed = instance(appnet::InstanceKind::Local(local_config()), Some(UPLINK));
    renamed.name = "renamed".into();
    renamed.version = "2".into();
    lab.engine.set_instance(lab.now, renamed).unwrap();
    assert_eq!(lab.engine.flow_count(), 1);
    assert_eq!(lab.engine.instance_info(NI).unwrap().displayname, "renamed");
    let mut other = local_config();
    other.subnet = appnet::Ipv4Cidr::new(Ipv4Addr::new(10, 2, 0, 0), 24);
    other.gateway = Ipv4Addr::new(10, 2, 0, 1);
    other.dhcp_range = appnet::AddressRange {
        first: Ipv4Addr::new(10, 2, 0, 2),
        last: Ipv4Addr::new(10, 2, 0, 9),
    };
    let renumbered = instance(appnet::InstanceKind::Local(other), Some(UPLINK));
    lab.engine.set_instance(lab.now, renumbered).unwrap();
    assert_eq!(lab.engine.flow_count(), 0);
    assert_eq!(
        lab.engine.port_address(app_port(1)),
        Some(Ipv4Addr::new(10, 2, 0, 2))
    );
}
