//! zedrouter's uplink without `ip=` on its command line: it leases its
//! address from QEMU's user-mode DHCP server and NATs its local instance
//! onto it. The broker and the `ports` target come from a manifest as
//! `eve-host run` sets them up, zedrouter runs with the QEMU arguments the
//! host builds (its uplink with one guestfwd to a TCP echo server on the
//! host's loopback, the only address the test uses), a feeder on the
//! bus publishes one local instance and one app interface whose ACL allows
//! that server, and a `nettest` app on the port echoes through it.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use eve_broker::{Broker, RpcHandler};
use eve_host::bus::BusAttach;
use eve_host::console::StderrLog;
use eve_host::manifest::{Manifest, PortForward};
use eve_host::nodebus::NodeBus;
use eve_host::qemu::qemu_args;
use eve_host::servicelog::ServiceLogs;
use eve_host::targets::HostTarget;
use eve_host::targets::ports::{PortsTarget, app_socket, trunk_socket};
use eve_host::vmm::{NetSpec, VmSpec};
use eve_host::volumes::{StateDir, prepare_state_volume, service_disks};
use eve_proto::common::Ipspec;
use eve_proto::config::{
    Ace, AceMatch, NetworkAdapter, NetworkInstanceConfig, UuiDandVersion, ZNetworkInstType,
};
use evebus::{Client, ClientConfig, Event};
use harness::{Device, Guest, Machine, Profile, build_service};
use hostops::Operation;
use hostops::ports::{Empty, List};
use prost::Message;
use topics::{AppAdapter, AppNetwork, AppNetworkConfig, Topic};

const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4c";
const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd43201";
const MAC: &str = "02:16:3e:00:02:01";
/// A guard against a run that never gets there, not a timing target.
const PATIENCE: Duration = Duration::from_secs(180);

/// zedrouter as in the default node, but with no `ip=`.
const NODE: &str = r#"[node]
name = "leased"
arch = "x86_64"

[[service]]
name = "zedrouter"
image = "zedrouter"
ram_mib = 64
[service.devices]
net = true
trunk = true
state_mib = 1
[service.bus]
publish = ["network-instance-status", "flow-log", "app-network-status"]
subscribe = ["network-instance-config", "app-network-config", "edge-config"]
call.ports = ["attach", "detach", "list"]

[[service]]
name = "feeder"
image = "selftest"
ram_mib = 32
[service.bus]
publish = ["network-instance-config", "app-network-config", "edge-config"]
"#;

