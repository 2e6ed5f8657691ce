//! The rig the appnet fuzz targets share: an engine with an uplink, a
//! local instance (two apps, with a limit rule, a host rule and a port
//! map), a switch instance (two apps and an outside port), and frame
//! builders that get checksums right so mutated frames reach the parsers
//! behind the checksum checks.

use std::net::Ipv4Addr;

use appnet::{
    AddressRange, AppMetadata, AppPortConfig, Duration, Engine, EngineConfig, EthernetAddress,
    ExternalPortConfig, InstanceConfig, InstanceKind, Instant, Ipv4Cidr, Limits, LocalConfig,
    MetadataKind, PortId, UplinkConfig,
};
use eve_proto::config::{Ace, AceAction, AceMatch};

pub const UPLINK: PortId = PortId(100);
pub const OUTSIDE: PortId = PortId(200);
pub const UPLINK_MAC: EthernetAddress = EthernetAddress([2, 0xee, 0, 0, 0, 1]);
pub const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const ROUTER_MAC: EthernetAddress = EthernetAddress([2, 0xee, 0, 0, 0, 0xfe]);
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const BRIDGE_MAC: EthernetAddress = EthernetAddress([2, 0xbb, 0, 0, 0, 1]);
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const START: Instant = Instant::from_micros_const(1_000_000_000);

pub fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([2, 0x16, 0x3e, 0, 0, n])
}

fn ace(id: i32, matches: &[(&str, &str)], action: Option<AceAction>) -> Ace {
    Ace {
        matches: matches
            .iter()
            .map(|(t, v)| AceMatch {
                r#type: t.to_string(),
                value: v.to_string(),
            })
            .collect(),
        actions: action.into_iter().collect(),
        name: String::new(),
        id,
        dir: 0,
    }
}

fn port(n: u8, instance: &str, acls: Vec<Ace>) -> AppPortConfig {
    AppPortConfig {
        port: PortId(u16::from(n)),
        instance: instance.into(),
        app_uuid: format!("app-{n}"),
        app_name: format!("app{n}"),
        adapter: "eth0".into(),
        vif: format!("nbu{n}x1"),
        mac: mac(n),
        static_ip: None,
        hostname: format!("app{n}"),
        acls,
        metadata: AppMetadata {
            kind: MetadataKind::OpenStack,
            user_data: b"#cloud-config\n".to_vec(),
            ssh_keys: vec!["ssh-ed25519 AAAA k".into()],
            blobs: Vec::new(),
        },
    }
}

pub struct Rig {
    pub engine: Engine,
    pub now: Instant,
    pub app_ips: [Ipv4Addr; 2],
}

impl Rig {
    pub fn new() -> Rig {
        let limits = Limits {
            max_flows: 512,
            max_flows_per_port: 128,
            max_dns_pending: 16,
            max_queued_frames: 256,
            max_fragment_plans: 16,
            max_flow_records: 256,
            ..Default::default()
        };
        let mut engine = Engine::new(EngineConfig {
            limits,
            seed: 1,
            ..Default::default()
        });
        engine
            .set_uplink(UplinkConfig {
                port: UPLINK,
                label: "eth0".into(),
                mac: UPLINK_MAC,
                address: Ipv4Cidr::new(UPLINK_IP, 24),
                gateway: Some(ROUTER_IP),
                dns_servers: vec![ROUTER_IP],
                mtu: 1500,
            })
            .unwrap();
        engine
            .set_external_port(ExternalPortConfig {
                port: OUTSIDE,
                label: "eth1".into(),
            })
            .unwrap();
        let local = InstanceConfig {
            uuid: "local".into(),
            version: "1".into(),
            name: "local".into(),
            activated: true,
            kind: InstanceKind::Local(LocalConfig {
                subnet: Ipv4Cidr::new(Ipv4Addr::new(10, 1, 0, 0), 24),
                gateway: GATEWAY,
                dhcp_range: AddressRange {
                    first: Ipv4Addr::new(10, 1, 0, 2),
                    last: Ipv4Addr::new(10, 1, 0, 20),
                },
                dns_servers: vec![],
                ntp_servers: vec![],
                domain: "local".into(),
                static_routes: vec![],
                static_hosts: vec![],
            }),
            device_port: Some(UPLINK),
            mtu: 1500,
            flowlog: true,
            bridge_mac: BRIDGE_MAC,
            bridge_num: 1,
        };
        let switch = InstanceConfig {
            uuid: "switch".into(),
            name: "switch".into(),
            kind: InstanceKind::Switch,
            device_port: Some(OUTSIDE),
            bridge_num: 2,
            ..local.clone()
        };
        engine.set_instance(START, local).unwrap();
        engine.set_instance(START, switch).unwrap();
        let limit = AceAction {
            limit: true,
            limitrate: 10,
            limitunit: "s".into(),
            limitburst: 5,
            ..Default::default()
        };
        let map = AceAction {
            portmap: true,
            app_port: 80,
            ..Default::default()
        };
        let one = vec![
            ace(1, &[("host", "example.org")], None),
            ace(
                2,
                &[("ip", "192.0.2.0/24"), ("protocol", "udp")],
                Some(limit),
            ),
            ace(3, &[("ip", "0.0.0.0/0")], None),
        ];
        let two = vec![
            ace(4, &[("protocol", "tcp"), ("lport", "8080")], Some(map)),
            ace(5, &[("ip", "10.1.0.0/24")], None),
        ];
        let ip1 = engine
            .attach(START, port(1, "local", one))
            .unwrap()
            .unwrap();
        let ip2 = engine
            .attach(START, port(2, "local", two))
            .unwrap()
            .unwrap();
        engine
            .attach(
                START,
                port(3, "switch", vec![ace(6, &[("protocol", "udp")], None)]),
            )
            .unwrap();
        engine.attach(START, port(4, "switch", vec![])).unwrap();
        let mut rig = Rig {
            engine,
            now: START,
            app_ips: [ip1, ip2],
        };
        // The router introduces itself, so NATed frames go out at once.
        let arp = arp_request(ROUTER_MAC, ROUTER_IP, UPLINK_IP);
        rig.receive(UPLINK, &arp);
        rig.take();
        rig
    }

