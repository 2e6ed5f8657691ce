//! The contract every [`Store`] keeps, as a test suite: the SQLite unit
//! tests and the PostgreSQL integration tests both run [`run`], so the two
//! have the same semantics for every call, including calls racing from two
//! handles on one database (two controller replicas).

use std::sync::{Arc, Barrier};

use super::{AttestState, Device, LogQuery, LogRecord, RegisterOutcome, Store};

/// A fresh, empty store, and a way to open another handle on the same
/// database (a restart, or a second replica).
pub type Fresh = (Box<dyn Store>, Box<dyn Fn() -> Box<dyn Store>>);

/// Runs every case, each on a store from `fresh`. Panics on the first
/// broken promise.
pub fn run(fresh: &mut dyn FnMut() -> Fresh) {
    onboarding_and_registration(fresh());
    configs_info_and_metrics(fresh());
    log_queries(fresh());
    retention(fresh());
    attestation_and_lookup(fresh());
    delete_cascades_and_reopen(fresh());
    registration_races(fresh());
    nonce_and_config_races(fresh());
    apps_view(fresh());
}

/// A device row for the tests.
pub fn device(uuid: &str, cert_hash: &str, serial: &str) -> Device {
    Device {
        uuid: uuid.into(),
        device_cert_pem: format!("pem of {uuid}"),
        device_cert_hash: cert_hash.into(),
        onboard_cert_hash: "onb".into(),
        serial: serial.into(),
        registered: 1,
        last_seen: 1,
        attest: AttestState {
            state: "none".into(),
            ..Default::default()
        },
    }
}

fn log(device: &str, app: Option<&str>, ts_ms: i64, severity: &str, content: &str) -> LogRecord {
    LogRecord {
        id: 0,
        device: device.into(),
        app: app.map(str::to_owned),
        ts_ms,
        severity: severity.into(),
        source: "nim".into(),
        content: content.into(),
    }
}

fn onboarding_and_registration((s, _): Fresh) {
    let id = s.onboard_add("PEM1", "h1", &["a".into()]).unwrap();
    let again = s
        .onboard_add("PEM1", "h1", &["b".into(), "c".into()])
        .unwrap();
    assert_eq!(id, again, "re-adding a certificate replaces its serials");
    s.onboard_add("PEM2", "h2", &[]).unwrap();
    let list = s.onboard_list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].serials, ["b", "c"]);
    assert!(list[1].serials.is_empty());
    assert_eq!(s.onboard_find("h2").unwrap().unwrap().cert_pem, "PEM2");
    assert!(s.onboard_find("h3").unwrap().is_none());
    assert!(s.onboard_remove(id).unwrap());
    assert!(!s.onboard_remove(id).unwrap());

    let created = s.register_device(&device("u1", "c1", "s1"), b"cfg1");
    assert_eq!(created.unwrap(), RegisterOutcome::Created);
    assert_eq!(
        s.register_device(&device("u2", "c1", "s1"), b"x").unwrap(),
        RegisterOutcome::Repeat("u1".into())
    );
    assert_eq!(
        s.register_device(&device("u3", "c2", "s1"), b"x").unwrap(),
        RegisterOutcome::Conflict
    );
    s.register_device(&device("u4", "c4", "s4"), b"cfg")
        .unwrap();
    let uuids: Vec<String> = s.devices().unwrap().into_iter().map(|d| d.uuid).collect();
    assert_eq!(uuids, ["u1", "u4"]);
    assert_eq!(s.device("u1").unwrap().unwrap(), device("u1", "c1", "s1"));
    s.touch_devices(&[("u1".into(), 50), ("u4".into(), 7)])
        .unwrap();
    s.touch_devices(&[("u1".into(), 40)]).unwrap();
    assert_eq!(s.device("u1").unwrap().unwrap().last_seen, 50, "never back");
}

