//! What survives a restart: addresses, connections (NATed and port
//! mapped), learned names; and saved bytes that do not read change nothing.

mod support;

use appnet::{Duration, Engine, InstanceKind, PortId, StateError};
use smoltcp::socket::tcp;
use support::frames;
use support::*;
use wirebytes::testing::XorShift;

/// A fresh engine configured like `local_engine`, as a restarted
/// zedrouter would be before it restores.
fn restarted() -> Engine {
    let mut engine = engine();
    engine.set_uplink(uplink_config()).unwrap();
    engine
        .set_instance(
            START,
            instance(InstanceKind::Local(local_config()), Some(UPLINK)),
        )
        .unwrap();
    engine
}

fn exchange(
    lab: &mut Lab,
    from: PortId,
    client: smoltcp::iface::SocketHandle,
    on: PortId,
    server: smoltcp::iface::SocketHandle,
    text: &[u8],
) -> bool {
    lab.host(from).tcp(client).send_slice(text).unwrap();
    let mut got = Vec::new();
    lab.run_until(3000, |lab| {
        let s = lab.host(on).tcp(server);
        if s.can_recv() {
            let mut buf = [0u8; 256];
            let n = s.recv_slice(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        got == text
    })
}

#[test]
fn leases_and_connections_survive_a_restart() {
    let mut lab = Lab::local();
    let map = ace(
        2,
        &[("protocol", "tcp"), ("lport", "2222")],
        Some(portmap_action(22)),
    );
    let out = ace(
        1,
        &[("ip", "192.0.2.1"), ("protocol", "tcp"), ("fport", "7")],
        None,
    );
    let ip = lab.app(1, vec![out.clone(), map.clone()]);
    lab.lease(1);
    // App -> outside, through NAT.
    let listener = lab.host(OUTSIDE).tcp_socket();
    lab.host(OUTSIDE).tcp(listener).listen(7).unwrap();
    let client = lab.host(PortId(1)).tcp_socket();
    lab.host(PortId(1)).connect(client, (OUTSIDE_IP, 7), 45000);
    assert!(
        lab.run_until(3000, |lab| lab.host(OUTSIDE).tcp(listener).state()
            == tcp::State::Established)
    );
    // Outside -> app, through the port map.
    let app_listener = lab.host(PortId(1)).tcp_socket();
    lab.host(PortId(1)).tcp(app_listener).listen(22).unwrap();
    let remote = lab.host(OUTSIDE).tcp_socket();
    lab.host(OUTSIDE).connect(remote, (UPLINK_IP, 2222), 46000);
    assert!(
        lab.run_until(3000, |lab| lab.host(PortId(1)).tcp(app_listener).state()
            == tcp::State::Established)
    );
    assert!(exchange(
        &mut lab,
        PortId(1),
        client,
        OUTSIDE,
        listener,
        b"before"
    ));
    assert!(exchange(
        &mut lab,
        OUTSIDE,
        remote,
        PortId(1),
        app_listener,
        b"mapped before"
    ));
    let flows = lab.engine.flow_count();

    // zedrouter restarts: config, then saved state, then the apps.
    let saved = lab.engine.export_state(lab.now);
    let mut engine = restarted();
    let summary = engine.restore_state(lab.now, &saved).unwrap();
    assert_eq!(summary.reservations, 1);
    assert!(summary.waiting >= 2);
    assert_eq!(
        engine
            .attach(lab.now, port_config(1, vec![out, map]))
            .unwrap(),
        Some(ip)
    );
    assert_eq!(engine.flow_count(), flows);
    lab.engine = engine;
    assert!(exchange(
        &mut lab,
        PortId(1),
        client,
        OUTSIDE,
        listener,
        b"after"
    ));
    assert!(exchange(
        &mut lab,
        OUTSIDE,
        remote,
        PortId(1),
        app_listener,
        b"mapped after"
    ));
}

#[test]
fn a_detached_apps_address_is_held_across_a_restart() {
    let mut engine = restarted();
    let ip1 = engine
        .attach(START, port_config(1, vec![]))
        .unwrap()
        .unwrap();
    engine.detach(START, PortId(1)).unwrap();
    let saved = engine.export_state(START + Duration::from_secs(60));
    let mut engine = restarted();
    engine
        .restore_state(START + Duration::from_secs(60), &saved)
        .unwrap();
    let ip2 = engine
        .attach(START, port_config(2, vec![]))
        .unwrap()
        .unwrap();
    assert_ne!(ip2, ip1);
    assert_eq!(
        engine.attach(START, port_config(1, vec![])).unwrap(),
        Some(ip1)
    );
}

#[test]
fn saved_bytes_that_do_not_read_change_nothing() {
    let mut engine = restarted();
    let ip1 = engine
        .attach(
            START,
            port_config(1, vec![ace(1, &[("ip", "0.0.0.0/0")], None)]),
        )
        .unwrap()
        .unwrap();
    engine.receive(
        START,
        PortId(1),
        &frames::udp(mac(1), BRIDGE_MAC, (ip1, 5), (OUTSIDE_IP, 7), b"x"),
    );
    engine.detach(START, PortId(1)).unwrap();
    let saved = engine.export_state(START);
    assert_eq!(
        engine.restore_state(START, b"nonsense"),
        Err(StateError::NotOurs)
    );
    assert_eq!(engine.restore_state(START, &[]), Err(StateError::NotOurs));
    for cut in 5..saved.len() {
        assert_eq!(
            engine.restore_state(START, &saved[..cut]),
            Err(StateError::Malformed),
            "cut at {cut}"
        );
    }
    let mut longer = saved.clone();
    longer.push(0);
    assert_eq!(
        engine.restore_state(START, &longer),
        Err(StateError::Malformed)
    );
    let mut rng = XorShift::new(11);
    for _ in 0..5000 {
        let mut bytes = saved.clone();
        let at = rng.below(bytes.len());
        bytes[at] ^= 1 << rng.below(8);
        let mut fresh = restarted();
        let _ = fresh.restore_state(START, &bytes);
        let _ = fresh.attach(START, port_config(1, vec![]));
        let mut random = vec![0u8; rng.below(200)];
        rng.fill(&mut random);
        let head = random.len().min(5);
        random[..head].copy_from_slice(&b"APNS\x01"[..head]);
        let _ = fresh.restore_state(START, &random);
    }
    // The engine that refused them still gives app 1 its address back.
    let mut reattached = restarted();
    reattached.restore_state(START, &saved).unwrap();
    assert_eq!(
        reattached.attach(START, port_config(1, vec![])).unwrap(),
        Some(ip1)
    );
}

/// The saved state is bounded however many flows are tracked: UDP flows
/// nobody answered are not saved, and of the others at most
/// `MAX_SAVED_FLOWS`, those seen most recently, which come back after a
/// restart with their outside ports.
#[test]
fn a_save_holds_the_most_recent_answered_flows_up_to_its_bound() {
    use appnet::{Limits, MAX_SAVED_FLOWS};
    use support::frames::read;
    const SERVER: (std::net::Ipv4Addr, u16) = (std::net::Ipv4Addr::new(203, 0, 113, 9), 7);
    let answered_flows = Limits::default().max_flows_per_port;
    assert!(answered_flows > MAX_SAVED_FLOWS);
    let mut engine = restarted();
    let rules = vec![ace(1, &[("ip", "0.0.0.0/0")], None)];
    let ip = engine
        .attach(START, port_config(1, rules.clone()))
        .unwrap()
        .unwrap();
    let arp = frames::arp_request(OUTSIDE_MAC, OUTSIDE_IP, UPLINK_IP);
    engine.receive(START, UPLINK, &arp);
    while engine.pop_transmit().is_some() {}
    let mut now = START;
    let send = |engine: &mut Engine, now, local: u16| -> u16 {
        let out = frames::udp(mac(1), BRIDGE_MAC, (ip, local), SERVER, b"x");
        engine.receive(now, PortId(1), &out);
        let sent: Vec<_> = std::iter::from_fn(|| engine.pop_transmit()).collect();
        assert_eq!(sent.len(), 1, "flow from {local} left");
        read(&sent[0].frame).unwrap().sport
    };
    let answer = |engine: &mut Engine, now, outside: u16| -> Option<u16> {
        let back = frames::udp(OUTSIDE_MAC, UPLINK_MAC, SERVER, (UPLINK_IP, outside), b"y");
        engine.receive(now, UPLINK, &back);
        let sent: Vec<_> = std::iter::from_fn(|| engine.pop_transmit()).collect();
        sent.first().map(|t| read(&t.frame).unwrap().dport)
    };
    // Answered flows, one new every 2 ms (under the app's budget), then
    // flows nobody answers, the most recent of all.
    let mut outside = Vec::new();
    for i in 0..answered_flows - 100 {
        now += Duration::from_millis(2);
        let local = 10_000 + i as u16;
        let port = send(&mut engine, now, local);
        assert_eq!(answer(&mut engine, now, port), Some(local));
        outside.push((local, port));
    }
    for i in 0..100u16 {
        now += Duration::from_millis(2);
        send(&mut engine, now, 30_000 + i);
    }
    assert_eq!(engine.flow_count(), answered_flows);

    let saved = engine.export_state(now);
    assert!(
        saved.len() < MAX_SAVED_FLOWS * 128 + 4096,
        "{} bytes saved for {MAX_SAVED_FLOWS} flows",
        saved.len()
    );
    let mut engine = restarted();
    engine.restore_state(now, &saved).unwrap();
    assert_eq!(engine.attach(now, port_config(1, rules)).unwrap(), Some(ip));
    assert_eq!(engine.flow_count(), MAX_SAVED_FLOWS);
    // The most recent answered flows are back on their outside ports; the
    // oldest are not, nor the unanswered ones.
    let (newest_local, newest_port) = *outside.last().unwrap();
    assert_eq!(answer(&mut engine, now, newest_port), Some(newest_local));
    let (_, kept_port) = outside[outside.len() - MAX_SAVED_FLOWS];
    assert!(answer(&mut engine, now, kept_port).is_some());
    let (_, dropped_port) = outside[outside.len() - MAX_SAVED_FLOWS - 1];
    assert_eq!(answer(&mut engine, now, dropped_port), None);
    assert_eq!(answer(&mut engine, now, outside[0].1), None);
}
