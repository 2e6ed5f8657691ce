//! EVE's ACLs through zedrouter, with `nettest` VMs as apps on one local
//! instance, one run per architecture.
//!
//! - Names and the outside: the instance's static DNS entry names
//!   `web.test` as 10.0.2.100, which QEMU's guestfwd on zedrouter's uplink
//!   turns into an HTTP server on the host's loopback. (This tests the
//!   instance's own DNS answers; forwarding to the uplink's DNS is covered
//!   by appnet's tests, as QEMU's guestfwd cannot carry UDP and the user
//!   net's resolver is not on loopback.) Each of apps 1 to 3 resolves
//!   `web.test` through zedrouter and fetches a page: 1 is allowed by a
//!   `host` rule, 2 by an `ip` rule, 3 is refused by a drop rule, and the
//!   flow log has each flow with its rule's id and action. Each app has a
//!   port of its own (80 + n - 1): a guestfwd is one chardev connection,
//!   so it carries one guest connection.
//! - Rate limit: app 4 sends UDP to app 5 at four times the rate of a rule
//!   limiting it to 50 packets a second (bursts of 25: half a second of
//!   credit, so a zedrouter VM descheduled on a busy host loses none);
//!   app 5 counts what arrives in an 8-second window after a settling
//!   second (the initial burst), which is within 10% of 400. (The window
//!   is long so that what the counter's queues held when it opened, on a
//!   host that descheduled it, is a small part of the count.) The sender is
//!   paced, not a flood: a flooding VM takes a host core, and on a busy
//!   2-core CI host the counter once counted 17 of the 200 the rule let
//!   through in 4 seconds. Floods are `zedrouter_hostile`'s.

#[allow(dead_code)] // each scenario uses part of the rig
mod common;

use std::time::Duration;

use common::rig::{PATIENCE, Rig, Setup, ace, ace_with, app, app_uuid, local_instance};
use eve_host::manifest::PortForward;
use eve_proto::config::AceAction;
use eve_proto::flowlog::AclAction;
use harness::Machine;
use harness::servers::{Behaviour, Server};

const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4e";
/// QEMU's guestfwd address on zedrouter's uplink.
const WEB: &str = "10.0.2.100";
const PAGE: usize = 4096;
/// Well below what zedrouter forwards between two apps under TCG on a
/// busy host (a few hundred packets a second on aarch64), so the rule
/// is what holds the rate.
const RATE: u32 = 50;
const WINDOW_SECONDS: u64 = 8;
/// The settling second, the window, and time for the first datagram to
/// get through.
const SEND_SECONDS: u64 = WINDOW_SECONDS + 4;
/// What app 4 offers: the rule drops three in four.
const SEND_RATE: u32 = 4 * RATE;

#[test]
fn on_x86_64_acls_allow_by_host_and_ip_drop_with_their_id_and_limit_the_rate() {
    acls(Machine::Microvm);
}

#[test]
fn on_aarch64_acls_allow_by_host_and_ip_drop_with_their_id_and_limit_the_rate() {
    acls(Machine::Virt);
}

