//! `cargo xtask bench network`: an app's traffic through zedrouter beside
//! the same app on QEMU user-mode networking directly.
//!
//! The app is `nettest`; the servers are on the host's loopback, which
//! both paths reach at 10.0.2.2 (QEMU user-mode networking's host): the
//! direct app on its own user-mode NIC, the routed app through its port on
//! the host's port switch, zedrouter's local instance and NAT onto
//! zedrouter's user-mode uplink. zedrouter runs as in the node: the ports
//! target and the bus from a manifest, the QEMU arguments the host builds,
//! and a feeder on the bus in place of zedagent and zedmanager publishing
//! one local instance and two apps' interfaces whose ACLs allow 10.0.2.2.
//! Printed, never asserted: the numbers depend on the machine and its load.
//! With `NETBENCH_PCAP=DIR` set, QEMU's `filter-dump` writes what crossed
//! zedrouter's uplink and trunk and each routed app's NIC to pcap files in
//! DIR (`net0.pcap`, `trunk.pcap`, `appN.pcap`), for finding where a
//! frame waited. With `NETBENCH_ROUTER_LOG=FILE` set, zedrouter's whole
//! console (its log lines, slow saves among them) is written to FILE.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use eve_broker::RpcHandler;
use eve_host::bus::BusAttach;
use eve_host::console::StderrLog;
use eve_host::manifest::Manifest;
use eve_host::nodebus::NodeBus;
use eve_host::qemu::qemu_args;
use eve_host::servicelog::ServiceLogs;
use eve_host::targets::HostTarget;
use eve_host::targets::ports::{ForwardOptions, PortsTarget, app_socket, trunk_socket};
use eve_host::vmm::{NetSpec, VmSpec};
use eve_host::volumes::{StateDir, prepare_state_volume, service_disks};
use eve_proto::common::Ipspec;
use eve_proto::config::{
    Ace, AceMatch, NetworkAdapter, NetworkInstanceConfig, UuiDandVersion, ZNetworkInstType,
};
use evebus::{Client, ClientConfig, Event};
use harness::{Accel, Arch, Device, Guest, Machine, Profile, UserNet, build_service};
use hostops::Operation;
use hostops::ports::{Empty, List};
use prost::Message;
use topics::{AppAdapter, AppNetwork, AppNetworkConfig, Topic};

/// What `cargo xtask bench network` runs.
#[derive(clap::Args)]
pub struct NetworkArgs {
    /// The apps' and zedrouter's arch.
    #[arg(long, default_value = "x86_64")]
    arch: Arch,
    /// Runs of the throughput, latency and connection measurements per path.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// MiB sent each way per run.
    #[arg(long, default_value_t = 8)]
    mib: usize,
    /// Round trips per latency measurement.
    #[arg(long, default_value_t = 200)]
    round_trips: usize,
    /// Connections opened and closed per run.
    #[arg(long, default_value_t = 200)]
    connections: usize,
    /// UDP flows the NAT capacity sweep tries at most.
    #[arg(long, default_value_t = 5000)]
    flows: usize,
}

const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b";
/// The app measured run after run, and the app that fills the NAT table
/// (its own interface, so its flows count against a fresh per-interface
/// bound).
const APPS: [&str; 2] = [
    "6ba7b810-9dad-11d1-80b4-00c04fd43101",
    "6ba7b810-9dad-11d1-80b4-00c04fd43102",
];
/// QEMU user-mode networking's address of the host's loopback.
const HOST: &str = "10.0.2.2";
/// A guard against a run that never ends, not a timing target.
const PATIENCE: Duration = Duration::from_secs(600);

const NODE: &str = r#"[node]
name = "netbench"
arch = "ARCH"

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

/// The host's servers, each on its own loopback port.
struct Servers {
    sink: u16,
    source: u16,
    echo: u16,
    accept_close: u16,
    udp_echo: u16,
    /// Sources the UDP echo server has seen since the last
    /// [`Servers::take_udp_sources`]: each admitted flow is a new one after
    /// NAT. Counted per phase, as a source port the host freed (a QEMU
    /// that exited) may come back as another flow's.
    udp_sources: Arc<Mutex<HashSet<std::net::SocketAddr>>>,
}

