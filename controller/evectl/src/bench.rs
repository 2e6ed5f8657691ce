//! Host benchmark of the protobuf and envelope hot paths, called by
//! `cargo xtask bench proto` and `evectl bench`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use eve_proto::common::HashAlgorithm;
use eve_proto::config::{
    Ace, AceAction, AceMatch, Adapter, AppInstanceConfig, ConfigItem, ContentTree, DatastoreConfig,
    EdgeDevConfig, NetworkAdapter, NetworkInstanceConfig, UuiDandVersion, VmConfig, Volume,
    VolumeContentOrigin, VolumeRef,
};
use eve_proto::sign::{self, SenderIdentity, Signer, SoftwareSigner, TrustedSigner};
use prost::Message;

fn id(kind: u32, n: u32) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

fn uv(kind: u32, n: u32) -> Option<UuiDandVersion> {
    Some(UuiDandVersion {
        uuid: id(kind, n),
        version: "1".into(),
    })
}

/// A config shaped like a busy production node: 10 apps (each with two
/// network adapters carrying ACLs and two volumes), 5 network instances,
/// 20 volumes backed by 20 content trees, 2 datastores and 20 config items.
pub fn realistic_config() -> EdgeDevConfig {
    let apps = (0..10)
        .map(|a| AppInstanceConfig {
            uuidandversion: uv(1, a),
            displayname: format!("app-{a}"),
            fixedresources: Some(VmConfig {
                memory: 1 << 20,
                maxmem: 1 << 20,
                vcpus: 2,
                virtualization_mode: 1,
                ..Default::default()
            }),
            activate: true,
            interfaces: (0..2)
                .map(|i| NetworkAdapter {
                    name: format!("eth{i}"),
                    network_id: id(2, (a + i) % 5),
                    mac_address: format!("02:00:00:00:{a:02x}:{i:02x}"),
                    acls: (0..3)
                        .map(|r| Ace {
                            matches: vec![
                                AceMatch {
                                    r#type: "protocol".into(),
                                    value: "tcp".into(),
                                },
                                AceMatch {
                                    r#type: "lport".into(),
                                    value: format!("{}", 8000 + r),
                                },
                            ],
                            actions: vec![AceAction {
                                portmap: true,
                                app_port: 80 + r,
                                ..Default::default()
                            }],
                            name: format!("rule-{r}"),
                            id: r as i32,
                            dir: 1,
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            adapters: vec![Adapter {
                r#type: 2,
                name: format!("USB{a}"),
                eth_vf: None,
                interface_order: 0,
            }],
            user_data: "I2Nsb3VkLWNvbmZpZwpydW5jbWQ6CiAgLSBlY2hvIGhlbGxvCg==".into(),
            volume_ref_list: (0..2)
                .map(|v| VolumeRef {
                    uuid: id(3, a * 2 + v),
                    generation_count: 1,
                    mount_dir: "/data".into(),
                })
                .collect(),
            profile_list: vec!["default".into()],
            ..Default::default()
        })
        .collect();
    let network_instances = (0..5)
        .map(|n| NetworkInstanceConfig {
            uuidandversion: uv(2, n),
            displayname: format!("ni-{n}"),
            inst_type: 2,
            activate: true,
            port: Some(Adapter {
                r#type: 1,
                name: "uplink".into(),
                eth_vf: None,
                interface_order: 0,
            }),
            ip_type: 1,
            ip: Some(eve_proto::common::Ipspec {
                subnet: format!("10.{n}.0.0/24"),
                gateway: format!("10.{n}.0.1"),
                dns: vec![format!("10.{n}.0.1")],
                dhcp_range: Some(eve_proto::common::IpRange {
                    start: format!("10.{n}.0.2"),
                    end: format!("10.{n}.0.254"),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let content_info = (0..20)
        .map(|c| ContentTree {
            uuid: id(4, c),
            ds_id: id(5, c % 2),
            url: format!("library/image-{c}:1.0"),
            iformat: 8,
            sha256: format!("{:064x}", c),
            max_size_bytes: 1 << 30,
            display_name: format!("image-{c}"),
            generation_count: 1,
            ..Default::default()
        })
        .collect();
    let volumes = (0..20)
        .map(|v| Volume {
            uuid: id(3, v),
            origin: Some(VolumeContentOrigin {
                r#type: 2,
                download_content_tree_id: id(4, v),
            }),
            protocols: vec![0],
            generation_count: 1,
            maxsizebytes: 1 << 30,
            display_name: format!("vol-{v}"),
            ..Default::default()
        })
        .collect();
    EdgeDevConfig {
        id: uv(0, 0),
        apps,
        datastores: (0..2)
            .map(|d| DatastoreConfig {
                id: id(5, d),
                d_type: 5,
                fqdn: "docker://registry.example".into(),
                dpath: "library".into(),
                ..Default::default()
            })
            .collect(),
        config_items: (0..20)
            .map(|i| ConfigItem {
                key: format!("timer.item.{i}"),
                value: format!("{}", i * 10),
            })
            .collect(),
        network_instances,
        content_info,
        volumes,
        device_name: "bench-node".into(),
        ..Default::default()
    }
}

fn time<T>(iterations: u32, mut op: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(op());
    }
    start.elapsed() / iterations.max(1)
}

/// Runs each operation `iterations` times and returns the mean time per
/// operation: EdgeDevConfig encode and decode, AuthContainer sign (of the
/// encoded config) and verify.
pub fn run_proto_bench(iterations: u32) -> Vec<(String, Duration)> {
    let cfg = realistic_config();
    let bytes = cfg.encode_to_vec();
    let signer = SoftwareSigner::from_bytes(&[7; 32]).expect("fixed scalar is a valid key");
    let trusted = TrustedSigner::new(&signer.public_key(), [9; 32]);
    let sender = SenderIdentity {
        cert_hash: [9; 32],
        algo: HashAlgorithm::Sha25632bytes,
        embed_cert_pem: None,
    };
    let container = sign::sign_auth_container(bytes.clone(), &signer, &sender)
        .expect("software signing cannot fail");
    vec![
        (
            format!("EdgeDevConfig encode ({} bytes)", bytes.len()),
            time(iterations, || cfg.encode_to_vec()),
        ),
        (
            "EdgeDevConfig decode".into(),
            time(iterations, || EdgeDevConfig::decode(bytes.as_slice())),
        ),
        (
            "AuthContainer sign (ECDSA P-256)".into(),
            time(iterations, || {
                sign::sign_auth_container(bytes.clone(), &signer, &sender)
            }),
        ),
        (
            "AuthContainer verify (ECDSA P-256)".into(),
            time(iterations, || {
                sign::verify_auth_container(&container, &trusted).is_ok()
            }),
        ),
    ]
}
