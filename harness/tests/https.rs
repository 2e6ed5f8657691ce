//! HTTP and TLS from inside the guest, on both arches, against servers on
//! the host's loopback (reached as 10.0.2.2 through user-mode networking):
//! chunked and large bodies both ways, a TLS 1.3 handshake with a test CA,
//! and every way a server must be refused, each with its own clear reason
//! on the console.

use std::time::Duration;

use harness::pki::{Issued, intermediate, issue, leaf, root};
use harness::servers::{Behaviour, GUEST_HOST_ADDR, Server, tls_config};
use harness::{Device, Guest, Machine, Outcome, Profile, UserNet, build_service};
use rcgen::{IsCa, date_time_ymd};

const NAME: &str = "controller.test";

fn open_net() -> Device {
    Device::UserNet(UserNet {
        guest_to_host: vec![],
        host_to_guest: vec![],
        open: true,
    })
}

fn boot(service: &str, machine: Machine, cmdline: String) -> Outcome {
    let image = build_service(service, machine.arch(), Profile::Release)
        .unwrap_or_else(|e| panic!("building {service}: {e}"));
    Guest::new(machine, image)
        .device(Device::VirtioRng)
        .device(open_net())
        .cmdline(cmdline)
        .timeout(Duration::from_secs(120))
        .run()
        .expect("QEMU runs")
}

/// Runs diag against a server on `port` that trusts `ca`.
fn diag(machine: Machine, port: u16, ca: &Issued) -> Outcome {
    boot(
        "diag",
        machine,
        format!(
            "server={NAME}:{port} hosts={NAME}={GUEST_HOST_ADDR} root={}",
            ca.der_base64()
        ),
    )
}

fn http_bodies(machine: Machine) {
    let server = Server::start(Behaviour::Http).expect("HTTP server");
    let base = format!("http://{GUEST_HOST_ADDR}:{}", server.port());
    let outcome = boot(
        "nettest",
        machine,
        format!(
            "fetch={base}/pattern/300001?chunked fetch-bytes=300001 post={base}/echo post-bytes=200003"
        ),
    );
    outcome.assert_success();
    assert!(outcome.console.contains("PASS fetch:"), "{outcome}");
    assert!(outcome.console.contains("PASS post:"), "{outcome}");
    assert_eq!(outcome.metric("fetch_bytes"), Some(300_001));
    assert_eq!(outcome.metric("post_bytes"), Some(200_003));
}

#[test]
fn http_chunked_and_large_bodies_on_microvm() {
    http_bodies(Machine::Microvm);
}

#[test]
fn http_chunked_and_large_bodies_on_virt() {
    http_bodies(Machine::Virt);
}

fn tls_success(machine: Machine) {
    let ca = root("Test Root");
    let server_cert = leaf(&[NAME], &ca);
    let server = Server::start(Behaviour::Tls(tls_config(&[&server_cert]))).expect("TLS server");
    let outcome = diag(machine, server.port(), &ca);
    outcome.assert_success();
    for step in ["link", "dhcp", "dns", "tcp", "tls", "ping"] {
        assert!(
            outcome.console.contains(&format!("PASS {step}:")),
            "step {step} did not pass:\n{outcome}"
        );
    }
    // One MiB over HTTPS with a Content-Length body, checked as it
    // streams, from a server whose chain goes through an intermediate CA.
    let intermediate_ca = intermediate("Test Intermediate", &ca);
    let chained = leaf(&[NAME], &intermediate_ca);
    let server = Server::start(Behaviour::Tls(tls_config(&[&chained, &intermediate_ca])))
        .expect("TLS server");
    let outcome = boot(
        "nettest",
        machine,
        format!(
            "hosts={NAME}={GUEST_HOST_ADDR} fetch=https://{NAME}:{}/pattern/1048576 fetch-bytes=1048576 root={}",
            server.port(),
            ca.der_base64()
        ),
    );
    outcome.assert_success();
    assert_eq!(outcome.metric("fetch_bytes"), Some(1 << 20));
    assert!(outcome.metric("fetch_handshake_us").is_some(), "{outcome}");
}