    pub fn receive(&mut self, port: PortId, frame: &[u8]) {
        self.engine.receive(self.now, port, frame);
        if self.engine.poll_at(self.now).is_some_and(|t| t <= self.now) {
            self.engine.poll(self.now);
        }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.engine.poll(self.now);
    }

    /// Everything the engine sent, checked: known ports, sane sizes,
    /// frames to a local app addressed to its MAC.
    pub fn take(&mut self) -> Vec<(PortId, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = self.engine.pop_transmit() {
            assert!(t.frame.len() >= 14 && t.frame.len() <= appnet::MAX_FRAME);
            assert!(
                matches!(t.port.0, 1..=4 | 100 | 200),
                "frame to {:?}",
                t.port
            );
            if matches!(t.port.0, 1 | 2) {
                assert_eq!(&t.frame[..6], mac(t.port.0 as u8).as_bytes());
            }
            out.push((t.port, t.frame));
        }
        out
    }

    /// Flow logs and reports must build from whatever state there is.
    pub fn report(&mut self) {
        let _ = self.engine.take_flow_messages();
        for ni in ["local", "switch"] {
            assert!(self.engine.instance_info(ni).is_some());
            assert!(self.engine.instance_metrics(ni).is_some());
        }
        for n in 1..=4 {
            let _ = self.engine.app_networks(&format!("app-{n}"));
        }
    }
}

impl Default for Rig {
    fn default() -> Self {
        Rig::new()
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Recomputes the IPv4 header checksum and, when the packet holds all of
/// it, the TCP, UDP or ICMP checksum of an Ethernet frame (one VLAN tag
/// allowed). Anything too short is left alone.
pub fn fix_checksums(frame: &mut [u8]) {
    let l3 = if frame.get(12..14) == Some(&[0x81, 0x00]) {
        18
    } else {
        14
    };
    if frame.get(l3 - 2..l3) != Some(&[0x08, 0x00]) || frame.len() < l3 + 20 {
        return;
    }
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]));
    if ihl < 20 || frame.len() < l3 + ihl {
        return;
    }
    frame[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let c = checksum(&frame[l3..l3 + ihl]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    let fragmented = u16::from_be_bytes([frame[l3 + 6], frame[l3 + 7]]) & 0x3fff != 0;
    if total < ihl || frame.len() < l3 + total || fragmented {
        return;
    }
    let (src, dst, proto) = (
        [
            frame[l3 + 12],
            frame[l3 + 13],
            frame[l3 + 14],
            frame[l3 + 15],
        ],
        [
            frame[l3 + 16],
            frame[l3 + 17],
            frame[l3 + 18],
            frame[l3 + 19],
        ],
        frame[l3 + 9],
    );
    let l4 = l3 + ihl;
    let len = total - ihl;
    let at = match proto {
        6 if len >= 20 => 16,
        17 if len >= 8 => 6,
        1 if len >= 4 => 2,
        _ => return,
    };
    frame[l4 + at..l4 + at + 2].copy_from_slice(&[0, 0]);
    let c = if proto == 1 {
        checksum(&frame[l4..l4 + len])
    } else {
        let mut pseudo = Vec::with_capacity(12 + len);
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(len as u16).to_be_bytes());
        pseudo.extend_from_slice(&frame[l4..l4 + len]);
        checksum(&pseudo)
    };
    frame[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
}

fn ethernet(dst: EthernetAddress, src: EthernetAddress, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(dst.as_bytes());
    frame.extend_from_slice(src.as_bytes());
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv4 packet in Ethernet, checksums right; `frag` is the flags and
/// offset field.
#[allow(clippy::too_many_arguments)]
pub fn ipv4_frame(
    dst_mac: EthernetAddress,
    src_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ident: u16,
    frag: u16,
    payload: &[u8],
) -> Vec<u8> {
    let total = (20 + payload.len()).min(usize::from(u16::MAX)) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&ident.to_be_bytes());
    ip.extend_from_slice(&frag.to_be_bytes());
    ip.extend_from_slice(&[64, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(payload);
    let mut frame = ethernet(dst_mac, src_mac, 0x0800, &ip);
    fix_checksums(&mut frame);
    frame
}

pub fn udp_frame(
    dst_mac: EthernetAddress,
    src_mac: EthernetAddress,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&src.1.to_be_bytes());
    udp.extend_from_slice(&dst.1.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    ipv4_frame(dst_mac, src_mac, src.0, dst.0, 17, 1, 0x4000, &udp)
}

#[allow(clippy::too_many_arguments)]
pub fn tcp_frame(
    dst_mac: EthernetAddress,
    src_mac: EthernetAddress,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20 + payload.len());
    tcp.extend_from_slice(&src.1.to_be_bytes());
    tcp.extend_from_slice(&dst.1.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    ipv4_frame(dst_mac, src_mac, src.0, dst.0, 6, 1, 0x4000, &tcp)
}

pub fn arp_request(src_mac: EthernetAddress, src_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(src_mac.as_bytes());
    arp.extend_from_slice(&src_ip.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target.octets());
    ethernet(EthernetAddress::BROADCAST, src_mac, 0x0806, &arp)
}
