//! `evectl network ...`, ACL rules on `app deploy`, `flowlog show` and
//! `device update|reboot|shutdown|show` against a controller running in
//! this process on loopback: the config the device is served is checked
//! field by field, and a simulated device posts the network instance
//! info, metrics, flow logs and base OS info the commands render.

mod common;

use controller::configspec::derived_uuid;
use eve_proto::Message;
use eve_proto::config::ZNetworkInstType;
use eve_proto::flowlog::{AclAction, DnsRequest, FlowMessage, FlowRecord, IpFlow, ScopeInfo};
use eve_proto::info::{
    BaseOsStatus, BaseOsSubStatus, ErrorInfo, ZInfoDevSw, ZInfoDevice, ZInfoMsg,
    ZInfoNetworkInstance, ZInfoTypes, ZNetworkInstanceState, ZSwState, ZmetIpAssignmentEntry,
    ZmetVifInfo, z_info_msg::InfoContent,
};
use eve_proto::metrics::{NetworkStats, ZMetricMsg, ZMetricNetworkInstance, ZMetricNetworkStats};
use eve_proto::prost_types::Timestamp;
use hyper::StatusCode;
use serde_json::Value;

use common::{post, start};

const IMAGE_SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_acls_and_flow_logs() {
    let ctl = start("networks").await;
    let (uuid, d, mut c) = ctl.device(&ctl.dir.clone(), "SN-NET").await;

    let out = ctl.ok(&[
        "network",
        "add",
        "lan",
        "--local",
        "--subnet",
        "10.11.0.0/24",
        "--gateway",
        "10.11.0.1",
        "--dhcp-range",
        "10.11.0.100-10.11.0.199",
        "--dns",
        "10.11.0.1",
        "--no-flowlog",
    ]);
    let lan = derived_uuid("network instance", "lan");
    assert!(
        out.contains(&format!("network instance lan ({lan}) set")),
        "{out}"
    );
    ctl.ok(&["network", "add", "wire", "--switch", "--port", "eth1"]);
    let cfg = ctl.served(&uuid);
    assert_eq!(cfg.network_instances.len(), 2);
    let ni = &cfg.network_instances[0];
    assert_eq!(ni.uuidandversion.as_ref().unwrap().uuid, lan);
    assert_eq!(ni.displayname, "lan");
    assert_eq!(ni.inst_type, ZNetworkInstType::ZnetInstLocal as i32);
    assert!(ni.activate);
    assert!(ni.disable_flowlog);
    assert_eq!(ni.ip_type, eve_proto::config::AddressType::Ipv4 as i32);
    let port = ni.port.as_ref().unwrap();
    assert_eq!(port.name, "uplink");
    assert_eq!(
        port.r#type,
        eve_proto::common::PhyIoType::PhyIoNetEth as i32
    );
    let ip = ni.ip.as_ref().unwrap();
    assert_eq!(
        (ip.subnet.as_str(), ip.gateway.as_str(), ip.dns.as_slice()),
        ("10.11.0.0/24", "10.11.0.1", &["10.11.0.1".to_owned()][..])
    );
    let range = ip.dhcp_range.as_ref().unwrap();
    assert_eq!(
        (range.start.as_str(), range.end.as_str()),
        ("10.11.0.100", "10.11.0.199")
    );
    let wire = &cfg.network_instances[1];
    assert_eq!(wire.inst_type, ZNetworkInstType::ZnetInstSwitch as i32);
    assert_eq!(wire.port.as_ref().unwrap().name, "eth1");
    assert!(wire.ip.is_none() && !wire.disable_flowlog);

    // Malformed instances are refused before the controller.
    for (args, why) in [
        (
            &["network", "add", "x", "--local", "--subnet", "10.0.0.0/31"][..],
            "--subnet",
        ),
        (
            &[
                "network",
                "add",
                "x",
                "--local",
                "--subnet",
                "10.0.0.0/24",
                "--gateway",
                "10.0.1.1",
            ][..],
            "in 10.0.0.0/24",
        ),
        (
            &["network", "add", "x", "--switch", "--port", "a b"][..],
            "--port",
        ),
        (&["network", "add", "x", "--local"][..], "--subnet"),
    ] {
        let (ok, _, err) = ctl.evectl(args);
        assert!(!ok && err.contains(why), "{args:?}: {err}");
    }

    // An app on lan with ACL rules in command-line order, then a port map.
    ctl.ok(&[
        "app",
        "deploy",
        "web",
        "--image",
        "docker://127.0.0.1:5000/httpd:1",
        "--network",
        "lan",
        "--allow",
        "udp:ip=10.0.0.0/8:53",
        "--drop",
        "tcp:host=ads.example.org",
        "--limit",
        "tcp:ip=192.0.2.0/24:100/s/20",
        "--allow",
        "tcp:host=example.org:443",
        "--port",
        "8080:80",
    ]);
    let cfg = ctl.served(&uuid);
    let app = &cfg.apps[0];
    assert_eq!(app.interfaces[0].network_id, lan);
    let acls = &app.interfaces[0].acls;
    let summary: Vec<(i32, Vec<(&str, &str)>)> = acls
        .iter()
        .map(|a| {
            (
                a.id,
                a.matches
                    .iter()
                    .map(|m| (m.r#type.as_str(), m.value.as_str()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                1,
                vec![("protocol", "udp"), ("ip", "10.0.0.0/8"), ("fport", "53")]
            ),
            (2, vec![("protocol", "tcp"), ("host", "ads.example.org")]),
            (3, vec![("protocol", "tcp"), ("ip", "192.0.2.0/24")]),
            (
                4,
                vec![
                    ("protocol", "tcp"),
                    ("host", "example.org"),
                    ("fport", "443")
                ]
            ),
            (5, vec![("protocol", "tcp"), ("lport", "8080")]),
        ]
    );
    assert!(acls[0].actions.is_empty(), "allow: no action");
    assert!(acls[1].actions[0].drop);
    let limit = &acls[2].actions[0];
    assert!(limit.limit);
    assert_eq!(
        (limit.limitrate, limit.limitunit.as_str(), limit.limitburst),
        (100, "s", 20)
    );
    assert!(acls[4].actions[0].portmap);
    assert_eq!(acls[4].actions[0].app_port, 80);
    let out = ctl.ok(&["app", "show", "web"]);
    assert!(
        out.contains("acl eth0 2: --drop tcp:host=ads.example.org\n"),
        "{out}"
    );
    assert!(
        out.contains("acl eth0 3: --limit tcp:ip=192.0.2.0/24:100/s/20\n"),
        "{out}"
    );
    assert!(out.contains("ports: 8080->80"), "{out}");

    // Hostile rules are refused with the reason.
    for (flag, rule, why) in [
        ("--allow", "tcp:host=bad_name!", "not a DNS name"),
        ("--drop", "gre", "protocol \"gre\""),
        ("--limit", "tcp:443", "needs a rate"),
        ("--allow", "icmp:80", "ports need tcp or udp"),
    ] {
        let (ok, _, err) = ctl.evectl(&[
            "app",
            "deploy",
            "bad",
            "--image",
            "docker://a/b",
            flag,
            rule,
        ]);
        assert!(!ok && err.contains(why), "{rule}: {err}");
    }

    // lan is in use: not removed; wire is removed.
    let (ok, _, err) = ctl.evectl(&["network", "remove", "lan"]);
    assert!(!ok && err.contains("used by app(s) web"), "{err}");
    ctl.ok(&["network", "remove", "wire"]);
    assert_eq!(ctl.served(&uuid).network_instances.len(), 1);

    // The device reports the instance, its counters and flow logs.
    let web = derived_uuid("app", "web");
    let info = ZInfoMsg {
        ztype: ZInfoTypes::ZiNetworkInstance as i32,
        dev_id: uuid.clone(),
        info_content: Some(InfoContent::Niinfo(ZInfoNetworkInstance {
            network_id: lan.clone(),
            displayname: "lan".into(),
            inst_type: ZNetworkInstType::ZnetInstLocal as u32,
            activated: true,
            bridge_ip_addr: "10.11.0.1".into(),
            ip_assignments: vec![ZmetIpAssignmentEntry {
                mac_address: "02:00:00:00:00:10".into(),
                ip_address: vec!["10.11.0.100".into()],
            }],
            vifs: vec![ZmetVifInfo {
                vif_name: "nbu1x1".into(),
                mac_address: "02:00:00:00:00:10".into(),
                app_id: web.clone(),
            }],
            network_err: vec![ErrorInfo {
                description: "port eth9 is missing".into(),
                ..Default::default()
            }],
            state: ZNetworkInstanceState::ZnetinstStateOnline as i32,
            ..Default::default()
        })),
        ..Default::default()
    };
    let path = |op: &str| format!("/id/{uuid}/{op}");
    assert_eq!(
        post(&mut c, &path("info"), d.sign(info.encode_to_vec()).unwrap()).await,
        StatusCode::CREATED
    );
    let stats = |n| {
        Some(NetworkStats {
            total_packets: n,
            errors: 0,
            drops: 1,
            total_bytes: n * 100,
        })
    };
    let metrics = ZMetricMsg {
        dev_id: uuid.clone(),
        nm: vec![ZMetricNetworkInstance {
            network_id: lan.clone(),
            displayname: "lan".into(),
            network_stats: Some(ZMetricNetworkStats {
                rx: stats(7),
                tx: stats(9),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        post(
            &mut c,
            &path("metrics"),
            d.sign(metrics.encode_to_vec()).unwrap()
        )
        .await,
        StatusCode::CREATED
    );
    let out = ctl.ok(&["network", "list"]);
    assert_eq!(
        out,
        format!("lan  {lan}  local  10.11.0.0/24  port uplink  no flow log  1 app(s)  ONLINE\n")
    );
    let out = ctl.ok(&["network", "show", "lan"]);
    for line in [
        "  gateway: 10.11.0.1\n",
        "  dhcp range: 10.11.0.100-10.11.0.199\n",
        "  apps: web\n",
        "  state: ONLINE\n",
        "  lease: 02:00:00:00:00:10 10.11.0.100\n",
        &format!("  interface: nbu1x1 02:00:00:00:00:10 app {web}\n"),
        "  error: port eth9 is missing\n",
        "  received: 7 packets, 700 bytes, 1 dropped, 0 errors\n",
        "  sent: 9 packets, 900 bytes, 1 dropped, 0 errors\n",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
    let json: Value =
        serde_json::from_str(&ctl.ok(&["--json", "network", "show", lan.as_str()])).unwrap();
    assert_eq!(
        json["info"]["ipAssignments"][0]["ipAddress"][0],
        "10.11.0.100"
    );

    let flows = |app: &str, action: AclAction, acl: i32, host: &str| FlowMessage {
        dev_id: uuid.clone(),
        scope: Some(ScopeInfo {
            uuid: app.into(),
            intf: "eth0".into(),
            local_intf: "nbu1x1".into(),
            net_inst_uuid: lan.clone(),
        }),
        flows: vec![FlowRecord {
            flow: Some(IpFlow {
                src: "10.11.0.100".into(),
                src_port: 40_000,
                dest: "93.184.216.34".into(),
                dest_port: 443,
                protocol: 6,
            }),
            inbound: false,
            acl_id: acl,
            action: action as i32,
            start_time: ts(1_767_225_600),
            end_time: ts(1_767_225_601),
            tx_bytes: 1200,
            tx_pkts: 10,
            rx_bytes: 5000,
            rx_pkts: 8,
            ..Default::default()
        }],
        dns_reqs: vec![DnsRequest {
            host_name: host.into(),
            addrs: vec!["93.184.216.34".into()],
            request_time: ts(1_767_225_599),
            acl_num: acl,
        }],
    };
    let other = derived_uuid("app", "other");
    for msg in [
        flows(&web, AclAction::ActionAccept, 4, "example.org"),
        flows(&other, AclAction::ActionDrop, 2, "ads.example.org"),
    ] {
        assert_eq!(
            post(
                &mut c,
                &path("flowlog"),
                d.sign(msg.encode_to_vec()).unwrap()
            )
            .await,
            StatusCode::CREATED
        );
    }
    let out = ctl.ok(&["flowlog", "show", "--app", "web"]);
    assert!(out.contains(": app web eth0\n"), "{out}");
    assert!(
        out.contains(
            "  tcp 10.11.0.100:40000 -> 93.184.216.34:443 out  ACL 4 accept  \
             tx 1200 B 10 pkts  rx 5000 B 8 pkts  2026-01-01T00:00:00Z .. 2026-01-01T00:00:01Z\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("  dns example.org -> 93.184.216.34  ACL 4  at 2025-12-31T23:59:59Z\n"),
        "{out}"
    );
    assert!(!out.contains("ACL 2 drop"), "another app's flows: {out}");
    let out = ctl.ok(&["flowlog", "show"]);
    assert!(out.contains(&format!(": app {other} eth0\n")), "{out}");
    assert!(out.contains("ACL 2 drop"), "{out}");
    let json: Value = serde_json::from_str(&ctl.ok(&["--json", "flowlog", "show"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["flowlog"]["flows"][0]["action"], "ActionDrop");
    let (ok, _, err) = ctl.evectl(&["flowlog", "show", "--app", "nope"]);
    assert!(!ok && err.contains("no app \"nope\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_os_update_reboot_shutdown_and_partitions() {
    let ctl = start("baseos").await;
    let (uuid, d, mut c) = ctl.device(&ctl.dir.clone(), "SN-OS").await;

    // By serial, as the device list shows it.
    let out = ctl.ok(&[
        "device",
        "update",
        "SN-OS",
        "--image",
        "http://10.0.2.2:8000/os/eve-2.0.img",
        "--version",
        "2.0",
        "--sha256",
        IMAGE_SHA,
        "--activate",
    ]);
    assert!(out.contains("base OS 2.0 set to activate"), "{out}");
    let cfg = ctl.served(&uuid);
    let tree = &cfg.content_info[0];
    assert_eq!(tree.uuid, derived_uuid("content", "baseos-2.0"));
    assert_eq!(tree.url, "eve-2.0.img");
    assert_eq!(tree.sha256, IMAGE_SHA);
    assert_eq!(tree.iformat, eve_proto::config::Format::Raw as i32);
    assert_eq!(tree.ds_id, cfg.datastores[0].id);
    assert_eq!(cfg.datastores[0].fqdn, "10.0.2.2:8000");
    let baseos = cfg.baseos.as_ref().unwrap();
    assert_eq!(baseos.content_tree_uuid, tree.uuid);
    assert_eq!(baseos.base_os_version, "2.0");
    assert!(baseos.activate);
    assert_eq!(baseos.retry_update.as_ref().map_or(0, |r| r.counter), 0);

    ctl.ok(&[
        "device",
        "update",
        &uuid,
        "--image",
        "http://10.0.2.2:8000/os/eve-3.0.img",
        "--version",
        "3.0",
        "--sha256",
        IMAGE_SHA,
        "--activate",
        "--retry",
    ]);
    let cfg = ctl.served(&uuid);
    assert_eq!(cfg.content_info.len(), 1, "2.0's tree is gone");
    assert_eq!(cfg.datastores.len(), 1, "the datastore is shared");
    let baseos = cfg.baseos.as_ref().unwrap();
    assert_eq!(baseos.base_os_version, "3.0");
    assert_eq!(baseos.retry_update.as_ref().unwrap().counter, 1);
    let (ok, _, err) = ctl.evectl(&[
        "device",
        "update",
        &uuid,
        "--image",
        "http://h/x.img",
        "--version",
        "3 0",
        "--sha256",
        IMAGE_SHA,
    ]);
    assert!(!ok && err.contains("--version"), "{err}");
    let (ok, _, err) = ctl.evectl(&["device", "reboot", "SN-NOPE"]);
    assert!(!ok && err.contains("404"), "{err}");

    ctl.ok(&["device", "reboot", "SN-OS"]);
    let out = ctl.ok(&["device", "reboot", "SN-OS"]);
    assert!(out.contains("reboot asked (reboot counter 2)"), "{out}");
    ctl.ok(&["device", "shutdown", "SN-OS"]);
    let cfg = ctl.served(&uuid);
    let reboot = cfg.reboot.as_ref().unwrap();
    assert_eq!((reboot.counter, reboot.desired_state), (2, true));
    assert_eq!(cfg.shutdown.as_ref().unwrap().counter, 1);
    assert_eq!(cfg.baseos.as_ref().unwrap().base_os_version, "3.0", "kept");

    // Both partitions and the last reboot, as the device reports them.
    let info = ZInfoMsg {
        ztype: ZInfoTypes::ZiDevice as i32,
        dev_id: uuid.clone(),
        info_content: Some(InfoContent::Dinfo(ZInfoDevice {
            sw_list: vec![
                ZInfoDevSw {
                    activated: true,
                    partition_label: "IMGA".into(),
                    partition_state: "active".into(),
                    status: ZSwState::Running as i32,
                    short_version: "2.0".into(),
                    user_status: BaseOsStatus::Updated as i32,
                    ..Default::default()
                },
                ZInfoDevSw {
                    activated: false,
                    partition_label: "IMGB".into(),
                    partition_state: "unused".into(),
                    status: ZSwState::Error as i32,
                    short_version: "3.0".into(),
                    user_status: BaseOsStatus::Fallback as i32,
                    sub_status: BaseOsSubStatus::UpdateTesting as i32,
                    sub_status_str: "testing, 540 s left".into(),
                    sw_err: Some(ErrorInfo {
                        description: "no controller within the test window".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            last_reboot_reason: "fallback from IMGB".into(),
            last_reboot_time: ts(1_767_225_600),
            ..Default::default()
        })),
        ..Default::default()
    };
    assert_eq!(
        post(
            &mut c,
            &format!("/id/{uuid}/info"),
            d.sign(info.encode_to_vec()).unwrap()
        )
        .await,
        StatusCode::CREATED
    );
    let out = ctl.ok(&["device", "show", "SN-OS"]);
    for line in [
        "partition IMGA: 2.0 active, active  status UPDATED (RUNNING)\n",
        "partition IMGB: 3.0 inactive, unused  status FALLBACK (ERROR)  UPDATE_TESTING: testing, 540 s left\n",
        "  error: no controller within the test window\n",
        "last reboot:  fallback from IMGB (at 2026-01-01T00:00:00Z)\n",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
}
