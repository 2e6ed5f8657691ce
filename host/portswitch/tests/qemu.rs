//! Real QEMU app VMs through the switch. Three `nettest` guests have
//! their NICs on stream netdevs to the switch's port sockets; this test
//! plays zedrouter at the trunk, running the `appnet` engine with one
//! local instance. The guests get their leases through the switch; B,
//! whose ACL allows it, sends 64 KiB to A's echo server and gets it back;
//! C, with no rule, cannot reach A. A's VM starts before its port is
//! attached: QEMU keeps reconnecting until the port is there.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use appnet::{
    AddressRange, AppMetadata, AppPortConfig, Engine, EngineConfig, EthernetAddress,
    InstanceConfig, InstanceKind, Ipv4Cidr, LocalConfig, PortId,
};
use eve_proto::config::{Ace, AceMatch};
use harness::{Device, Guest, Machine, Profile, build_service};
use portswitch::frame::{Deframer, tagged};
use portswitch::{Config, PortSwitch, Tag};

const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b";

fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([0x02, 0x16, 0x3e, 0, 0, n])
}

fn mac_text(n: u8) -> String {
    appnet::mac_string(mac(n))
}

fn ace(id: i32, matches: &[(&str, &str)]) -> Ace {
    Ace {
        matches: matches
            .iter()
            .map(|(t, v)| AceMatch {
                r#type: t.to_string(),
                value: v.to_string(),
            })
            .collect(),
        actions: vec![],
        name: format!("rule-{id}"),
        id,
        dir: 0,
    }
}

fn app(n: u8, acls: Vec<Ace>) -> AppPortConfig {
    AppPortConfig {
        port: PortId(u16::from(n)),
        instance: NI.into(),
        app_uuid: format!("app-{n}"),
        app_name: format!("app{n}"),
        adapter: "eth0".into(),
        vif: format!("nbu{n}x1"),
        mac: mac(n),
        static_ip: None,
        hostname: format!("app{n}"),
        acls,
        metadata: AppMetadata::default(),
    }
}

fn engine() -> Engine {
    let mut engine = Engine::new(EngineConfig {
        seed: 0x5eed,
        ..Default::default()
    });
    let local = LocalConfig {
        subnet: Ipv4Cidr::new(Ipv4Addr::new(10, 1, 0, 0), 24),
        gateway: Ipv4Addr::new(10, 1, 0, 1),
        dhcp_range: AddressRange {
            first: Ipv4Addr::new(10, 1, 0, 2),
            last: Ipv4Addr::new(10, 1, 0, 50),
        },
        dns_servers: vec![],
        ntp_servers: vec![],
        domain: String::new(),
        static_routes: vec![],
        static_hosts: vec![],
    };
    let now = appnet::Instant::ZERO;
    engine
        .set_instance(
            now,
            InstanceConfig {
                uuid: NI.into(),
                version: "1".into(),
                name: "apps".into(),
                activated: true,
                kind: InstanceKind::Local(local),
                device_port: None,
                mtu: 1500,
                flowlog: true,
                bridge_mac: EthernetAddress([0x02, 0xbb, 0, 0, 0, 1]),
                bridge_num: 1,
            },
        )
        .unwrap();
    // A accepts TCP 7 from the subnet; B may open TCP 7 in it; C nothing.
    let a = vec![ace(
        1,
        &[("ip", "10.1.0.0/24"), ("protocol", "tcp"), ("lport", "7")],
    )];
    let b = vec![ace(
        2,
        &[("ip", "10.1.0.0/24"), ("protocol", "tcp"), ("fport", "7")],
    )];
    assert_eq!(
        engine.attach(now, app(1, a)).unwrap(),
        Some(Ipv4Addr::new(10, 1, 0, 2))
    );
    assert_eq!(
        engine.attach(now, app(2, b)).unwrap(),
        Some(Ipv4Addr::new(10, 1, 0, 3))
    );
    assert_eq!(
        engine.attach(now, app(3, vec![])).unwrap(),
        Some(Ipv4Addr::new(10, 1, 0, 4))
    );
    engine
}

/// zedrouter's side of the trunk: the engine, fed and drained, until
/// `stop`. Returns the engine for inspection.
fn zedrouter(trunk: &Path, stop: Arc<AtomicBool>) -> thread::JoinHandle<Engine> {
    let trunk = trunk.to_path_buf();
    thread::spawn(move || {
        let mut engine = engine();
        let mut stream = UnixStream::connect(&trunk).expect("connect to the trunk");
        stream
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let mut deframer = Deframer::default();
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = appnet::Instant::from_micros(started.elapsed().as_micros() as i64);
            match stream.read(deframer.spare()) {
                Ok(0) => break,
                Ok(n) => deframer.filled(n),
                Err(_) => deframer.filled(0),
            }
            while let Ok(Some(frame)) = deframer.next_frame() {
                if let Some((tag, framed)) = portswitch::frame::untagged(frame) {
                    engine.receive(now, PortId(tag.vid()), &framed[4..]);
                }
            }
            if engine.poll_at(now).is_some_and(|t| t <= now) {
                engine.poll(now);
            }
            while let Some(t) = engine.pop_transmit() {
                let tag = Tag::new(t.port.0).expect("app ports are valid tags");
                stream
                    .write_all(&tagged(&t.frame, tag))
                    .expect("write to the trunk");
            }
        }
        engine
    })
}

