//! Many short TCP connections from an app through zedrouter's NAT, as
//! `cargo xtask bench network` opens them: a `nettest` app on a local
//! instance opens and closes connections one after the other to a server
//! on the host's loopback that accepts and closes at once (reached at
//! 10.0.2.2 through zedrouter's unrestricted user-mode uplink). Every
//! connection must open and close; the time they took is printed, never
//! asserted (it was 0.9 s each while a simultaneous close waited for a
//! FIN retransmission in the app, see `net::Stack::tcp_close`).

#[allow(dead_code)] // each scenario uses part of the rig
mod common;

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use common::rig::{PATIENCE, Rig, Setup, ace, app, local_instance};
use harness::Machine;

const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4d";
/// QEMU user-mode networking's address of the host's loopback.
const HOST: &str = "10.0.2.2";
const CONNECTIONS: usize = 50;

/// A server on the host's loopback that accepts and closes; its port.
fn accept_and_close() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            drop(conn);
        }
    });
    port
}

#[test]
fn on_x86_64_an_app_opens_and_closes_many_connections_through_zedrouter() {
    connections(Machine::Microvm);
}

#[test]
fn on_aarch64_an_app_opens_and_closes_many_connections_through_zedrouter() {
    connections(Machine::Virt);
}

fn connections(machine: Machine) {
    let port = accept_and_close();
    let app = app(1, NI, vec![ace(1, &[("ip", HOST), ("protocol", "tcp")])]);
    let rig = Rig::start(
        machine,
        Setup {
            instances: vec![local_instance(NI, "10.1.0.0/24", &[])],
            apps: vec![app.clone()],
            uplink_by_dhcp: true,
            ..Setup::default()
        },
    );
    let router = rig.start_router();
    rig.until("zedrouter attached the app's port", &router, || {
        rig.list().ports.len() == 1
    });
    let started = Instant::now();
    let cmdline = format!("connect-to={HOST}:{port} connect-count={CONNECTIONS}");
    let console = rig.app_vm(&app, &cmdline).finish(PATIENCE * 2);
    let router_console = router.finish(Duration::ZERO);
    let result = console
        .lines()
        .find(|l| l.contains("connect-rate"))
        .unwrap_or("no connect-rate line");
    println!(
        "{machine}: {result} (the app's VM ran {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        console.contains("PASS connect-rate")
            && console.contains(&format!("{CONNECTIONS} connections opened and closed")),
        "the app's connections:\n{console}\nzedrouter:\n{router_console}"
    );
}
