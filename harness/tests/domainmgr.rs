//! domainmgr on a node (x86_64, TCG): the service in QEMU under the
//! host's own node code, the broker serving the `domains` target over a
//! real state directory; the test plays zedmanager on the bus, publishing
//! `domain-config`. The `hello-http` unikernel, from a raw volume as the
//! volumes target leaves one, reaches RUNNING in `domain-status` and
//! answers HTTP on its loopback port map; its console lines reach
//! domainmgr's log; its CPU and memory show in `app-metrics`;
//! `activate = false` halts it and its port goes quiet.

#[path = "common/hostlog.rs"]
mod hostlog;

use hostlog::Lines;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use eve_host::manifest::Manifest;
use eve_host::node::{Node, NodePaths, Seams};
use eve_host::nodebus::{NodeBus, TpmChoice};
use eve_host::qemu::QemuVmm;
use eve_host::servicelog::ServiceLogs;
use eve_host::targets::{ContentOptions, DomainsOptions};
use eve_host::vfio::VfioRoots;
use eve_host::volumes::StateDir;
use eve_proto::Message;
use eve_proto::info::ZSwState;
use evebus::{Client, ClientConfig};
use harness::{Arch, Profile, appassets, build_service};
use topics::{
    AppMetrics, Domain, DomainConfig, DomainDisk, DomainKind, DomainStatus, PortMap, Topic,
};

/// A guard against hanging, not a timing target: under TCG a service and
/// the unikernel each boot in seconds.
const PATIENCE: Duration = Duration::from_secs(90);
const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const VOLUME: &str = "0f2bd5a4-6a2e-4a8e-9d7c-2b8f3a1c9e11";

const MANIFEST: &str = r#"
[node]
name = "domainmgr-test"
arch = "x86_64"

# Played by the test.
[[service]]
name = "zedmanager"
image = "zedmanager"
ram_mib = 32

[service.bus]
publish = ["domain-config"]

[[service]]
name = "domainmgr"
image = "domainmgr"
ram_mib = 32

[service.bus]
publish = ["domain-status", "app-metrics", "app-logs"]
subscribe = ["domain-config"]
call = { domains = ["start", "stop", "list", "usage", "console"] }
"#;

/// zedmanager's side of the bus: an `evebus::Client` on a socket pair.
struct Zedmanager {
    stream: UnixStream,
    client: Client,
    start: Instant,
}

impl Zedmanager {
    fn attach(bus: &NodeBus) -> Zedmanager {
        let (ours, theirs) = UnixStream::pair().unwrap();
        bus.broker().attach("zedmanager", theirs).unwrap();
        ours.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut z = Zedmanager {
            stream: ours,
            client: Client::new(ClientConfig::new("zedmanager", 1)),
            start: Instant::now(),
        };
        z.client.connect().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !z.client.is_connected() {
            assert!(Instant::now() < deadline, "zedmanager was never welcomed");
            z.pump();
        }
        z
    }

    /// Sends what is queued and reads what arrived.
    fn pump(&mut self) {
        let bytes = self.client.transmit().to_vec();
        self.stream.write_all(&bytes).unwrap();
        self.client.transmitted(bytes.len());
        let mut buf = [0; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => panic!("the broker closed zedmanager's connection"),
            Ok(n) => self
                .client
                .receive(&buf[..n], self.start.elapsed())
                .unwrap(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("zedmanager's read: {e}"),
        }
        while self.client.next_event().is_some() {}
        self.client.poll(self.start.elapsed());
    }

    fn publish(&mut self, domain: &Domain) {
        self.client
            .publish(DomainConfig::NAME, &domain.uuid, &domain.encode_to_vec())
            .unwrap();
        self.client.signal_synchronized(DomainConfig::NAME).unwrap();
        self.pump();
    }
}

fn table<T: Topic>(bus: &NodeBus) -> Vec<(String, T::Value)> {
    bus.broker()
        .table(T::NAME)
        .into_iter()
        .filter_map(|(k, v)| topics::decode::<T>(&v).ok().map(|v| (k, v)))
        .collect()
}

/// A raw volume holding `hello-http`, as the volumes target leaves one.
fn hello_volume(state: &Path) -> String {
    let name = format!("{VOLUME}.1");
    let dir = state.join("content/volumes").join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let image = appassets::app_unikernel(Arch::X86_64).expect("building hello-http");
    std::fs::copy(image, dir.join("disk.raw")).unwrap();
    let record = serde_json::json!({
        "uuid": VOLUME, "generation": 1, "format": "raw",
        "components": [[format!("sha256:{}", "0".repeat(64)), ""]],
        "max_size_bytes": 0, "size_bytes": 1, "created_unix": 1,
    });
    std::fs::write(dir.join("volume.json"), record.to_string()).unwrap();
    name
}

fn get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET / HTTP/1.0\r\nHost: app\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    (answer.starts_with("HTTP/1.") && answer.split(' ').nth(1) == Some("200")).then_some(answer)
}

