//! zedrouter in QEMU with the host's `ports` target and three `nettest`
//! VMs as apps. The broker and the ports target are set up from
//! a manifest as `eve-host run` does; the zedrouter VM runs with the
//! command line the host builds (its trunk NIC on the switch's socket); a
//! fake zedagent/zedmanager on the bus publishes one local network
//! instance and the apps' interfaces. zedrouter attaches the apps' ports
//! at the host, the apps get their leases from it, A serves TCP 7, B (its
//! ACL allows it) echoes 64 KiB through A, C (no rule) is refused, and
//! zedrouter publishes the instance's status with the three leases. Then
//! the apps go, and their flows are in the flow log (B's allowed by its
//! rule, C's dropped by the implicit one); zedrouter is restarted with C
//! alone, and C keeps its address: the engine's state came back from
//! zedrouter's state volume.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use eve_broker::{Broker, RpcHandler};
use eve_host::bus::BusAttach;
use eve_host::console::StderrLog;
use eve_host::manifest::Manifest;
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
use eve_proto::flowlog::AclAction;
use evebus::{Client, ClientConfig, Event};
use harness::{Device, Guest, Machine, Profile, build_service};
use hostops::Operation;
use hostops::ports::{Empty, List, PortList};
use prost::Message;
use topics::{
    AppAdapter, AppNetwork, AppNetworkConfig, AppNetworkStatus, FlowLog, NetworkInstanceStatus,
    Topic,
};

const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b";
/// Apps A, B and C.
const APPS: [&str; 3] = [
    "6ba7b810-9dad-11d1-80b4-00c04fd43001",
    "6ba7b810-9dad-11d1-80b4-00c04fd43002",
    "6ba7b810-9dad-11d1-80b4-00c04fd43003",
];
/// A guard against a run that never gets there, not a timing target.
const PATIENCE: Duration = Duration::from_secs(90);

const NODE: &str = r#"[node]
name = "routed"
arch = "x86_64"

[[service]]
name = "zedrouter"
image = "zedrouter"
ram_mib = 64
cmdline = "ip=10.0.2.15/24 gw=10.0.2.2 dns=10.0.2.3"
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

fn mac(n: usize) -> String {
    format!("02:16:3e:00:00:{n:02x}")
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
        name: format!("rule-{id}"),
        id,
        ..Default::default()
    }
}

