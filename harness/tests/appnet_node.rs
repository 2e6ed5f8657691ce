//! An app on a network instance through the whole node: the default
//! node's services in QEMU under the host's own node code, against our
//! controller in this process. The config has a local network instance
//! and the hello-http unikernel deployed with `evectl app deploy
//! --network` and a port map in its ACLs (EVE's ACE with a `portmap`
//! action). zedmanager publishes the app's interface for zedrouter, which
//! attaches its port on the host's switch; the app's domain has only that
//! NIC, so its lease comes from zedrouter's DHCP server; the controller
//! sees it RUNNING with that address in `ZInfoApp.network`; the port
//! map answers on the host's loopback: zedrouter asks the host to forward
//! the map's port to its uplink (`ports.forward`), as in `cargo xtask
//! qemu`, with no forward in the manifest; zedrouter's counters of that
//! traffic reach the controller in the device metrics
//! (`appMetric.network`, `nm`). After zedrouter's VM is killed the host
//! restarts it and forwards the port to the new VM: the map answers again.

mod common;
#[path = "common/hostlog.rs"]
mod hostlog;
#[path = "common/images.rs"]
mod images;
#[path = "common/noderun.rs"]
mod noderun;
#[path = "common/tail.rs"]
mod tail;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::InProcessController;
use controller::identity::Identity;
use controller::server;
use eve_host::manifest::Manifest;
use eve_host::targets::{ContentOptions, DomainsOptions};
use eve_host::volumes::StateDir;
use eve_proto::Message;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::info::{ZInfoApp, ZInfoMsg, ZSwState};
use eve_proto::metrics::ZMetricMsg;
use evectl::apps::{self, AppKind, AppSpec};
use harness::content::{FileServer, Served, sha256_hex};
use harness::provision::{OnboardIdentity, config_files, write_config_partition};
use harness::{Arch, appassets, workspace_root};
use hostlog::Lines;
use images::service_images;
use noderun::NodeRun;
use tail::tail;
use topics::{AppNetworkConfig, AppStatus};

/// A guard against a node that never gets there, not a timing target:
/// under TCG on a shared 2-core machine.
const PATIENCE: Duration = Duration::from_secs(600);
/// The local instance's subnet: zedrouter's DHCP gives the app the first
/// address after the gateway.
const SUBNET: &str = "10.1.0.0/24";
const APP_ADDRESS: &str = "10.1.0.2";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// What answers on loopback `port`: an HTTP 200's text.
fn http_get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET / HTTP/1.0\r\nHost: app\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    (answer.starts_with("HTTP/1.") && answer.split(' ').nth(1) == Some("200")).then_some(answer)
}

/// The config description: `deployed` (what evectl wrote: datastores,
/// content trees, volumes, apps, network instances) as YAML sections.
fn description(deployed: &serde_json::Value) -> String {
    let mut text = String::new();
    for section in [
        "datastores",
        "contentInfo",
        "volumes",
        "networkInstances",
        "apps",
    ] {
        let items: Vec<&serde_json::Value> =
            deployed[section].as_array().into_iter().flatten().collect();
        if items.is_empty() {
            continue;
        }
        text.push_str(&format!("{section}:\n"));
        for item in items {
            // JSON is YAML.
            text.push_str(&format!("  - {item}\n"));
        }
    }
    text.push_str("configItems:\n  - { key: timer.config.interval, value: \"5\" }\n");
    text.push_str("  - { key: timer.metric.interval, value: \"5\" }\n");
    text
}

/// The newest `ZInfoApp` of app `uuid` the controller holds.
fn reported_app(ctl: &server::Controller, device: &str, uuid: &str) -> Option<ZInfoApp> {
    let key = format!("app/{uuid}");
    let records = ctl.store().latest_info(device).ok()?;
    let record = records.into_iter().find(|r| r.key == key)?;
    match ZInfoMsg::decode(record.msg.as_slice()).ok()?.info_content? {
        InfoContent::Ainfo(app) => Some(app),
        _ => None,
    }
}

/// The newest metrics message the controller holds.
fn reported_metrics(ctl: &server::Controller, device: &str) -> Option<ZMetricMsg> {
    let records = ctl.store().metrics(device, 1).ok()?;
    ZMetricMsg::decode(records.first()?.msg.as_slice()).ok()
}

fn until(what: &str, node: &NodeRun, lines: &Lines, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened\napps: {:#?}\ninterfaces: {:#?}\n{}",
            node.table::<AppStatus>(),
            node.table::<AppNetworkConfig>(),
            tail(&lines.snapshot())
        );
        thread::sleep(Duration::from_millis(250));
    }
}