fn serve_tcp(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let handle = Arc::new(handle);
    thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let handle = handle.clone();
            thread::spawn(move || handle(conn));
        }
    });
    Ok(port)
}

impl Servers {
    fn start(bytes: usize) -> Result<Servers, String> {
        let sink = serve_tcp(|mut conn| {
            let mut buf = vec![0u8; 64 << 10];
            while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
        })?;
        let source = serve_tcp(move |mut conn| {
            let chunk = vec![0x5au8; 64 << 10];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                if conn.write_all(&chunk[..n]).is_err() {
                    return;
                }
                left -= n;
            }
        })?;
        let echo = serve_tcp(|mut conn| {
            let _ = conn.set_nodelay(true);
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        })?;
        let accept_close = serve_tcp(drop)?;
        let udp = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let udp_echo = udp.local_addr().map_err(|e| e.to_string())?.port();
        let udp_sources = Arc::new(Mutex::new(HashSet::new()));
        let seen = udp_sources.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                seen.lock().unwrap().insert(from);
                let _ = udp.send_to(&buf[..n], from);
            }
        });
        Ok(Servers {
            sink,
            source,
            echo,
            accept_close,
            udp_echo,
            udp_sources,
        })
    }

    /// The measuring app's command line.
    fn measure(&self, args: &NetworkArgs) -> String {
        let bytes = args.mib << 20;
        format!(
            "send-to={HOST}:{} send-bytes={bytes} receive-from={HOST}:{} receive-bytes={bytes} \
             rtt-to={HOST}:{} udp-rtt-to={HOST}:{} rtt-count={} \
             connect-to={HOST}:{} connect-count={}",
            self.sink,
            self.source,
            self.echo,
            self.udp_echo,
            args.round_trips.max(1),
            self.accept_close,
            args.connections.max(1),
        )
    }

    /// The flow-filling app's command line.
    fn fill(&self, args: &NetworkArgs) -> String {
        format!(
            "udp-flows-to={HOST}:{} udp-flows={}",
            self.udp_echo,
            args.flows.max(1)
        )
    }

    /// The sources seen since the last call, forgotten.
    fn take_udp_sources(&self) -> usize {
        std::mem::take(&mut *self.udp_sources.lock().unwrap()).len()
    }
}

/// One run's `@@ metric` values and whether the app passed.
struct Metrics {
    values: Vec<(String, u64)>,
    passed: bool,
    console: String,
}

