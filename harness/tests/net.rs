//! The network stack in QEMU on every machine type, against the host's
//! loopback through user-mode networking (restricted to the forwards the
//! test sets up): DHCP, the guest as a TCP client of a host echo server,
//! and the guest as a TCP echo server the host connects to.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream, UdpSocket},
    thread,
    time::Duration,
};

use harness::{Device, Guest, Machine, Profile, UserNet, build_service};

const BYTES: usize = 64 * 1024;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Echoes one connection on a fresh loopback port; returns the port.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo server");
    let port = listener.local_addr().expect("local addr").port();
    thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn tcp_both_ways(machine: Machine) {
    let image = build_service("nettest", machine.arch(), Profile::Release)
        .unwrap_or_else(|e| panic!("building nettest: {e}"));
    let echo_port = echo_server();
    let forward_port = free_port();
    let net = UserNet {
        guest_to_host: vec![(7, echo_port)],
        host_to_guest: vec![(forward_port, 8080)],
        open: false,
    };
    let guest = Guest::new(machine, image)
        .device(Device::VirtioRng)
        .device(Device::UserNet(net))
        .cmdline(format!(
            "echo-to={}:7 echo-bytes={BYTES} echo-on=8080",
            harness::HOST_SERVICES_ADDR
        ));
    let mut running = guest.spawn().expect("start QEMU");
    let listening = running.wait_for_line("nettest: listening on 8080", Duration::from_secs(60));
    let mut host_result = Err("guest never listened".to_string());
    if listening.is_some() {
        host_result = (|| {
            let mut conn =
                TcpStream::connect(("127.0.0.1", forward_port)).map_err(|e| e.to_string())?;
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
            let data = pattern(BYTES);
            conn.write_all(&data).map_err(|e| e.to_string())?;
            conn.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
            let mut back = Vec::new();
            conn.read_to_end(&mut back).map_err(|e| e.to_string())?;
            if back == data {
                Ok(())
            } else {
                Err(format!("echo differs: {} bytes back", back.len()))
            }
        })();
    }
    let outcome = running.finish();
    assert_eq!(host_result, Ok(()), "host side failed:\n{outcome}");
    outcome.assert_success();
    for step in ["address", "tcp-client", "tcp-server"] {
        assert!(
            outcome.console.contains(&format!("PASS {step}:")),
            "{step}:\n{outcome}"
        );
    }
    assert!(
        outcome.console.contains("10.0.2.15/24"),
        "DHCP lease:\n{outcome}"
    );
    assert!(outcome.stamp("lease").is_some());
}

/// A DNS server on a fresh loopback UDP port that answers A queries for
/// `controller.test` with 10.0.2.100 and NXDOMAIN for anything else.
fn dns_server() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind DNS server");
    let port = socket.local_addr().expect("local addr").port();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let query = &buf[..n];
            if n < 17 {
                continue;
            }
            // The question name starts at 12; compare it in wire form.
            let wanted = b"\x0acontroller\x04test\x00";
            let known = query.get(12..12 + wanted.len()) == Some(&wanted[..]);
            let mut reply = query.to_vec();
            reply[2] = 0x81;
            reply[3] = if known { 0x80 } else { 0x83 };
            if known {
                reply[7] = 1;
                reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 2, 100]);
            }
            let _ = socket.send_to(&reply, from);
        }
    });
    port
}

fn resolve(machine: Machine, names: &str, dns_port: Option<u16>) -> harness::Outcome {
    let image = build_service("nettest", machine.arch(), Profile::Release)
        .unwrap_or_else(|e| panic!("building nettest: {e}"));
    let dns = dns_port.map_or(String::new(), |p| format!(" dns=10.0.2.2:{p}"));
    Guest::new(machine, image)
        .device(Device::VirtioRng)
        .device(Device::UserNet(UserNet {
            open: dns_port.is_some(),
            ..UserNet::default()
        }))
        .cmdline(format!("{names}{dns}"))
        .run()
        .expect("run")
}

#[test]
fn dns_through_a_resolver_on_the_host() {
    for machine in [Machine::Microvm, Machine::Virt] {
        let outcome = resolve(
            machine,
            "resolve=Controller.Test resolve-expect=10.0.2.100",
            Some(dns_server()),
        );
        outcome.assert_success();
        assert!(
            outcome
                .console
                .contains("PASS dns: Controller.Test is 10.0.2.100"),
            "{outcome}"
        );
        let missing = resolve(machine, "resolve=nowhere.test", Some(dns_server()));
        assert_eq!(missing.end, harness::End::Exited(1), "{missing}");
        assert!(
            missing
                .console
                .contains("FAIL dns: nowhere.test: DNS: name not found (NXDOMAIN)"),
            "{missing}"
        );
    }
}

#[test]
fn static_hosts_need_no_server() {
    let outcome = resolve(
        Machine::Microvm,
        "hosts=controller.local=10.0.2.77,other=1.2.3.4 resolve=controller.local resolve-expect=10.0.2.77",
        None,
    );
    outcome.assert_success();
    let refused = resolve(Machine::Microvm, "hosts=bad_entry resolve=x", None);
    assert_eq!(refused.end, harness::End::Exited(1), "{refused}");
    assert!(
        refused
            .console
            .contains("FAIL link: addressing: hosts= is not a list"),
        "{refused}"
    );
}

#[test]
fn tcp_both_ways_on_x86_64_microvm() {
    tcp_both_ways(Machine::Microvm);
}

#[test]
fn tcp_both_ways_on_x86_64_q35() {
    tcp_both_ways(Machine::Q35);
}

#[test]
fn tcp_both_ways_on_aarch64_virt() {
    tcp_both_ways(Machine::Virt);
}

#[test]
fn no_network_device_is_a_clear_failure() {
    let image = build_service("nettest", Machine::Microvm.arch(), Profile::Release)
        .unwrap_or_else(|e| panic!("building nettest: {e}"));
    let outcome = Guest::new(Machine::Microvm, image).run().expect("run");
    assert_eq!(outcome.end, harness::End::Exited(1), "{outcome}");
    assert!(
        outcome.console.contains("FAIL link: no virtio-net device"),
        "{outcome}"
    );
}
