//! The harness of the evectl tests that talk to a controller: one runs in
//! this process on loopback (device API and admin API over TLS, SQLite
//! store in a fresh directory), `evectl` is run against it as a user runs
//! it, and simulated devices register and post reports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use controller::identity::Identity;
use controller::server::{self, Controller, Limits};
use controller::store::sqlite::SqliteStore;
use devicesim::device::{SimDevice, random_signer, self_signed};
use devicesim::http::Client;
use eve_proto::config::EdgeDevConfig;
use hyper::{Method, StatusCode};
use serde_json::Value;

pub const API: &str = "/api/v2/edgedevice";

pub struct Running {
    pub ctl: Arc<Controller>,
    pub dev: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub root_pem: String,
    pub dir: PathBuf,
}

pub async fn start(name: &str) -> Running {
    let dir = std::env::temp_dir().join(format!("evectl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let identity = Identity::load_or_create(&dir).expect("identity");
    let root_pem = identity.root_pem.clone();
    let tls = server::tls_config(&identity).expect("TLS config");
    let store = Arc::new(SqliteStore::open(&dir.join("controller.db")).expect("store"));
    let ctl = Arc::new(Controller::new(store, identity, Limits::default()).expect("controller"));
    std::fs::write(dir.join("admin-token"), "apps-test-token\n").expect("token file");
    let devices = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = Running {
        ctl: ctl.clone(),
        dev: devices.local_addr().unwrap(),
        admin: admin.local_addr().unwrap(),
        root_pem,
        dir,
    };
    tokio::spawn(server::serve_devices(ctl.clone(), devices, tls.clone()));
    tokio::spawn(controller::admin::serve_admin_tls(
        ctl,
        admin,
        Arc::new("apps-test-token".to_owned()),
        tls,
    ));
    running
}

impl Running {
    pub fn evectl<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_evectl"))
            .arg("--server")
            .arg(format!("https://{}", self.admin))
            .arg("--token-file")
            .arg(self.dir.join("admin-token"))
            .args(args)
            .output()
            .expect("evectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs evectl, which must succeed; its stdout.
    pub fn ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(&self, args: &[S]) -> String {
        let (ok, out, err) = self.evectl(args);
        assert!(ok, "evectl {args:?}: {err}");
        out
    }

    /// The config the device is served.
    pub fn served(&self, uuid: &str) -> EdgeDevConfig {
        self.ctl.current_config(uuid).unwrap().expect("a config")
    }

    /// A registered device and its client.
    pub async fn device(&self, dir: &Path, serial: &str) -> (String, SimDevice, Client) {
        let key = random_signer();
        let (pem, _) = self_signed(&key, "onboarding").expect("onboarding cert");
        let cert = dir.join(format!("{serial}.pem"));
        std::fs::write(&cert, &pem).unwrap();
        self.ok(&["onboard", "add", cert.to_str().unwrap()]);
        let mut c = Client::tls(self.dev, &self.root_pem, &[]).expect("tls client");
        let mut d = SimDevice::new(serial, (key, pem)).unwrap();
        let (_, certs) = c
            .request(Method::GET, &format!("{API}/certs"), Bytes::new())
            .await
            .unwrap();
        d.accept_certs(&certs, &self.root_pem).unwrap();
        let (status, _) = c
            .request(
                Method::POST,
                &format!("{API}/register"),
                d.register_body().unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::CREATED);
        let out = self.ok(&["--json", "device", "list"]);
        let list: Value = serde_json::from_str(&out).unwrap();
        let uuid = list
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["uuid"].as_str().unwrap().to_owned())
            .find(|u| self.ctl.store().device(u).unwrap().unwrap().serial == serial)
            .expect("the device");
        (uuid, d, c)
    }
}

pub async fn post(c: &mut Client, path: &str, body: Bytes) -> StatusCode {
    c.request(Method::POST, &format!("{API}{path}"), body)
        .await
        .expect("request")
        .0
}
