//! `evectl` against a controller running in this process (the library
//! behind the `controller` binary) on loopback: onboarding, devices,
//! configs, logs, info and metrics, human and `--json` output.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use controller::identity::Identity;
use controller::server::{self, Controller, Limits};
use controller::store::sqlite::SqliteStore;
use devicesim::device::{SimDevice, random_signer, self_signed};
use devicesim::http::Client;
use eve_proto::Message;
use eve_proto::attest::{ZAttestReq, ZAttestReqType};
use eve_proto::info::{
    AttestationInfo, AttestationState, HwSecurityModuleStatus, ZInfoDevice, ZInfoMsg,
    z_info_msg::InfoContent,
};
use eve_proto::metrics::{
    DeviceMetric, MetricItem, MetricItemType, ZMetricMsg, ZedcloudMetric,
    metric_item::MetricItemValue, z_metric_msg::MetricContent,
};
use hyper::{Method, StatusCode};
use serde_json::Value;

const API: &str = "/api/v2/edgedevice";

/// A controller served from this test's runtime, with its data directory.
struct Running {
    dev: SocketAddr,
    admin: SocketAddr,
    root_pem: String,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("evectl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts the controller's listeners on loopback in the current runtime,
/// with the admin token in `dir/admin-token`.
async fn start(dir: &Path) -> Running {
    let identity = Identity::load_or_create(dir).expect("identity");
    let root_pem = identity.root_pem.clone();
    let tls = server::tls_config(&identity).expect("TLS config");
    let store = Arc::new(SqliteStore::open(&dir.join("controller.db")).expect("store"));
    let ctl = Arc::new(Controller::new(store, identity, Limits::default()).expect("controller"));
    let token = "evectl-test-token".to_owned();
    std::fs::write(dir.join("admin-token"), format!("{token}\n")).expect("token file");
    let devices = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = Running {
        dev: devices.local_addr().unwrap(),
        admin: admin.local_addr().unwrap(),
        root_pem,
    };
    tokio::spawn(server::serve_devices(ctl.clone(), devices, tls.clone()));
    tokio::spawn(controller::admin::serve_admin_tls(
        ctl,
        admin,
        Arc::new(token),
        tls,
    ));
    running
}

impl Running {
    fn device_client(&self) -> Client {
        Client::tls(self.dev, &self.root_pem, &[]).expect("tls client")
    }
}

async fn post(c: &mut Client, path: &str, body: Bytes) -> (StatusCode, Bytes) {
    c.request(Method::POST, &format!("{API}{path}"), body)
        .await
        .expect("request")
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).expect("gzip");
    gz.finish().expect("gzip")
}

fn onboarding() -> (eve_proto::sign::SoftwareSigner, String) {
    let key = random_signer();
    let (pem, _) = self_signed(&key, "onboarding").expect("onboarding cert");
    (key, pem)
}

fn evectl(ctl: &Running, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_evectl"))
        .arg("--server")
        .arg(format!("https://{}", ctl.admin))
        .arg("--token-file")
        .arg(dir.join("admin-token"))
        .args(args)
        .output()
        .expect("evectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CLI over the admin API: onboarding, device list/show, config
/// set/get from YAML, logs, human and `--json` output, clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evectl_manages_onboarding_devices_configs_and_logs() {
    let dir = temp_dir("cli");
    let ctl = start(&dir).await;
    let onboard = onboarding();
    let cert = dir.join("onboard.pem");
    std::fs::write(&cert, &onboard.1).unwrap();
    let (ok, out, err) = evectl(
        &ctl,
        &dir,
        &["onboard", "add", cert.to_str().unwrap(), "--serial", "S-1"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("added"), "{out}");
    let (_, out, _) = evectl(&ctl, &dir, &["onboard", "list"]);
    assert!(out.contains("S-1"), "{out}");
    let (_, out, _) = evectl(&ctl, &dir, &["--json", "onboard", "list"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["serials"][0], "S-1");

    let mut c = ctl.device_client();
    let mut d = SimDevice::new("S-1", onboard).unwrap();
    let (_, certs) = c
        .request(Method::GET, &format!("{API}/certs"), Bytes::new())
        .await
        .unwrap();
    d.accept_certs(&certs, &ctl.root_pem).unwrap();
    assert_eq!(
        post(&mut c, "/register", d.register_body().unwrap())
            .await
            .0,
        StatusCode::CREATED
    );
    let (_, out, _) = evectl(&ctl, &dir, &["--json", "device", "list"]);
    let uuid = serde_json::from_str::<Value>(&out).unwrap()[0]["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, out, _) = evectl(&ctl, &dir, &["device", "show", &uuid]);
    assert!(out.contains("serial:       S-1"), "{out}");
    assert!(out.contains("pcr policy:   none"), "{out}");
    // The operator sets the PCR values the device's quotes must show, and
    // clears them.
    let seven = format!("7={}", "ab".repeat(32));
    let (ok, out, err) = evectl(
        &ctl,
        &dir,
        &["device", "pcr-policy", &uuid, "--pcr", &seven],
    );
    assert!(ok && out.contains(&seven), "{out}{err}");
    let (_, out, _) = evectl(&ctl, &dir, &["device", "show", &uuid]);
    assert!(out.contains(&format!("pcr policy:   {seven}")), "{out}");
    let (ok, _, err) = evectl(
        &ctl,
        &dir,
        &["device", "pcr-policy", &uuid, "--pcr", "7=ab"],
    );
    assert!(!ok && err.contains("400"), "{err}");
    let (ok, _, err) = evectl(&ctl, &dir, &["device", "pcr-policy", &uuid, "--pcr", "7"]);
    assert!(!ok && err.contains("INDEX=HEX"), "{err}");
    let (ok, _, _) = evectl(&ctl, &dir, &["device", "pcr-policy", &uuid]);
    assert!(!ok, "--pcr or --clear is required");
    let (ok, out, _) = evectl(&ctl, &dir, &["device", "pcr-policy", &uuid, "--clear"]);
    assert!(ok && out.contains("cleared"), "{out}");
    let (_, out, _) = evectl(&ctl, &dir, &["device", "show", &uuid]);
    assert!(out.contains("pcr policy:   none"), "{out}");

    let spec = dir.join("config.yaml");
    std::fs::write(
        &spec,
        "apps:\n  - displayname: db\nnetworkInstances:\n  - displayname: lan\n",
    )
    .unwrap();
    let (ok, out, err) = evectl(
        &ctl,
        &dir,
        &["config", "set", &uuid, spec.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(out.contains("config version 2"), "{out}");
    let (_, out, _) = evectl(&ctl, &dir, &["config", "get", &uuid]);
    assert!(
        out.starts_with("version 2") && out.contains("\"displayname\": \"db\""),
        "{out}"
    );
    std::fs::write(&spec, "apps: 7").unwrap();
    let (ok, _, err) = evectl(
        &ctl,
        &dir,
        &["config", "set", &uuid, spec.to_str().unwrap()],
    );
    assert!(!ok && err.contains("400"), "{err}");

    let (ok, out, _) = evectl(&ctl, &dir, &["logs", "show", &uuid]);
    assert!(ok && out.is_empty(), "{out}");
    let lines = "{\"severity\":\"info\",\"source\":\"a\",\"content\":\"one\"}\n";
    let attested = ZAttestReq {
        req_type: ZAttestReqType::AttestReqQuote as i32,
        ..Default::default()
    };
    let (status, _) = post(
        &mut c,
        &format!("/id/{uuid}/attest"),
        d.sign(attested.encode_to_vec()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        post(
            &mut c,
            &format!("/id/{uuid}/newlogs"),
            d.sign(gzip(lines)).unwrap()
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let (ok, out, _) = evectl(&ctl, &dir, &["logs", "show", &uuid, "--severity", "info"]);
    assert!(ok && out.contains(" info    a: one"), "{out}");

    // Attestation, HSM, controller requests and rejected answers are
    // spelled out above the JSON of info and metrics.
    let dinfo = ZInfoDevice {
        hsm_status: HwSecurityModuleStatus::Notfound as i32,
        attestation_info: Some(AttestationInfo {
            state: AttestationState::Complete as i32,
            error: None,
        }),
        ..Default::default()
    };
    let info = ZInfoMsg {
        dev_id: uuid.clone(),
        info_content: Some(InfoContent::Dinfo(dinfo)),
        ..Default::default()
    };
    let rejected = MetricItem {
        key: "zedagent.rejected.stale_timestamp".into(),
        r#type: MetricItemType::MetricItemCounter as i32,
        metric_item_value: Some(MetricItemValue::Uint64Value(2)),
    };
    let metrics = ZMetricMsg {
        dev_id: uuid.clone(),
        metric_content: Some(MetricContent::Dm(DeviceMetric {
            zedcloud: vec![ZedcloudMetric {
                if_name: "eth0".into(),
                success: 9,
                failures: 1,
                auth_verify_failure: 2,
                ..Default::default()
            }],
            metric_items: vec![rejected],
            ..Default::default()
        })),
        ..Default::default()
    };
    for (route, body) in [
        ("info", info.encode_to_vec()),
        ("metrics", metrics.encode_to_vec()),
    ] {
        let path = format!("/id/{uuid}/{route}");
        assert_eq!(
            post(&mut c, &path, d.sign(body).unwrap()).await.0,
            StatusCode::CREATED
        );
    }
    let (ok, out, _) = evectl(&ctl, &dir, &["info", "show", &uuid]);
    assert!(ok, "{out}");
    assert!(
        out.contains("attestation:  COMPLETE\nHSM:          NOTFOUND\n"),
        "{out}"
    );
    let (ok, out, _) = evectl(&ctl, &dir, &["metrics", "show", &uuid]);
    assert!(ok, "{out}");
    assert!(
        out.contains("controller requests via eth0: 9 ok, 1 failed")
            && out.contains("rejected controller answers: 2 (stale_timestamp 2)\n"),
        "{out}"
    );
    let mut admin = evectl::admin::Admin::new(
        &format!("https://{}", ctl.admin),
        &dir.join("admin-token"),
        false,
    )
    .unwrap();
    let mut followed = String::new();
    let filter = evectl::admin::LogFilter {
        limit: 100,
        ..Default::default()
    };
    admin
        .logs_follow(&uuid, &filter, std::time::Duration::from_millis(50), |t| {
            followed.push_str(t);
            false
        })
        .await
        .unwrap();
    assert!(followed.contains("one"), "{followed}");
    let (ok, _, err) = evectl(&ctl, &dir, &["device", "show", "nosuch"]);
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, out, _) = evectl(&ctl, &dir, &["device", "delete", &uuid]);
    assert!(ok && out.contains("deleted"));
    let (_, out, _) = evectl(&ctl, &dir, &["onboard", "remove", "1"]);
    assert!(out.contains("removed"), "{out}");
    drop(ctl);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Datastores, content trees and volumes: named in the description,
/// managed with `datastore add|list|remove`, credentials sealed before
/// the config is stored, and the device's content, volume and blob info
/// shown by `device show`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evectl_manages_datastores_and_shows_content() {
    use eve_proto::info::{
        ContentResources, ErrorInfo, UsageInfo, VolumeResources, ZInfoBlob, ZInfoBlobList,
        ZInfoContentTree, ZInfoVolume, ZSwState,
    };
    let dir = temp_dir("datastores");
    let ctl = start(&dir).await;
    let onboard = onboarding();
    let cert = dir.join("onboard.pem");
    std::fs::write(&cert, &onboard.1).unwrap();
    let (ok, _, err) = evectl(&ctl, &dir, &["onboard", "add", cert.to_str().unwrap()]);
    assert!(ok, "{err}");
    let mut c = ctl.device_client();
    let mut d = SimDevice::new("S-9", onboard).unwrap();
    let (_, certs) = c
        .request(Method::GET, &format!("{API}/certs"), Bytes::new())
        .await
        .unwrap();
    d.accept_certs(&certs, &ctl.root_pem).unwrap();
    let (status, _) = post(&mut c, "/register", d.register_body().unwrap()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, out, _) = evectl(&ctl, &dir, &["--json", "device", "list"]);
    let uuid = serde_json::from_str::<Value>(&out).unwrap()[0]["uuid"]
        .as_str()
        .unwrap()
        .to_owned();

    let spec = dir.join("content.yaml");
    std::fs::write(
        &spec,
        r#"
datastores:
  - { id: files, dType: DsHttps, fqdn: "files.example", dpath: images, apiKey: ops, password: s3cret-pw }
  - { id: hub, dType: DsContainerRegistry, fqdn: "docker://127.0.0.1:5000" }
contentInfo:
  - { displayName: disk, dsId: files, URL: vm.qcow2, iformat: QCOW2, sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" }
volumes:
  - { displayName: root, origin: { type: VCOT_DOWNLOAD, downloadContentTreeID: disk } }
"#,
    )
    .unwrap();
    let (ok, _, err) = evectl(
        &ctl,
        &dir,
        &["config", "set", &uuid, spec.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let (_, out, _) = evectl(&ctl, &dir, &["config", "get", &uuid]);
    assert!(
        out.contains("cipherData") && out.contains("cipherContexts"),
        "{out}"
    );
    assert!(
        !out.contains("s3cret-pw") && !out.contains("\"ops\""),
        "credentials left in clear: {out}"
    );

    let (ok, out, _) = evectl(&ctl, &dir, &["datastore", "list", &uuid]);
    assert!(ok, "{out}");
    assert!(
        out.contains("DsHttps  files.example /images  credentials: sealed  used by: disk"),
        "{out}"
    );
    assert!(
        out.contains("DsContainerRegistry  docker://127.0.0.1:5000  credentials: none  used by: -"),
        "{out}"
    );
    let (ok, _, err) = evectl(&ctl, &dir, &["datastore", "remove", &uuid, "files"]);
    assert!(!ok && err.contains("used by content trees disk"), "{err}");
    let (ok, out, err) = evectl(&ctl, &dir, &["datastore", "remove", &uuid, "hub"]);
    assert!(
        ok && out.contains("datastore hub removed; config version 3"),
        "{out}{err}"
    );

    let pw = dir.join("cdn-password");
    std::fs::write(&pw, "cdn-secret\n").unwrap();
    let (ok, out, err) = evectl(
        &ctl,
        &dir,
        &[
            "datastore",
            "add",
            &uuid,
            "cdn",
            "--type",
            "http",
            "--fqdn",
            "cdn.example:8080",
            "--user",
            "reader",
            "--password-file",
            pw.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("config version 4"), "{out}{err}");
    let (ok, _, err) = evectl(
        &ctl,
        &dir,
        &[
            "datastore",
            "add",
            &uuid,
            "x",
            "--type",
            "s3",
            "--fqdn",
            "h",
        ],
    );
    assert!(
        !ok && err.contains("expected http, https or registry"),
        "{err}"
    );
    let (_, out, _) = evectl(&ctl, &dir, &["datastore", "list", &uuid]);
    assert!(!out.contains("docker://"), "{out}");
    assert!(
        out.contains("DsHttp  cdn.example:8080  credentials: sealed  used by: -"),
        "{out}"
    );
    assert!(
        out.contains("credentials: sealed  used by: disk"),
        "the rest is kept: {out}"
    );
    let (_, out, _) = evectl(&ctl, &dir, &["config", "get", &uuid]);
    assert!(
        !out.contains("cdn-secret") && out.contains("\"displayName\": \"root\""),
        "{out}"
    );

    // The device reports its content: shown readably.
    let infos = [
        InfoContent::Cinfo(ZInfoContentTree {
            uuid: "ct-uuid".into(),
            display_name: "disk".into(),
            state: ZSwState::DownloadStarted as i32,
            progress_percentage: 37,
            resources: Some(ContentResources {
                cur_size_bytes: 3_700_000,
            }),
            ..Default::default()
        }),
        InfoContent::Vinfo(ZInfoVolume {
            uuid: "vol-uuid".into(),
            display_name: "root".into(),
            state: ZSwState::Error as i32,
            volume_err: Some(ErrorInfo {
                description: "blob sha256:aa: staged bytes hash to sha256:bb".into(),
                ..Default::default()
            }),
            resources: Some(VolumeResources {
                max_size_bytes: 10_000_000,
                cur_size_bytes: 0,
            }),
            ..Default::default()
        }),
        InfoContent::Binfo(ZInfoBlobList {
            blob: vec![ZInfoBlob {
                sha256: "ef".repeat(32),
                state: ZSwState::Verified as i32,
                progress_percentage: 100,
                resources: Some(ContentResources {
                    cur_size_bytes: 1234,
                }),
                usage: Some(UsageInfo {
                    ref_count: 2,
                    ..Default::default()
                }),
                ..Default::default()
            }],
        }),
    ];
    for content in infos {
        let msg = ZInfoMsg {
            dev_id: uuid.clone(),
            info_content: Some(content),
            ..Default::default()
        };
        let path = format!("/id/{uuid}/info");
        assert_eq!(
            post(&mut c, &path, d.sign(msg.encode_to_vec()).unwrap())
                .await
                .0,
            StatusCode::CREATED
        );
    }
    let (ok, out, _) = evectl(&ctl, &dir, &["device", "show", &uuid]);
    assert!(ok, "{out}");
    assert!(
        out.contains("content trees:\n  disk  DOWNLOAD_STARTED  37%  3700000 bytes"),
        "{out}"
    );
    assert!(out.contains("volumes:\n  root  ERROR  0%  0 of 10000000 bytes  generation 0  refs 0  uuid vol-uuid\n    error: blob sha256:aa: staged bytes hash to sha256:bb\n"), "{out}");
    assert!(
        out.contains(&format!(
            "blobs:\n  {}  VERIFIED  100%  1234 bytes  refs 2\n",
            "ef".repeat(32)
        )),
        "{out}"
    );
    drop(ctl);
    let _ = std::fs::remove_dir_all(&dir);
}
