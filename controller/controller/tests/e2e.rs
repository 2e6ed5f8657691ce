//! End to end over real TLS on loopback: the `controller` binary is started
//! with a fresh data directory, devices built from `eve-proto` signing walk
//! EVE's API, the admin API manages them, and the controller is killed and
//! restarted mid-test to check that nothing was lost.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use devicesim::device::{SimDevice, random_signer, self_signed};
use devicesim::http::Client;
use eve_proto::Message;
use eve_proto::attest::{
    AttestStorageKeys, AttestVolumeKey, TpmHashAlgo, TpmPcrValue, ZAttestQuote, ZAttestReq,
    ZAttestReqType, ZAttestResponse, ZAttestResponseCode,
};
use eve_proto::certs::{ZCert, ZCertType};
use eve_proto::info::{ZInfoDevice, ZInfoMsg, z_info_msg::InfoContent};
use eve_proto::logs::{LogBundle, LogEntry};
use eve_proto::metrics::ZMetricMsg;
use eve_proto::sign::Signer;
use eve_proto::uuid::{UuidRequest, UuidResponse};
use hyper::{Method, StatusCode};
use serde_json::json;

mod common;
use common::*;

fn start(dir: &std::path::Path) -> Running {
    start_with(dir, &[])
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

impl Running {
    /// Waits (up to a minute) until the store records a request from
    /// `uuid` at or after `at` (Unix seconds).
    async fn wait_last_seen(&self, uuid: &str, at: i64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (_, dev) = self
                .admin(Method::GET, &format!("/api/v1/devices/{uuid}"), "")
                .await;
            if dev["last_seen"].as_i64().is_some_and(|t| t >= at) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "last-seen time never written: {dev}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Declares a body larger than the limit and reads the answer without
/// sending the body: the controller must refuse on the header alone (a
/// client writing the body would see the connection closed under it).
async fn oversized_status(ctl: &Running, path: &str, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ctl.root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(controller::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(ctl.dev).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(ctl.dev.ip().into());
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let head = format!(
        "POST {API}{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-proto-binary\r\nContent-Length: {len}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 12];
    tls.read_exact(&mut buf).await.unwrap();
    std::str::from_utf8(&buf[9..12]).unwrap().parse().unwrap()
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).expect("gzip");
    gz.finish().expect("gzip")
}

/// The whole device life: onboarding, registration outcomes, attestation,
/// config 200/304 with signed answers, telemetry, negative cases that must
/// be refused and counted but not stored, config from YAML through the
/// admin API, and a kill -9 restart that loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_lifecycle_negative_cases_and_restart() {
    let dir = temp_dir("life");
    let ctl = start(&dir);
    assert!(ctl.root_line.contains("created"), "{}", ctl.root_line);

    let onboard = onboarding();
    let (s, v) = ctl
        .admin(
            Method::POST,
            "/api/v1/onboard",
            &json!({"cert_pem": onboard.1, "serials": ["SN1", "SN2"]}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) = ctl
        .admin(Method::POST, "/api/v1/onboard", "{\"cert_pem\": \"junk\"}")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let mut c = ctl.device_client();
    let (s, _) = c
        .request(Method::GET, &format!("{API}/ping"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let mut d = SimDevice::new("SN1", (onboard.0.clone(), onboard.1.clone())).unwrap();
    let (s, certs) = c
        .request(Method::GET, &format!("{API}/certs"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    d.accept_certs(&certs, &ctl.root_pem)
        .expect("controller certs chain to the root");

    // Registration outcomes.
    assert_eq!(
        post(&mut c, "/register", d.register_body().unwrap())
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        post(&mut c, "/register", d.register_body().unwrap())
            .await
            .0,
        StatusCode::OK
    );
    let twin = SimDevice::new("SN1", (onboard.0.clone(), onboard.1.clone())).unwrap();
    assert_eq!(
        post(&mut c, "/register", twin.register_body().unwrap())
            .await
            .0,
        StatusCode::CONFLICT
    );
    let stranger = SimDevice::new("SN1", onboarding()).unwrap();
    assert_eq!(
        post(&mut c, "/register", stranger.register_body().unwrap())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let wrong_serial = SimDevice::new("SN9", (onboard.0.clone(), onboard.1.clone())).unwrap();
    assert_eq!(
        post(&mut c, "/register", wrong_serial.register_body().unwrap())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let mut forged = eve_proto::auth::AuthContainer::decode(d.register_body().unwrap()).unwrap();
    forged.signature_hash[10] ^= 1;
    assert_eq!(
        post(&mut c, "/register", forged.encode_to_vec().into())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // UUID.
    let (s, body) = post(
        &mut c,
        "/uuid",
        d.sign(UuidRequest::default().encode_to_vec()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let uuid = UuidResponse::decode(d.open(&body).unwrap().as_slice())
        .unwrap()
        .uuid;
    assert_eq!(uuid.len(), 36);

    // Config needs the integrity token from attest.
    assert_eq!(
        poll(&mut c, &d, &uuid, "", b"").await.0,
        StatusCode::FORBIDDEN
    );
    let nonce = attest(
        &mut c,
        &d,
        &uuid,
        ZAttestReq {
            req_type: ZAttestReqType::AttestReqNonce as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(nonce.nonce.unwrap().nonce.len(), 32);
    let quote = attest(
        &mut c,
        &d,
        &uuid,
        ZAttestReq {
            req_type: ZAttestReqType::AttestReqQuote as i32,
            ..Default::default()
        },
    )
    .await;
    let qr = quote.quote_resp.unwrap();
    assert_eq!(qr.response, ZAttestResponseCode::Success as i32);
    let token = qr.integrity_token;
    assert!(!token.is_empty());
    assert_eq!(
        poll(&mut c, &d, &uuid, "", b"wrong").await.0,
        StatusCode::FORBIDDEN
    );

    let (s, resp) = poll(&mut c, &d, &uuid, "", &token).await;
    assert_eq!(s, StatusCode::OK);
    let resp = resp.unwrap();
    let cfg = resp.config.unwrap();
    assert_eq!(cfg.id.unwrap().uuid, uuid);
    assert!(cfg.config_timestamp.is_some());
    let hash1 = resp.config_hash;
    assert_eq!(
        poll(&mut c, &d, &uuid, &hash1, &token).await.0,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        poll(&mut c, &d, &uuid, &hash1, &token).await.0,
        StatusCode::NOT_MODIFIED
    );

    // Telemetry.
    let info = ZInfoMsg {
        ztype: 1,
        dev_id: uuid.clone(),
        info_content: Some(InfoContent::Dinfo(ZInfoDevice {
            ncpu: 2,
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
        .await
        .0,
        StatusCode::CREATED
    );
    let metrics = ZMetricMsg {
        dev_id: uuid.clone(),
        ..Default::default()
    };
    assert_eq!(
        post(
            &mut c,
            &format!("/id/{uuid}/metrics"),
            d.sign(metrics.encode_to_vec()).unwrap()
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let mut short =
        eve_proto::auth::AuthContainer::decode(d.sign(metrics.encode_to_vec()).unwrap()).unwrap();
    short.algo = eve_proto::common::HashAlgorithm::Sha25616bytes as i32;
    short.sender_cert_hash.truncate(16);
    assert_eq!(
        post(&mut c, "/metrics", short.encode_to_vec().into())
            .await
            .0,
        StatusCode::CREATED
    );
    short.algo = 7;
    assert_eq!(
        post(&mut c, "/metrics", short.encode_to_vec().into())
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // A line exactly as EVE's newlogd writes it (Go encoding/json), one in
    // the protobuf-JSON form older senders use, and one with no time.
    let lines = "{\"severity\":\"info\",\"source\":\"zedagent\",\"iid\":\"1234\",\"content\":\"hello\",\"msgid\":7,\"timestamp\":{\"seconds\":1700000000,\"nanos\":5000000},\"filename\":\"f.go:12\",\"function\":\"main.f\"}\n\
                 {\"severity\":\"error\",\"source\":\"nim\",\"content\":\"link down\",\"msgid\":\"8\",\"timestamp\":\"2026-01-01T00:00:00Z\"}\n";
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
    let app = "6f8a3d0e-1b2c-4d5e-8f90-a1b2c3d4e5f6";
    let app_line = "{\"severity\":\"info\",\"source\":\"app\",\"content\":\"app says hi\"}\n";
    assert_eq!(
        post(
            &mut c,
            &format!("/id/{uuid}/apps/instanceid/{app}/newlogs"),
            d.sign(gzip(app_line)).unwrap()
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let bundle = LogBundle {
        log: vec![LogEntry {
            severity: "warning".into(),
            source: "old".into(),
            content: "bundle".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        post(&mut c, "/logs", d.sign(bundle.encode_to_vec()).unwrap())
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        post(&mut c, "/flowlog", d.sign(Vec::new()).unwrap())
            .await
            .0,
        StatusCode::CREATED
    );

    // Negative cases: refused, counted, never stored.
    let good = d.sign(info.encode_to_vec()).unwrap();
    let mut tampered = eve_proto::auth::AuthContainer::decode(good.clone()).unwrap();
    tampered.signature_hash[5] ^= 0x40;
    assert_eq!(
        post(&mut c, "/info", tampered.encode_to_vec().into())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let mut payload_swapped = eve_proto::auth::AuthContainer::decode(good.clone()).unwrap();
    payload_swapped
        .protected_payload
        .as_mut()
        .unwrap()
        .payload
        .push(0);
    assert_eq!(
        post(&mut c, "/info", payload_swapped.encode_to_vec().into())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let unknown = SimDevice::new("SN2", (onboard.0.clone(), onboard.1.clone())).unwrap();
    assert_eq!(
        post(&mut c, "/info", unknown.sign(info.encode_to_vec()).unwrap())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&mut c, "/info", Bytes::from_static(b"\xff\xff\xff garbage"))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(&mut c, "/info", good.slice(..good.len() / 2)).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(&mut c, "/info", d.sign(vec![0xff, 0xff, 0xff]).unwrap())
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(oversized_status(&ctl, "/info", 5 << 20).await, 413);
    assert_eq!(
        post(&mut c, "/newlogs", d.sign(b"not gzip".to_vec()).unwrap())
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    for (batch, named) in [
        ("{\"severity\":\"x\"}\nnot json\n", "log line 2:"),
        (
            "\n{\"severity\":\"x\",\"timestamp\":{\"seconds\":\"5\"}}\n",
            "log line 2:",
        ),
        ("{\"msgid\":-1}\n", "log line 1:"),
    ] {
        let (status, body) = post(
            &mut c,
            &format!("/id/{uuid}/newlogs"),
            d.sign(gzip(batch)).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{batch}");
        let reason = String::from_utf8_lossy(&body);
        assert!(reason.starts_with(named), "{batch}: {reason}");
    }
    assert_eq!(
        post(
            &mut c,
            &format!("/id/{}/info", "00000000-0000-4000-8000-000000000000"),
            good.clone()
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.request(Method::GET, &format!("{API}/nosuch"), Bytes::new())
            .await
            .unwrap()
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.request(Method::GET, &format!("{API}/register"), Bytes::new())
            .await
            .unwrap()
            .0,
        StatusCode::METHOD_NOT_ALLOWED
    );

    let (s, info_list) = ctl
        .admin(Method::GET, &format!("/api/v1/devices/{uuid}/info"), "")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(info_list.as_array().unwrap().len(), 1, "{info_list}");
    assert_eq!(info_list[0]["info"]["dinfo"]["ncpu"], 2);
    let (_, logs) = ctl
        .admin(Method::GET, &format!("/api/v1/devices/{uuid}/logs"), "")
        .await;
    assert_eq!(logs.as_array().unwrap().len(), 4, "{logs}");
    let (_, errors) = ctl
        .admin(
            Method::GET,
            &format!("/api/v1/devices/{uuid}/logs?severity=error&contains=link%20down"),
            "",
        )
        .await;
    assert_eq!(errors.as_array().unwrap().len(), 1);
    assert_eq!(errors[0]["ts_ms"], 1_767_225_600_000_i64);
    let (_, eve) = ctl
        .admin(
            Method::GET,
            &format!("/api/v1/devices/{uuid}/logs?contains=hello"),
            "",
        )
        .await;
    assert_eq!(eve.as_array().unwrap().len(), 1, "{eve}");
    assert_eq!(eve[0]["ts_ms"], 1_700_000_000_005_i64);
    assert_eq!(
        (&eve[0]["severity"], &eve[0]["source"], &eve[0]["content"]),
        (&json!("info"), &json!("zedagent"), &json!("hello"))
    );
    let (_, app_logs) = ctl
        .admin(
            Method::GET,
            &format!("/api/v1/devices/{uuid}/logs?app={app}"),
            "",
        )
        .await;
    assert_eq!(app_logs[0]["content"], "app says hi");
    let (s, _) = ctl.admin(Method::GET, "/api/v1/stats", "").await;
    assert_eq!(s, StatusCode::OK);
    let mut wrong = Client::admin_tls(ctl.admin, &ctl.root_pem, "not-the-token").unwrap();
    assert_eq!(
        wrong
            .request(Method::GET, "/api/v1/stats", Bytes::new())
            .await
            .unwrap()
            .0,
        StatusCode::UNAUTHORIZED
    );

    // A config from YAML: the device sees it once, then 304 again.
    let yaml = "apps:\n  - displayname: web\n    activate: true\nconfigItems:\n  - {key: timer.config.interval, value: \"10\"}\n";
    let (s, set) = ctl
        .admin(Method::PUT, &format!("/api/v1/devices/{uuid}/config"), yaml)
        .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    assert_eq!(set["version"], 2);
    let (s, bad) = ctl
        .admin(
            Method::PUT,
            &format!("/api/v1/devices/{uuid}/config"),
            "apps: [{nosuch: 1}]",
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    let (s, resp) = poll(&mut c, &d, &uuid, &hash1, &token).await;
    assert_eq!(s, StatusCode::OK);
    let resp = resp.unwrap();
    assert_eq!(resp.config.as_ref().unwrap().apps[0].displayname, "web");
    assert_eq!(
        resp.config.as_ref().unwrap().id.as_ref().unwrap().version,
        "2"
    );
    let hash2 = resp.config_hash;
    assert_ne!(hash1, hash2);
    let last_polled = unix_secs();
    assert_eq!(
        poll(&mut c, &d, &uuid, &hash2, &token).await.0,
        StatusCode::NOT_MODIFIED
    );

    // Counters: the refused requests were counted.
    let (_, stats) = ctl.admin(Method::GET, "/api/v1/stats", "").await;
    let count = |route: &str, status: u16| {
        stats["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["route"] == route && c["status"] == status)
            .map_or(0, |c| c["count"].as_u64().unwrap())
    };
    assert_eq!(count("info", 401), 3, "{stats}");
    assert_eq!(count("info", 413), 1);
    assert_eq!(count("config", 304), 3);
    assert_eq!(count("register", 409), 1);

    // Kill -9 and restart on the same data directory: nothing lost. The
    // last-seen times are written in batches; the kill waits for the batch
    // holding the last poll, as the admin API (which reads the store) shows.
    ctl.wait_last_seen(&uuid, last_polled).await;
    drop(c);
    drop(ctl);
    let ctl = start(&dir);
    assert!(ctl.root_line.contains("reused"), "{}", ctl.root_line);
    let mut c = ctl.device_client();
    assert_eq!(
        poll(&mut c, &d, &uuid, &hash2, &token).await.0,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        post(&mut c, "/register", d.register_body().unwrap())
            .await
            .0,
        StatusCode::OK
    );
    let (_, dev) = ctl
        .admin(Method::GET, &format!("/api/v1/devices/{uuid}"), "")
        .await;
    assert_eq!(dev["attest"]["state"], "attested-notpm");
    assert_eq!(dev["serial"], "SN1");
    assert!(dev["last_seen"].as_i64().unwrap() >= last_polled, "{dev}");
    let (_, hist) = ctl
        .admin(
            Method::GET,
            &format!("/api/v1/devices/{uuid}/config/history"),
            "",
        )
        .await;
    assert_eq!(hist.as_array().unwrap().len(), 2);
    let (_, logs) = ctl
        .admin(Method::GET, &format!("/api/v1/devices/{uuid}/logs"), "")
        .await;
    assert_eq!(logs.as_array().unwrap().len(), 4);
    let (_, m) = ctl
        .admin(
            Method::GET,
            &format!("/api/v1/devices/{uuid}/metrics?limit=10"),
            "",
        )
        .await;
    assert_eq!(m.as_array().unwrap().len(), 2);

    // Deleting the device makes it unknown.
    assert_eq!(
        ctl.admin(Method::DELETE, &format!("/api/v1/devices/{uuid}"), "")
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        poll(&mut c, &d, &uuid, &hash2, &token).await.0,
        StatusCode::UNAUTHORIZED
    );
    drop(ctl);
    let _ = std::fs::remove_dir_all(&dir);
}

/// TPM attestation: the quote must be signed by the attestation key and
/// carry the outstanding nonce; a replayed quote fails; escrowed keys come
/// back only after a good quote; TLS 1.2 and 1.3 both work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_quote_nonce_replay_key_escrow_and_tls_versions() {
    let dir = temp_dir("tpm");
    let ctl = start(&dir);
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut c = Client::tls(ctl.dev, &ctl.root_pem, &[v]).unwrap();
        assert_eq!(
            c.request(Method::GET, &format!("{API}/ping"), Bytes::new())
                .await
                .unwrap()
                .0,
            StatusCode::OK
        );
    }
    let onboard = onboarding();
    let (s, _) = ctl
        .admin(
            Method::POST,
            "/api/v1/onboard",
            &json!({"cert_pem": onboard.1}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut c = ctl.device_client();
    let mut d = SimDevice::new("ANY-SERIAL", onboard).unwrap();
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
    let (_, body) = post(&mut c, "/uuid", d.sign(Vec::new()).unwrap()).await;
    let uuid = UuidResponse::decode(d.open(&body).unwrap().as_slice())
        .unwrap()
        .uuid;

    let aik = random_signer();
    // Self-issued, the attestation certificate is refused: the device key
    // must vouch for it.
    let (self_issued, _) = self_signed(&aik, "attestation").unwrap();
    let refused = ZAttestReq {
        req_type: ZAttestReqType::AttestReqCert as i32,
        certs: vec![ZCert {
            r#type: ZCertType::CertTypeDeviceRestrictedSigning as i32,
            cert: self_issued.into_bytes(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let (status, _) = post(
        &mut c,
        &format!("/id/{uuid}/attest"),
        d.sign(refused.encode_to_vec()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let aik_pem = d.attestation_cert(&aik).unwrap();
    let cert_req = ZAttestReq {
        req_type: ZAttestReqType::AttestReqCert as i32,
        certs: vec![ZCert {
            r#type: ZCertType::CertTypeDeviceRestrictedSigning as i32,
            cert: aik_pem.into_bytes(),
            ..Default::default()
        }],
        ..Default::default()
    };
    attest(&mut c, &d, &uuid, cert_req).await;
    let pcrs = [(0u32, [1u8; 32]), (7, [7u8; 32])];
    let quote_req = |nonce: &[u8], key: &eve_proto::sign::SoftwareSigner| {
        let data = tpm_quote(nonce, &pcrs);
        let sig = key.sign_digest(&eve_proto::sha256(&data)).unwrap();
        ZAttestReq {
            req_type: ZAttestReqType::AttestReqQuote as i32,
            quote: Some(ZAttestQuote {
                attest_data: data,
                signature: sig.to_vec(),
                pcr_values: pcrs
                    .iter()
                    .map(|(i, v)| TpmPcrValue {
                        index: *i,
                        hash_algo: TpmHashAlgo::Sha256 as i32,
                        value: v.to_vec(),
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let nonce_req = ZAttestReq {
        req_type: ZAttestReqType::AttestReqNonce as i32,
        ..Default::default()
    };
    let code = |r: &ZAttestResponse| r.quote_resp.as_ref().unwrap().response;

    // Wrong key, then wrong nonce: refused, no token.
    let nonce = attest(&mut c, &d, &uuid, nonce_req.clone())
        .await
        .nonce
        .unwrap()
        .nonce;
    let r = attest(&mut c, &d, &uuid, quote_req(&nonce, &random_signer())).await;
    assert_eq!(code(&r), ZAttestResponseCode::Invalid as i32);
    assert!(r.quote_resp.unwrap().integrity_token.is_empty());
    let nonce = attest(&mut c, &d, &uuid, nonce_req.clone())
        .await
        .nonce
        .unwrap()
        .nonce;
    let r = attest(&mut c, &d, &uuid, quote_req(b"some other nonce", &aik)).await;
    assert_eq!(code(&r), ZAttestResponseCode::NonceMismatch as i32);
    // That consumed the nonce: the right quote for it is now a replay.
    let r = attest(&mut c, &d, &uuid, quote_req(&nonce, &aik)).await;
    assert_eq!(code(&r), ZAttestResponseCode::NonceMismatch as i32);

    let nonce = attest(&mut c, &d, &uuid, nonce_req.clone())
        .await
        .nonce
        .unwrap()
        .nonce;
    let good = quote_req(&nonce, &aik);
    let r = attest(&mut c, &d, &uuid, good.clone()).await;
    assert_eq!(code(&r), ZAttestResponseCode::Success as i32);
    let token = r.quote_resp.unwrap().integrity_token;
    let replay = attest(&mut c, &d, &uuid, good).await;
    assert_eq!(code(&replay), ZAttestResponseCode::NonceMismatch as i32);

    // Key escrow needs the token; escrowed keys return after a good quote.
    let keys = AttestStorageKeys {
        integrity_token: token.clone(),
        keys: vec![AttestVolumeKey {
            key_type: 1,
            key: b"sealed-vsk".to_vec(),
            ..Default::default()
        }],
    };
    let store = |k: AttestStorageKeys| ZAttestReq {
        req_type: ZAttestReqType::StoreKeys as i32,
        storage_keys: Some(k),
        ..Default::default()
    };
    let r = attest(
        &mut c,
        &d,
        &uuid,
        store(AttestStorageKeys {
            integrity_token: b"bad".to_vec(),
            ..keys.clone()
        }),
    )
    .await;
    assert_eq!(r.storage_keys_resp.unwrap().response, 2);
    let r = attest(&mut c, &d, &uuid, store(keys)).await;
    assert_eq!(r.storage_keys_resp.unwrap().response, 1);
    let nonce = attest(&mut c, &d, &uuid, nonce_req.clone())
        .await
        .nonce
        .unwrap()
        .nonce;
    let r = attest(&mut c, &d, &uuid, quote_req(&nonce, &aik)).await;
    let qr = r.quote_resp.unwrap();
    assert_eq!(qr.keys[0].key, b"sealed-vsk");
    assert_eq!(qr.integrity_token, token);
    assert_eq!(poll(&mut c, &d, &uuid, "", &token).await.0, StatusCode::OK);

    // The first good quote's PCRs became the policy; the operator sets
    // and clears it through the admin API.
    let path = format!("/api/v1/devices/{uuid}");
    let (_, dev) = ctl.admin(Method::GET, &path, "").await;
    let first = format!("0={},7={}", "01".repeat(32), "07".repeat(32));
    assert_eq!(dev["attest"]["pcr_policy"], first.as_str());
    assert_eq!(dev["attest"]["state"], "attested-tpm");
    let policy = format!("{path}/pcr-policy");
    let seven = json!({ "pcrs": { "7": "aa".repeat(32) } }).to_string();
    let (s, v) = ctl.admin(Method::PUT, &policy, &seven).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["pcr_policy"], format!("7={}", "aa".repeat(32)).as_str());
    // PCR 7 now differs from the policy: refused, with the reason.
    let nonce = attest(&mut c, &d, &uuid, nonce_req.clone())
        .await
        .nonce
        .unwrap()
        .nonce;
    let r = attest(&mut c, &d, &uuid, quote_req(&nonce, &aik)).await;
    assert_eq!(code(&r), ZAttestResponseCode::QuoteFailed as i32);
    let (_, dev) = ctl.admin(Method::GET, &path, "").await;
    assert_eq!(
        dev["attest"]["state"],
        "failed: PCR 7 differs from the policy"
    );
    for bad in [
        json!({ "pcrs": { "24": "aa".repeat(32) } }),
        json!({ "pcrs": { "7": "aa" } }),
        json!({ "pcrs": {} }),
        json!({ "nope": 1 }),
    ] {
        let (s, _) = ctl.admin(Method::PUT, &policy, &bad.to_string()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (s, _) = ctl
        .admin(Method::PUT, "/api/v1/devices/nosuch/pcr-policy", &seven)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Cleared: the next quote's values are taken again.
    let (s, _) = ctl.admin(Method::DELETE, &policy, "").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let nonce = attest(&mut c, &d, &uuid, nonce_req.clone())
        .await
        .nonce
        .unwrap()
        .nonce;
    let r = attest(&mut c, &d, &uuid, quote_req(&nonce, &aik)).await;
    assert_eq!(code(&r), ZAttestResponseCode::Success as i32);
    let (_, dev) = ctl.admin(Method::GET, &path, "").await;
    assert_eq!(dev["attest"]["pcr_policy"], first.as_str());
    drop(ctl);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An independent device in Python (Google's protobuf runtime, the
/// `cryptography` package, Python's TLS) walks the API. Outside CI it is
/// skipped, with a message, when python3 or its packages are missing;
/// under CI (`CI` set, where `cargo xtask test` installs them) it fails.
#[test]
fn independent_python_device_walks_the_api() {
    let probe = Command::new("python3")
        .args(["-c", "import google.protobuf, cryptography, grpc_tools"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 with `pip install protobuf grpcio-tools cryptography`"
        );
        eprintln!(
            "SKIPPED independent_python_device_walks_the_api: needs python3 with \
             `pip install protobuf grpcio-tools cryptography`"
        );
        return;
    }
    let dir = temp_dir("python");
    let ctl = start(&dir);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python_device.py");
    let out = Command::new("python3")
        .arg(script)
        .args([
            "--device",
            &ctl.dev.to_string(),
            "--admin",
            &ctl.admin.to_string(),
            "--root",
        ])
        .arg(dir.join("root-certificate.pem"))
        .arg("--token-file")
        .arg(dir.join("admin-token"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PASS"),
        "python device failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(ctl);
    let _ = std::fs::remove_dir_all(&dir);
}
