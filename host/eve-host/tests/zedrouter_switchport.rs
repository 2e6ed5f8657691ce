//! A switch network instance with a device port: zedrouter in QEMU with
//! its device port `eth1` (a NIC whose socket this process listens on, as
//! the manifest's `device_ports` gives it) and a switch instance whose
//! `port` names `eth1`, as EVE's controller writes it. App S is this
//! process on S's port socket; the outside station X is this process on
//! the device port's socket.
//!
//! - The instance is online (zedrouter found the port it names).
//! - X, a MAC the instance never saw, broadcasts a frame with no IP in it
//!   (EtherType 0x88B5): S receives it (flooded); S answers X by unicast,
//!   and X receives it (X's MAC was learned on the device port).
//! - IP: S's UDP datagram to X and X's answer pass as they are: S's ACL
//!   allows X's subnet (EVE applies an app's ACLs on switch instances
//!   too, by the remote's address).
//! - S's datagram to an address outside its ACL never reaches X.
//! - S's ACL changes while S runs (zedmanager publishes the new one): the
//!   new rules apply at once on the same port (S's connection to its port
//!   is never closed, its tag stays): what was refused passes, what
//!   passed is refused.

#[allow(dead_code)] // each scenario uses part of the rig
mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::frames::{BROADCAST, ETHERTYPE_IPV4, ethernet, mac_bytes, udp};
use common::rawapp::RawApp;
use common::rig::{Rig, TRIES, TRY_WAIT, ace, app, app_on_switch_port, app_uuid, mac};
use harness::Machine;

const SWITCH: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a60";
const ETHERTYPE_LOCAL: u16 = 0x88b5;
const X_MAC: &str = "02:aa:bb:cc:dd:01";
const S_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 10);
const X_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 20);
const BEYOND_ACL: Ipv4Addr = Ipv4Addr::new(192, 168, 60, 20);

#[test]
fn on_x86_64_a_switch_instance_carries_frames_between_an_app_and_its_device_port() {
    switch_with_device_port(Machine::Microvm);
}

#[test]
fn on_aarch64_a_switch_instance_carries_frames_between_an_app_and_its_device_port() {
    switch_with_device_port(Machine::Virt);
}

/// Sends `frame` from `from` until `to` receives it (a frame may be lost
/// while the port is still connecting); whether it did.
fn carried(from: &mut RawApp, to: &mut RawApp, frame: &[u8]) -> bool {
    for _ in 0..TRIES {
        from.send(frame);
        if to.receive(TRY_WAIT).iter().any(|f| f == frame) {
            return true;
        }
    }
    false
}

fn switch_with_device_port(machine: Machine) {
    let arch = machine.arch();
    let (s_app, setup) = app_on_switch_port(SWITCH, "eth1");
    let rig = Rig::start(machine, setup);
    let outside = rig.device_port("eth1").expect("the device port's socket");
    let router = rig.start_router();
    let mut x = RawApp::accept(&outside);
    rig.until_switch_online(&router, SWITCH);
    let mut s = rig.raw_app(&s_app);
    let (s_mac, x_mac) = (mac_bytes(&mac(1)), mac_bytes(X_MAC));

    let from_x = ethernet(BROADCAST, x_mac, ETHERTYPE_LOCAL, b"from outside, no IP");
    let to_x = ethernet(x_mac, s_mac, ETHERTYPE_LOCAL, b"to outside, no IP");
    let udp_to_x = ethernet(
        x_mac,
        s_mac,
        ETHERTYPE_IPV4,
        &udp((S_IP, 4000), (X_IP, 9), b"to outside, UDP"),
    );
    let udp_from_x = ethernet(
        s_mac,
        x_mac,
        ETHERTYPE_IPV4,
        &udp((X_IP, 9), (S_IP, 4000), b"from outside, UDP"),
    );
    let udp_beyond = ethernet(
        x_mac,
        s_mac,
        ETHERTYPE_IPV4,
        &udp((S_IP, 4001), (BEYOND_ACL, 9), b"beyond the ACL"),
    );
    let results = [
        (
            "X's non-IP broadcast reached S",
            carried(&mut x, &mut s, &from_x),
        ),
        (
            "S's non-IP unicast reached X",
            carried(&mut s, &mut x, &to_x),
        ),
        ("S's UDP reached X", carried(&mut s, &mut x, &udp_to_x)),
        ("X's UDP reached S", carried(&mut x, &mut s, &udp_from_x)),
    ];
    for (what, ok) in results {
        assert!(ok, "{arch}: {what}: no\nzedrouter:\n{}", router.console());
    }
    for _ in 0..5 {
        s.send(&udp_beyond);
    }
    let leaked = x.receive(Duration::from_secs(3)).contains(&udp_beyond);
    assert!(
        !leaked,
        "{arch}: S's UDP beyond its ACL reached X\nzedrouter:\n{}",
        router.console()
    );
    assert!(
        router.console().contains("device port eth1"),
        "{}",
        router.console()
    );

    // New ACLs for the running S: the other subnet only.
    let tag = rig.list().ports[0].tag;
    rig.change(
        &app_uuid(1),
        Some(app(
            1,
            SWITCH,
            vec![ace(2, &[("ip", "192.168.60.0/24"), ("protocol", "udp")])],
        )),
    );
    rig.until("zedrouter applied S's new ACLs", &router, || {
        router.console().contains("new ACLs applied")
    });
    assert!(
        carried(&mut s, &mut x, &udp_beyond),
        "{arch}: S's UDP the new ACL allows\nzedrouter:\n{}",
        router.console()
    );
    for _ in 0..5 {
        s.send(&udp_to_x);
    }
    let leaked = x.receive(Duration::from_secs(3)).contains(&udp_to_x);
    assert!(
        !leaked,
        "{arch}: S's UDP the new ACL refuses reached X\nzedrouter:\n{}",
        router.console()
    );
    let ports = rig.list().ports;
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0].tag, tag, "S's port kept its tag");
    assert!(
        !router.console().contains("detached"),
        "S's port was never detached\n{}",
        router.console()
    );
}
