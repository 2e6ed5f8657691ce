//! `evectl app ...` against a controller running in this process on
//! loopback: deploy puts the right objects in the device's config (checked
//! on the `EdgeDevConfig` the device is served, field by field), stop,
//! start, restart, purge and delete change exactly what they should,
//! malformed arguments are refused, and the device's `ZInfoApp` and
//! `AppMetric` reports and app logs are shown.

mod common;

use controller::configspec::derived_uuid;
use eve_proto::Message;
use eve_proto::config::{EdgeDevConfig, Format, VmMode};
use eve_proto::info::{
    ErrorInfo, ZInfoApp, ZInfoMsg, ZInfoTypes, ZSwState, z_info_msg::InfoContent,
};
use eve_proto::metrics::{
    AppCpuMetric, AppDiskMetric, AppMetric, MemoryMetric, NetworkMetric, ZMetricMsg,
};
use hyper::StatusCode;
use serde_json::Value;

use common::{Running, post, start};

/// The sha256 the test gives for its disk image (in capitals, which
/// evectl writes in lowercase) and its unikernel.
const VM_SHA: &str = "0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F0";
const UK_SHA: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_puts_datastore_content_tree_volume_and_app_in_the_served_config() {
    let ctl = start("deploy").await;
    let (uuid, _, _) = ctl.device(&ctl.dir.clone(), "SN-DEPLOY").await;
    // A network instance the app's interface joins by default.
    ctl.ctl
        .set_config(&uuid, "networkInstances: [{displayname: local}]")
        .unwrap();
    let local = derived_uuid("network instance", "local");
    let user_data = ctl.dir.join("user-data");
    std::fs::write(&user_data, "#cloud-config\nhostname: web\n").unwrap();
    // The only device is the default.
    let out = ctl.ok(&[
        "app",
        "deploy",
        "web",
        "--image",
        "docker://127.0.0.1:5000/httpd:1.36",
        "--memory",
        "256",
        "--vcpus",
        "2",
        "--port",
        "8080:80",
        "--port",
        "8443:443",
        "--user-data",
        user_data.to_str().unwrap(),
    ]);
    let app_uuid = derived_uuid("app", "web");
    assert!(
        out.contains(&format!("app web ({app_uuid}) deployed; config version 3")),
        "{out}"
    );
    let cfg = ctl.served(&uuid);
    let ds_uuid = derived_uuid("datastore", "registry 127.0.0.1:5000");
    assert_eq!(cfg.datastores.len(), 1);
    let ds = &cfg.datastores[0];
    assert_eq!(ds.id, ds_uuid);
    assert_eq!(
        ds.d_type,
        eve_proto::config::DsType::DsContainerRegistry as i32
    );
    assert_eq!(ds.fqdn, "docker://127.0.0.1:5000");
    assert_eq!(cfg.content_info.len(), 1);
    let tree = &cfg.content_info[0];
    assert_eq!(tree.uuid, derived_uuid("content", "web"));
    assert_eq!(tree.ds_id, ds_uuid);
    assert_eq!(tree.url, "httpd:1.36");
    assert_eq!(tree.iformat, Format::Container as i32);
    assert_eq!(cfg.volumes.len(), 1);
    let vol = &cfg.volumes[0];
    assert_eq!(vol.uuid, derived_uuid("volume", "web"));
    let origin = vol.origin.as_ref().unwrap();
    assert_eq!(origin.download_content_tree_id, tree.uuid);
    assert_eq!(vol.generation_count, 0);
    assert_eq!(cfg.apps.len(), 1);
    let app = &cfg.apps[0];
    assert_eq!(app.uuidandversion.as_ref().unwrap().uuid, app_uuid);
    assert_eq!(app.displayname, "web");
    assert!(app.activate);
    let res = app.fixedresources.as_ref().unwrap();
    assert_eq!(
        (res.memory, res.maxmem, res.vcpus),
        (256 * 1024, 256 * 1024, 2)
    );
    assert_eq!(res.virtualization_mode, VmMode::Pv as i32);
    assert_eq!(app.volume_ref_list.len(), 1);
    assert_eq!(app.volume_ref_list[0].uuid, vol.uuid);
    // The user data was given in clear: the controller sealed it for the
    // device (eveagent's tests open it).
    assert_eq!(app.user_data, "");
    let sealed = app.cipher_data.as_ref().expect("sealed user data");
    assert!(
        cfg.cipher_contexts
            .iter()
            .any(|c| c.context_id == sealed.cipher_context_id)
    );
    let out = ctl.ok(&["app", "show", "web"]);
    assert!(out.contains("  user data: sealed\n"), "{out}");
    let json: Value = serde_json::from_str(&ctl.ok(&["--json", "app", "show", "web"])).unwrap();
    assert_eq!(json["user_data"], "sealed");
    assert_eq!(app.interfaces[0].name, "eth0");
    assert_eq!(app.interfaces[0].network_id, local);
    let acls = &app.interfaces[0].acls;
    assert_eq!(acls.len(), 3);
    let forward = &acls[1];
    assert_eq!(
        forward
            .matches
            .iter()
            .map(|m| (m.r#type.as_str(), m.value.as_str()))
            .collect::<Vec<_>>(),
        [("protocol", "tcp"), ("lport", "8080")]
    );
    assert!(forward.actions[0].portmap);
    assert_eq!(forward.actions[0].app_port, 80);
    assert_eq!(acls[2].actions[0].app_port, 443);

    // A VM from an HTTPS disk image, and a unikernel sharing a datastore.
    ctl.ok(&[
        "app",
        "deploy",
        "vm",
        "--image",
        "https://files.example:8443/images/debian.qcow2",
        "--sha256",
        VM_SHA,
    ]);
    ctl.ok(&[
        "app",
        "deploy",
        "uk",
        "--image",
        "https://files.example:8443/images/hello.elf",
        "--sha256",
        UK_SHA,
        "--kind",
        "unikernel",
        "--memory",
        "64",
        "--network",
        "local",
    ]);
    let cfg = ctl.served(&uuid);
    assert_eq!(cfg.datastores.len(), 2, "the https datastore is shared");
    let find = |name: &str| cfg.apps.iter().find(|a| a.displayname == name).unwrap();
    let mode = |name: &str| {
        find(name)
            .fixedresources
            .as_ref()
            .unwrap()
            .virtualization_mode
    };
    assert_eq!(mode("vm"), VmMode::Hvm as i32);
    assert_eq!(mode("uk"), VmMode::Pv as i32);
    let tree = |name: &str| {
        cfg.content_info
            .iter()
            .find(|t| t.display_name == name)
            .unwrap()
    };
    assert_eq!(tree("vm").iformat, Format::Qcow2 as i32);
    assert_eq!(tree("vm").url, "debian.qcow2");
    assert_eq!(tree("uk").iformat, Format::Raw as i32);
    assert_eq!(tree("vm").sha256, VM_SHA.to_ascii_lowercase());
    assert_eq!(tree("uk").sha256, UK_SHA);
    let https = cfg
        .datastores
        .iter()
        .find(|d| d.fqdn == "files.example:8443")
        .unwrap();
    assert_eq!(https.dpath, "images");
    assert_eq!(tree("vm").ds_id, https.id);
    assert_eq!(find("uk").interfaces[0].network_id, local);

    // Malformed arguments are refused and change nothing.
    let version = |ctl: &Running| {
        ctl.ctl
            .store()
            .latest_config(&uuid)
            .unwrap()
            .unwrap()
            .version
    };
    let before = version(&ctl);
    for (args, why) in [
        (vec!["--image", "ftp://h/x.img"], "expected http://"),
        (vec!["--image", "docker://"], "expected http://"),
        (
            vec!["--image", "docker://a/b", "--kind", "vm"],
            "a vm app cannot be made",
        ),
        (
            vec!["--image", "http://h/x.img", "--kind", "container"],
            "a container app cannot",
        ),
        (
            vec!["--image", "http://h/x.img", "--kind", "lambda"],
            "expected vm, container or unikernel",
        ),
        (
            vec!["--image", "http://h/x.img", "--port", "80"],
            "expected HOST:APP",
        ),
        (
            vec!["--image", "http://h/x.img", "--port", "0:80"],
            "expected HOST:APP",
        ),
        (
            vec![
                "--image",
                "http://h/x.img",
                "--port",
                "8080:80",
                "--port",
                "8080:81",
            ],
            "forwarded twice",
        ),
        (
            vec!["--image", "http://h/x.img", "--memory", "0"],
            "at least 1 MiB",
        ),
        (
            vec!["--image", "http://h/x.img", "--network", "nope"],
            "no network instance \"nope\"",
        ),
        (
            vec!["--image", "http://h/x.img", "--memory", "-5"],
            "unexpected argument",
        ),
        (
            vec!["--image", "http://h/x.img", "--memory", "5000000"],
            "more memory than",
        ),
        (
            vec!["--image", "http://h/x.img", "--sha256", "abc"],
            "expected the 64 hex digits",
        ),
        (
            vec!["--image", "docker://a/b", "--sha256", UK_SHA],
            "pinned with @sha256:",
        ),
    ] {
        let mut all = vec!["app", "deploy", "bad"];
        all.extend(args);
        if !all.contains(&"--sha256") && all.iter().any(|a| a.starts_with("http")) {
            all.extend(["--sha256", VM_SHA]);
        }
        let (ok, _, err) = ctl.evectl(&all);
        assert!(!ok && err.contains(why), "{all:?}: {err}");
    }
    let (ok, _, err) = ctl.evectl(&["app", "deploy", "bad", "--image", "http://h/x.img"]);
    assert!(!ok && err.contains("needs --sha256"), "{err}");
    assert_eq!(version(&ctl), before);
    drop(ctl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_restart_purge_delete_change_exactly_what_they_should() {
    let ctl = start("ops").await;
    let dir = ctl.dir.clone();
    let (uuid, d, mut c) = ctl.device(&dir, "SN-OPS").await;
    // A second device: the app commands now need --device.
    ctl.device(&dir, "SN-OTHER").await;
    let (ok, _, err) = ctl.evectl(&["app", "list"]);
    assert!(!ok && err.contains("--device"), "{err}");
    let dev = uuid.clone();
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|a| a.to_string())
            .chain(["--device".to_string(), dev.clone()])
            .collect()
    };
    ctl.ok(&with(&[
        "app",
        "deploy",
        "web",
        "--image",
        "docker://httpd",
    ]));
    ctl.ok(&with(&[
        "app",
        "deploy",
        "web2",
        "--image",
        "docker://httpd",
    ]));
    let base = ctl.served(&uuid);
    assert_eq!(base.content_info.len(), 1, "one image, one content tree");
    assert_eq!(base.content_info[0].url, "library/httpd:latest");
    assert_eq!(base.datastores[0].fqdn, "docker://docker.io");

    // Each change against the previous config: only the named field moves.
    let mut prev = base.clone();
    let mut check = |args: &[&str], expect: &dyn Fn(&mut EdgeDevConfig)| {
        let out = ctl.ok(&with(args));
        assert!(out.contains("config version"), "{out}");
        let mut want = prev.clone();
        expect(&mut want);
        let got = ctl.served(&uuid);
        // What the controller stamps on every version.
        want.id = got.id.clone();
        want.config_timestamp = got.config_timestamp;
        for (w, g) in want.apps.iter_mut().zip(&got.apps) {
            w.uuidandversion = g.uuidandversion.clone();
        }
        assert_eq!(got, want, "{args:?}");
        prev = got;
    };
    let web = |cfg: &mut EdgeDevConfig| -> usize {
        cfg.apps
            .iter()
            .position(|a| a.displayname == "web")
            .unwrap()
    };
    check(&["app", "stop", "web"], &|c| {
        let i = web(c);
        c.apps[i].activate = false;
    });
    check(&["app", "start", "web"], &|c| {
        let i = web(c);
        c.apps[i].activate = true;
    });
    check(&["app", "restart", "web"], &|c| {
        let i = web(c);
        c.apps[i].restart = Some(eve_proto::config::InstanceOpsCmd {
            counter: 1,
            ..Default::default()
        });
    });
    check(&["app", "purge", "web"], &|c| {
        let i = web(c);
        c.apps[i].purge = Some(eve_proto::config::InstanceOpsCmd {
            counter: 1,
            ..Default::default()
        });
        c.apps[i].volume_ref_list[0].generation_count = 1;
        let vol = c.apps[i].volume_ref_list[0].uuid.clone();
        c.volumes
            .iter_mut()
            .find(|v| v.uuid == vol)
            .unwrap()
            .generation_count = 1;
    });
    // Delete: the app and its volume go; the content tree web2 uses stays.
    check(&["app", "delete", "web"], &|c| {
        let i = web(c);
        let gone = c.apps.remove(i);
        c.volumes.retain(|v| v.uuid != gone.volume_ref_list[0].uuid);
    });
    // Deleting the last user takes the content tree too; the datastore stays.
    check(&["app", "delete", "web2"], &|c| {
        c.apps.clear();
        c.volumes.clear();
        c.content_info.clear();
    });
    assert_eq!(prev.datastores.len(), 1);
    let (ok, _, err) = ctl.evectl(&with(&["app", "stop", "web"]));
    assert!(!ok && err.contains("no app \"web\""), "{err}");

    // The device's reports: state, errors, metrics, logs, and EVE's
    // UUID-only report of a deleted app.
    ctl.ok(&with(&[
        "app",
        "deploy",
        "db",
        "--image",
        "docker://postgres:16",
        "--port",
        "5432:5432",
    ]));
    let db = derived_uuid("app", "db");
    let info = ZInfoMsg {
        ztype: ZInfoTypes::ZiApp as i32,
        dev_id: uuid.clone(),
        info_content: Some(InfoContent::Ainfo(ZInfoApp {
            app_id: db.clone(),
            app_name: "db".into(),
            state: ZSwState::Error as i32,
            app_err: vec![ErrorInfo {
                description: "needs 512 MiB, 300 MiB free".into(),
                ..Default::default()
            }],
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
    let metrics = ZMetricMsg {
        dev_id: uuid.clone(),
        am: vec![AppMetric {
            app_id: db.clone(),
            app_name: "db".into(),
            cpu: Some(AppCpuMetric {
                total: 12,
                ..Default::default()
            }),
            memory: Some(MemoryMetric {
                used_mem: 100,
                avail_mem: 412,
                ..Default::default()
            }),
            network: vec![NetworkMetric {
                i_name: "eth0".into(),
                local_name: "nbu1x1".into(),
                tx_pkts: 3,
                tx_bytes: 180,
                rx_pkts: 2,
                rx_bytes: 120,
                tx_acl_drops: 1,
                rx_acl_rate_limit_drops: 4,
                ..Default::default()
            }],
            disk: vec![AppDiskMetric {
                disk: format!("{db}.1"),
                provisioned: 2048,
                used: 301,
                disk_type: "qcow2".into(),
                dirty: true,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        post(
            &mut c,
            &format!("/id/{uuid}/metrics"),
            d.sign(metrics.encode_to_vec()).unwrap()
        )
        .await,
        StatusCode::CREATED
    );
    let out = ctl.ok(&with(&["app", "list"]));
    assert_eq!(
        out,
        format!("db  {db}  wanted run  ERROR  error: needs 512 MiB, 300 MiB free\n")
    );
    let out = ctl.ok(&with(&["app", "show", "db"]));
    assert!(
        out.contains("wanted: run  mode PV  512 MiB  1 vCPU  restart #0  purge #0"),
        "{out}"
    );
    assert!(out.contains("ports: 5432->5432"), "{out}");
    assert!(out.contains("state: ERROR\n"), "{out}");
    assert!(out.contains("error: needs 512 MiB, 300 MiB free"), "{out}");
    assert!(
        out.contains("cpu: 12 s  memory: 100 of 512 MiB used"),
        "{out}"
    );
    assert!(
        out.contains(
            "network eth0 (nbu1x1): sent 3 packets, 180 bytes; received 2 packets, 120 bytes; \
             dropped 0, by ACLs 1, rate-limited 4\n"
        ),
        "{out}"
    );
    assert!(out.contains("user data: none\n"), "{out}");
    assert!(
        out.contains(&format!(
            "disk {db}.1: 301 of 2048 MiB used (qcow2, dirty)\n"
        )),
        "{out}"
    );
    let json: Value =
        serde_json::from_str(&ctl.ok(&with(&["--json", "app", "show", db.as_str()]))).unwrap();
    assert_eq!(json["info"]["state"], "ERROR");
    assert_eq!(json["config"]["displayname"], "db");
    assert_eq!(json["user_data"], "none");

    // App logs arrive on the app's newlogs path and are shown per app.
    let line = r#"{"severity":"info","source":"db","content":"listening on 5432","timestamp":{"seconds":1700000000}}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, format!("{line}\n").as_bytes()).unwrap();
    let status = post(
        &mut c,
        &format!("/id/{uuid}/apps/instanceid/{db}/newlogs"),
        d.sign(gz.finish().unwrap()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let out = ctl.ok(&with(&["app", "logs", "db"]));
    assert!(
        out.contains("listening on 5432") && out.contains(&format!("[app {db}]")),
        "{out}"
    );

    ctl.ok(&with(&["app", "delete", "db"]));
    let gone = ZInfoMsg {
        ztype: ZInfoTypes::ZiApp as i32,
        dev_id: uuid.clone(),
        info_content: Some(InfoContent::Ainfo(ZInfoApp {
            app_id: db.clone(),
            ..Default::default()
        })),
        ..Default::default()
    };
    post(
        &mut c,
        &format!("/id/{uuid}/info"),
        d.sign(gone.encode_to_vec()).unwrap(),
    )
    .await;
    let out = ctl.ok(&with(&["app", "list"]));
    assert_eq!(
        out,
        format!("?  {db}  wanted -  gone (deleted on the device)\n")
    );
}
