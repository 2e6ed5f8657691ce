//! The uplink's DHCP client against a real DHCP server: the engine's own,
//! on a local instance, with the client as an app's interface. It gets
//! its lease, and keeps it for hours by renewing (unicast to the server,
//! whose MAC it learns from ARP replies it is given copies of).

mod support;

use std::net::Ipv4Addr;

use appnet::uplink_dhcp::{LeaseEvent, UplinkDhcp, Wanted, wanted};
use appnet::{Duration, Instant, Ipv4Cidr, PortId};
use support::*;

const PORT: PortId = PortId(7);

/// Moves frames between the client and the engine at `now`, collecting
/// the client's lease changes; how many frames the client sent.
fn turn(
    lab: &mut Lab,
    client: &mut UplinkDhcp,
    now: Instant,
    events: &mut Vec<LeaseEvent>,
) -> usize {
    events.extend(client.poll(now));
    let mut sent = 0;
    while let Some(frame) = client.pop_transmit() {
        lab.engine.receive(now, PORT, &frame);
        sent += 1;
    }
    if lab.engine.poll_at(now).is_some_and(|t| t <= now) {
        lab.engine.poll(now);
    }
    while let Some(t) = lab.engine.pop_transmit() {
        if t.port == PORT && wanted(&t.frame) != Wanted::No {
            client.receive(&t.frame);
        }
    }
    sent
}

#[test]
fn the_client_gets_its_lease_and_renews_it() {
    let mut lab = Lab::local();
    let given = lab
        .engine
        .attach(START, port_config(7, vec![]))
        .unwrap()
        .expect("an address for the interface");
    let mut client = UplinkDhcp::new(mac(7).0, 7, START);
    let mut events = Vec::new();
    let mut now = START;
    for _ in 0..5000 {
        turn(&mut lab, &mut client, now, &mut events);
        if !events.is_empty() {
            break;
        }
        now += Duration::from_millis(1);
    }
    let [LeaseEvent::Leased(lease)] = events.as_slice() else {
        panic!("no lease: {events:?}");
    };
    assert_eq!(lease.address, Ipv4Cidr::new(given, 24));
    assert_eq!(lease.router, Some(GATEWAY));
    assert_eq!(lease.dns_servers, vec![GATEWAY]);

    // The engine's lease is an hour: two hours on, the client has
    // renewed it rather than lost it.
    let mut renewals = 0;
    for _ in 0..7200 {
        now += Duration::from_secs(1);
        renewals += turn(&mut lab, &mut client, now, &mut events);
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(renewals > 0);
    assert_ne!(given, Ipv4Addr::UNSPECIFIED);
}

#[test]
fn hostile_frames_never_reach_past_the_classifier_as_leases() {
    let mut client = UplinkDhcp::new(mac(7).0, 7, START);
    let mut events = Vec::new();
    let mut lab = Lab::local();
    let mut now = START;
    for len in 0..400usize {
        let mut frame: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        if len > 40 {
            frame[12..14].copy_from_slice(&[0x08, 0x00]);
            frame[14] = 0x45;
            frame[23] = 17;
            frame[36..38].copy_from_slice(&68u16.to_be_bytes());
        }
        if wanted(&frame) != Wanted::No {
            client.receive(&frame);
        }
        turn(&mut lab, &mut client, now, &mut events);
        now += Duration::from_millis(1);
    }
    assert!(
        events.iter().all(|e| !matches!(e, LeaseEvent::Leased(_))),
        "{events:?}"
    );
}
