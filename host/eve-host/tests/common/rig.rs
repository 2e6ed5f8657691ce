//! The node around zedrouter: the broker and the `ports` target set up from
//! a manifest as `eve-host run` does, zedrouter's VM with the command line
//! the host builds (its trunk NIC on the switch's socket, its state
//! volume), and a fake zedagent/zedmanager ("feeder") publishing the
//! scenario's network instances, apps' interfaces and device config.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
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
use eve_host::targets::ports::{ForwardOptions, PortsTarget, app_socket, trunk_socket};
use eve_host::vmm::{NetSpec, VmSpec};
use eve_host::volumes::{StateDir, prepare_state_volume, service_disks};
use eve_proto::common::{Ipspec, PhyIoType, ZnetStaticDnsEntry};
use eve_proto::config::{
    Ace, AceAction, AceMatch, Adapter, EdgeDevConfig, NetworkAdapter, NetworkInstanceConfig,
    UuiDandVersion, ZNetworkInstType,
};
use eve_proto::flowlog::FlowRecord;
use evebus::{Client, ClientConfig, Event};
use harness::{Device, Guest, Machine, Profile, build_service};
use hostops::Operation;
use hostops::ports::{Empty, List, PortList};
use prost::Message;
use topics::{AppAdapter, AppNetwork, AppNetworkConfig, EdgeConfig, FlowLog, Topic};

use super::rawapp::RawApp;
use super::vm::Vm;

/// A guard against a run that never gets there, not a timing target.
pub const PATIENCE: Duration = Duration::from_secs(90);
/// How many half-second tries a frame gets to come through once the ports
/// are up: 30 s, for a zedrouter VM that a loaded host deschedules (a
/// frame sent while a port still connects is lost, so scenarios send
/// again rather than wait once).
pub const TRIES: usize = 60;
/// The wait of each try.
pub const TRY_WAIT: Duration = Duration::from_millis(500);

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
publish = ["network-instance-status", "flow-log", "app-network-status", "network-metrics"]
subscribe = ["network-instance-config", "app-network-config", "edge-config"]
call.ports = ["attach", "detach", "list"]

[[service]]
name = "feeder"
image = "selftest"
ram_mib = 32
[service.bus]
publish = ["network-instance-config", "app-network-config", "edge-config"]
"#;

/// The MAC of app number `n` (as a test numbers its apps).
pub fn mac(n: usize) -> String {
    format!("02:16:3e:00:00:{n:02x}")
}

/// An app's UUID from its number.
pub fn app_uuid(n: usize) -> String {
    format!("6ba7b810-9dad-11d1-80b4-00c04fd430{n:02x}")
}

/// An allow rule (EVE's ACE without actions) with these matches.
pub fn ace(id: i32, matches: &[(&str, &str)]) -> Ace {
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

/// A rule with an action (drop, limit).
pub fn ace_with(id: i32, matches: &[(&str, &str)], action: AceAction) -> Ace {
    Ace {
        actions: vec![action],
        ..ace(id, matches)
    }
}

/// A local instance on `subnet`, with static DNS entries `(name, address)`.
pub fn local_instance(uuid: &str, subnet: &str, names: &[(&str, &str)]) -> NetworkInstanceConfig {
    NetworkInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: uuid.into(),
            version: "1".into(),
        }),
        displayname: "apps".into(),
        inst_type: ZNetworkInstType::ZnetInstLocal as i32,
        activate: true,
        ip: Some(Ipspec {
            subnet: subnet.into(),
            ..Default::default()
        }),
        dns: names
            .iter()
            .map(|(name, addr)| ZnetStaticDnsEntry {
                host_name: name.to_string(),
                address: vec![addr.to_string()],
            })
            .collect(),
        ..Default::default()
    }
}

/// A switch instance with no device port: an L2 segment between its apps.
pub fn switch_instance(uuid: &str) -> NetworkInstanceConfig {
    NetworkInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: uuid.into(),
            version: "1".into(),
        }),
        displayname: "segment".into(),
        inst_type: ZNetworkInstType::ZnetInstSwitch as i32,
        activate: true,
        ..Default::default()
    }
}