/// A nettest VM whose NIC is a stream netdev to `socket`.
struct Vm {
    child: Child,
    lines: mpsc::Receiver<String>,
    console: Arc<Mutex<String>>,
}

impl Vm {
    fn start(image: &Path, n: u8, socket: &Path, cmdline: &str) -> Vm {
        let guest = Guest::new(Machine::Microvm, image.to_path_buf())
            .device(Device::VirtioRng)
            .cmdline(cmdline);
        let netdev = format!(
            "stream,id=app0,server=off,addr.type=unix,addr.path={},reconnect-ms=100",
            socket.display()
        );
        let nic = format!("virtio-net-device,netdev=app0,mac={}", mac_text(n));
        let mut child = Command::new(Machine::Microvm.arch().qemu())
            .args(guest.args())
            .args(["-netdev", &netdev, "-device", &nic])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start QEMU");
        let (tx, lines) = mpsc::channel();
        let console = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            let console = console.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    console.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            });
        }
        Vm {
            child,
            lines,
            console,
        }
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits for the guest to power off; its console.
    fn finish(mut self, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(50));
        self.console.lock().unwrap().clone()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn app_vms_reach_each_other_through_the_switch_only_as_their_acls_allow() {
    let image = build_service("nettest", Machine::Microvm.arch(), Profile::Release)
        .unwrap_or_else(|e| panic!("building nettest: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let trunk = dir.path().join("trunk.sock");
    let switch = PortSwitch::start(Config::new(&trunk)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let router = zedrouter(&trunk, stop.clone());
    let socket = |n: u16| dir.path().join(format!("app{n}.sock"));

    // A starts before its port exists; QEMU keeps trying.
    let a = Vm::start(&image, 1, &socket(1), "echo-on=7");
    thread::sleep(Duration::from_millis(300));
    for n in 1..=3 {
        switch.attach(Tag::new(n).unwrap(), &socket(n)).unwrap();
    }
    assert!(
        a.wait_for("nettest: listening on 7", Duration::from_secs(60)),
        "A never listened:\n{}",
        a.console.lock().unwrap()
    );
    let c = Vm::start(&image, 3, &socket(3), "echo-to=10.1.0.2:7 echo-bytes=1024");
    let b = Vm::start(&image, 2, &socket(2), "echo-to=10.1.0.2:7 echo-bytes=65536");
    let b_console = b.finish(Duration::from_secs(120));
    let a_console = a.finish(Duration::from_secs(30));
    let c_console = c.finish(Duration::from_secs(60));
    let stats = switch.stats().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut engine = router.join().unwrap();

    assert!(b_console.contains("PASS tcp-client"), "B:\n{b_console}");
    assert!(b_console.contains("@@ exit 0"), "B:\n{b_console}");
    assert!(a_console.contains("PASS tcp-server"), "A:\n{a_console}");
    assert!(
        c_console.contains("PASS address"),
        "C got its lease:\n{c_console}"
    );
    assert!(
        c_console.contains("FAIL tcp-client"),
        "C was refused:\n{c_console}"
    );
    for n in 1..=3 {
        let port = &stats.ports[&Tag::new(n).unwrap()];
        assert!(
            port.connections >= 1 && port.to_trunk > 0 && port.from_trunk > 0,
            "port {n}: {port:?}"
        );
    }
    assert!(engine.port_counters(PortId(3)).unwrap().tx_acl_drops > 0);
    // Detaching ends the flows: B's is logged as allowed by its rule, C's
    // as dropped by the implicit rule.
    let now = appnet::Instant::from_secs(3600);
    for n in 1..=3 {
        engine.detach(now, PortId(n)).unwrap();
    }
    let messages = engine.take_flow_messages();
    let of = |app: &str| -> Vec<(i32, i32)> {
        messages
            .iter()
            .filter(|m| m.scope.as_ref().is_some_and(|s| s.uuid == app))
            .flat_map(|m| m.flows.iter())
            .filter(|f| {
                f.flow
                    .as_ref()
                    .is_some_and(|f| f.dest_port == 7 || f.src_port == 7)
            })
            .map(|f| (f.acl_id, f.action))
            .collect()
    };
    assert!(of("app-2").contains(&(2, 2)), "{messages:#?}");
    assert!(of("app-3").contains(&(0, 1)), "{messages:#?}");
    drop(switch);
    assert!(!trunk.exists());
}
