//! The fleet simulator (`devicesim::fleet`) against the `controller`
//! binary: one replica on SQLite, then two replicas sharing a PostgreSQL
//! database with the devices spread over both. Every device onboards,
//! every request gets the answer EVE expects, and what the devices sent is
//! in the store.

use std::time::Duration;

use controller::pgserver;
use devicesim::device::{random_signer, self_signed};
use devicesim::fleet::{self, Fleet, Pace, Timers};
use hyper::{Method, StatusCode};
use serde_json::json;

mod common;
use common::*;

/// Fast timers, so that every kind of request happens in a few seconds.
const FAST: Timers = Timers {
    config: Duration::from_millis(600),
    metrics: Duration::from_millis(700),
    info: Duration::from_secs(2),
    logs: Duration::from_secs(1),
};
const DEVICES: usize = 24;

async fn run_fleet(replicas: &[&Running], prefix: &str) -> fleet::Report {
    let key = random_signer();
    let (cert_pem, _) = self_signed(&key, "fleet onboarding").unwrap();
    let (s, _) = replicas[0]
        .admin(
            Method::POST,
            "/api/v1/onboard",
            &json!({ "cert_pem": cert_pem }).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    fleet::run(Fleet {
        devices: DEVICES,
        controllers: replicas.iter().map(|r| r.dev).collect(),
        root_pem: replicas[0].root_pem.clone(),
        onboarding: (key, cert_pem),
        serial_prefix: prefix.into(),
        connections: 4,
        pace: Pace::Cadence(FAST),
        duration: Duration::from_secs(5),
        report_every: None,
    })
    .await
    .expect("the fleet runs")
}

/// What a run must show: every device onboarded, every kind of request
/// sent, none refused, and every device's telemetry stored.
async fn check(report: &fleet::Report, admin: &Running) {
    assert_eq!(report.onboarded, DEVICES);
    for endpoint in ["config", "metrics", "info", "newlogs"] {
        let e = report
            .endpoints
            .get(endpoint)
            .unwrap_or_else(|| panic!("no {endpoint} requests"));
        assert!(e.ok > 0, "{endpoint}");
        assert_eq!(e.errors, 0, "{endpoint} errors");
    }
    let (_, devices) = admin.admin(Method::GET, "/api/v1/devices", "").await;
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), DEVICES);
    for d in devices {
        let uuid = d["uuid"].as_str().unwrap();
        let (_, info) = admin
            .admin(Method::GET, &format!("/api/v1/devices/{uuid}/info"), "")
            .await;
        assert_eq!(
            info[0]["info"]["dinfo"]["swList"][0]["shortVersion"], "devicesim-1.0",
            "{uuid}: {info}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_against_one_replica() {
    let dir = temp_dir("fleet-one");
    let ctl = start_with(&dir, &[]);
    let report = run_fleet(&[&ctl], "ONE").await;
    check(&report, &ctl).await;
    drop(ctl);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_against_two_replicas_on_postgresql() {
    let Some(pg) = pgserver::for_test("fleet_against_two_replicas_on_postgresql") else {
        return;
    };
    let url = pg.create_database("fleet").unwrap();
    let (dir_a, dir_b) = (temp_dir("fleet-a"), temp_dir("fleet-b"));
    let a = start_with(&dir_a, &["--database", &url]);
    let b = replica_of(&dir_a, &dir_b, &url);
    let report = run_fleet(&[&a, &b], "TWO").await;
    check(&report, &b).await;
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
}