fn instance() -> NetworkInstanceConfig {
    NetworkInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: NI.into(),
            version: "1".into(),
        }),
        displayname: "leased".into(),
        inst_type: ZNetworkInstType::ZnetInstLocal as i32,
        activate: true,
        ip: Some(Ipspec {
            subnet: "10.1.0.0/24".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The app may open TCP 7 at the host's services address.
fn app() -> AppNetwork {
    let matches = [
        ("ip", harness::HOST_SERVICES_ADDR),
        ("protocol", "tcp"),
        ("fport", "7"),
    ];
    AppNetwork {
        app_uuid: APP.into(),
        display_name: "app".into(),
        activate: true,
        adapters: vec![AppAdapter {
            nic: 0,
            adapter: Some(NetworkAdapter {
                name: "eth0".into(),
                network_id: NI.into(),
                acls: vec![Ace {
                    matches: matches
                        .iter()
                        .map(|(t, v)| AceMatch {
                            r#type: t.to_string(),
                            value: v.to_string(),
                        })
                        .collect(),
                    name: "echo".into(),
                    id: 1,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            mac: MAC.into(),
        }],
        ..Default::default()
    }
}

/// The fake zedagent and zedmanager: publishes the instance and the app
/// once connected, and is turned until `stop`.
fn feeder(broker: &Broker, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    let (mut ours, host_end) = UnixStream::pair().unwrap();
    BusAttach::attach(broker, "feeder", host_end);
    ours.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    thread::spawn(move || {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::new("feeder", 1));
        client.connect().unwrap();
        while !stop.load(Ordering::Relaxed) {
            client.poll(start.elapsed());
            while let Some(event) = client.next_event() {
                if matches!(event, Event::Connected { .. }) {
                    let ni = topics::NetworkInstanceConfig::NAME;
                    client.publish(ni, NI, &instance().encode_to_vec()).unwrap();
                    let app = app().encode_to_vec();
                    client.publish(AppNetworkConfig::NAME, APP, &app).unwrap();
                    client.signal_synchronized(ni).unwrap();
                    client.signal_synchronized(AppNetworkConfig::NAME).unwrap();
                }
            }
            let bytes = client.transmit().to_vec();
            ours.write_all(&bytes).unwrap();
            client.transmitted(bytes.len());
            let mut buf = [0; 16 << 10];
            match ours.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => client.receive(&buf[..n], start.elapsed()).unwrap(),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("feeder read: {e}"),
            }
        }
    })
}

/// A QEMU process with its console collected.
struct Vm {
    child: Child,
    console: Arc<Mutex<String>>,
}

impl Vm {
    fn spawn(mut command: Command) -> Vm {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start QEMU");
        let console = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let console = console.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    console.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        Vm { child, console }
    }

    fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    /// Waits for the guest to power off; its console.
    fn finish(mut self, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        while Instant::now() < until && self.child.try_wait().ok().flatten().is_none() {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(50));
        self.console()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let arch = machine.arch();
    let router_image = build_service("zedrouter", arch, Profile::Release)
        .unwrap_or_else(|e| panic!("building zedrouter: {e}"));
    let app_image = build_service("nettest", arch, Profile::Release)
        .unwrap_or_else(|e| panic!("building nettest: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::create(dir.path()).unwrap();
    let manifest = Manifest::parse(NODE).expect("the test manifest");
    let ports = Arc::new(PortsTarget::start(&state.run()).expect("the port switch"));
    let bus = NodeBus::start_with(
        &manifest,
        ServiceLogs::new(&state.logs(), Arc::new(StderrLog)),
        vec![ports.clone() as Arc<dyn HostTarget>],
        &Default::default(),
    )
    .expect("the node's bus");
    let broker = bus.broker().clone();
    let bus_socket = state.run().join("zedrouter.bus");
    let listener = UnixListener::bind(&bus_socket).unwrap();
    let attach_broker = broker.clone();
    thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            BusAttach::attach(&attach_broker, "zedrouter", stream);
        }
    });

    let service = manifest.service("zedrouter").unwrap();
    assert!(!service.cmdline.contains("ip="), "{}", service.cmdline);
    let accel = guest_arch::choose_accel(arch, None).expect("an accelerator");
    let mut spec = VmSpec::new("zedrouter", arch, accel.accel, router_image);
    spec.cmdline = format!("service=zedrouter {}", service.cmdline);
    spec.ram_mib = service.ram_mib;
    // Not restricted, as the node's uplink is not: QEMU's DHCP server
    // gives a restricted guest neither router nor DNS. The test addresses
    // only its guestfwd.
    spec.net = Some(NetSpec {
        restrict: false,
        guest_forward: vec![PortForward {
            guest_port: 7,
            host_port: echo_server(),
        }],
        ..Default::default()
    });
    spec.trunk = Some(trunk_socket(&state.run()));
    spec.bus_socket = Some(bus_socket);
    let volume = state.state_volume("zedrouter");
    prepare_state_volume(&volume, service.devices.state_mib.unwrap()).unwrap();
    spec.disks = service_disks(None, Some(&volume));
    let mut command = Command::new(arch.qemu());
    command.args(qemu_args(&spec));
    let router = Vm::spawn(command);
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feeder(&broker, stop.clone());

    let attached = || {
        let answer = ports
            .call("test", List::NAME, &Empty {}.encode_to_vec())
            .unwrap();
        let list = <List as Operation>::Response::decode(answer.as_slice()).unwrap();
        list.ports.len() == 1
    };
    let deadline = Instant::now() + PATIENCE;
    while !attached() {
        assert!(
            Instant::now() < deadline,
            "zedrouter never attached the app's port:\n{}",
            router.console()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let guest = Guest::new(machine, app_image)
        .device(Device::VirtioRng)
        .cmdline(format!(
            "echo-to={}:7 echo-bytes=8192",
            harness::HOST_SERVICES_ADDR
        ));
    let socket = app_socket(&state.run(), &format!("{APP}.0"));
    let netdev = format!(
        "stream,id=app0,server=off,addr.type=unix,addr.path={},reconnect-ms=100",
        socket.display()
    );
    let nic = format!("virtio-net-device,netdev=app0,mac={MAC}");
    let mut command = Command::new(arch.qemu());
    command
        .args(guest.args())
        .args(["-netdev", &netdev, "-device", &nic]);
    let app = Vm::spawn(command).finish(PATIENCE);
    let router_console = router.finish(Duration::ZERO);
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();

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
