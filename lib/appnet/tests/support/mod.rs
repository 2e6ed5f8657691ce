//! A small lab for the engine's tests: apps and an outside host are
//! smoltcp stacks on the engine's ports, frames move between them in
//! simulated time; and helpers to craft frames by hand.

#![allow(dead_code)]

pub mod frames;

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use appnet::{
    AddressRange, AppMetadata, AppPortConfig, Duration, Engine, EngineConfig, EthernetAddress,
    InstanceConfig, InstanceKind, Instant, Ipv4Cidr, LocalConfig, NodeInfo, PortId, StaticHost,
    UplinkConfig,
};
use eve_proto::config::{Ace, AceAction, AceMatch};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

pub const UPLINK: PortId = PortId(100);
pub const UPLINK_MAC: EthernetAddress = EthernetAddress([0x02, 0xee, 0, 0, 0, 1]);
pub const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The outside host: the uplink's router, DNS server and web server.
pub const OUTSIDE: PortId = UPLINK;
pub const OUTSIDE_MAC: EthernetAddress = EthernetAddress([0x02, 0xee, 0, 0, 0, 0xfe]);
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const BRIDGE_MAC: EthernetAddress = EthernetAddress([0x02, 0xbb, 0, 0, 0, 1]);
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const NI: &str = "5c8f2e6a-0b8e-4c1e-9d4b-1a2b3c4d5e6f";
pub const START: Instant = Instant::from_micros_const(1_000_000_000);

pub fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([0x02, 0x16, 0x3e, 0, 0, n])
}

pub fn app_uuid(n: u8) -> String {
    format!("6ba7b810-9dad-11d1-80b4-00c04fd430{n:02x}")
}

/// An ACE from EVE's `type=value` matches and an action.
pub fn ace(id: i32, matches: &[(&str, &str)], action: Option<AceAction>) -> Ace {
    Ace {
        matches: matches
            .iter()
            .map(|(t, v)| AceMatch {
                r#type: t.to_string(),
                value: v.to_string(),
            })
            .collect(),
        actions: action.into_iter().collect(),
        name: format!("rule-{id}"),
        id,
        dir: 0,
    }
}

pub fn drop_action() -> AceAction {
    AceAction {
        drop: true,
        ..Default::default()
    }
}

pub fn limit_action(rate: u32, unit: &str, burst: u32) -> AceAction {
    AceAction {
        limit: true,
        limitrate: rate,
        limitunit: unit.into(),
        limitburst: burst,
        ..Default::default()
    }
}

pub fn portmap_action(app_port: u32) -> AceAction {
    AceAction {
        portmap: true,
        app_port,
        ..Default::default()
    }
}

pub fn local_config() -> LocalConfig {
    LocalConfig {
        subnet: Ipv4Cidr::new(Ipv4Addr::new(10, 1, 0, 0), 24),
        gateway: GATEWAY,
        dhcp_range: AddressRange {
            first: Ipv4Addr::new(10, 1, 0, 2),
            last: Ipv4Addr::new(10, 1, 0, 100),
        },
        dns_servers: vec![],
        ntp_servers: vec![Ipv4Addr::new(10, 1, 0, 1)],
        domain: "local".into(),
        static_routes: vec![],
        static_hosts: vec![StaticHost {
            name: "printer".into(),
            addresses: vec![Ipv4Addr::new(10, 1, 0, 250)],
        }],
    }
}

pub fn instance(kind: InstanceKind, device: Option<PortId>) -> InstanceConfig {
    InstanceConfig {
        uuid: NI.into(),
        version: "1".into(),
        name: "ni-one".into(),
        activated: true,
        kind,
        device_port: device,
        mtu: 1500,
        flowlog: true,
        bridge_mac: BRIDGE_MAC,
        bridge_num: 1,
    }
}

pub fn uplink_config() -> UplinkConfig {
    UplinkConfig {
        port: UPLINK,
        label: "eth0".into(),
        mac: UPLINK_MAC,
        address: Ipv4Cidr::new(UPLINK_IP, 24),
        gateway: Some(OUTSIDE_IP),
        dns_servers: vec![OUTSIDE_IP],
        mtu: 1500,
    }
}