fn app_on_a_network_instance(arch: Arch) {
    let mapped = free_port();
    let mut manifest =
        Manifest::load(&workspace_root().join("nodes/default.toml")).expect("the manifest");
    manifest.node.arch = arch;
    let images = service_images(&manifest);
    let image = appassets::app_unikernel(arch).expect("building hello-http");

    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::load_or_create(dir.path()).expect("controller identity");
    let InProcessController {
        rt,
        ctl,
        tls,
        device_listener,
        port,
    } = InProcessController::new(identity, &dir.path().join("c.db"));
    rt.spawn(server::serve_devices(ctl.clone(), device_listener, tls));
    let onboard = OnboardIdentity::generate("appnet-").expect("an onboarding identity");
    ctl.onboard_add(&onboard.cert_pem, std::slice::from_ref(&onboard.serial))
        .expect("pre-registered");
    let config_part = dir.path().join("config.img");
    write_config_partition(
        &config_part,
        &config_files(port, &ctl.identity().root_pem, &onboard),
    )
    .expect("the CONFIG partition");

    let http = FileServer::start(None).unwrap();
    let bytes = std::fs::read(&image).expect("the hello-http image");
    let sha256 = sha256_hex(&bytes);
    http.put("/images/hello-http.img", Served::file(bytes));

    let state = tempfile::tempdir().unwrap();
    let lines = Arc::new(Lines::default());
    let node = NodeRun::start(
        &manifest,
        &images,
        state.path(),
        &config_part,
        ContentOptions::default(),
        &DomainsOptions {
            arch: manifest.node.arch,
            memory_mib: Some(256),
            ..DomainsOptions::default()
        },
        &lines,
    );
    let deadline = Instant::now() + PATIENCE;
    let device = loop {
        if let Some(d) = ctl.store().devices().unwrap().first() {
            break d.uuid.clone();
        }
        assert!(
            Instant::now() < deadline,
            "never onboarded\n{}",
            tail(&lines.snapshot())
        );
        thread::sleep(Duration::from_millis(250));
    };

    // `evectl app deploy --network apps --port MAPPED:80` on a config
    // with a local instance.
    let config = serde_json::json!({
        "networkInstances": [{
            "displayname": "apps",
            "instType": "ZnetInstLocal",
            "activate": true,
            "ip": {"subnet": SUBNET},
        }],
    });
    let spec = AppSpec {
        name: "hello".into(),
        image: format!("http://10.0.2.2:{}/images/hello-http.img", http.port()),
        kind: Some(AppKind::Unikernel),
        memory_mib: 32,
        vcpus: 1,
        ports: vec![(mapped, 80)],
        user_data: None,
        network: Some("apps".into()),
        acls: Vec::new(),
        sha256: Some(sha256),
    };
    let deployed = apps::deploy(config, &spec).expect("evectl app deploy");
    ctl.set_config(&device, &description(&deployed))
        .expect("the config is accepted");
    let app = apps::app_uuid(&deployed, "hello").expect("the app's UUID");

    until(
        "the app's interface published for zedrouter",
        &node,
        &lines,
        || {
            node.table::<AppNetworkConfig>()
                .get(&app)
                .is_some_and(|a| a.adapters.len() == 1 && a.activate)
        },
    );
    until("the app RUNNING with its lease", &node, &lines, || {
        node.table::<AppStatus>().get(&app).is_some_and(|a| {
            a.state == ZSwState::Running as i32
                && a.network
                    .first()
                    .is_some_and(|n| n.ip_addrs == [APP_ADDRESS])
        })
    });
    until("an HTTP answer through the port map", &node, &lines, || {
        http_get(mapped).is_some()
    });
    until(
        "RUNNING with its address in the controller's view",
        &node,
        &lines,
        || {
            reported_app(&ctl, &device, &app).is_some_and(|a| {
                a.state == ZSwState::Running as i32
                    && a.network.iter().any(|n| {
                        n.ip_addrs == [APP_ADDRESS]
                            && n.mac_addr.starts_with("02:16:3e:")
                            && n.dev_name == "eth0"
                    })
            })
        },
    );
    // zedrouter's counters of the HTTP exchange, through zedagent's
    // metrics: the app's interface in its appMetric.network (the app's
    // view, named as EVE names it) and the instance's totals in nm.
    until(
        "the app's and the instance's counters in the controller's metrics",
        &node,
        &lines,
        || {
            reported_metrics(&ctl, &device).is_some_and(|m| {
                let app_counted = m.am.iter().any(|a| {
                    a.app_id == app
                        && a.network.iter().any(|n| {
                            n.i_name == "eth0"
                                && n.local_name.starts_with("nbu")
                                && n.tx_pkts > 0
                                && n.rx_bytes > 0
                        })
                });
                let instance_counted = m.nm.iter().any(|ni| {
                    ni.network_stats
                        .as_ref()
                        .and_then(|s| s.rx.as_ref())
                        .is_some_and(|rx| rx.total_packets > 0)
                });
                app_counted && instance_counted
            })
        },
    );
    // The host restarts a killed zedrouter; its new QEMU gets the forward.
    let pid_file = StateDir::create(state.path())
        .unwrap()
        .pid_file("zedrouter");
    let pid = std::fs::read_to_string(&pid_file).expect("zedrouter's pid file");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .expect("kill");
    assert!(killed.success());
    until("zedrouter's VM restarted", &node, &lines, || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() != pid.trim())
    });
    until(
        "an HTTP answer through the port map after the restart",
        &node,
        &lines,
        || http_get(mapped).is_some(),
    );
    let troubles = node.troubles();
    assert!(
        troubles.is_empty(),
        "{troubles:?}\n{}",
        tail(&lines.snapshot())
    );
    drop(node);
    drop(rt);
}

#[test]
fn app_on_a_network_instance_x86_64() {
    app_on_a_network_instance(Arch::X86_64);
}

#[test]
fn app_on_a_network_instance_aarch64() {
    app_on_a_network_instance(Arch::Aarch64);
}
