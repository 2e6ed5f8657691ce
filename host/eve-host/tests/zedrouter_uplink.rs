//! zedrouter's uplink without `ip=` on its command line: it leases its
//! address from QEMU's user-mode DHCP server and NATs its local instance
//! onto it. The node around zedrouter is the zedrouter scenarios' rig
//! (`common::rig`) with `uplink_by_dhcp`: its uplink has one guestfwd to a
//! TCP echo server on the host's loopback, the only address the test
//! uses; one local instance and one app interface whose ACL allows that
//! server, and a `nettest` app on the port echoes through it.

#[allow(dead_code)] // each scenario uses part of the rig
mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use common::rig::{PATIENCE, Rig, Setup, ace, app, local_instance};
use eve_host::manifest::PortForward;
use harness::Machine;

const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4c";

/// A TCP echo server on the host's loopback; its port.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            thread::spawn(move || {
                let mut buf = [0u8; 16 << 10];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn on_x86_64_zedrouter_leases_its_uplink_and_nats_an_app_through_it() {
    uplink_by_dhcp(Machine::Microvm);
}

#[test]
fn on_aarch64_zedrouter_leases_its_uplink_and_nats_an_app_through_it() {
    uplink_by_dhcp(Machine::Virt);
}

fn uplink_by_dhcp(machine: Machine) {
    // The app may open TCP 7 at the host's services address.
    let echo = ace(
        1,
        &[
            ("ip", harness::HOST_SERVICES_ADDR),
            ("protocol", "tcp"),
            ("fport", "7"),
        ],
    );
    let app = app(1, NI, vec![echo]);
    let rig = Rig::start(
        machine,
        Setup {
            instances: vec![local_instance(NI, "10.1.0.0/24", &[])],
            apps: vec![app.clone()],
            guest_forward: vec![PortForward {
                guest_port: 7,
                host_port: echo_server(),
            }],
            uplink_by_dhcp: true,
            ..Setup::default()
        },
    );
    let router = rig.start_router();
    rig.until("zedrouter attached the app's port", &router, || {
        rig.list().ports.len() == 1
    });
    let cmdline = format!("echo-to={}:7 echo-bytes=8192", harness::HOST_SERVICES_ADDR);
    let app = rig.app_vm(&app, &cmdline).finish(PATIENCE * 2);
    let router_console = router.finish(Duration::ZERO);

    assert!(
        router_console.contains("uplink: DHCP")
            && router_console.contains("uplink 10.0.2.15/24 via Some(10.0.2.2)"),
        "zedrouter did not lease its uplink:\n{router_console}"
    );
    assert!(
        app.contains("PASS address") && app.contains("10.1.0.2"),
        "the app's lease:\n{app}"
    );
    assert!(
        app.contains("PASS tcp-client"),
        "the app's echo through the leased uplink:\n{app}\nzedrouter:\n{router_console}"
    );
}
