//! zedrouter forwards an app's DNS query for a name its instance does not
//! know to the uplink's DNS server, and relays the answer; when that
//! server does not answer, the app gets SERVFAIL once zedrouter's
//! forwarder gives up (5 s), not silence. The rig's uplink is raw
//! (`Setup::raw_uplink`): this process is the uplink's network, answering
//! ARP and playing the DNS server at 10.0.2.3 (zedrouter's `dns=`), and
//! app 1 is raw too, asking the instance's gateway.

#[allow(dead_code)] // each scenario uses part of the rig
mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::frames::{BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, ethernet, mac_bytes, udp};
use common::rawapp::RawApp;
use common::rig::{PATIENCE, Rig, Setup, app, local_instance, mac};
use harness::Machine;

const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4c";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
/// The first address of the instance's DHCP range: the only app's.
const APP_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
/// The uplink's DNS server, as the rig's zedrouter command line names it.
const UPLINK_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// Every address of the uplink's network answers ARP with this MAC.
const UPLINK_PEER_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
const ANSWER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

#[test]
fn on_x86_64_zedrouter_forwards_dns_to_the_uplink_and_says_servfail_when_it_is_down() {
    uplink_dns(Machine::Microvm);
}

#[test]
fn on_aarch64_zedrouter_forwards_dns_to_the_uplink_and_says_servfail_when_it_is_down() {
    uplink_dns(Machine::Virt);
}

/// A DNS query for `name`, type A, recursion desired.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// An address and port.
type Endpoint = (Ipv4Addr, u16);

/// A UDP datagram in `frame`: source, destination and payload.
fn udp_of(frame: &[u8]) -> Option<(Endpoint, Endpoint, &[u8])> {
    if frame.len() < 42 || frame[12..14] != ETHERTYPE_IPV4.to_be_bytes() || frame[23] != 17 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let udp = frame.get(14 + ihl..)?;
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    let payload = udp.get(8..len.max(8))?;
    let ip = |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
    let port = |at: usize| u16::from_be_bytes([udp[at], udp[at + 1]]);
    Some(((ip(26), port(0)), (ip(30), port(2)), payload))
}

/// The uplink's network for a while: answers every ARP request, and each
/// DNS query to [`UPLINK_DNS`] with [`ANSWER`] when `dns_up`; the names
/// asked.
fn play_uplink(uplink: &mut RawApp, dns_up: bool, wait: Duration) -> Vec<Vec<u8>> {
    let mut asked = Vec::new();
    for frame in uplink.receive(wait) {
        if frame.len() >= 42 && frame[12..14] == ETHERTYPE_ARP.to_be_bytes() && frame[21] == 1 {
            let mut reply = vec![0, 1, 8, 0, 6, 4, 0, 2];
            reply.extend_from_slice(&UPLINK_PEER_MAC);
            reply.extend_from_slice(&frame[38..42]);
            reply.extend_from_slice(&frame[22..32]);
            uplink.send(&ethernet(
                frame[6..12].try_into().unwrap(),
                UPLINK_PEER_MAC,
                ETHERTYPE_ARP,
                &reply,
            ));
            continue;
        }
        let Some((from, (to, 53), payload)) = udp_of(&frame) else {
            continue;
        };
        if to != UPLINK_DNS || payload.len() < 12 {
            continue;
        }
        asked.push(payload[12..].to_vec());
        if dns_up {
            let mut answer = payload.to_vec();
            answer[2] |= 0x80;
            answer[3] = 0x80;
            answer[6..8].copy_from_slice(&1u16.to_be_bytes());
            answer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            answer.extend_from_slice(&ANSWER.octets());
            let packet = udp((UPLINK_DNS, 53), from, &answer);
            uplink.send(&ethernet(
                frame[6..12].try_into().unwrap(),
                UPLINK_PEER_MAC,
                ETHERTYPE_IPV4,
                &packet,
            ));
        }
    }
    asked
}

