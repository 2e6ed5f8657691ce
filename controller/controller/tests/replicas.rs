//! Two controller replicas on one PostgreSQL database (Debian's
//! `postgresql`, started by the test on a loopback port): devices spread
//! across both, registration racing on both, a config change and an
//! attestation nonce crossing replicas, a deletion seen by the other, and
//! one replica killed with kill -9 under load with nothing acknowledged
//! lost.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use controller::pgserver;
use devicesim::device::{SimDevice, random_signer};
use eve_proto::Message;
use eve_proto::attest::{
    TpmHashAlgo, TpmPcrValue, ZAttestQuote, ZAttestReq, ZAttestReqType, ZAttestResponseCode,
};
use eve_proto::certs::{ZCert, ZCertType};
use eve_proto::metrics::ZMetricMsg;
use eve_proto::sign::Signer;
use eve_proto::uuid::UuidResponse;
use hyper::{Method, StatusCode};
use serde_json::json;

mod common;
use common::*;

/// Notifications between replicas are asynchronous: what one replica
/// changed is waited for on the other, up to this long.
const PROPAGATION: Duration = Duration::from_secs(30);

/// Waits before checking again; panics with `what` past `deadline`.
async fn retry(deadline: Instant, what: &str) {
    assert!(Instant::now() < deadline, "never happened: {what}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

struct Onboarded {
    sim: SimDevice,
    uuid: String,
    token: Vec<u8>,
    hash: String,
}

/// Onboards a device with each step on the replica after the last one.
async fn onboard(
    replicas: &[&Running; 2],
    serial: &str,
    onboard: (eve_proto::sign::SoftwareSigner, String),
    first: usize,
) -> Onboarded {
    let mut clients = [replicas[0].device_client(), replicas[1].device_client()];
    let mut sim = SimDevice::new(serial, onboard).unwrap();
    let (_, certs) = clients[first]
        .request(Method::GET, &format!("{API}/certs"), Bytes::new())
        .await
        .unwrap();
    sim.accept_certs(&certs, &replicas[first].root_pem).unwrap();
    let at = |step: usize| (first + step) % 2;
    let (s, _) = post(
        &mut clients[at(0)],
        "/register",
        sim.register_body().unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "register {serial}");
    let (s, body) = post(&mut clients[at(1)], "/uuid", sim.sign(Vec::new()).unwrap()).await;
    assert_eq!(s, StatusCode::OK, "uuid of {serial} on the other replica");
    let uuid = UuidResponse::decode(sim.open(&body).unwrap().as_slice())
        .unwrap()
        .uuid;
    let quote = ZAttestReq {
        req_type: ZAttestReqType::AttestReqQuote as i32,
        ..Default::default()
    };
    let token = attest(&mut clients[at(2)], &sim, &uuid, quote)
        .await
        .quote_resp
        .unwrap()
        .integrity_token;
    // The token issued by one replica is good on the other at once.
    let (s, resp) = poll(&mut clients[at(3)], &sim, &uuid, "", &token).await;
    assert_eq!(s, StatusCode::OK, "first config of {serial}");
    let hash = resp.unwrap().config_hash;
    for c in &mut clients {
        assert_eq!(
            poll(c, &sim, &uuid, &hash, &token).await.0,
            StatusCode::NOT_MODIFIED
        );
    }
    Onboarded {
        sim,
        uuid,
        token,
        hash,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_postgresql() {
    let Some(pg) = pgserver::for_test("two_replicas_share_one_postgresql") else {
        return;
    };
    let url = pg.create_database("replicas").unwrap();
    let (dir_a, dir_b) = (temp_dir("replica-a"), temp_dir("replica-b"));
    let a = start_with(&dir_a, &["--database", &url]);
    let mut b = replica_of(&dir_a, &dir_b, &url);
    assert!(b.root_line.contains("reused"), "{}", b.root_line);
    let onboard_id = onboarding();
    let (s, _) = a
        .admin(
            Method::POST,
            "/api/v1/onboard",
            &json!({"cert_pem": onboard_id.1}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // Devices spread across both replicas, every step on alternate ones.
    let mut devices = Vec::new();
    for i in 0..12 {
        devices.push(onboard(&[&a, &b], &format!("SPREAD-{i}"), onboard_id.clone(), i % 2).await);
    }
    let (_, listed) = b.admin(Method::GET, "/api/v1/devices", "").await;
    assert_eq!(listed.as_array().unwrap().len(), 12);

    // The same device registering on both replicas at once: one device.
    let mut racer = SimDevice::new("RACER", onboard_id.clone()).unwrap();
    let (_, certs) = a
        .device_client()
        .request(Method::GET, &format!("{API}/certs"), Bytes::new())
        .await
        .unwrap();
    racer.accept_certs(&certs, &a.root_pem).unwrap();
    let body = racer.register_body().unwrap();
    let (mut ca, mut cb) = (a.device_client(), b.device_client());
    let (ra, rb) = tokio::join!(
        post(&mut ca, "/register", body.clone()),
        post(&mut cb, "/register", body)
    );
    let mut codes = [ra.0.as_u16(), rb.0.as_u16()];
    codes.sort_unstable();
    assert_eq!(codes, [200, 201]);
    let (_, listed) = a.admin(Method::GET, "/api/v1/devices", "").await;
    assert_eq!(listed.as_array().unwrap().len(), 13);

    // A config set through B reaches a device polling A.
    let d = &devices[0];
    let (s, set) = b
        .admin(
            Method::PUT,
            &format!("/api/v1/devices/{}/config", d.uuid),
            "apps:\n  - displayname: from-b\n",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    let mut on_a = a.device_client();
    let deadline = Instant::now() + PROPAGATION;
    loop {
        let (s, resp) = poll(&mut on_a, &d.sim, &d.uuid, &d.hash, &d.token).await;
        if s == StatusCode::OK {
            assert_eq!(resp.unwrap().config.unwrap().apps[0].displayname, "from-b");
            break;
        }
        assert_eq!(s, StatusCode::NOT_MODIFIED);
        retry(deadline, "A serves the config set through B").await;
    }

    // A TPM nonce issued by A is spent by a quote on B, and only once.
    let d = &devices[1];
    let (mut on_a, mut on_b) = (a.device_client(), b.device_client());
    let aik = random_signer();
    let aik_pem = d.sim.attestation_cert(&aik).unwrap();
    let cert_req = ZAttestReq {
        req_type: ZAttestReqType::AttestReqCert as i32,
        certs: vec![ZCert {
            r#type: ZCertType::CertTypeDeviceRestrictedSigning as i32,
            cert: aik_pem.into_bytes(),
            ..Default::default()
        }],
        ..Default::default()
    };
    attest(&mut on_b, &d.sim, &d.uuid, cert_req).await;
    let nonce_req = ZAttestReq {
        req_type: ZAttestReqType::AttestReqNonce as i32,
        ..Default::default()
    };
    let nonce = attest(&mut on_a, &d.sim, &d.uuid, nonce_req)
        .await
        .nonce
        .unwrap()
        .nonce;
    let pcrs = [(0u32, [3u8; 32])];
    let data = tpm_quote(&nonce, &pcrs);
    let quote = ZAttestReq {
        req_type: ZAttestReqType::AttestReqQuote as i32,
        quote: Some(ZAttestQuote {
            signature: aik.sign_digest(&eve_proto::sha256(&data)).unwrap().to_vec(),
            attest_data: data,
            pcr_values: vec![TpmPcrValue {
                index: 0,
                hash_algo: TpmHashAlgo::Sha256 as i32,
                value: pcrs[0].1.to_vec(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let first = attest(&mut on_b, &d.sim, &d.uuid, quote.clone())
        .await
        .quote_resp
        .unwrap();
    assert_eq!(first.response, ZAttestResponseCode::Success as i32);
    let replay = attest(&mut on_a, &d.sim, &d.uuid, quote)
        .await
        .quote_resp
        .unwrap();
    assert_eq!(replay.response, ZAttestResponseCode::NonceMismatch as i32);
    assert_eq!(
        poll(&mut on_a, &d.sim, &d.uuid, &d.hash, &first.integrity_token)
            .await
            .0,
        StatusCode::NOT_MODIFIED
    );

    // A device deleted through A is refused by B.
    let gone = devices.pop().unwrap();
    let (s, _) = a
        .admin(
            Method::DELETE,
            &format!("/api/v1/devices/{}", gone.uuid),
            "",
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let mut on_b = b.device_client();
    let deadline = Instant::now() + PROPAGATION;
    while poll(&mut on_b, &gone.sim, &gone.uuid, &gone.hash, &gone.token)
        .await
        .0
        != StatusCode::UNAUTHORIZED
    {
        retry(deadline, "B refuses the deleted device").await;
    }

    // Load on both; B is killed part-way; a request that fails on B is
    // sent again to A, as a device retries. Every acknowledged message is
    // stored.
    const PER_DEVICE: usize = 20;
    let devices = Arc::new(devices);
    let progress = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (i, _) in devices.iter().enumerate() {
        let (devices, progress) = (devices.clone(), progress.clone());
        let mut clients = [a.device_client(), b.device_client()];
        tasks.push(tokio::spawn(async move {
            let d = &devices[i];
            let mut acked = BTreeSet::new();
            for k in 0..PER_DEVICE {
                let msg = ZMetricMsg {
                    dev_id: d.uuid.clone(),
                    at_time_stamp: Some(eve_proto::prost_types::Timestamp {
                        seconds: k as i64 + 1,
                        nanos: 0,
                    }),
                    ..Default::default()
                };
                let body = d.sim.sign(msg.encode_to_vec()).unwrap();
                let path = format!("{API}/id/{}/metrics", d.uuid);
                for attempt in 0..4 {
                    let c = &mut clients[(k + i + attempt) % 2];
                    if let Ok((StatusCode::CREATED, _)) =
                        c.request(Method::POST, &path, body.clone()).await
                    {
                        acked.insert(k as i64 + 1);
                        break;
                    }
                }
                progress.fetch_add(1, Ordering::Relaxed);
            }
            (d.uuid.clone(), acked)
        }));
    }
    let total = devices.len() * PER_DEVICE;
    while progress.load(Ordering::Relaxed) < total / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.child.kill().unwrap();
    let _ = b.child.wait();
    for t in tasks {
        let (uuid, acked) = t.await.unwrap();
        assert_eq!(
            acked.len(),
            PER_DEVICE,
            "{uuid}: every message acknowledged by one replica"
        );
        let (_, stored) = a
            .admin(
                Method::GET,
                &format!("/api/v1/devices/{uuid}/metrics?limit=1000"),
                "",
            )
            .await;
        let stored: BTreeSet<i64> = stored
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["metrics"]["atTimeStamp"]
                    .as_str()
                    .map_or(0, timestamp_secs)
            })
            .collect();
        assert!(
            acked.is_subset(&stored),
            "{uuid}: acknowledged {acked:?}, stored {stored:?}"
        );
    }
    drop(a);
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
}

/// Seconds of an RFC 3339 UTC time of 1970-01-01 (our test timestamps).
fn timestamp_secs(t: &str) -> i64 {
    let time = t.trim_start_matches("1970-01-01T").trim_end_matches('Z');
    let parts: Vec<i64> = time
        .split(':')
        .map(|p| p.split('.').next().unwrap_or("0").parse().unwrap_or(0))
        .collect();
    parts.iter().fold(0, |acc, p| acc * 60 + p)
}
