//! EVE's config messages into the engine's config.

use std::net::Ipv4Addr;

use appnet::{
    EthernetAddress, EveConfigError, InstanceKind, MetadataKind, PortId, instance_from_eve,
    parse_mac, port_from_eve, ssh_keys,
};
use eve_proto::common::{IpRange, Ipspec, ZnetStaticDnsEntry};
use eve_proto::config::{
    AppInstanceConfig, IpRoute, NetworkAdapter, NetworkInstanceConfig, UuiDandVersion,
};

const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

fn local_ni() -> NetworkInstanceConfig {
    NetworkInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: "ni-1".into(),
            version: "3".into(),
        }),
        displayname: "local".into(),
        inst_type: 2,
        activate: true,
        ip: Some(Ipspec {
            subnet: "10.5.0.0/24".into(),
            dns: vec!["10.5.0.1".into()],
            ntp: "pool.ntp.org".into(),
            more_ntp: vec!["10.5.0.9".into()],
            domain: "edge".into(),
            ..Default::default()
        }),
        dns: vec![ZnetStaticDnsEntry {
            host_name: "Printer.".into(),
            address: vec!["10.5.0.200".into(), "fe80::1".into()],
        }],
        static_routes: vec![
            IpRoute {
                destination_network: "172.16.0.0/12".into(),
                gateway: "10.5.0.9".into(),
                ..Default::default()
            },
            IpRoute {
                destination_network: "192.168.0.0/16".into(),
                gateway: "192.0.2.1".into(),
                ..Default::default()
            },
        ],
        disable_flowlog: true,
        ..Default::default()
    }
}

#[test]
fn a_local_instance_takes_eves_defaults() {
    let cfg = instance_from_eve(&local_ni(), Some(PortId(100)), MAC, 4).unwrap();
    assert_eq!(
        (
            cfg.uuid.as_str(),
            cfg.version.as_str(),
            cfg.mtu,
            cfg.flowlog
        ),
        ("ni-1", "3", 1500, false)
    );
    let InstanceKind::Local(local) = cfg.kind else {
        panic!("local");
    };
    assert_eq!(local.gateway, Ipv4Addr::new(10, 5, 0, 1));
    assert_eq!(local.dhcp_range.first, Ipv4Addr::new(10, 5, 0, 1));
    assert_eq!(local.dhcp_range.last, Ipv4Addr::new(10, 5, 0, 254));
    assert_eq!(local.ntp_servers, vec![Ipv4Addr::new(10, 5, 0, 9)]);
    assert_eq!(
        local.static_routes.len(),
        1,
        "routes through the uplink stay the instance's"
    );
    assert_eq!(local.static_hosts[0].name, "printer");
    assert_eq!(
        local.static_hosts[0].addresses,
        vec![Ipv4Addr::new(10, 5, 0, 200)]
    );
    assert_eq!(local.domain, "edge");
}

#[test]
fn given_ranges_gateways_and_kinds() {
    let mut ni = local_ni();
    let spec = ni.ip.as_mut().unwrap();
    spec.gateway = "10.5.0.254".into();
    spec.dhcp_range = Some(IpRange {
        start: "10.5.0.10".into(),
        end: "10.5.0.20".into(),
    });
    ni.mtu = 9000;
    let cfg = instance_from_eve(&ni, None, MAC, 1).unwrap();
    let InstanceKind::Local(local) = cfg.kind else {
        panic!()
    };
    assert_eq!(
        (
            local.gateway,
            local.dhcp_range.first,
            local.dhcp_range.last,
            cfg.mtu
        ),
        (
            Ipv4Addr::new(10, 5, 0, 254),
            Ipv4Addr::new(10, 5, 0, 10),
            Ipv4Addr::new(10, 5, 0, 20),
            9000
        )
    );
    let mut switch = local_ni();
    switch.inst_type = 1;
    switch.ip = None;
    assert_eq!(
        instance_from_eve(&switch, None, MAC, 1).unwrap().kind,
        InstanceKind::Switch
    );
    let mut cloud = local_ni();
    cloud.inst_type = 3;
    assert_eq!(
        instance_from_eve(&cloud, None, MAC, 1),
        Err(EveConfigError::UnsupportedKind(3))
    );
    let mut v6 = local_ni();
    v6.ip_type = 2;
    assert_eq!(
        instance_from_eve(&v6, None, MAC, 1),
        Err(EveConfigError::NotIpv4)
    );
    let mut bad = local_ni();
    bad.ip.as_mut().unwrap().subnet = "10.5.0.0".into();
    assert_eq!(
        instance_from_eve(&bad, None, MAC, 1),
        Err(EveConfigError::BadSubnet)
    );
    let mut nameless = local_ni();
    nameless.uuidandversion = None;
    assert_eq!(
        instance_from_eve(&nameless, None, MAC, 1),
        Err(EveConfigError::MissingUuid)
    );
}

#[test]
fn an_adapter_becomes_an_interface() {
    let user_data = "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA one\n  - \"ssh-rsa BBBB two\"\nruncmd:\n  - echo hi\n";
    let app = AppInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: "app-1".into(),
            version: "1".into(),
        }),
        displayname: "web".into(),
        user_data: base64(user_data.as_bytes()),
        meta_data_type: 2,
        ..Default::default()
    };
    let adapter = NetworkAdapter {
        name: "eth0".into(),
        network_id: "ni-1".into(),
        addr: "10.5.0.50".into(),
        mac_address: "02:aa:bb:cc:dd:ee".into(),
        ..Default::default()
    };
    let port = port_from_eve(&app, &adapter, PortId(7), "nbu7x1", MAC, None).unwrap();
    assert_eq!(port.mac, EthernetAddress([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]));
    assert_eq!(port.static_ip, Some(Ipv4Addr::new(10, 5, 0, 50)));
    assert_eq!(
        (port.hostname.as_str(), port.instance.as_str()),
        ("web", "ni-1")
    );
    assert_eq!(port.metadata.kind, MetadataKind::OpenStack);
    assert_eq!(port.metadata.user_data, user_data.as_bytes());
    assert_eq!(
        port.metadata.ssh_keys,
        vec!["ssh-ed25519 AAAA one", "ssh-rsa BBBB two"]
    );
    let plain = NetworkAdapter {
        mac_address: String::new(),
        addr: String::new(),
        ..adapter.clone()
    };
    let port = port_from_eve(
        &app,
        &plain,
        PortId(7),
        "nbu7x1",
        MAC,
        Some(b"decrypted".to_vec()),
    )
    .unwrap();
    assert_eq!((port.mac, port.static_ip), (MAC, None));
    assert_eq!(port.metadata.user_data, b"decrypted");
    let broken = NetworkAdapter {
        mac_address: "02:aa".into(),
        ..adapter
    };
    assert_eq!(
        port_from_eve(&app, &broken, PortId(7), "x", MAC, None),
        Err(EveConfigError::BadMac)
    );
}

#[test]
fn macs_and_keys() {
    assert_eq!(parse_mac("02-00-00-00-00-01"), Some(MAC));
    assert_eq!(parse_mac("02:00:00:00:00:01:00"), None);
    assert_eq!(parse_mac("zz:00:00:00:00:01"), None);
    assert!(ssh_keys(b"\xff\xfe").is_empty());
    assert!(ssh_keys(b"users: []").is_empty());
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