impl Metrics {
    fn parse(console: String, passed: bool) -> Metrics {
        let values = console
            .lines()
            .filter_map(|l| {
                let rest = l
                    .trim_end_matches('\r')
                    .split(guest_abi::METRIC_MARKER)
                    .nth(1)?;
                let (name, value) = rest.split_once(' ')?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect();
        Metrics {
            values,
            passed,
            console,
        }
    }

    fn get(&self, name: &str) -> Option<u64> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// MiB/s from a byte count and a time in microseconds.
    fn rate(&self, bytes: &str, us: &str) -> Option<f64> {
        let bytes = self.get(bytes)? as f64;
        Some(bytes / self.get(us)?.max(1) as f64 * 1e6 / f64::from(1u32 << 20))
    }

    fn connects_per_s(&self) -> Option<f64> {
        Some(self.get("connects")? as f64 * 1e6 / self.get("connect_total_us")?.max(1) as f64)
    }
}

/// The measurements of one path, over its runs.
#[derive(Default)]
struct PathSamples {
    send: Vec<f64>,
    receive: Vec<f64>,
    tcp_rtt: Vec<f64>,
    udp_rtt: Vec<f64>,
    connects: Vec<f64>,
}

impl PathSamples {
    fn add(&mut self, m: &Metrics) {
        let us = |name: &str| m.get(name).map(|v| v as f64);
        self.send.extend(m.rate("tcp_send_bytes", "tcp_send_us"));
        self.receive
            .extend(m.rate("tcp_receive_bytes", "tcp_receive_us"));
        self.tcp_rtt.extend(us("tcp_rtt_p50_us"));
        self.udp_rtt.extend(us("udp_rtt_p50_us"));
        self.connects.extend(m.connects_per_s());
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn spread(v: &[f64]) -> String {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match (v.first(), v.get(v.len() / 2), v.last()) {
        (Some(lo), Some(mid), Some(hi)) => format!("{mid:.1} ({lo:.1}-{hi:.1})"),
        _ => "-".into(),
    }
}

fn ratio(routed: &[f64], direct: &[f64]) -> String {
    match (median(routed), median(direct)) {
        (Some(r), Some(d)) if d > 0.0 => format!("{:.2}", r / d),
        _ => "-".into(),
    }
}

/// The direct path: nettest on its own user-mode NIC.
fn direct(machine: Machine, image: &Path, cmdline: String) -> Result<Metrics, String> {
    let outcome = Guest::new(machine, image.to_path_buf())
        .accel(Accel::for_arch(machine.arch()))
        .timeout(PATIENCE)
        .device(Device::VirtioRng)
        .device(Device::UserNet(UserNet {
            open: true,
            ..UserNet::default()
        }))
        .cmdline(cmdline)
        .run()
        .map_err(|e| e.to_string())?;
    Ok(Metrics::parse(outcome.console.clone(), outcome.succeeded()))
}

/// A QEMU process with its console collected.
struct Vm {
    child: Child,
    console: Arc<Mutex<String>>,
}

impl Vm {
    fn spawn(mut command: Command) -> Result<Vm, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting QEMU: {e}"))?;
        let console = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().ok_or("no stdout")?;
        let err = child.stderr.take().ok_or("no stderr")?;
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let console = console.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    console.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        Ok(Vm { child, console })
    }

    fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    /// Waits for the guest to power off: its metrics.
    fn finish(mut self) -> Metrics {
        let until = Instant::now() + PATIENCE;
        let mut status = None;
        while Instant::now() < until && status.is_none() {
            status = self.child.try_wait().ok().flatten();
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(100));
        let console = self.console();
        // The guest's own verdict: a failed step prints FAIL.
        let passed = status.is_some() && !console.contains("FAIL ");
        Metrics::parse(console, passed)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mac(n: usize) -> String {
    format!("02:16:3e:00:01:{n:02x}")
}

fn instance() -> NetworkInstanceConfig {
    NetworkInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: NI.into(),
            version: "1".into(),
        }),
        displayname: "bench".into(),
        inst_type: ZNetworkInstType::ZnetInstLocal as i32,
        activate: true,
        ip: Some(Ipspec {
            subnet: "10.1.0.0/24".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// App `n` (1-based), allowed anything to and from the host.
fn app(n: usize) -> AppNetwork {
    AppNetwork {
        app_uuid: APPS[n - 1].into(),
        display_name: format!("bench{n}"),
        activate: true,
        adapters: vec![AppAdapter {
            nic: 0,
            adapter: Some(NetworkAdapter {
                name: "eth0".into(),
                network_id: NI.into(),
                acls: vec![Ace {
                    matches: vec![AceMatch {
                        r#type: "ip".into(),
                        value: HOST.into(),
                    }],
                    name: "host".into(),
                    id: 1,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            mac: mac(n),
        }],
        ..Default::default()
    }
}

/// The bus client standing in for zedagent and zedmanager, turned by a
/// thread of its own until `stop`.
fn feeder(bus: &NodeBus, stop: Arc<AtomicBool>) -> Result<thread::JoinHandle<()>, String> {
    let (mut ours, host_end) = UnixStream::pair().map_err(|e| e.to_string())?;
    BusAttach::attach(bus.broker(), "feeder", host_end);
    ours.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| e.to_string())?;
    Ok(thread::spawn(move || {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::new("feeder", 1));
        if client.connect().is_err() {
            return;
        }
        let mut published = false;
        while !stop.load(Ordering::Relaxed) {
            client.poll(start.elapsed());
            while let Some(event) = client.next_event() {
                if matches!(event, Event::Connected { .. }) && !published {
                    published = true;
                    let ni = instance().encode_to_vec();
                    let mut sent = client
                        .publish(topics::NetworkInstanceConfig::NAME, NI, &ni)
                        .is_ok();
                    for n in 1..=APPS.len() {
                        let a = app(n);
                        sent &= client
                            .publish(AppNetworkConfig::NAME, &a.app_uuid, &a.encode_to_vec())
                            .is_ok();
                    }
                    sent &= client
                        .signal_synchronized(topics::NetworkInstanceConfig::NAME)
                        .is_ok();
                    sent &= client.signal_synchronized(AppNetworkConfig::NAME).is_ok();
                    if !sent {
                        eprintln!("netbench: the feeder could not publish");
                        return;
                    }
                }
            }
            let bytes = client.transmit().to_vec();
            if ours.write_all(&bytes).is_err() {
                return;
            }
            client.transmitted(bytes.len());
            let mut buf = [0; 16 << 10];
            match ours.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if client.receive(&buf[..n], start.elapsed()).is_err() {
                        return;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    }))
}

/// zedrouter with its port switch and bus, as the node runs it.
struct Routed {
    _dir: tempfile::TempDir,
    run: PathBuf,
    ports: Arc<PortsTarget>,
    router: Vm,
    stop: Arc<AtomicBool>,
    feeder: Option<thread::JoinHandle<()>>,
    _bus: NodeBus,
}

impl Routed {
    fn start(arch: Arch) -> Result<Routed, String> {
        let image =
            build_service("zedrouter", arch, Profile::Release).map_err(|e| e.to_string())?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let state = StateDir::create(dir.path()).map_err(|e| e.to_string())?;
        let manifest = Manifest::parse(&NODE.replace("ARCH", &arch.to_string()))
            .map_err(|e| format!("the bench's manifest: {e}"))?;
        let ports = Arc::new(
            PortsTarget::start(&state.run(), ForwardOptions::default())
                .map_err(|e| e.to_string())?,
        );
        let bus = NodeBus::start_with(
            &manifest,
            ServiceLogs::new(&state.logs(), Arc::new(StderrLog)),
            vec![ports.clone() as Arc<dyn HostTarget>],
            &Default::default(),
        )
        .map_err(|e| e.to_string())?;
        let bus_socket = state.run().join("zedrouter.bus");
        let listener = UnixListener::bind(&bus_socket).map_err(|e| e.to_string())?;
        let broker = bus.broker().clone();
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                BusAttach::attach(&broker, "zedrouter", stream);
            }
        });
        let service = manifest.service("zedrouter").ok_or("no zedrouter")?;
        let mut spec = VmSpec::new("zedrouter", arch, Accel::for_arch(arch), image);
        spec.cmdline = format!("service=zedrouter {}", service.cmdline);
        spec.ram_mib = service.ram_mib;
        // Open, as the node's uplink is: the apps reach 10.0.2.2 over UDP too.
        spec.net = Some(NetSpec::default());
        spec.trunk = Some(trunk_socket(&state.run()));
        spec.bus_socket = Some(bus_socket);
        let volume = state.state_volume("zedrouter");
        prepare_state_volume(&volume, service.devices.state_mib.unwrap_or(1))
            .map_err(|e| e.to_string())?;
        spec.disks = service_disks(None, Some(&volume));
        let mut command = Command::new(arch.qemu());
        command.args(qemu_args(&spec));
        if let Ok(dir) = std::env::var("NETBENCH_PCAP") {
            for id in ["net0", "trunk"] {
                command.args([
                    "-object",
                    &format!("filter-dump,id=d{id},netdev={id},file={dir}/{id}.pcap"),
                ]);
            }
        }
        let router = Vm::spawn(command)?;
        let stop = Arc::new(AtomicBool::new(false));
        let feeder = feeder(&bus, stop.clone())?;
        let routed = Routed {
            _dir: dir,
            run: state.run(),
            ports,
            router,
            stop,
            feeder: Some(feeder),
            _bus: bus,
        };
        routed.wait_for_ports()?;
        Ok(routed)
    }

    fn list(&self) -> Option<<List as Operation>::Response> {
        self.ports
            .call("netbench", List::NAME, &Empty {}.encode_to_vec())
            .ok()
            .and_then(|answer| <List as Operation>::Response::decode(answer.as_slice()).ok())
    }

    fn attached(&self) -> usize {
        self.list().map_or(0, |list| list.ports.len())
    }

    /// The port switch's counters: where frames were lost between the
    /// apps and zedrouter's trunk.
    fn switch_counters(&self) -> Vec<String> {
        let Some(list) = self.list() else {
            return Vec::new();
        };
        let mut lines: Vec<String> = list
            .ports
            .iter()
            .filter_map(|p| {
                let c = p.counters?;
                Some(format!(
                    "port {}: {} frames to the trunk, {} from it, {} dropped",
                    p.tag, c.to_trunk, c.from_trunk, c.dropped
                ))
            })
            .collect();
        if let Some(t) = list.trunk {
            lines.push(format!(
                "trunk: {} frames in, {} out, {} misdirected",
                t.frames_in, t.frames_out, t.misdirected
            ));
        }
        lines
    }

    fn wait_for_ports(&self) -> Result<(), String> {
        let until = Instant::now() + PATIENCE;
        while self.attached() < APPS.len() {
            if Instant::now() > until {
                return Err(format!(
                    "zedrouter never attached the apps' ports:\n{}",
                    self.router.console()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// App `n` (1-based) on its port, run to its end.
    fn app(
        &self,
        machine: Machine,
        image: &Path,
        n: usize,
        cmdline: String,
    ) -> Result<Metrics, String> {
        let guest = Guest::new(machine, image.to_path_buf())
            .accel(Accel::for_arch(machine.arch()))
            .device(Device::VirtioRng)
            .cmdline(cmdline);
        let socket = app_socket(&self.run, &format!("{}.0", APPS[n - 1]));
        let netdev = format!(
            "stream,id=app0,server=off,addr.type=unix,addr.path={},reconnect-ms=100",
            socket.display()
        );
        let nic = format!("virtio-net-device,netdev=app0,mac={}", mac(n));
        let mut command = Command::new(machine.arch().qemu());
        command
            .args(guest.args())
            .args(["-netdev", &netdev, "-device", &nic]);
        if let Ok(dir) = std::env::var("NETBENCH_PCAP") {
            command.args([
                "-object",
                &format!("filter-dump,id=dapp,netdev=app0,file={dir}/app{n}.pcap"),
            ]);
        }
        Ok(Vm::spawn(command)?.finish())
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
    }
}

/// Shows the app's steps as they end (a run takes minutes under TCG);
/// fails on a failed one.
fn check(path: &str, m: &Metrics) -> Result<(), String> {
    for line in m
        .console
        .lines()
        .filter(|l| l.contains("PASS ") || l.contains("FAIL "))
    {
        eprintln!("netbench: {path}: {}", line.trim_end());
    }
    if m.passed {
        Ok(())
    } else {
        Err(format!("the {path} app failed:\n{}", m.console))
    }
}

pub fn run(args: NetworkArgs) -> Result<(), String> {
    crate::deps::ensure()?;
    let arch = args.arch;
    let machine = Machine::default_for(arch);
    let image = build_service("nettest", arch, Profile::Release).map_err(|e| e.to_string())?;
    let servers = Servers::start(args.mib << 20)?;
    let routed = Routed::start(arch)?;
    let (mut through, mut beside) = (PathSamples::default(), PathSamples::default());
    for _ in 0..args.runs.max(1) {
        let d = direct(machine, &image, servers.measure(&args))?;
        check("direct", &d)?;
        beside.add(&d);
        let r = routed.app(machine, &image, 1, servers.measure(&args))?;
        check("routed", &r)?;
        through.add(&r);
    }
    servers.take_udp_sources();
    let fill_direct = direct(machine, &image, servers.fill(&args))?;
    check("direct flow-filling", &fill_direct)?;
    let direct_sources = servers.take_udp_sources();
    let fill_routed = routed.app(machine, &image, 2, servers.fill(&args))?;
    check("routed flow-filling", &fill_routed)?;
    let routed_sources = servers.take_udp_sources();
    let router_console = routed.router.console();
    if let Ok(path) = std::env::var("NETBENCH_ROUTER_LOG") {
        std::fs::write(&path, &router_console)
            .map_err(|e| format!("writing zedrouter's console to {path}: {e}"))?;
    }
    let switch = routed.switch_counters();
    drop(routed);

    let accel = Accel::for_arch(arch);
    println!(
        "nettest on {machine} ({accel}), {} runs per path, median (min-max); {} MiB each way, \
         {} round trips, {} connections per run",
        args.runs.max(1),
        args.mib,
        args.round_trips.max(1),
        args.connections.max(1)
    );
    println!();
    println!("| measure | through zedrouter | QEMU user net directly | ratio |");
    println!("|---|---|---|---|");
    let rows: [(&str, &[f64], &[f64]); 5] = [
        ("TCP app to host (MiB/s)", &through.send, &beside.send),
        ("TCP host to app (MiB/s)", &through.receive, &beside.receive),
        (
            "TCP connections opened and closed per second",
            &through.connects,
            &beside.connects,
        ),
        (
            "TCP echo of 64 bytes, median round trip (us)",
            &through.tcp_rtt,
            &beside.tcp_rtt,
        ),
        (
            "UDP echo of 64 bytes, median round trip (us)",
            &through.udp_rtt,
            &beside.udp_rtt,
        ),
    ];
    for (what, r, d) in rows {
        println!(
            "| {what} | {} | {} | {} |",
            spread(r),
            spread(d),
            ratio(r, d)
        );
    }
    let added = |r: &[f64], d: &[f64]| match (median(r), median(d)) {
        (Some(r), Some(d)) => format!("{:.0} us", r - d),
        _ => "-".into(),
    };
    println!();
    println!(
        "Added per round trip by zedrouter (median): TCP {}, UDP {}",
        added(&through.tcp_rtt, &beside.tcp_rtt),
        added(&through.udp_rtt, &beside.udp_rtt)
    );
    println!();
    println!(
        "NAT capacity: one app opening UDP flows to the host (one datagram each, answered), up to {}",
        args.flows.max(1)
    );
    println!();
    println!(
        "| path | flows tried | answered | sources the server saw | first flow again | a new flow after |"
    );
    println!("|---|---|---|---|---|---|");
    let yes = |v: Option<u64>| match v {
        Some(1) => "answered",
        Some(_) => "refused",
        None => "-",
    };
    for (path, m, sources) in [
        ("through zedrouter", &fill_routed, routed_sources),
        ("QEMU user net directly", &fill_direct, direct_sources),
    ] {
        println!(
            "| {path} | {} | {} | {sources} | {} | {} |",
            m.get("udp_flows_tried")
                .map_or("-".into(), |v| v.to_string()),
            m.get("udp_flows_answered")
                .map_or("-".into(), |v| v.to_string()),
            yes(m.get("udp_old_flow_answered")),
            yes(m.get("udp_new_flow_answered")),
        );
    }
    let refusals: Vec<&str> = router_console
        .lines()
        .filter(|l| {
            l.contains("refused")
                || l.contains("dropped")
                || l.contains("full")
                || l.contains("evict")
        })
        .collect();
    if !refusals.is_empty() {
        println!();
        println!("zedrouter said (its last lines on refusals and drops):");
        for line in refusals.iter().rev().take(4).rev() {
            println!("    {line}");
        }
    }
    println!();
    println!("The port switch counted:");
    for line in switch {
        println!("    {line}");
    }
    Ok(())
}