/// diag finds the controller on the CONFIG partition, as on a device:
/// `server`, `root-certificate.pem` and a `hosts` override, in a FAT image
/// on the virtio disk with serial `config`.
fn diag_from_config_partition(machine: Machine) {
    let ca = root("Test Root");
    let server_cert = leaf(&[NAME], &ca);
    let server = Server::start(Behaviour::Tls(tls_config(&[&server_cert]))).expect("TLS server");
    let server_file = format!("{NAME}:{}\n", server.port());
    let hosts = format!("# static override\n{GUEST_HOST_ADDR} {NAME}\n");
    let root_pem = ca.cert.pem();
    let image = configpart::build_config_image(
        &[
            ("server", server_file.as_bytes()),
            ("root-certificate.pem", root_pem.as_bytes()),
            ("hosts", hosts.as_bytes()),
        ],
        configpart::ImageLayout::Bare {
            volume_bytes: 1 << 20,
        },
    )
    .expect("CONFIG image");
    let path = std::env::temp_dir().join(format!(
        "diag-config-{}-{}.img",
        machine.name(),
        std::process::id()
    ));
    std::fs::write(&path, image).expect("write CONFIG image");
    let built = build_service("diag", machine.arch(), Profile::Release).expect("diag builds");
    let outcome = Guest::new(machine, built)
        .device(Device::VirtioRng)
        .device(open_net())
        .device(Device::Disk {
            path: path.clone(),
            serial: "config".into(),
            read_only: true,
        })
        .timeout(Duration::from_secs(120))
        .run()
        .expect("QEMU runs");
    let _ = std::fs::remove_file(&path);
    outcome.assert_success();
    assert!(
        outcome.console.contains(&format!(
            "PASS config: controller {NAME}:{} from the CONFIG partition",
            server.port()
        )),
        "{outcome}"
    );
    assert!(outcome.console.contains("PASS ping:"), "{outcome}");
}

#[test]
fn diag_from_config_partition_on_microvm() {
    diag_from_config_partition(Machine::Microvm);
}

#[test]
fn diag_from_config_partition_on_virt() {
    diag_from_config_partition(Machine::Virt);
}

#[test]
fn tls_handshake_and_https_on_microvm() {
    tls_success(Machine::Microvm);
}

#[test]
fn tls_handshake_and_https_on_virt() {
    tls_success(Machine::Virt);
}

/// A server diag must refuse, and the words its refusal must contain.
struct Refusal {
    what: &'static str,
    behaviour: Behaviour,
    why: &'static str,
}

fn refusals(ca: &Issued) -> Vec<Refusal> {
    let other_ca = root("Other Root");
    let untrusted = leaf(&[NAME], &other_ca);
    let wrong_name = leaf(&["elsewhere.test"], ca);
    let expired = issue("server", &[NAME], ca, |p| {
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2021, 1, 1);
    });
    let not_a_ca = issue("not a CA", &[], ca, |p| p.is_ca = IsCa::ExplicitNoCa);
    let under_non_ca = leaf(&[NAME], &not_a_ca);
    vec![
        Refusal {
            what: "untrusted root",
            behaviour: Behaviour::Tls(tls_config(&[&untrusted])),
            why: "does not lead to a pinned root",
        },
        Refusal {
            what: "wrong hostname",
            behaviour: Behaviour::Tls(tls_config(&[&wrong_name])),
            why: "does not match the server name",
        },
        Refusal {
            what: "expired",
            behaviour: Behaviour::Tls(tls_config(&[&expired])),
            why: "certificate expired",
        },
        Refusal {
            what: "signed by a non-CA",
            behaviour: Behaviour::Tls(tls_config(&[&under_non_ca, &not_a_ca])),
            why: "issued by a certificate that is not a CA",
        },
        Refusal {
            what: "truncated handshake",
            behaviour: Behaviour::TruncatedHandshake,
            why: "closed",
        },
    ]
}

fn tls_refusals(machine: Machine) {
    let ca = root("Test Root");
    let mut failures = Vec::new();
    for refusal in refusals(&ca) {
        let server = Server::start(refusal.behaviour).expect("TLS server");
        let outcome = diag(machine, server.port(), &ca);
        let tls_line = outcome
            .console
            .lines()
            .find(|l| l.contains("FAIL tls:"))
            .map(str::to_owned);
        let refused_clearly = !outcome.succeeded()
            && outcome.console.contains("PASS tcp:")
            && outcome.console.contains("SKIP ping:")
            && tls_line.as_deref().is_some_and(|l| l.contains(refusal.why));
        if !refused_clearly {
            failures.push(format!(
                "{}: expected `FAIL tls: ... {}`, got {tls_line:?}\n{outcome}",
                refusal.what, refusal.why
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn tls_refusals_on_microvm() {
    tls_refusals(Machine::Microvm);
}

#[test]
fn tls_refusals_on_virt() {
    tls_refusals(Machine::Virt);
}
