//! A switch network instance bridged with a real Linux network (root
//! only): zedrouter in QEMU with device port `eth1`, whose socket the
//! host's bridge holds (as `eve-host run --device-port eth1=IF` starts
//! it) with one end of a veth pair; the other end is in a network
//! namespace with address 192.168.50.20/24, where the namespace's own
//! kernel is station X (a UDP socket on port 9) and a packet socket
//! captures what arrives. App S (this process on S's port socket) is on
//! the switch instance, its ACL allowing UDP to 192.168.50.0/24.
//!
//! - S's ARP request reaches the namespace as it was sent, and the
//!   namespace's kernel answers it: S learns X's MAC.
//! - S's UDP datagram reaches X's socket, from S's address and port; X's
//!   answer reaches S.
//! - S's datagram to an address outside its ACL never reaches the
//!   namespace.

#[allow(dead_code)] // each scenario uses part of the rig
mod common;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::frames::{BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, arp, ethernet, mac_bytes, udp};
use common::rig::{Rig, TRIES, TRY_WAIT, app_on_switch_port, mac};
use harness::Machine;
use harness::netns::VethNamespace;
use portbridge::{PacketSocket, Received};

const SWITCH: &str = "5d0e2c41-7a3b-4f60-9e1d-2b8c4a6f7e31";
const S_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 10);
const X_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 20);
const BEYOND_ACL: Ipv4Addr = Ipv4Addr::new(192, 168, 60, 20);
const X_PORT: u16 = 9;
const S_PORT: u16 = 4000;

#[test]
fn on_x86_64_a_switch_instance_reaches_a_real_network_through_its_bridged_device_port() {
    bridged_switch(Machine::Microvm);
}

#[test]
fn on_aarch64_a_switch_instance_reaches_a_real_network_through_its_bridged_device_port() {
    bridged_switch(Machine::Virt);
}

/// The frames the namespace's packet socket holds now.
fn captured(capture: &PacketSocket) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut buf = vec![0; 70_000];
    loop {
        match capture.receive(&mut buf) {
            Ok(Received::Frame(n)) => frames.push(buf[..n].to_vec()),
            Ok(Received::Truncated(n)) => panic!("a {n}-byte frame in the namespace"),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return frames,
            Err(e) => panic!("capturing in the namespace: {e}"),
        }
    }
}

/// Whether `frame` is a UDP datagram from `from` to S's port carrying
/// `payload`.
fn is_udp_to_s(frame: &[u8], from: Ipv4Addr, payload: &[u8]) -> bool {
    if frame.len() < 42 || frame[12..14] != ETHERTYPE_IPV4.to_be_bytes() || frame[23] != 17 {
        return false;
    }
    let header = usize::from(frame[14] & 0x0f) * 4;
    frame[26..30] == from.octets()
        && frame.get(14 + header + 2..14 + header + 4) == Some(&S_PORT.to_be_bytes()[..])
        && frame.ends_with(payload)
}

fn bridged_switch(machine: Machine) {
    let arch = machine.arch();
    let segment = VethNamespace::create(Some(&format!("{X_IP}/24")))
        .unwrap_or_else(|e| panic!("a namespace and a veth pair: {e}"));
    let (s_app, setup) = app_on_switch_port(SWITCH, "eth1");
    let s_mac = mac_bytes(&mac(1));
    let rig = Rig::start(machine, setup);
    let bridge = rig.bridge_device_port("eth1", &segment.outer);
    let inner = segment.inner.clone();
    let (station, capture) = segment
        .run_inside(move || {
            let station = UdpSocket::bind((X_IP, X_PORT)).expect("X's UDP socket");
            station.set_read_timeout(Some(TRY_WAIT)).unwrap();
            let capture = PacketSocket::open(&inner).expect("a packet socket in the namespace");
            (station, capture)
        })
        .unwrap();
    let router = rig.start_router();
    rig.until_switch_online(&router, SWITCH);
    let mut s = rig.raw_app(&s_app);

    // ARP: the request reaches the namespace as sent; its kernel answers.
    let who_has = ethernet(
        BROADCAST,
        s_mac,
        ETHERTYPE_ARP,
        &arp(1, (s_mac, S_IP), ([0; 6], X_IP)),
    );
    let x_mac = (0..TRIES)
        .find_map(|_| {
            s.send(&who_has);
            s.receive(TRY_WAIT).into_iter().find_map(|f| {
                let reply = f.len() >= 42
                    && f[12..14] == ETHERTYPE_ARP.to_be_bytes()
                    && f[20..22] == [0, 2]
                    && f[28..32] == X_IP.octets();
                reply.then(|| <[u8; 6]>::try_from(&f[22..28]).unwrap())
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "{arch}: no ARP reply from the namespace; bridge {:?}\nzedrouter:\n{}",
                bridge.stats(),
                router.console()
            )
        });
    assert!(
        captured(&capture).contains(&who_has),
        "{arch}: S's ARP request was not captured in the namespace as sent"
    );

    // UDP both ways with the namespace's own stack.
    let to_x = ethernet(
        x_mac,
        s_mac,
        ETHERTYPE_IPV4,
        &udp((S_IP, S_PORT), (X_IP, X_PORT), b"from the switch instance"),
    );
    let mut buf = [0; 2048];
    let received = (0..TRIES).find_map(|_| {
        s.send(&to_x);
        station.recv_from(&mut buf).ok()
    });
    let (n, from) = received.unwrap_or_else(|| {
        panic!(
            "{arch}: S's UDP never reached X; bridge {:?}\nzedrouter:\n{}",
            bridge.stats(),
            router.console()
        )
    });
    assert_eq!(&buf[..n], b"from the switch instance");
    assert_eq!(from, SocketAddr::from((S_IP, S_PORT)));
    let answer = b"from the namespace";
    let deadline = Instant::now() + TRY_WAIT * TRIES as u32;
    let mut answered = false;
    while !answered && Instant::now() < deadline {
        station.send_to(answer, (S_IP, S_PORT)).unwrap();
        answered = s
            .receive(TRY_WAIT)
            .iter()
            .any(|f| is_udp_to_s(f, X_IP, answer));
    }
    assert!(
        answered,
        "{arch}: X's answer never reached S; bridge {:?}\nzedrouter:\n{}",
        bridge.stats(),
        router.console()
    );

    // Beyond S's ACL: nothing reaches the namespace.
    let beyond = ethernet(
        x_mac,
        s_mac,
        ETHERTYPE_IPV4,
        &udp((S_IP, S_PORT + 1), (BEYOND_ACL, X_PORT), b"beyond the ACL"),
    );
    captured(&capture);
    for _ in 0..5 {
        s.send(&beyond);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !captured(&capture).contains(&beyond),
        "{arch}: S's UDP beyond its ACL reached the namespace\nzedrouter:\n{}",
        router.console()
    );
    let stats = bridge.stats();
    assert!(
        stats.connected && stats.to_wire >= 2 && stats.from_wire >= 2,
        "{stats:?}"
    );
    assert_eq!(bridge.ended(), None);
}