/// A switch instance whose device port is `label`, as EVE's controller
/// sends it: `port` an Ethernet adapter named by its logical label.
pub fn switch_on_port(uuid: &str, label: &str) -> NetworkInstanceConfig {
    NetworkInstanceConfig {
        port: Some(Adapter {
            r#type: PhyIoType::PhyIoNetEth as i32,
            name: label.into(),
            ..Default::default()
        }),
        ..switch_instance(uuid)
    }
}

/// App 1 on a switch instance bridged to device port `label`, taking UDP
/// from 192.168.50.0/24 (the device-port scenarios' outside segment), and
/// the set-up that has them.
pub fn app_on_switch_port(switch: &str, label: &str) -> (AppNetwork, Setup) {
    let on_switch = app(
        1,
        switch,
        vec![ace(1, &[("ip", "192.168.50.0/24"), ("protocol", "udp")])],
    );
    let setup = Setup {
        instances: vec![switch_on_port(switch, label)],
        apps: vec![on_switch.clone()],
        device_ports: vec![label.into()],
        ..Default::default()
    };
    (on_switch, setup)
}

/// App number `n` with one interface (`eth0`) on `network`.
pub fn app(n: usize, network: &str, acls: Vec<Ace>) -> AppNetwork {
    AppNetwork {
        app_uuid: app_uuid(n),
        display_name: format!("app{n}"),
        activate: true,
        adapters: vec![AppAdapter {
            nic: 0,
            adapter: Some(NetworkAdapter {
                name: "eth0".into(),
                network_id: network.into(),
                acls,
                ..Default::default()
            }),
            mac: mac(n),
        }],
        ..Default::default()
    }
}

/// What a scenario's node is configured with.
#[derive(Default)]
pub struct Setup {
    pub instances: Vec<NetworkInstanceConfig>,
    pub apps: Vec<AppNetwork>,
    /// The device config, for the metadata server's device fields.
    pub edge: Option<EdgeDevConfig>,
    /// Connections from zedrouter's uplink to 10.0.2.100:PORT reach the
    /// host's 127.0.0.1:PORT (QEMU's guestfwd; TCP only).
    pub guest_forward: Vec<PortForward>,
    /// zedrouter leases its uplink by DHCP (no `ip=` on its command line),
    /// on an unrestricted user network: QEMU's DHCP server gives a
    /// restricted guest neither router nor DNS. A scenario still addresses
    /// only its guest forwards.
    pub uplink_by_dhcp: bool,
    /// zedrouter's device ports by label, as the manifest's
    /// `device_ports` gives them (their outside ends: [`Rig::device_port`]).
    pub device_ports: Vec<String>,
    /// zedrouter's uplink is a stream socket this process holds instead
    /// of a user-mode network ([`Rig::uplink`]): the scenario plays the
    /// uplink's network frame by frame (its DNS server, up or down).
    pub raw_uplink: bool,
}

/// The running node around zedrouter (zedrouter itself is started with
/// [`Rig::start_router`], so a scenario can restart it).
pub struct Rig {
    pub machine: Machine,
    pub broker: Broker,
    pub ports: Arc<PortsTarget>,
    run: PathBuf,
    app_image: PathBuf,
    spec: VmSpec,
    /// The raw uplink's socket, where zedrouter's uplink NIC connects.
    uplink: Option<(PathBuf, UnixListener)>,
    stop: Arc<AtomicBool>,
    feeder: Option<thread::JoinHandle<()>>,
    changes: mpsc::Sender<(String, Option<AppNetwork>)>,
    _bus: NodeBus,
    _dir: tempfile::TempDir,
}

