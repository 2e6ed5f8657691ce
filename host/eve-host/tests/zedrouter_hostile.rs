//! zedrouter among apps that misbehave, and what it promises the others.
//! One run per architecture: zedrouter with a local instance (apps A and
//! B, `nettest` VMs, and C, this process on C's port socket) and a switch
//! instance (apps S and T, this process too).
//!
//! - Metadata: A and B each ask 169.254.169.254 for `network.json`,
//!   `external_ipv4`, `hostname` and `app/info.json`, and each is told its
//!   own UUID and address.
//! - Switch: S sends T an Ethernet frame of type 0x88B5 (no IP at all),
//!   broadcast and then unicast, and T receives both.
//! - Spoofing: C's ping to the gateway from its own MAC and address is
//!   answered; the same ping from a MAC or an address C was not given is
//!   not, and zedrouter logs C's drops.
//! - Hostile frames: while C sends a stream of fuzzed Ethernet, IPv4, TCP,
//!   UDP, DHCP and DNS, fragments and floods, B echoes 64 KiB through A,
//!   and zedrouter is still running and still answers C afterwards.

#[allow(dead_code)] // each scenario uses part of the rig
mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use common::frames::{
    self, Aim, BROADCAST, ETHERTYPE_ARP, Rng, ethernet, is_echo_reply, mac_bytes, ping,
};
use common::rawapp::RawApp;
use common::rig::{
    PATIENCE, Rig, Setup, TRIES, TRY_WAIT, ace, app, app_uuid, local_instance, mac, switch_instance,
};
use eve_proto::config::EdgeDevConfig;
use harness::Machine;

const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4c";
const SWITCH: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4d";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const ETHERTYPE_LOCAL: u16 = 0x88b5;
const METADATA: &str = "http://169.254.169.254/eve/v1";

#[test]
fn on_x86_64_zedrouter_serves_each_app_its_metadata_switches_non_ip_and_withstands_a_hostile_app() {
    hostile(Machine::Microvm);
}

#[test]
fn on_aarch64_zedrouter_serves_each_app_its_metadata_switches_non_ip_and_withstands_a_hostile_app()
{
    hostile(Machine::Virt);
}

/// C's ARP request for the gateway; the gateway's MAC from the answer.
fn gateway_mac(c: &mut RawApp, c_mac: [u8; 6], c_ip: Ipv4Addr) -> Option<[u8; 6]> {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&c_mac);
    arp.extend_from_slice(&c_ip.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&GATEWAY.octets());
    for _ in 0..10 {
        c.send(&ethernet(BROADCAST, c_mac, ETHERTYPE_ARP, &arp));
        for f in c.receive(Duration::from_secs(1)) {
            if f.len() >= 42
                && f[12..14] == ETHERTYPE_ARP.to_be_bytes()
                && f[28..32] == GATEWAY.octets()
            {
                return Some(f[22..28].try_into().unwrap());
            }
        }
    }
    None
}

/// Whether a ping from (`src_mac`, `src_ip`) to the gateway is answered.
fn answered(c: &mut RawApp, src_mac: [u8; 6], src_ip: Ipv4Addr, gw_mac: [u8; 6], id: u16) -> bool {
    answered_in(c, (src_mac, src_ip), gw_mac, id, 3)
}

/// Whether one of `tries` pings from `from`, a second apart, is answered.
/// After a flood the ping queues behind the flood's last frames, which a
/// zedrouter slowed by a loaded host takes seconds to drop.
fn answered_in(
    c: &mut RawApp,
    (src_mac, src_ip): ([u8; 6], Ipv4Addr),
    gw_mac: [u8; 6],
    id: u16,
    tries: usize,
) -> bool {
    for _ in 0..tries {
        c.send(&ethernet(
            gw_mac,
            src_mac,
            frames::ETHERTYPE_IPV4,
            &ping(src_ip, GATEWAY, id),
        ));
        if c.receive(Duration::from_secs(1))
            .iter()
            .any(|f| is_echo_reply(f, id))
        {
            return true;
        }
    }
    false
}