fn acls(machine: Machine) {
    let arch = machine.arch();
    let server = Server::start(Behaviour::Http).expect("the host's HTTP server");
    let web = |id: i32, how: (&str, &str), port: &str| {
        ace(id, &[how, ("protocol", "tcp"), ("fport", port)])
    };
    let drop = AceAction {
        drop: true,
        ..Default::default()
    };
    let limit = AceAction {
        limit: true,
        limitrate: RATE,
        limitunit: "s".into(),
        limitburst: 25,
        ..Default::default()
    };
    let apps = vec![
        app(1, NI, vec![web(11, ("host", "web.test"), "80")]),
        app(2, NI, vec![web(12, ("ip", "10.0.2.100/32"), "81")]),
        app(3, NI, vec![ace_with(13, &[("ip", WEB)], drop)]),
        app(
            4,
            NI,
            vec![ace_with(
                14,
                &[
                    ("ip", "10.1.0.0/24"),
                    ("protocol", "udp"),
                    ("fport", "9000"),
                ],
                limit,
            )],
        ),
        app(
            5,
            NI,
            vec![ace(
                15,
                &[
                    ("ip", "10.1.0.0/24"),
                    ("protocol", "udp"),
                    ("lport", "9000"),
                ],
            )],
        ),
    ];
    let rig = Rig::start(
        machine,
        Setup {
            instances: vec![local_instance(NI, "10.1.0.0/24", &[("web.test", WEB)])],
            apps: apps.clone(),
            guest_forward: (80..83)
                .map(|guest_port| PortForward {
                    host_port: server.port(),
                    guest_port,
                })
                .collect(),
            ..Default::default()
        },
    );
    let router = rig.start_router();
    rig.until("zedrouter attached five ports", &router, || {
        rig.list().ports.len() == 5
    });

    let fetch = |port: usize| {
        format!(
            "resolve=web.test resolve-expect={WEB} fetch=http://web.test:{port}/pattern/{PAGE} fetch-bytes={PAGE}"
        )
    };
    let fetchers: Vec<_> = apps[..3]
        .iter()
        .enumerate()
        .map(|(n, a)| rig.app_vm(a, &fetch(80 + n)))
        .collect();
    let counter = rig.app_vm(
        &apps[4],
        &format!("udp-count-on=9000 udp-count-seconds={WINDOW_SECONDS}"),
    );
    assert!(
        counter.wait_for("nettest: counting on 9000", PATIENCE),
        "{arch}: app 5 never counted:\n{}\nzedrouter:\n{}",
        counter.console(),
        router.console()
    );
    // Addresses follow the apps' order: app 5 is the fifth.
    let sender = rig.app_vm(
        &apps[3],
        &format!(
            "udp-send-to=10.1.0.6:9000 udp-send-seconds={SEND_SECONDS} udp-send-rate={SEND_RATE}"
        ),
    );
    let fetched: Vec<String> = fetchers.into_iter().map(|vm| vm.finish(PATIENCE)).collect();
    let counted = counter.finish(PATIENCE);
    let sent = sender.finish(Duration::from_secs(60));

    for (n, console) in fetched.iter().enumerate() {
        assert!(
            console.contains(&format!("PASS dns: web.test is {WEB}")),
            "{arch}: app {} resolved web.test:\n{console}",
            n + 1
        );
    }
    assert!(
        fetched[0].contains("PASS fetch"),
        "{arch}: host rule:\n{}",
        fetched[0]
    );
    assert!(
        fetched[1].contains("PASS fetch"),
        "{arch}: ip rule:\n{}",
        fetched[1]
    );
    assert!(
        fetched[2].contains("FAIL fetch"),
        "{arch}: drop rule:\n{}",
        fetched[2]
    );

    // The flows end when the apps go; each is logged with its rule.
    for a in &apps {
        rig.change(&a.app_uuid, None);
    }
    let web_flows = |n: usize| -> Vec<(i32, i32)> {
        rig.flows(&app_uuid(n))
            .into_iter()
            .filter(|f| f.flow.as_ref().is_some_and(|f| f.dest == WEB))
            .map(|f| (f.acl_id, f.action))
            .collect()
    };
    let accept = AclAction::ActionAccept as i32;
    let dropped = AclAction::ActionDrop as i32;
    rig.until("the web flows are in the flow log", &router, || {
        web_flows(1).contains(&(11, accept))
            && web_flows(2).contains(&(12, accept))
            && web_flows(3).contains(&(13, dropped))
    });
    assert!(
        web_flows(3).iter().all(|f| *f == (13, dropped)),
        "{arch}: {:?}",
        web_flows(3)
    );

    // The rate, measured where it arrives.
    let window_packets = metric(&counted, "udp_window_packets");
    let window_us = metric(&counted, "udp_window_us");
    let expected = u64::from(RATE) * WINDOW_SECONDS;
    eprintln!(
        "{arch}: rate limit {RATE}/s: {window_packets:?} datagrams in {window_us:?} us (expected {expected}); sender: {:?}",
        metric(&sent, "udp_sent")
    );
    let window_packets =
        window_packets.unwrap_or_else(|| panic!("{arch}: no count:\n{counted}\nsender:\n{sent}"));
    assert!(
        metric(&sent, "udp_sent").is_some_and(|n| n > 2 * u64::from(RATE) * SEND_SECONDS),
        "{arch}: the sender did not send at least twice the limit:\n{sent}"
    );
    assert!(
        window_packets.abs_diff(expected) * 10 <= expected,
        "{arch}: {window_packets} datagrams in the window, expected {expected} within 10%"
    );
}

/// A `@@ metric NAME VALUE` line's value.
fn metric(console: &str, name: &str) -> Option<u64> {
    console.lines().find_map(|l| {
        let rest = &l[l.find(guest_abi::METRIC_MARKER)? + guest_abi::METRIC_MARKER.len()..];
        let (key, value) = rest.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}