impl Rig {
    pub fn start(machine: Machine, setup: Setup) -> Rig {
        let arch = machine.arch();
        let router_image = build_service("zedrouter", arch, Profile::Release)
            .unwrap_or_else(|e| panic!("building zedrouter: {e}"));
        let app_image = build_service("nettest", arch, Profile::Release)
            .unwrap_or_else(|e| panic!("building nettest: {e}"));
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::create(dir.path()).unwrap();
        let manifest = Manifest::parse(NODE).expect("the test manifest");
        let ports = Arc::new(
            PortsTarget::start(&state.run(), ForwardOptions::default()).expect("the port switch"),
        );
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
        spec.cmdline = if setup.uplink_by_dhcp {
            "service=zedrouter".to_string()
        } else {
            format!("service=zedrouter {}", service.cmdline)
        };
        spec.ram_mib = service.ram_mib;
        let uplink = setup.raw_uplink.then(|| {
            let path = state.run().join("uplink.sock");
            let listener = UnixListener::bind(&path).unwrap();
            (path, listener)
        });
        spec.net = uplink.is_none().then(|| NetSpec {
            restrict: !setup.uplink_by_dhcp,
            guest_forward: setup.guest_forward.clone(),
            ..Default::default()
        });
        spec.trunk = service.devices.trunk.then(|| trunk_socket(&state.run()));
        eve_host::deviceports::give(&mut spec, &state.run(), &setup.device_ports);
        spec.bus_socket = Some(bus_socket);
        let volume = state.state_volume("zedrouter");
        prepare_state_volume(&volume, service.devices.state_mib.unwrap()).unwrap();
        spec.disks = service_disks(None, Some(&volume));

        let stop = Arc::new(AtomicBool::new(false));
        let (changes, changed) = mpsc::channel();
        let feeder = feeder(&broker, stop.clone(), setup, changed);
        Rig {
            machine,
            broker,
            ports,
            run: state.run(),
            app_image,
            spec,
            uplink,
            stop,
            feeder: Some(feeder),
            changes,
            _bus: bus,
            _dir: dir,
        }
    }

    pub fn start_router(&self) -> Vm {
        let mut command = Command::new(self.machine.arch().qemu());
        command.args(qemu_args(&self.spec));
        if let Some((path, _)) = &self.uplink {
            // zedrouter tells its NICs apart by the trunk's MAC, not by
            // their order.
            let netdev = format!(
                "stream,id=net0,server=off,addr.type=unix,addr.path={},reconnect-ms=100",
                path.display()
            );
            command.args([
                "-netdev",
                &netdev,
                "-device",
                "virtio-net-device,netdev=net0",
            ]);
        }
        Vm::spawn(command)
    }

    /// This process as zedrouter's uplink network (with
    /// [`Setup::raw_uplink`]): frames in and out of its uplink NIC, once
    /// it connected.
    pub fn uplink(&self) -> RawApp {
        let (_, listener) = self.uplink.as_ref().expect("a rig with a raw uplink");
        let (stream, _) = listener.accept().expect("zedrouter's uplink connects");
        RawApp::from_stream(stream)
    }

    /// A nettest VM as app `app`, its NIC on the app's first port socket.
    pub fn app_vm(&self, app: &AppNetwork, cmdline: &str) -> Vm {
        let guest = Guest::new(self.machine, self.app_image.clone())
            .device(Device::VirtioRng)
            .cmdline(cmdline);
        let socket = app_socket(&self.run, &format!("{}.0", app.app_uuid));
        let netdev = format!(
            "stream,id=app0,server=off,addr.type=unix,addr.path={},reconnect-ms=100",
            socket.display()
        );
        let nic = format!("virtio-net-device,netdev=app0,mac={}", app.adapters[0].mac);
        let mut command = Command::new(self.machine.arch().qemu());
        command
            .args(guest.args())
            .args(["-netdev", &netdev, "-device", &nic]);
        Vm::spawn(command)
    }

    /// This process as app `app`: frames in and out of its port socket.
    pub fn raw_app(&self, app: &AppNetwork) -> RawApp {
        RawApp::connect(&app_socket(&self.run, &format!("{}.0", app.app_uuid)))
    }

    /// The outside end of zedrouter's device port `label`: this process
    /// listens on its socket and takes zedrouter's connection (call before
    /// or after [`Rig::start_router`]: QEMU reconnects).
    pub fn device_port(&self, label: &str) -> std::io::Result<UnixListener> {
        UnixListener::bind(eve_host::deviceports::device_port_socket(&self.run, label))
    }