fn hostile(machine: Machine) {
    let arch = machine.arch();
    let echo_rules = |id| {
        vec![
            ace(
                id,
                &[("ip", "10.1.0.0/24"), ("protocol", "tcp"), ("lport", "7")],
            ),
            ace(
                id + 1,
                &[("ip", "10.1.0.0/24"), ("protocol", "tcp"), ("fport", "7")],
            ),
        ]
    };
    let apps = vec![
        app(1, NI, echo_rules(1)),
        app(2, NI, echo_rules(3)),
        app(3, NI, vec![]),
        app(4, SWITCH, vec![]),
        app(5, SWITCH, vec![]),
    ];
    let rig = Rig::start(
        machine,
        Setup {
            instances: vec![
                local_instance(NI, "10.1.0.0/24", &[]),
                switch_instance(SWITCH),
            ],
            apps: apps.clone(),
            edge: Some(EdgeDevConfig {
                device_name: "netscen-node".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let router = rig.start_router();
    rig.until("zedrouter attached five ports", &router, || {
        rig.list().ports.len() == 5
    });

    // Switch: a frame with no IP in it, broadcast, then unicast.
    let mut s = rig.raw_app(&apps[3]);
    let mut t = rig.raw_app(&apps[4]);
    let (s_mac, t_mac) = (mac_bytes(&mac(4)), mac_bytes(&mac(5)));
    let mut carried = Vec::new();
    for (n, dst) in [BROADCAST, t_mac].into_iter().enumerate() {
        let body = format!("netscen non-IP frame {n}").into_bytes();
        let sent = ethernet(dst, s_mac, ETHERTYPE_LOCAL, &body);
        let mut seen = false;
        for _ in 0..TRIES {
            s.send(&sent);
            if t.receive(TRY_WAIT).contains(&sent) {
                seen = true;
                break;
            }
        }
        carried.push(seen);
    }
    assert_eq!(
        carried,
        [true, true],
        "{arch}: T received S's 0x88B5 frames (broadcast, unicast)\nzedrouter:\n{}",
        router.console()
    );

    // Spoofing: C's own ping is answered, spoofed ones are not.
    let mut c = rig.raw_app(&apps[2]);
    let c_mac = mac_bytes(&mac(3));
    let c_ip = Ipv4Addr::new(10, 1, 0, 4);
    let gw_mac = gateway_mac(&mut c, c_mac, c_ip).unwrap_or_else(|| {
        panic!(
            "{arch}: the gateway never answered C's ARP\nzedrouter:\n{}",
            router.console()
        )
    });
    assert!(
        answered(&mut c, c_mac, c_ip, gw_mac, 1),
        "{arch}: C's own ping\nzedrouter:\n{}",
        router.console()
    );
    let other_mac = mac_bytes("02:16:3e:00:00:99");
    let spoofed = [
        answered(&mut c, other_mac, c_ip, gw_mac, 2),
        answered(&mut c, c_mac, Ipv4Addr::new(10, 1, 0, 2), gw_mac, 3),
        answered(&mut c, c_mac, Ipv4Addr::new(10, 1, 0, 77), gw_mac, 4),
    ];
    assert_eq!(spoofed, [false; 3], "{arch}: spoofed pings were answered");
    assert!(
        router.wait_for(&format!("app {} nic 0:", app_uuid(3)), PATIENCE),
        "{arch}: zedrouter never reported C's drops\n{}",
        router.console()
    );
    assert!(router.console().contains("from addresses it was not given"));

    // Metadata and echo while C floods.
    let show = |what: &[&str]| {
        let urls: Vec<String> = what.iter().map(|p| format!("{METADATA}/{p}")).collect();
        format!("show={}", urls.join(","))
    };
    let paths = ["network.json", "external_ipv4", "hostname", "app/info.json"];
    let a = rig.app_vm(&apps[0], &format!("{} echo-on=7", show(&paths)));
    assert!(
        a.wait_for("nettest: listening on 7", PATIENCE),
        "{arch}: A never listened:\n{}\nzedrouter:\n{}",
        a.console(),
        router.console()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, sent) = (stop.clone(), sent.clone());
        thread::spawn(move || {
            let aim = Aim {
                mac: c_mac,
                ip: c_ip,
                gateway: GATEWAY,
                gateway_mac: gw_mac,
                victim: Ipv4Addr::new(10, 1, 0, 2),
            };
            let mut rng = Rng::new(0x5eed_0016);
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    c.send(&frames::hostile(&mut rng, &aim));
                }
                sent.fetch_add(64, Ordering::Relaxed);
                // Whatever comes back is read and dropped, so the switch
                // never waits on C.
                c.receive(Duration::from_millis(1));
            }
            c
        })
    };
    let b = rig.app_vm(
        &apps[1],
        &format!("echo-to=10.1.0.2:7 echo-bytes=65536 {}", show(&paths)),
    );
    let b_console = b.finish(PATIENCE);
    let a_console = a.finish(Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    let mut c = flood.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    eprintln!("{arch}: C sent {sent} hostile frames while B echoed through A");
    let mut router = router;
    assert!(
        router.running(),
        "{arch}: zedrouter stopped\n{}",
        router.console()
    );
    assert!(
        answered_in(&mut c, (c_mac, c_ip), gw_mac, 5, 30),
        "{arch}: zedrouter still answers C after the flood\n{}",
        router.console()
    );
    assert!(
        !router.console().contains("panicked"),
        "{}",
        router.console()
    );
    assert!(sent > 1000, "{arch}: only {sent} hostile frames sent");
    assert!(
        b_console.contains("PASS tcp-client"),
        "{arch}: B's echo through the flood:\n{b_console}\nzedrouter:\n{}",
        router.console()
    );
    assert!(a_console.contains("PASS tcp-server"), "A:\n{a_console}");

    // Each app was told its own data.
    for (n, console) in [(1, &a_console), (2, &b_console)] {
        let uuid = app_uuid(n);
        let ip = format!("10.1.0.{}", n + 1);
        let line = |path: &str| -> String {
            console
                .lines()
                .find(|l| l.contains(&format!("nettest: show {METADATA}/{path} -> ")))
                .unwrap_or_else(|| panic!("{arch}: app {n} never showed {path}:\n{console}"))
                .to_string()
        };
        let network = line("network.json");
        assert!(network.contains("-> 200 "), "{network}");
        assert!(
            network.contains(&format!(r#"\"app-instance-uuid\":\"{uuid}\""#)),
            "{network}"
        );
        assert!(
            network.contains(&format!(r#"\"caller-ip\":\"{ip}:"#)),
            "{network}"
        );
        assert!(
            network.contains(r#"\"device-name\":\"netscen-node\""#),
            "{network}"
        );
        let external = line("external_ipv4");
        assert!(external.contains("-> 200 10.0.2.15"), "{external}");
        let hostname = line("hostname");
        assert!(hostname.contains(&format!("-> 200 {uuid}")), "{hostname}");
        let info = line("app/info.json");
        assert!(info.contains("-> 200 "), "{info}");
        assert!(info.contains("AppBlobs"), "{info}");
        assert!(console.contains("PASS show"), "{console}");
    }
}
