//! What the controller's integration tests share: a `controller` process
//! on loopback, device requests, and TPM quotes.

// Each test binary compiles this module and uses its own part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use devicesim::device::{SimDevice, random_signer, self_signed};
use devicesim::http::Client;
use eve_proto::Message;
use eve_proto::attest::{ZAttestReq, ZAttestResponse};
use eve_proto::config::{ConfigRequest, ConfigResponse};
use hyper::{Method, StatusCode};
use serde_json::Value;

pub const API: &str = "/api/v2/edgedevice";

/// A `controller` process on loopback ports.
pub struct Running {
    pub child: Child,
    pub dev: SocketAddr,
    pub admin: SocketAddr,
    pub token: String,
    pub root_pem: String,
    pub root_line: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ctl-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts the `controller` binary on `dir` with `extra` arguments and
/// reads the addresses it prints.
pub fn start_with(dir: &Path, extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_controller"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn controller");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = || lines.next().expect("controller prints").expect("readable");
    let root_line = next();
    let dev_line = next();
    let admin_line = next();
    let addr = |line: &str, scheme: &str| -> SocketAddr {
        let rest = line.split(scheme).nth(1).expect("url in line");
        rest.split('/')
            .next()
            .expect("host")
            .parse()
            .expect("socket address")
    };
    let token_path = admin_line
        .split("token in ")
        .nth(1)
        .expect("token path")
        .trim_end_matches(')');
    Running {
        dev: addr(&dev_line, "https://"),
        admin: addr(&admin_line, "https://"),
        token: std::fs::read_to_string(token_path)
            .expect("token")
            .trim()
            .to_owned(),
        root_pem: std::fs::read_to_string(dir.join("root-certificate.pem")).expect("root cert"),
        root_line,
        child,
    }
}

impl Running {
    pub fn device_client(&self) -> Client {
        Client::tls(self.dev, &self.root_pem, &[]).expect("tls client")
    }

    pub async fn admin(&self, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        let mut c =
            Client::admin_tls(self.admin, &self.root_pem, &self.token).expect("admin client");
        let (status, body) = c
            .request(method, path, Bytes::from(body.to_owned()))
            .await
            .expect("admin request");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

pub async fn post(c: &mut Client, path: &str, body: Bytes) -> (StatusCode, Bytes) {
    c.request(Method::POST, &format!("{API}{path}"), body)
        .await
        .expect("request")
}

pub async fn attest(c: &mut Client, d: &SimDevice, uuid: &str, req: ZAttestReq) -> ZAttestResponse {
    let (status, body) = post(
        c,
        &format!("/id/{uuid}/attest"),
        d.sign(req.encode_to_vec()).unwrap(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    ZAttestResponse::decode(d.open(&body).expect("controller signed").as_slice())
        .expect("ZAttestResponse")
}

pub async fn poll(
    c: &mut Client,
    d: &SimDevice,
    uuid: &str,
    hash: &str,
    token: &[u8],
) -> (StatusCode, Option<ConfigResponse>) {
    let req = ConfigRequest {
        config_hash: hash.into(),
        integrity_token: token.to_vec(),
    };
    let (status, body) = post(
        c,
        &format!("/id/{uuid}/config"),
        d.sign(req.encode_to_vec()).unwrap(),
    )
    .await;
    let resp = (status == StatusCode::OK).then(|| {
        ConfigResponse::decode(d.open(&body).expect("controller signed").as_slice())
            .expect("ConfigResponse")
    });
    (status, resp)
}

pub fn onboarding() -> (eve_proto::sign::SoftwareSigner, String) {
    let key = random_signer();
    let (pem, _) = self_signed(&key, "onboarding").expect("onboarding cert");
    (key, pem)
}

/// Builds a TPMS_ATTEST quote over `pcrs` (SHA-256 bank) carrying `nonce`.
pub fn tpm_quote(nonce: &[u8], pcrs: &[(u32, [u8; 32])]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&0xff54_4347u32.to_be_bytes());
    a.extend_from_slice(&0x8018u16.to_be_bytes());
    a.extend_from_slice(&2u16.to_be_bytes());
    a.extend_from_slice(&[0, 0x0b]);
    a.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
    a.extend_from_slice(nonce);
    a.extend_from_slice(&[0u8; 17 + 8]);
    a.extend_from_slice(&1u32.to_be_bytes());
    a.extend_from_slice(&0x000bu16.to_be_bytes());
    let mut select = [0u8; 3];
    for (i, _) in pcrs {
        select[(*i / 8) as usize] |= 1 << (i % 8);
    }
    a.push(3);
    a.extend_from_slice(&select);
    let concat: Vec<u8> = pcrs.iter().flat_map(|(_, v)| v.to_vec()).collect();
    a.extend_from_slice(&32u16.to_be_bytes());
    a.extend_from_slice(&eve_proto::sha256(&concat));
    a
}

/// A replica started on its own data directory holding the identity (and
/// admin token) of the first: replicas share the controller's PKI.
pub fn replica_of(first: &Path, dir: &Path, url: &str) -> Running {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(first).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".pem") || name == "admin-token" {
            std::fs::copy(&path, dir.join(&name)).unwrap();
        }
    }
    start_with(dir, &["--database", url])
}