fn instance() -> NetworkInstanceConfig {
    NetworkInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: NI.into(),
            version: "1".into(),
        }),
        displayname: "apps".into(),
        inst_type: ZNetworkInstType::ZnetInstLocal as i32,
        activate: true,
        ip: Some(Ipspec {
            subnet: "10.1.0.0/24".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn app(n: usize, acls: Vec<Ace>) -> AppNetwork {
    AppNetwork {
        app_uuid: APPS[n - 1].into(),
        display_name: format!("app{n}"),
        activate: true,
        adapters: vec![AppAdapter {
            nic: 0,
            adapter: Some(NetworkAdapter {
                name: "eth0".into(),
                network_id: NI.into(),
                acls,
                ..Default::default()
            }),
            mac: mac(n),
        }],
        ..Default::default()
    }
}

/// The fake publisher: its bus client, turned by a thread of its own
/// until the test ends, publishing (`Some`) or withdrawing (`None`) the
/// apps' interfaces it is sent.
fn feeder(
    broker: &Broker,
    stop: Arc<AtomicBool>,
    changes: mpsc::Receiver<(&'static str, Option<AppNetwork>)>,
) -> thread::JoinHandle<()> {
    let (mut ours, host_end) = UnixStream::pair().unwrap();
    BusAttach::attach(broker, "feeder", host_end);
    ours.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    thread::spawn(move || {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::new("feeder", 1));
        client.connect().unwrap();
        let mut published = false;
        while !stop.load(Ordering::Relaxed) {
            client.poll(start.elapsed());
            while let Some(event) = client.next_event() {
                if matches!(event, Event::Connected { .. }) && !published {
                    published = true;
                    let ni = instance().encode_to_vec();
                    client
                        .publish(topics::NetworkInstanceConfig::NAME, NI, &ni)
                        .unwrap();
                    // A accepts TCP 7 from the subnet; B may open TCP 7 in
                    // it; C has no rule.
                    let apps = [
                        app(
                            1,
                            vec![ace(
                                1,
                                &[("ip", "10.1.0.0/24"), ("protocol", "tcp"), ("lport", "7")],
                            )],
                        ),
                        app(
                            2,
                            vec![ace(
                                2,
                                &[("ip", "10.1.0.0/24"), ("protocol", "tcp"), ("fport", "7")],
                            )],
                        ),
                        app(3, vec![]),
                    ];
                    for a in apps {
                        client
                            .publish(AppNetworkConfig::NAME, &a.app_uuid, &a.encode_to_vec())
                            .unwrap();
                    }
                    client
                        .signal_synchronized(topics::NetworkInstanceConfig::NAME)
                        .unwrap();
                    client.signal_synchronized(AppNetworkConfig::NAME).unwrap();
                }
            }
            while let Ok((key, app)) = changes.try_recv() {
                match app {
                    Some(app) => client
                        .publish(AppNetworkConfig::NAME, key, &app.encode_to_vec())
                        .unwrap(),
                    None => client.delete(AppNetworkConfig::NAME, key).unwrap(),
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
    lines: mpsc::Receiver<String>,
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

    /// A nettest app whose NIC is the port socket of app `n`.
    fn app(machine: Machine, image: &Path, run: &Path, n: usize, cmdline: &str) -> Vm {
        let guest = Guest::new(machine, image.to_path_buf())
            .device(Device::VirtioRng)
            .cmdline(cmdline);
        let socket = app_socket(run, &format!("{}.0", APPS[n - 1]));
        let netdev = format!(
            "stream,id=app0,server=off,addr.type=unix,addr.path={},reconnect-ms=100",
            socket.display()
        );
        let nic = format!("virtio-net-device,netdev=app0,mac={}", mac(n));
        let mut command = Command::new(machine.arch().qemu());
        command
            .args(guest.args())
            .args(["-netdev", &netdev, "-device", &nic]);
        Vm::spawn(command)
    }

    fn console(&self) -> String {
        self.console.lock().unwrap().clone()
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

fn list(ports: &PortsTarget) -> PortList {
    let answer = ports
        .call("test", List::NAME, &Empty {}.encode_to_vec())
        .unwrap();
    <List as Operation>::Response::decode(answer.as_slice()).unwrap()
}

fn until(what: &str, router: &Vm, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "never happened: {what}\nzedrouter:\n{}",
            router.console()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn on_x86_64_apps_get_leases_reach_each_other_as_acls_allow_and_keep_addresses_across_a_restart() {
    apps_through_zedrouter(Machine::Microvm);
}

#[test]
fn on_aarch64_apps_get_leases_reach_each_other_as_acls_allow_and_keep_addresses_across_a_restart() {
    apps_through_zedrouter(Machine::Virt);
}

fn apps_through_zedrouter(machine: Machine) {
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

    // zedrouter's bus socket, attached as the node attaches a VM's.
    let bus_socket = state.run().join("zedrouter.bus");
    let listener = UnixListener::bind(&bus_socket).unwrap();
    let attach_broker = broker.clone();
    thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            BusAttach::attach(&attach_broker, "zedrouter", stream);
        }
    });
    let service = manifest.service("zedrouter").unwrap();
    let accel = guest_arch::choose_accel(arch, None).expect("an accelerator");
    let mut spec = VmSpec::new("zedrouter", arch, accel.accel, router_image);
    spec.cmdline = format!("service=zedrouter {}", service.cmdline);
    spec.ram_mib = service.ram_mib;
    spec.net = Some(NetSpec {
        restrict: true,
        ..Default::default()
    });
    spec.trunk = service.devices.trunk.then(|| trunk_socket(&state.run()));
    spec.bus_socket = Some(bus_socket);
    let volume = state.state_volume("zedrouter");
    prepare_state_volume(&volume, service.devices.state_mib.unwrap()).unwrap();
    spec.disks = service_disks(None, Some(&volume));
    let start_router = || {
        let mut command = Command::new(arch.qemu());
        command.args(qemu_args(&spec));
        Vm::spawn(command)
    };
    let router = start_router();

    let stop = Arc::new(AtomicBool::new(false));
    let (change, changes) = mpsc::channel();
    let feeder = feeder(&broker, stop.clone(), changes);

    until("zedrouter attached three ports", &router, || {
        list(&ports).ports.len() == 3
    });
    let a = Vm::app(machine, &app_image, &state.run(), 1, "echo-on=7");
    assert!(
        a.wait_for("nettest: listening on 7", PATIENCE),
        "A never listened:\n{}\nzedrouter:\n{}",
        a.console(),
        router.console()
    );
    let c = Vm::app(
        machine,
        &app_image,
        &state.run(),
        3,
        "echo-to=10.1.0.2:7 echo-bytes=1024",
    );
    let b = Vm::app(
        machine,
        &app_image,
        &state.run(),
        2,
        "echo-to=10.1.0.2:7 echo-bytes=65536",
    );
    let b_console = b.finish(PATIENCE);
    let a_console = a.finish(Duration::from_secs(30));
    let c_console = c.finish(Duration::from_secs(60));

    let status = || {
        broker
            .table(NetworkInstanceStatus::NAME)
            .get(NI)
            .and_then(|v| topics::decode::<NetworkInstanceStatus>(v).ok())
    };
    until("the instance's status lists three leases", &router, || {
        status().is_some_and(|s| s.ip_assignments.len() == 3)
    });
    let info = status().unwrap();
    let ports_then = list(&ports);
    // Each app's interface as zedmanager reports it (ZInfoApp.network):
    // its MAC and the address zedrouter gave it.
    let networks = broker.table(AppNetworkStatus::NAME);
    for (n, app) in APPS.iter().enumerate() {
        let state = networks
            .get(*app)
            .and_then(|v| topics::decode::<AppNetworkStatus>(v).ok())
            .unwrap_or_else(|| panic!("{arch}: no app-network-status of {app}: {networks:?}"));
        assert_eq!(state.networks.len(), 1, "{state:?}");
        let nic = &state.networks[0];
        assert_eq!(nic.mac_addr, mac(n + 1), "{state:?}");
        assert_eq!(nic.dev_name, "eth0", "{state:?}");
        assert!(
            nic.ip_addrs.len() == 1 && nic.ip_addrs[0].starts_with("10.1.0."),
            "{state:?}"
        );
    }

    // The apps go: their flows end and are logged, B's allowed by its
    // rule, C's dropped by the implicit rule (ACE 0).
    for app in APPS {
        change.send((app, None)).unwrap();
    }
    until("zedrouter detached every port", &router, || {
        list(&ports).ports.is_empty()
    });
    until("the apps' interfaces withdrawn", &router, || {
        broker.table(AppNetworkStatus::NAME).is_empty()
    });
    let logged = |app: &str| -> Vec<(i32, i32)> {
        broker
            .table(FlowLog::NAME)
            .values()
            .filter_map(|v| topics::decode::<FlowLog>(v).ok())
            .filter(|m| m.scope.as_ref().is_some_and(|s| s.uuid == app))
            .flat_map(|m| m.flows)
            .filter(|f| {
                f.flow
                    .as_ref()
                    .is_some_and(|f| f.dest_port == 7 || f.src_port == 7)
            })
            .map(|f| (f.acl_id, f.action))
            .collect()
    };
    let accept = AclAction::ActionAccept as i32;
    let dropped = AclAction::ActionDrop as i32;
    until("the flows are in the flow log", &router, || {
        logged(APPS[1]).contains(&(2, accept)) && logged(APPS[2]).contains(&(0, dropped))
    });

    // A restarted zedrouter gives C its old address from its saved state,
    // though C is then the only app: a fresh one would give it the first.
    let router_console = router.finish(Duration::ZERO);
    change.send((APPS[2], Some(app(3, vec![])))).unwrap();
    let router = start_router();
    // The new run attaches C under the first tag, so its VIF is
    // `nbu1x1` (it was `nbu3x1`): the status is the new run's.
    until(
        "the restarted zedrouter restored C's address",
        &router,
        || {
            status().is_some_and(|s| {
                s.vifs.len() == 1
                    && s.vifs[0].vif_name == "nbu1x1"
                    && s.vifs[0].mac_address == mac(3)
                    && s.ip_assignments.len() == 1
                    && s.ip_assignments[0].mac_address == mac(3)
                    && s.ip_assignments[0].ip_address == ["10.1.0.4"]
            })
        },
    );
    assert!(
        router.console().contains("saved state restored"),
        "{}",
        router.console()
    );
    assert_eq!(list(&ports).ports.len(), 1);
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    drop(router);
    let list = ports_then;

    assert!(
        b_console.contains("PASS tcp-client"),
        "B:\n{b_console}\nzedrouter:\n{router_console}"
    );
    assert!(b_console.contains("PASS address"), "B:\n{b_console}");
    assert!(a_console.contains("PASS tcp-server"), "A:\n{a_console}");
    assert!(a_console.contains("10.1.0."), "A's lease:\n{a_console}");
    assert!(
        c_console.contains("PASS address"),
        "C got its lease:\n{c_console}"
    );
    assert!(
        c_console.contains("FAIL tcp-client"),
        "C was refused:\n{c_console}"
    );
    assert!(info.activated, "{info:?}");
    let mut leased: Vec<(String, Vec<String>)> = info
        .ip_assignments
        .iter()
        .map(|e| (e.mac_address.clone(), e.ip_address.clone()))
        .collect();
    leased.sort();
    assert_eq!(leased.len(), 3, "{info:?}");
    for (n, (mac_address, ips)) in leased.iter().enumerate() {
        assert_eq!(*mac_address, mac(n + 1));
        assert!(ips.iter().all(|ip| ip.starts_with("10.1.0.")), "{info:?}");
    }
    for port in &list.ports {
        let counters = port.counters.unwrap();
        assert!(counters.to_trunk > 0 && counters.from_trunk > 0, "{port:?}");
    }
    assert!(list.trunk.unwrap().connected);
}