#[test]
fn domainmgr_runs_and_halts_a_unikernel_from_domain_config() {
    let images = build_service("domainmgr", Arch::X86_64, Profile::Release)
        .expect("building domainmgr")
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let volume = hello_volume(state);
    let manifest = Manifest::parse(MANIFEST).expect("the test's manifest");
    let lines = Arc::new(Lines::default());
    let tpm = TpmChoice::None;
    let domains = DomainsOptions {
        arch: Arch::X86_64,
        memory_mib: Some(256),
        cpus: Some(2),
        ..DomainsOptions::default()
    };
    let logs = StateDir::create(state).unwrap().logs();
    let bus = NodeBus::start(
        &manifest,
        state,
        &tpm,
        ContentOptions::default(),
        &domains,
        None,
        ServiceLogs::new(&logs, lines.clone()),
    )
    .expect("the node's bus");
    let alone = Manifest {
        node: manifest.node.clone(),
        services: vec![manifest.service("domainmgr").unwrap().clone()],
    };
    let accel = guest_arch::choose_accel(Arch::X86_64, None).expect("an accelerator");
    let paths = NodePaths {
        images,
        state_dir: state.to_path_buf(),
        config_part: None,
    };
    let node = Node::prepare(&alone, &paths, &accel, &VfioRoots::default()).expect("the node");
    let broker = bus.broker().clone();
    let seams = Seams {
        bus: Arc::new(broker.clone()),
        heartbeats: Arc::new(broker),
        log: lines.clone(),
        status: None,
    };
    let stop = AtomicBool::new(false);
    let mut zedmanager = Zedmanager::attach(&bus);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut domain = Domain {
        uuid: APP.into(),
        display_name: "hello".into(),
        activate: true,
        kind: DomainKind::Unikernel as i32,
        memory_kib: 32 * 1024,
        vcpus: 1,
        disks: vec![DomainDisk {
            host_volume: volume.clone(),
            volume_uuid: VOLUME.into(),
            readonly: false,
        }],
        extra_args: "port=80".into(),
        port_maps: vec![PortMap {
            host_port: u32::from(port),
            app_port: 80,
        }],
        ..Domain::default()
    };
    let report = || lines.snapshot().join("\n");
    thread::scope(|scope| {
        scope.spawn(|| node.run(QemuVmm, seams, &stop, Duration::from_secs(5), |_| {}));
        let until = |what: &str, z: &mut Zedmanager, f: &dyn Fn() -> bool| {
            let deadline = Instant::now() + PATIENCE;
            while !f() {
                if Instant::now() >= deadline {
                    stop.store(true, Ordering::SeqCst);
                    panic!("{what} within {PATIENCE:?}\n{}", report());
                }
                z.pump();
                thread::sleep(Duration::from_millis(100));
            }
        };
        let bus = &bus;
        let state_is = |wanted: ZSwState| {
            move || {
                table::<DomainStatus>(bus)
                    .iter()
                    .any(|(k, s)| k == APP && s.state == wanted as i32)
            }
        };
        zedmanager.publish(&domain);
        until("RUNNING", &mut zedmanager, &state_is(ZSwState::Running));
        let (_, running) = table::<DomainStatus>(bus).remove(0);
        assert_eq!(running.boot_count, 1);
        assert!(
            running.boot_unix > 0 && running.error.is_empty(),
            "{running:?}"
        );
        assert_eq!(running.disks, std::slice::from_ref(&volume));
        until("an HTTP answer", &mut zedmanager, &|| get(port).is_some());
        until(
            "the app's console in domainmgr's log",
            &mut zedmanager,
            &|| {
                lines.snapshot().iter().any(|l| {
                    l.contains("[domainmgr bus]") && l.contains("hello-http: listening on port 80")
                })
            },
        );
        until("app metrics", &mut zedmanager, &|| {
            table::<AppMetrics>(bus)
                .iter()
                .any(|(k, m)| k == APP && m.cpu.is_some_and(|c| c.total_ns > 0))
        });

        domain.activate = false;
        zedmanager.publish(&domain);
        until("HALTED", &mut zedmanager, &state_is(ZSwState::Halted));
        assert_eq!(get(port), None, "the halted app still answers");
        until("no metrics of a halted app", &mut zedmanager, &|| {
            table::<AppMetrics>(bus).is_empty()
        });
        stop.store(true, Ordering::SeqCst);
    });
}