    /// Bridges zedrouter's device port `label` with the Linux interface
    /// `interface`, as `eve-host run --device-port LABEL=INTERFACE` does.
    pub fn bridge_device_port(&self, label: &str, interface: &str) -> portbridge::Bridge {
        eve_host::deviceports::bridge(&self.run, label, interface)
            .unwrap_or_else(|e| panic!("the device port's bridge: {e}"))
    }

    /// Publishes (`Some`) or withdraws (`None`) an app's interfaces.
    pub fn change(&self, app_uuid: &str, app: Option<AppNetwork>) {
        self.changes.send((app_uuid.to_string(), app)).unwrap();
    }

    pub fn list(&self) -> PortList {
        let answer = self
            .ports
            .call("test", List::NAME, &Empty {}.encode_to_vec())
            .unwrap();
        <List as Operation>::Response::decode(answer.as_slice()).unwrap()
    }

    /// Waits (up to [`PATIENCE`]) for `done`; fails with zedrouter's console.
    pub fn until(&self, what: &str, router: &Vm, mut done: impl FnMut() -> bool) {
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

    /// The flow records zedrouter published for an app.
    pub fn flows(&self, app_uuid: &str) -> Vec<FlowRecord> {
        self.broker
            .table(FlowLog::NAME)
            .values()
            .filter_map(|v| topics::decode::<FlowLog>(v).ok())
            .filter(|m| m.scope.as_ref().is_some_and(|s| s.uuid == app_uuid))
            .flat_map(|m| m.flows)
            .collect()
    }

    /// A value of a topic zedrouter publishes.
    pub fn published<T: Topic>(&self, key: &str) -> Option<T::Value> {
        self.broker
            .table(T::NAME)
            .get(key)
            .and_then(|v| topics::decode::<T>(v).ok())
    }

    /// Waits until zedrouter attached the scenario's one app port and the
    /// switch instance `uuid` is online on its device port.
    pub fn until_switch_online(&self, router: &Vm, uuid: &str) {
        self.until("zedrouter attached the app's port", router, || {
            self.list().ports.len() == 1
        });
        self.until("the instance is online on its device port", router, || {
            self.published::<topics::NetworkInstanceStatus>(uuid)
                .is_some_and(|s| {
                    s.state == eve_proto::info::ZNetworkInstanceState::ZnetinstStateOnline as i32
                })
        });
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
    }
}

/// The fake publisher: its bus client, turned by a thread of its own until
/// the rig stops, publishing the setup once connected and then the apps'
/// interfaces it is sent.
fn feeder(
    broker: &Broker,
    stop: Arc<AtomicBool>,
    setup: Setup,
    changes: mpsc::Receiver<(String, Option<AppNetwork>)>,
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
                    if let Some(edge) = &setup.edge {
                        client
                            .publish(EdgeConfig::NAME, EdgeConfig::KEY, &edge.encode_to_vec())
                            .unwrap();
                    }
                    for ni in &setup.instances {
                        let key = &ni.uuidandversion.as_ref().unwrap().uuid;
                        client
                            .publish(
                                topics::NetworkInstanceConfig::NAME,
                                key,
                                &ni.encode_to_vec(),
                            )
                            .unwrap();
                    }
                    for a in &setup.apps {
                        client
                            .publish(AppNetworkConfig::NAME, &a.app_uuid, &a.encode_to_vec())
                            .unwrap();
                    }
                    client
                        .signal_synchronized(topics::NetworkInstanceConfig::NAME)
                        .unwrap();
                    client.signal_synchronized(AppNetworkConfig::NAME).unwrap();
                    client.signal_synchronized(EdgeConfig::NAME).unwrap();
                }
            }
            while let Ok((key, app)) = changes.try_recv() {
                match app {
                    Some(app) => client
                        .publish(AppNetworkConfig::NAME, &key, &app.encode_to_vec())
                        .unwrap(),
                    None => client.delete(AppNetworkConfig::NAME, &key).unwrap(),
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