pub fn port_config(n: u8, acls: Vec<Ace>) -> AppPortConfig {
    AppPortConfig {
        port: PortId(u16::from(n)),
        instance: NI.into(),
        app_uuid: app_uuid(n),
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

pub fn engine() -> Engine {
    let mut engine = Engine::new(EngineConfig {
        node: NodeInfo {
            device_uuid: "d0d0d0d0-0000-4000-8000-000000000001".into(),
            device_name: "edge-1".into(),
            project_name: "lab".into(),
            project_uuid: "p-1".into(),
            enterprise_name: "ent".into(),
            enterprise_id: "e-1".into(),
        },
        seed: 42,
        limits: Default::default(),
    });
    engine.set_clock(START, 1_700_000_000_000);
    engine
}

/// An engine with an uplink and a local instance on it.
pub fn local_engine() -> Engine {
    let mut engine = engine();
    engine.set_uplink(uplink_config()).unwrap();
    engine
        .set_instance(
            START,
            instance(InstanceKind::Local(local_config()), Some(UPLINK)),
        )
        .unwrap();
    engine
}

/// A device of a smoltcp stack: frames queued each way.
#[derive(Default)]
pub struct Queue {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl phy::Device for Queue {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;
    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }
    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// A smoltcp host on one of the engine's ports.
pub struct Host {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub device: Queue,
    pub dhcp: Option<SocketHandle>,
    pub address: Option<Ipv4Addr>,
}

impl Host {
    pub fn new(mac: EthernetAddress, now: Instant) -> Host {
        let mut device = Queue::default();
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = u64::from(mac.0[5]) + 1;
        let iface = Interface::new(config, &mut device, now);
        Host {
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            dhcp: None,
            address: None,
        }
    }

    /// A host with a fixed address and default route.
    pub fn fixed(
        mac: EthernetAddress,
        address: Ipv4Cidr,
        gateway: Option<Ipv4Addr>,
        now: Instant,
    ) -> Host {
        let mut host = Host::new(mac, now);
        host.set_address(address, gateway);
        host
    }

    /// A host that asks DHCP for its address.
    pub fn dhcp(mac: EthernetAddress, now: Instant) -> Host {
        let mut host = Host::new(mac, now);
        let handle = host.sockets.add(dhcpv4::Socket::new());
        host.dhcp = Some(handle);
        host
    }

    pub fn set_address(&mut self, address: Ipv4Cidr, gateway: Option<Ipv4Addr>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            addrs.push(IpCidr::Ipv4(address)).unwrap();
        });
        if let Some(gateway) = gateway {
            self.iface
                .routes_mut()
                .add_default_ipv4_route(gateway)
                .unwrap();
        }
        self.address = Some(address.address());
    }

    pub fn poll(&mut self, now: Instant) {
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        if let Some(handle) = self.dhcp {
            let event = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
            if let Some(dhcpv4::Event::Configured(config)) = event {
                let (address, router) = (config.address, config.router);
                self.set_address(address, router);
            }
        }
    }

    pub fn tcp_socket(&mut self) -> SocketHandle {
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        self.sockets.add(socket)
    }

    pub fn udp_socket(&mut self, port: u16) -> SocketHandle {
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 65536]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 65536]),
        );
        socket.bind(port).unwrap();
        self.sockets.add(socket)
    }

    pub fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    pub fn udp(&mut self, handle: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(handle)
    }

    pub fn connect(&mut self, handle: SocketHandle, to: (Ipv4Addr, u16), local_port: u16) {
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket>(handle)
            .connect(cx, IpEndpoint::new(IpAddress::Ipv4(to.0), to.1), local_port)
            .unwrap();
    }
}

/// The engine with hosts on its ports, in simulated time.
pub struct Lab {
    pub engine: Engine,
    pub now: Instant,
    pub hosts: BTreeMap<PortId, Host>,
    /// Every frame the engine sent, by port, in order.
    pub sent: Vec<(PortId, Vec<u8>)>,
}

impl Lab {
    pub fn new(engine: Engine) -> Lab {
        Lab {
            engine,
            now: START,
            hosts: BTreeMap::new(),
            sent: Vec::new(),
        }
    }

    /// A lab with a local instance, its uplink and the outside host.
    pub fn local() -> Lab {
        let mut lab = Lab::new(local_engine());
        let outside = Host::fixed(OUTSIDE_MAC, Ipv4Cidr::new(OUTSIDE_IP, 24), None, START);
        lab.hosts.insert(OUTSIDE, outside);
        lab
    }

    /// Attaches app `n` with `acls` and a DHCP-configured stack.
    pub fn app(&mut self, n: u8, acls: Vec<Ace>) -> Ipv4Addr {
        let ip = self
            .engine
            .attach(self.now, port_config(n, acls))
            .unwrap()
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        self.hosts
            .insert(PortId(u16::from(n)), Host::dhcp(mac(n), self.now));
        ip
    }

    pub fn host(&mut self, port: PortId) -> &mut Host {
        self.hosts.get_mut(&port).expect("host on port")
    }

    /// Moves frames and time on by `ms` milliseconds, a millisecond a step.
    pub fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    /// Runs until `done` holds, at most `ms` milliseconds; whether it did.
    pub fn run_until(&mut self, ms: u64, mut done: impl FnMut(&mut Lab) -> bool) -> bool {
        for _ in 0..ms {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    pub fn step(&mut self) {
        let now = self.now;
        for (port, host) in self.hosts.iter_mut() {
            host.poll(now);
            while let Some(frame) = host.device.tx.pop_front() {
                self.engine.receive(now, *port, &frame);
            }
        }
        if self.engine.poll_at(now).is_some_and(|t| t <= now) {
            self.engine.poll(now);
        }
        self.deliver();
        self.now = now + Duration::from_millis(1);
    }

    /// Hands the engine's frames to the hosts on their ports.
    pub fn deliver(&mut self) {
        while let Some(t) = self.engine.pop_transmit() {
            if let Some(host) = self.hosts.get_mut(&t.port) {
                host.device.rx.push_back(t.frame.clone());
            }
            self.sent.push((t.port, t.frame));
        }
    }

    /// Runs until app `n` has its DHCP address.
    pub fn lease(&mut self, n: u8) -> Ipv4Addr {
        let port = PortId(u16::from(n));
        assert!(
            self.run_until(5000, |lab| lab.host(port).address.is_some()),
            "app {n} got no lease"
        );
        self.host(port).address.unwrap()
    }
}
