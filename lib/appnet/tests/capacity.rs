//! The flow table filled by one app opening UDP flows through NAT, as
//! `cargo xtask bench network`'s sweep does: every flow of the app's share
//! is served; beyond it a new flow is refused and counted while every
//! flow is recent, and takes the place of the flow idle the longest once
//! that one has been idle long enough.

mod support;

use std::net::Ipv4Addr;
use std::time::Instant as Clock;

use appnet::{Duration, Engine, Instant, Limits, PortId};
use support::frames::{self, read};
use support::*;

const APP: PortId = PortId(1);
const SERVER: (Ipv4Addr, u16) = (Ipv4Addr::new(203, 0, 113, 9), 7);
/// New flows are paced under the app's slow-path budget (1000 a second).
const PACE: Duration = Duration::from_millis(2);

fn setup() -> (Engine, Ipv4Addr) {
    let mut engine = local_engine();
    let ip = engine
        .attach(
            START,
            port_config(1, vec![ace(1, &[("ip", "0.0.0.0/0")], None)]),
        )
        .unwrap()
        .unwrap();
    let arp = frames::arp_request(OUTSIDE_MAC, OUTSIDE_IP, UPLINK_IP);
    engine.receive(START, UPLINK, &arp);
    while engine.pop_transmit().is_some() {}
    (engine, ip)
}

/// One datagram from the app's `local_port`: the outside port it left
/// from, if it left.
fn send(engine: &mut Engine, now: Instant, ip: Ipv4Addr, local_port: u16) -> Option<u16> {
    let out = frames::udp(mac(1), BRIDGE_MAC, (ip, local_port), SERVER, b"x");
    engine.receive(now, APP, &out);
    let sent: Vec<_> = std::iter::from_fn(|| engine.pop_transmit()).collect();
    match sent.as_slice() {
        [] => None,
        [one] => {
            assert_eq!(one.port, UPLINK);
            let seen = read(&one.frame).unwrap();
            assert_eq!((seen.src, seen.dst), (UPLINK_IP, SERVER.0));
            Some(seen.sport)
        }
        more => panic!("one datagram became {} frames", more.len()),
    }
}

/// The server's answer to outside port `outside`: whether it reached the
/// app, at `local_port`.
fn answer(engine: &mut Engine, now: Instant, outside: u16, local_port: u16) -> bool {
    let back = frames::udp(OUTSIDE_MAC, UPLINK_MAC, SERVER, (UPLINK_IP, outside), b"y");
    engine.receive(now, UPLINK, &back);
    let sent: Vec<_> = std::iter::from_fn(|| engine.pop_transmit()).collect();
    match sent.as_slice() {
        [] => false,
        [one] => {
            assert_eq!(one.port, APP);
            read(&one.frame).unwrap().dport == local_port
        }
        more => panic!("one answer became {} frames", more.len()),
    }
}

#[test]
fn a_full_share_refuses_then_evicts_the_oldest_idle_flow() {
    let limits = Limits::default();
    let share = limits.max_flows_per_port;
    assert!(share >= 4096, "an app's share is several thousand flows");
    let (mut engine, ip) = setup();
    let mut now = START;
    let started = Clock::now();
    let mut outside = Vec::with_capacity(share);
    for i in 0..share {
        now += PACE;
        let local = 10_000 + i as u16;
        let port = send(&mut engine, now, ip, local).unwrap_or_else(|| panic!("flow {i} refused"));
        assert!(answer(&mut engine, now, port, local), "flow {i} unanswered");
        outside.push(port);
    }
    println!(
        "{share} flows opened and answered in {:?} (host time)",
        started.elapsed()
    );
    assert_eq!(engine.flow_count(), share);
    let distinct: std::collections::BTreeSet<_> = outside.iter().collect();
    assert_eq!(distinct.len(), share, "every flow has its own outside port");

    // Full, and every flow seen in the last few seconds: refused, counted.
    now += PACE;
    let new_port = 10_000 + share as u16;
    assert_eq!(send(&mut engine, now, ip, new_port), None);
    let counters = engine.counters();
    assert_eq!((counters.flow_port_full, counters.flows_evicted), (1, 0));
    // The flows the app has still pass both ways.
    assert!(send(&mut engine, now, ip, 10_000).is_some());
    assert!(answer(&mut engine, now, outside[0], 10_000));

    // Once flows have been idle long enough, the new one takes the place of
    // the one idle the longest: the second (the first was just used).
    now += limits.flow_evict_idle;
    let port = send(&mut engine, now, ip, new_port).expect("an idle flow made room");
    assert!(answer(&mut engine, now, port, new_port));
    let counters = engine.counters();
    assert_eq!((counters.flow_port_full, counters.flows_evicted), (1, 1));
    assert_eq!(engine.flow_count(), share);
    assert!(
        !answer(&mut engine, now, outside[1], 10_001),
        "the evicted flow is gone"
    );
    assert!(
        answer(&mut engine, now, outside[0], 10_000),
        "the recent flow stays"
    );
    assert!(
        answer(&mut engine, now, outside[2], 10_002),
        "so do the others"
    );
}