fn configs_info_and_metrics((s, _): Fresh) {
    s.register_device(&device("u1", "c1", "s1"), b"cfg1")
        .unwrap();
    assert_eq!(s.put_config("u1", b"cfg2").unwrap(), 2);
    assert_eq!(s.put_config("u1", b"cfg3").unwrap(), 3);
    assert_eq!(s.latest_config("u1").unwrap().unwrap().config, b"cfg3");
    let versions: Vec<i64> = s
        .config_history("u1")
        .unwrap()
        .iter()
        .map(|c| c.version)
        .collect();
    assert_eq!(versions, [3, 2, 1]);
    assert!(s.latest_config("nosuch").unwrap().is_none());

    s.put_info("u1", "device", b"i1", 10).unwrap();
    s.put_info("u1", "device", b"i2", 20).unwrap();
    s.put_info("u1", "app/a", b"a1", 15).unwrap();
    let info = s.latest_info("u1").unwrap();
    let keys: Vec<(&str, &[u8], i64)> = info
        .iter()
        .map(|r| (r.key.as_str(), r.msg.as_slice(), r.received_ms))
        .collect();
    assert_eq!(
        keys,
        [("app/a", &b"a1"[..], 15), ("device", &b"i2"[..], 20)]
    );

    for (t, m) in [(5, b"m1"), (50, b"m2"), (30, b"m3")] {
        s.put_metrics("u1", m, t).unwrap();
    }
    let newest: Vec<i64> = s
        .metrics("u1", 2)
        .unwrap()
        .iter()
        .map(|r| r.received_ms)
        .collect();
    assert_eq!(newest, [50, 30]);
    s.put_flowlog("u1", b"flow", 5).unwrap();
    s.put_flowlog("u1", b"later", 9).unwrap();
    s.put_flowlog("u1", b"early", 1).unwrap();
    let flows: Vec<(String, i64, Vec<u8>)> = s
        .flowlogs("u1", 2)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.received_ms, r.msg))
        .collect();
    assert_eq!(
        flows,
        [
            ("flowlog".to_owned(), 9, b"later".to_vec()),
            ("flowlog".to_owned(), 5, b"flow".to_vec())
        ]
    );
    assert!(s.flowlogs("u2", 10).unwrap().is_empty());
    assert!(s.size_bytes().unwrap() > 0);
}