/// The app's ARP request for the gateway; the gateway's MAC.
fn gateway_mac(app: &mut RawApp, uplink: &mut RawApp, app_mac: [u8; 6]) -> [u8; 6] {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&app_mac);
    arp.extend_from_slice(&APP_IP.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&GATEWAY.octets());
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        app.send(&ethernet(BROADCAST, app_mac, ETHERTYPE_ARP, &arp));
        for f in app.receive(Duration::from_millis(500)) {
            if f.len() >= 42
                && f[12..14] == ETHERTYPE_ARP.to_be_bytes()
                && f[28..32] == GATEWAY.octets()
            {
                return f[22..28].try_into().unwrap();
            }
        }
        play_uplink(uplink, true, Duration::from_millis(10));
    }
    panic!("the gateway never answered ARP");
}

/// The app asks the gateway for `name` while this process plays the
/// uplink; the answer it gets (zedrouter's relay or its SERVFAIL) and
/// what the uplink's DNS server was asked.
fn resolve(
    app: &mut RawApp,
    uplink: &mut RawApp,
    (app_mac, gw_mac): ([u8; 6], [u8; 6]),
    (id, name): (u16, &str),
    dns_up: bool,
) -> (Vec<u8>, Vec<Vec<u8>>) {
    let asking = query(id, name);
    let packet = udp((APP_IP, 5353), (GATEWAY, 53), &asking);
    app.send(&ethernet(gw_mac, app_mac, ETHERTYPE_IPV4, &packet));
    let mut asked = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        asked.extend(play_uplink(uplink, dns_up, Duration::from_millis(50)));
        for f in app.receive(Duration::from_millis(50)) {
            if let Some(((GATEWAY, 53), (APP_IP, 5353), payload)) = udp_of(&f)
                && payload.len() >= 12
                && payload[..2] == id.to_be_bytes()
            {
                return (payload.to_vec(), asked);
            }
        }
    }
    panic!("no answer to the app's query for {name}");
}

fn uplink_dns(machine: Machine) {
    let app1 = app(1, NI, Vec::new());
    let rig = Rig::start(
        machine,
        Setup {
            instances: vec![local_instance(NI, "10.1.0.0/24", &[])],
            apps: vec![app1.clone()],
            raw_uplink: true,
            ..Setup::default()
        },
    );
    let router = rig.start_router();
    let mut uplink = rig.uplink();
    rig.until("zedrouter attached the app's port", &router, || {
        play_uplink(&mut uplink, true, Duration::from_millis(10));
        rig.list().ports.len() == 1
    });
    let mut app = rig.raw_app(&app1);
    let app_mac = mac_bytes(&mac(1));
    let gw_mac = gateway_mac(&mut app, &mut uplink, app_mac);
    let macs = (app_mac, gw_mac);

    // Up: the uplink's server is asked the app's question, and its
    // answer reaches the app under the app's own ID.
    let (answer, asked) = resolve(
        &mut app,
        &mut uplink,
        macs,
        (0x5151, "web.example.org"),
        true,
    );
    assert_eq!(asked, [query(0x5151, "web.example.org")[12..].to_vec()]);
    assert_eq!(answer[3] & 0x0f, 0, "NOERROR: {answer:?}");
    assert_eq!(answer[6..8], 1u16.to_be_bytes(), "one answer");
    assert_eq!(answer[answer.len() - 4..], ANSWER.octets());

    // Down: the server is asked and never answers; the app is told
    // SERVFAIL rather than left waiting.
    let (answer, asked) = resolve(
        &mut app,
        &mut uplink,
        macs,
        (0x6262, "down.example.org"),
        false,
    );
    assert!(
        asked.contains(&query(0x6262, "down.example.org")[12..].to_vec()),
        "the uplink's server was asked"
    );
    assert_eq!(answer[2] & 0x80, 0x80, "an answer: {answer:?}");
    assert_eq!(answer[3] & 0x0f, 2, "SERVFAIL: {answer:?}");
    assert_eq!(answer[6..8], [0, 0], "no answers");
    drop(router);
}