fn log_queries((s, _): Fresh) {
    s.register_device(&device("u1", "c1", "s1"), b"cfg")
        .unwrap();
    s.register_device(&device("u2", "c2", "s2"), b"cfg")
        .unwrap();
    s.put_logs(
        &[
            log("u1", None, 7, "error", "link down"),
            log("u1", None, 9, "info", "link up"),
            log("u1", Some("app1"), 8, "info", "app says hi"),
        ],
        100,
    )
    .unwrap();
    s.put_logs(&[log("u2", None, 7, "error", "link down")], 100)
        .unwrap();
    let q = |f: &dyn Fn(&mut LogQuery)| {
        let mut q = LogQuery {
            device: "u1".into(),
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        s.query_logs(&q)
            .unwrap()
            .into_iter()
            .map(|r| r.content)
            .collect::<Vec<_>>()
    };
    assert_eq!(q(&|_| {}), ["link down", "link up", "app says hi"]);
    assert_eq!(q(&|q| q.severity = Some("error".into())), ["link down"]);
    assert_eq!(q(&|q| q.contains = Some("up".into())), ["link up"]);
    assert_eq!(q(&|q| q.app = Some("app1".into())), ["app says hi"]);
    assert_eq!(q(&|q| q.since_ms = Some(8)), ["link up", "app says hi"]);
    assert_eq!(q(&|q| q.until_ms = Some(8)), ["link down"]);
    assert_eq!(q(&|q| q.limit = 1), ["link down"]);
    let all = s
        .query_logs(&LogQuery {
            device: "u1".into(),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ids ascend");
    assert_eq!(all[1].ts_ms, 9);
    assert_eq!(all[2].app.as_deref(), Some("app1"));
    assert_eq!(
        q(&|q| q.after_id = Some(all[0].id)),
        ["link up", "app says hi"]
    );
    // A substring is a substring, not a pattern.
    s.put_logs(&[log("u1", None, 10, "info", "100% _done_")], 100)
        .unwrap();
    assert_eq!(q(&|q| q.contains = Some("% _".into())), ["100% _done_"]);
    assert!(q(&|q| q.contains = Some("%x%".into())).is_empty());
}

const DAY_MS: i64 = 86_400_000;

fn retention((s, _): Fresh) {
    s.register_device(&device("u1", "c1", "s1"), b"cfg")
        .unwrap();
    let now = 20_000 * DAY_MS + 3_600_000;
    for age_days in [40, 10, 2] {
        s.put_metrics("u1", b"m", now - age_days * DAY_MS).unwrap();
        s.put_logs(
            &[log("u1", None, 1, "info", &format!("{age_days} days"))],
            now - age_days * DAY_MS,
        )
        .unwrap();
        s.put_flowlog("u1", b"f", now - age_days * DAY_MS).unwrap();
    }
    s.put_metrics("u1", b"m", now).unwrap();
    // Metrics kept 7 days, logs 30 (to the millisecond: the boundary day
    // is cut exactly, not rounded to whole partitions).
    s.prune(now - 7 * DAY_MS, now - 30 * DAY_MS).unwrap();
    let kept: Vec<i64> = s
        .metrics("u1", 10)
        .unwrap()
        .iter()
        .map(|r| (now - r.received_ms) / DAY_MS)
        .collect();
    assert_eq!(kept, [0, 2]);
    let logs: Vec<String> = s
        .query_logs(&LogQuery {
            device: "u1".into(),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.content)
        .collect();
    assert_eq!(logs, ["10 days", "2 days"]);
    let flow_days: Vec<i64> = s
        .flowlogs("u1", 10)
        .unwrap()
        .iter()
        .map(|r| (now - r.received_ms) / DAY_MS)
        .collect();
    assert_eq!(flow_days, [2, 10], "flow logs are kept as long as logs");
    s.prune(now - 2 * DAY_MS + 1, now).unwrap();
    assert_eq!(s.metrics("u1", 10).unwrap().len(), 1);
}

fn attestation_and_lookup((s, _): Fresh) {
    let hash = "ab".repeat(32);
    s.register_device(&device("u1", &hash, "s1"), b"cfg")
        .unwrap();
    let found = s.device_by_cert_prefix(&hash[..32]).unwrap().unwrap();
    assert_eq!(found.uuid, "u1");
    assert!(s.device_by_cert_prefix(&"cd".repeat(16)).unwrap().is_none());

    let issued = AttestState {
        state: "nonce-issued".into(),
        nonce: Some(vec![1; 32]),
        integrity_token: Some(vec![2; 32]),
        attest_cert_pem: Some("attest pem".into()),
        storage_keys: Some(vec![3; 8]),
        ecdh_cert_pem: Some("ecdh pem".into()),
        nonce_issued: Some(1_700_000_000),
        pcr_policy: Some("0=00".into()),
    };
    s.set_attest("u1", &issued).unwrap();
    assert_eq!(s.device("u1").unwrap().unwrap().attest, issued);
    let unchanged = s.update_attest("u1", &mut |_| false).unwrap().unwrap();
    assert_eq!(unchanged, issued);
    let spent = s
        .update_attest("u1", &mut |a| {
            a.nonce = None;
            a.nonce_issued = None;
            a.pcr_policy = Some("0=00,7=ff".into());
            a.state = "attested-tpm".into();
            true
        })
        .unwrap()
        .unwrap();
    assert_eq!(spent.nonce, None);
    assert_eq!(spent.pcr_policy.as_deref(), Some("0=00,7=ff"));
    assert_eq!(s.device("u1").unwrap().unwrap().attest, spent);
    assert!(s.update_attest("nosuch", &mut |_| true).unwrap().is_none());
}

fn delete_cascades_and_reopen((s, reopen): Fresh) {
    s.register_device(&device("u1", "c1", "s1"), b"cfg")
        .unwrap();
    s.register_device(&device("u2", "c2", "s2"), b"cfg2")
        .unwrap();
    s.put_info("u1", "device", b"i", 1).unwrap();
    s.put_metrics("u1", b"m", 1).unwrap();
    s.put_logs(&[log("u1", None, 1, "info", "x")], 1).unwrap();
    s.put_flowlog("u1", b"f", 1).unwrap();
    assert!(s.delete_device("u1").unwrap());
    assert!(!s.delete_device("u1").unwrap());
    assert!(s.device("u1").unwrap().is_none());
    assert!(s.latest_config("u1").unwrap().is_none());
    assert!(s.latest_info("u1").unwrap().is_empty());
    assert!(s.metrics("u1", 10).unwrap().is_empty());
    assert!(s.flowlogs("u1", 10).unwrap().is_empty());
    let q = LogQuery {
        device: "u1".into(),
        limit: 10,
        ..Default::default()
    };
    assert!(s.query_logs(&q).unwrap().is_empty());
    // Registering the deleted device's certificate again makes a new device.
    assert_eq!(
        s.register_device(&device("u3", "c1", "s1"), b"cfg")
            .unwrap(),
        RegisterOutcome::Created
    );
    drop(s);
    let s = reopen();
    assert_eq!(s.latest_config("u2").unwrap().unwrap().config, b"cfg2");
    assert_eq!(s.devices().unwrap().len(), 2);
}

/// Runs `f(i, store)` on `n` threads at once, alternating between two
/// handles on one database.
fn race<T: Send + 'static>(
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
    n: usize,
    f: impl Fn(usize, &dyn Store) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let start = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (start, f) = (start.clone(), f.clone());
            std::thread::spawn(move || {
                start.wait();
                f(i, store.as_ref())
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("racing thread"))
        .collect()
}

fn registration_races((s, other): Fresh) {
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::from(s), Arc::from(other()));
    // The same device registering through two replicas at once: one device.
    let outcomes = race(a.clone(), b.clone(), 8, |i, s| {
        s.register_device(&device(&format!("same-{i}"), "c1", "s1"), b"cfg")
            .unwrap()
    });
    let created = outcomes
        .iter()
        .filter(|o| **o == RegisterOutcome::Created)
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    let winner = a.devices().unwrap()[0].uuid.clone();
    assert!(
        outcomes.iter().all(
            |o| *o == RegisterOutcome::Created || *o == RegisterOutcome::Repeat(winner.clone())
        ),
        "{outcomes:?}"
    );
    // Different device certificates claiming one serial at once: one wins.
    let outcomes = race(a.clone(), b.clone(), 8, |i, s| {
        s.register_device(&device(&format!("d-{i}"), &format!("d{i}"), "s2"), b"cfg")
            .unwrap()
    });
    let created = outcomes
        .iter()
        .filter(|o| **o == RegisterOutcome::Created)
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == RegisterOutcome::Conflict)
            .count(),
        7
    );
    assert_eq!(b.devices().unwrap().len(), 2);
}

fn nonce_and_config_races((s, other): Fresh) {
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::from(s), Arc::from(other()));
    a.register_device(&device("u1", "c1", "s1"), b"cfg")
        .unwrap();
    a.set_attest(
        "u1",
        &AttestState {
            state: "nonce-issued".into(),
            nonce: Some(vec![9; 32]),
            ..Default::default()
        },
    )
    .unwrap();
    // A nonce is spent once, whichever replica the quotes land on.
    let spent = race(a.clone(), b.clone(), 8, |_, s| {
        let mut took = false;
        s.update_attest("u1", &mut |st| {
            took = st.nonce.take().is_some();
            took
        })
        .unwrap();
        took
    });
    assert_eq!(spent.iter().filter(|t| **t).count(), 1, "{spent:?}");
    // Config versions from two replicas at once are distinct and complete.
    let mut versions = race(a.clone(), b.clone(), 8, |i, s| {
        s.put_config("u1", format!("cfg-{i}").as_bytes()).unwrap()
    });
    versions.sort_unstable();
    assert_eq!(versions, (2..10).collect::<Vec<i64>>());
}

/// The admin API's app view over this store: the config's apps joined
/// with the latest `ZInfoApp` per app and the newest `AppMetric` of each.
fn apps_view((s, _): Fresh) {
    use eve_proto::Message;
    use eve_proto::config::{AppInstanceConfig, EdgeDevConfig, UuiDandVersion};
    use eve_proto::info::{ZInfoApp, ZInfoMsg, ZSwState, z_info_msg::InfoContent};
    use eve_proto::metrics::{AppCpuMetric, AppMetric, ZMetricMsg};

    s.register_device(&device("u1", "c1", "s1"), b"").unwrap();
    let info = |app: &str, name: &str, state: ZSwState| {
        ZInfoMsg {
            info_content: Some(InfoContent::Ainfo(ZInfoApp {
                app_id: app.into(),
                app_name: name.into(),
                state: state as i32,
                ..Default::default()
            })),
            ..Default::default()
        }
        .encode_to_vec()
    };
    s.put_info("u1", "app/a", &info("a", "web", ZSwState::Booting), 10)
        .unwrap();
    s.put_info("u1", "app/a", &info("a", "web", ZSwState::Running), 20)
        .unwrap();
    // Gone from the config, still reported.
    s.put_info("u1", "app/old", &info("old", "", ZSwState::Invalid), 30)
        .unwrap();
    let metrics = |app: &str, total: u64| {
        ZMetricMsg {
            am: vec![AppMetric {
                app_id: app.into(),
                cpu: Some(AppCpuMetric {
                    total,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec()
    };
    s.put_metrics("u1", &metrics("a", 1), 100).unwrap();
    s.put_metrics("u1", &metrics("a", 7), 200).unwrap();
    s.put_metrics("u1", &metrics("b", 3), 300).unwrap();
    let app = |uuid: &str, name: &str| AppInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: uuid.into(),
            version: "1".into(),
        }),
        displayname: name.into(),
        activate: true,
        ..Default::default()
    };
    let config = EdgeDevConfig {
        apps: vec![app("a", "web"), app("b", "db")],
        ..Default::default()
    };
    let view = crate::admin::apps::device_apps(&*s, "u1", Some(&config)).unwrap();
    let rows: Vec<(&str, &str, bool, &str, i64, u64)> = view
        .iter()
        .map(|v| {
            (
                v["uuid"].as_str().unwrap(),
                v["name"].as_str().unwrap(),
                v["config"]["activate"] == true,
                v["info"]["state"].as_str().unwrap_or("-"),
                v["metric_received_ms"].as_i64().unwrap_or(-1),
                // uint64 is a string in protobuf JSON.
                v["metric"]["cpu"]["total"]
                    .as_str()
                    .map_or(0, |t| t.parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("a", "web", true, "RUNNING", 200, 7),
            ("b", "db", true, "-", 300, 3),
            ("old", "", false, "-", -1, 0),
        ]
    );
    assert!(view[2]["info"]["AppID"] == "old" && view[2]["config"].is_null());
}
