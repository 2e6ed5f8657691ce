//! The agent against our real controller on loopback: the controller runs
//! in-process (its library, on a tokio runtime in background threads), the
//! agent talks to it over TLS through `controller::client::Client`, and a
//! fake clock drives the agent's timers fast.

use controller::server;
use controller::store::LogQuery;
use eve_proto::Message;
use eve_proto::auth::AuthContainer;
use eve_proto::common::HashAlgorithm;
use eve_proto::config::ConfigResponse;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::info::{
    AttestationState, BootReason, Entity, HwSecurityModuleStatus, ZDeviceState, ZInfoMsg,
};
use eve_proto::metrics::ZMetricMsg;
use eve_proto::metrics::z_metric_msg::MetricContent;
use eve_proto::sign::{self, SenderIdentity, SoftwareSigner};
use eveagent::agent::{
    METRIC_PERSIST_ERRORS, METRIC_REJECTED, REC_CONFIG, REC_LOG_QUEUE, REC_UUID,
};
use eveagent::io::{Request, Response};
use eveagent::{AttestStatus, DeviceKeySource, Event, Level, LogRecord, Phase, RegisterStatus};

mod common;

use common::*;

// ---------------------------------------------------------------- scenarios

#[test]
fn fresh_device_onboards_polls_and_reports() {
    let ctl = start_controller("fresh");
    let onboard = onboarding_identity(1);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-FRESH".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-FRESH", 10, onboard);
    let mut http = ctl.http();
    let mut agent = node.boot();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);

    let device = ctl
        .ctl
        .store()
        .device(&uuid)
        .unwrap()
        .expect("device stored");
    assert_eq!(device.serial, "SN-FRESH");
    assert_eq!(device.device_cert_pem.as_bytes(), agent.device_cert_pem());
    assert_eq!(device.attest.state, "attested-notpm");
    assert_eq!(ctl.count("register", 201), 1);
    let events = agent.take_events();
    assert!(
        events.contains(&Event::Onboarded(uuid.clone())),
        "{events:?}"
    );
    assert!(events.contains(&Event::ConfigAccepted {
        from_checkpoint: false
    }));
    let st = agent.status();
    assert_eq!(st.register, RegisterStatus::Onboarded);
    assert_eq!(st.attest, AttestStatus::Attested);
    assert_eq!(st.counters.configs_accepted, 1);
    assert_eq!(st.counters.rejected.total(), 0);
    assert_eq!(node.volume.get(REC_UUID).unwrap(), uuid.as_bytes());

    // Unchanged config: 304.
    let first_hash = agent.status().config_hash.to_owned();
    node.run_until_time(&mut agent, &mut http, node.now() + 61_000);
    assert!(agent.status().counters.configs_unchanged >= 1);
    assert!(ctl.count("config", 304) >= 1);
    assert_eq!(agent.status().config_hash, first_hash);

    // A config change set by the operator is picked up, and its items apply.
    ctl.ctl
        .set_config(
            &uuid,
            "configItems:\n  - { key: timer.config.interval, value: \"10\" }\n  - { key: timer.metric.interval, value: \"20\" }\n  - { key: debug.default.remote.loglevel, value: \"warning\" }\n",
        )
        .expect("set config");
    assert!(node.run(
        &mut agent,
        &mut http,
        20,
        |a| a.status().counters.configs_accepted == 2
    ));
    assert_ne!(agent.status().config_hash, first_hash);
    let settings = agent.settings();
    assert_eq!(settings.config_interval_s, 10);
    assert_eq!(settings.metric_interval_s, 20);
    assert_eq!(settings.remote_log_level, Level::Warning);
    assert!(
        agent
            .take_events()
            .iter()
            .any(|e| matches!(e, Event::SettingsChanged(s) if s.config_interval_s == 10))
    );
    let checkpoint = node.volume.get(REC_CONFIG).expect("config checkpoint");
    let env = AuthContainer::decode(checkpoint.as_slice()).unwrap();
    let resp = ConfigResponse::decode(env.protected_payload.unwrap().payload.as_slice()).unwrap();
    assert_eq!(resp.config_hash, agent.status().config_hash);

    // Device info reached the controller with the platform's values.
    let info = ctl.ctl.store().latest_info(&uuid).unwrap();
    let rec = info
        .iter()
        .find(|r| r.key == "device")
        .expect("device info");
    let msg = ZInfoMsg::decode(rec.msg.as_slice()).unwrap();
    let Some(InfoContent::Dinfo(d)) = msg.info_content else {
        panic!("not device info")
    };
    assert_eq!(
        (d.machine_arch.as_str(), d.ncpu, d.memory),
        ("x86_64", 1, 512)
    );
    assert_eq!(d.minfo.as_ref().unwrap().serial_number, "SN-FRESH");
    assert_eq!(d.sw_list[0].partition_label, "IMGA");
    assert_eq!(d.restart_counter, 3);
    assert_eq!(d.last_boot_reason(), BootReason::PowerFail);
    // A software device key: no HSM in use, and attestation complete.
    assert_eq!(d.hsm_status(), HwSecurityModuleStatus::Notfound);
    assert!(d.hsm_info.contains("software"), "{}", d.hsm_info);
    let attestation = d.attestation_info.expect("attestation info");
    assert_eq!(attestation.state(), AttestationState::Complete);
    assert!(attestation.error.is_none());

    // A change of facts is reported without waiting for the 600 s timer.
    node.platform.facts.borrow_mut().ncpu = 4;
    node.run_until_time(&mut agent, &mut http, node.now() + 1_000);
    let info = ctl.ctl.store().latest_info(&uuid).unwrap();
    let rec = info.iter().find(|r| r.key == "device").unwrap();
    let Some(InfoContent::Dinfo(d)) = ZInfoMsg::decode(rec.msg.as_slice()).unwrap().info_content
    else {
        panic!("not device info")
    };
    assert_eq!(d.ncpu, 4);
    assert!(agent.status().counters.info_sent >= 2);

    // baseosmgr's partitions replace the facts' in swList, at once.
    agent.set_base_os(vec![eve_proto::info::ZInfoDevSw {
        partition_label: "IMGB".into(),
        short_version: "2.0".into(),
        user_status: eve_proto::info::BaseOsStatus::Updating as i32,
        ..Default::default()
    }]);
    node.run_until_time(&mut agent, &mut http, node.now() + 1_000);
    let info = ctl.ctl.store().latest_info(&uuid).unwrap();
    let rec = info.iter().find(|r| r.key == "device").unwrap();
    let Some(InfoContent::Dinfo(d)) = ZInfoMsg::decode(rec.msg.as_slice()).unwrap().info_content
    else {
        panic!("not device info")
    };
    assert_eq!(
        (d.sw_list.len(), d.sw_list[0].partition_label.as_str()),
        (1, "IMGB")
    );
    assert_eq!(
        d.sw_list[0].user_status(),
        eve_proto::info::BaseOsStatus::Updating
    );

    // Metrics: cumulative counters from the platform.
    node.platform.rx_bytes.set(123_456);
    node.run_until_time(&mut agent, &mut http, node.now() + 25_000);
    let metrics = ctl.ctl.store().metrics(&uuid, 1).unwrap();
    let m = ZMetricMsg::decode(metrics[0].msg.as_slice()).unwrap();
    let Some(MetricContent::Dm(dm)) = m.metric_content else {
        panic!("no device metrics")
    };
    assert_eq!(dm.network[0].rx_bytes, 123_456);
    assert!(dm.last_received_config.is_some());
    assert!(agent.status().counters.metrics_sent >= 2);
    // Controller requests on the management port, by URL.
    let z = &dm.zedcloud[0];
    assert_eq!(z.if_name, "eth0");
    assert_eq!((z.failures, z.auth_verify_failure), (0, 0));
    assert!(z.success >= 8, "{z:?}");
    assert!(z.last_success.is_some() && z.last_failure.is_none());
    let url = |kind: &str| {
        z.url_metrics
            .iter()
            .find(|u| u.url.ends_with(kind))
            .unwrap_or_else(|| panic!("no {kind} in {z:?}"))
    };
    let config = url(&format!("/id/{uuid}/config"));
    assert!(config.sent_msg_count >= 3, "{config:?}");
    assert_eq!(config.recv_msg_count, config.sent_msg_count);
    assert!(config.sent_byte_count > 0 && config.recv_byte_count > 0);
    assert_eq!((config.try_msg_count, config.try_byte_count), (0, 0));
    assert_eq!(url("/certs").sent_byte_count, 0);
    assert_eq!(url("/register").sent_msg_count, 1);
    assert_eq!(
        z.success,
        z.url_metrics
            .iter()
            .map(|u| u.sent_msg_count as u64)
            .sum::<u64>()
    );
    for (reason, _) in eveagent::Rejections::default().by_reason() {
        assert_eq!(
            metric_counter(&dm, &format!("{METRIC_REJECTED}{reason}")),
            0
        );
    }
    assert_eq!(metric_counter(&dm, METRIC_PERSIST_ERRORS), 0);

    // Logs: records at or above the remote level reach the controller.
    let logged_at = wall_now_ms();
    let record = |level, content: &str| LogRecord {
        level,
        source: "nim".into(),
        content: content.into(),
        unix_ms: logged_at,
        filename: String::new(),
        function: String::new(),
    };
    agent.log(record(Level::Warning, "uplink eth0 lost \"carrier\""));
    agent.log(record(Level::Info, "below the remote level"));
    node.run_until_time(&mut agent, &mut http, node.now() + 100_000);
    let logs = ctl
        .ctl
        .store()
        .query_logs(&LogQuery {
            device: uuid.clone(),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert!(
        logs.iter()
            .any(|l| l.content == "uplink eth0 lost \"carrier\""
                && l.severity == "warning"
                && l.source == "nim"
                && l.ts_ms == logged_at as i64),
        "{logs:?}"
    );
    assert!(!logs.iter().any(|l| l.content == "below the remote level"));
    assert!(agent.status().counters.log_batches_sent >= 1);
    assert_eq!(agent.status().log_batches_queued, 0);

    // The next metrics count what the log queue did.
    let counters = *agent.status().counters;
    node.run_until_time(&mut agent, &mut http, node.now() + 21_000);
    let log = stored_device_metrics(&ctl, &uuid).log.expect("log metric");
    assert_eq!(log.num_device_bundles_sent, counters.log_batches_sent);
    assert_eq!(log.num_device_events_sent, counters.log_lines_sent);
    assert_eq!(
        log.num_device_bundle_proto_bytes_sent,
        counters.log_bytes_sent
    );
    assert!(log.num_device_events_sent >= logs.len() as u64);
    assert!(log.total_device_log_input >= log.num_device_events_sent);
    assert!(log.last_device_bundle_send_time.is_some());
    assert_eq!((log.num4xx_responses, log.num_device_event_errors), (0, 0));
}

#[test]
fn hostile_config_answers_are_refused_and_counted() {
    let ctl = start_controller("hostile");
    let onboard = onboarding_identity(2);
    ctl.ctl.onboard_add(&onboard.0, &[]).unwrap();
    let mut node = Node::new(&ctl, "SN-HOSTILE", 20, onboard);
    let mut http = ctl.http();
    let mut agent = node.boot();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    let good_hash = agent.status().config_hash.to_owned();
    let good_checkpoint = node.volume.get(REC_CONFIG).unwrap();

    // A newer config waits at the controller; every forgery below is built
    // from its genuine answer.
    ctl.ctl
        .set_config(
            &uuid,
            "configItems:\n  - { key: timer.config.interval, value: \"30\" }\n",
        )
        .unwrap();

    let payload_of = |body: &[u8]| {
        let env = AuthContainer::decode(body).unwrap();
        ConfigResponse::decode(env.protected_payload.unwrap().payload.as_slice()).unwrap()
    };
    let wrong_key = SoftwareSigner::from_bytes(&[9u8; 32]).unwrap();
    let signing_hash = ctl.ctl.identity().signing_cert_hash;
    let cases: Vec<(&str, Rewrite)> = vec![
        (
            "bit flip",
            Box::new(|_, mut r: Response| {
                let i = r.body.len() / 2;
                r.body[i] ^= 0x10;
                r
            }),
        ),
        (
            "truncated",
            Box::new(|_, mut r: Response| {
                r.body.truncate(r.body.len() - 7);
                r
            }),
        ),
        (
            "oversized",
            Box::new(|_, mut r: Response| {
                r.body.resize(eveagent::agent::MAX_CONFIG_RESPONSE + 1, 0);
                r
            }),
        ),
        (
            "wrong signer",
            Box::new(move |_, mut r: Response| {
                let env = AuthContainer::decode(r.body.as_slice()).unwrap();
                let payload = env.protected_payload.unwrap().payload;
                r.body = sign::sign_auth_container(
                    payload,
                    &wrong_key,
                    &SenderIdentity {
                        cert_hash: signing_hash,
                        algo: HashAlgorithm::Sha25632bytes,
                        embed_cert_pem: None,
                    },
                )
                .unwrap()
                .encode_to_vec();
                r
            }),
        ),
    ];
    let mut expected_rejections = 0;
    for (name, mut rewrite) in cases {
        let mut tamper = Tamper {
            inner: &mut http,
            rewrite: Box::new(move |req: &Request, resp: Response| {
                if req.path.ends_with("/config") && resp.status == 200 {
                    rewrite(req, resp)
                } else {
                    resp
                }
            }),
        };
        expected_rejections += 1;
        assert!(
            node.run(&mut agent, &mut tamper, 20, |a| a
                .status()
                .counters
                .rejected
                .total()
                == expected_rejections),
            "{name}: not rejected"
        );
        assert_eq!(agent.status().config_hash, good_hash, "{name} was applied");
        assert_eq!(node.volume.get(REC_CONFIG).unwrap(), good_checkpoint);
    }
    let r = agent.status().counters.rejected;
    assert_eq!(r.oversized, 1);
    assert!(r.bad_signature + r.malformed >= 3, "{r:?}");

    // Correctly signed, but for another device / older than ours.
    let genuine = payload_of(&genuine_config_answer(&ctl, &uuid));
    let forge = |mutate: &dyn Fn(&mut ConfigResponse)| {
        let mut resp = genuine.clone();
        mutate(&mut resp);
        ctl.controller_envelope(resp.encode_to_vec())
    };
    let other_uuid = forge(&|r| {
        r.config.as_mut().unwrap().id.as_mut().unwrap().uuid =
            "00000000-0000-4000-8000-000000000000".into();
        r.config_hash = "other".into();
    });
    let older = forge(&|r| {
        let ts = r
            .config
            .as_mut()
            .unwrap()
            .config_timestamp
            .as_mut()
            .unwrap();
        ts.seconds -= 3600;
        r.config_hash = "older".into();
    });
    for (name, body) in [("wrong uuid", other_uuid), ("older timestamp", older)] {
        let mut tamper = Tamper {
            inner: &mut http,
            rewrite: Box::new(move |req: &Request, mut resp: Response| {
                if req.path.ends_with("/config") && resp.status == 200 {
                    resp.body = body.clone();
                }
                resp
            }),
        };
        expected_rejections += 1;
        assert!(
            node.run(&mut agent, &mut tamper, 20, |a| a
                .status()
                .counters
                .rejected
                .total()
                == expected_rejections),
            "{name}: not rejected"
        );
        assert_eq!(agent.status().config_hash, good_hash, "{name} was applied");
    }
    let r = agent.status().counters.rejected;
    assert_eq!((r.wrong_uuid, r.stale_timestamp), (1, 1));

    // Random damage to the genuine answer is never applied.
    let mut seed = 77u64;
    for _ in 0..40 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let s = seed;
        let mut tamper = Tamper {
            inner: &mut http,
            rewrite: Box::new(move |req: &Request, mut resp: Response| {
                if req.path.ends_with("/config") && resp.status == 200 {
                    let n = resp.body.len();
                    if s.is_multiple_of(3) {
                        resp.body.truncate((s >> 8) as usize % n);
                    } else {
                        resp.body[(s >> 8) as usize % n] ^= 1 << ((s >> 40) % 8);
                    }
                }
                resp
            }),
        };
        let before = agent.status().counters.rejected.total();
        node.run(&mut agent, &mut tamper, 20, |a| {
            a.status().counters.rejected.total() > before
                || a.status().counters.configs_accepted > 1
        });
        assert_eq!(agent.status().config_hash, good_hash);
    }

    // The genuine answer is still accepted afterwards.
    assert!(node.run(
        &mut agent,
        &mut http,
        20,
        |a| a.status().counters.configs_accepted == 2
    ));
    assert_eq!(agent.settings().config_interval_s, 30);

    // Every rejection reached the controller in the next metrics: in
    // total as EVE's authVerifyFailure, and by reason.
    let r = agent.status().counters.rejected;
    let before = ctl.count("metrics", 201);
    assert!(
        node.run(&mut agent, &mut http, 20, |_| ctl.count("metrics", 201)
            > before)
    );
    let dm = stored_device_metrics(&ctl, &uuid);
    assert_eq!(dm.zedcloud[0].auth_verify_failure, r.total());
    assert!(r.total() >= 6, "{r:?}");
    for (reason, n) in r.by_reason() {
        assert_eq!(
            metric_counter(&dm, &format!("{METRIC_REJECTED}{reason}")),
            n,
            "{reason}"
        );
    }
    assert_eq!(metric_counter(&dm, "zedagent.rejected.oversized"), 1);
    assert_eq!(
        metric_counter(&dm, "zedagent.rejected.bad_signature"),
        r.bad_signature
    );
}

/// The controller's current config for `uuid`, wrapped and signed exactly
/// as the controller answers a config poll.
fn genuine_config_answer(ctl: &Ctl, uuid: &str) -> Vec<u8> {
    let stored = ctl.ctl.store().latest_config(uuid).unwrap().unwrap();
    let config = eve_proto::config::EdgeDevConfig::decode(stored.config.as_slice()).unwrap();
    let resp = ConfigResponse {
        config: Some(config),
        config_hash: server::config_hash(&stored.config),
    };
    ctl.controller_envelope(resp.encode_to_vec())
}

#[test]
fn checkpointed_config_is_used_when_the_controller_is_down_and_restart_keeps_the_uuid() {
    let ctl = start_controller("restart");
    let onboard = onboarding_identity(3);
    ctl.ctl.onboard_add(&onboard.0, &["SN-R".into()]).unwrap();
    let mut node = Node::new(&ctl, "SN-R", 30, onboard);
    let mut http = ctl.http();
    let mut agent = node.boot();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    let hash = agent.status().config_hash.to_owned();
    drop(agent);

    // Boot with no controller: the checkpoint is in force at once.
    let mut offline = node.boot();
    assert_eq!(offline.status().config_hash, hash);
    assert!(offline.take_events().contains(&Event::ConfigAccepted {
        from_checkpoint: true
    }));
    assert_eq!(offline.status().uuid, Some(uuid.as_str()));
    let mut delays = Vec::new();
    for _ in 0..8 {
        let wake = offline.poll(&mut Down);
        delays.push(wake - node.now());
        node.clock.mono.set(wake);
    }
    assert_eq!(offline.status().phase, Phase::FetchCerts);
    assert_eq!(offline.status().counters.transport_errors, 8);
    for (i, d) in delays.iter().enumerate() {
        let nominal = 1000u64 << i;
        assert!(*d >= nominal / 2 && *d <= nominal, "retry {i}: {d} ms");
    }
    drop(offline);

    // A failed checkpoint write keeps the previous checkpoint intact.
    let mut agent = node.boot();
    onboard_to_running(&node, &mut agent, &mut http);
    ctl.ctl
        .set_config(
            &uuid,
            "configItems:\n  - { key: timer.metric.interval, value: \"30\" }\n",
        )
        .unwrap();
    node.volume.fail_writes.set(true);
    assert!(
        node.run(&mut agent, &mut http, 30, |a| a.status().config_hash
            != hash)
    );
    assert!(agent.status().counters.persist_errors >= 1);
    node.volume.fail_writes.set(false);
    drop(agent);
    let offline = node.boot();
    assert_eq!(offline.status().config_hash, hash);
    drop(offline);

    // Back online: registers again (200, same device), same UUID.
    let mut agent = node.boot();
    let again = onboard_to_running(&node, &mut agent, &mut http);
    assert_eq!(again, uuid);
    assert!(ctl.count("register", 200) >= 2);
    assert_eq!(ctl.ctl.store().devices().unwrap().len(), 1);
    assert_ne!(agent.status().config_hash, hash);
}

#[test]
fn second_device_with_the_same_serial_gets_409_falls_back_to_uuid_and_backs_off() {
    let ctl = start_controller("conflict");
    let onboard = onboarding_identity(4);
    ctl.ctl.onboard_add(&onboard.0, &["SN-DUP".into()]).unwrap();
    let mut first = Node::new(&ctl, "SN-DUP", 40, onboard.clone());
    let mut http = ctl.http();
    let mut a = first.boot();
    onboard_to_running(&first, &mut a, &mut http);

    let mut second = Node::new(&ctl, "SN-DUP", 4000, onboard);
    let mut b = second.boot();
    // When each registration was tried (the agent also wakes between
    // tries, to save its log lines).
    let mut attempts = Vec::new();
    for _ in 0..40 {
        let before = b.status().counters.register_conflicts;
        let at = second.now();
        let wake = b.poll(&mut http);
        if b.status().counters.register_conflicts > before {
            attempts.push(at);
        }
        if attempts.len() == 10 {
            break;
        }
        second.clock.mono.set(wake.max(second.now()));
    }
    let delays: Vec<u64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    let st = b.status();
    assert_eq!(st.phase, Phase::Register);
    assert_eq!(st.register, RegisterStatus::Conflict);
    assert_eq!(st.counters.register_conflicts, 10, "{st:?}");
    assert!(ctl.count("register", 409) >= 8);
    assert!(st.uuid.is_none());
    // Each refusal was followed by EVE's fallback, /uuid with the device
    // certificate, which the controller does not know: one round each.
    assert_eq!(st.counters.register_fallbacks, 10);
    assert_eq!(ctl.count("uuid", 401), 10);
    assert_eq!(st.counters.unexpected_status, 0);
    // Exponential: each nominal delay doubles (jitter keeps it in the upper half).
    for (i, d) in delays.iter().enumerate() {
        let nominal = 1000u64 << i;
        assert!(*d >= nominal / 2 && *d <= nominal, "retry {i}: {d} ms");
    }
}

#[test]
fn unknown_onboarding_cert_gets_403_and_keeps_trying() {
    let ctl = start_controller("forbidden");
    let mut node = Node::new(&ctl, "SN-X", 50, onboarding_identity(5));
    let mut http = ctl.http();
    let mut agent = node.boot();
    node.run(&mut agent, &mut http, 5, |_| false);
    assert_eq!(agent.status().register, RegisterStatus::NotPreRegistered);
    assert_eq!(agent.status().phase, Phase::Register);
    assert!(ctl.count("register", 403) >= 4);
    // Pre-registered later: the retry succeeds.
    ctl.ctl
        .onboard_add(&node.onboard.0, &["SN-X".into()])
        .unwrap();
    onboard_to_running(&node, &mut agent, &mut http);
}

#[test]
fn config_403_re_attests_and_404_refetches_the_uuid() {
    let ctl = start_controller("status");
    let onboard = onboarding_identity(6);
    ctl.ctl.onboard_add(&onboard.0, &[]).unwrap();
    let mut node = Node::new(&ctl, "SN-S", 60, onboard);
    let mut http = ctl.http();
    let mut agent = node.boot();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    let attests = ctl.count("attest", 201);
    let uuids = ctl.count("uuid", 200);

    // The tampered poll moves the agent back to that phase; within the same
    // poll it redoes the step against the real controller.
    for (status, route) in [(403, "attest"), (404, "uuid")] {
        let before = ctl.count(route, if route == "attest" { 201 } else { 200 });
        let mut tamper = Tamper {
            inner: &mut http,
            rewrite: Box::new(move |req: &Request, resp: Response| {
                if req.path.ends_with("/config") {
                    Response {
                        status,
                        body: Vec::new(),
                    }
                } else {
                    resp
                }
            }),
        };
        assert!(node.run(&mut agent, &mut tamper, 20, |_| {
            ctl.count(route, if route == "attest" { 201 } else { 200 }) > before
        }));
        onboard_to_running(&node, &mut agent, &mut http);
    }
    assert!(ctl.count("attest", 201) > attests);
    assert!(ctl.count("uuid", 200) > uuids);
    // A controller that keeps answering 403 is not hammered: the agent
    // keeps trying but backs off between rounds (1 s doubling).
    let before = ctl.count("attest", 201);
    let mut tamper = Tamper {
        inner: &mut http,
        rewrite: Box::new(|req: &Request, resp: Response| {
            if req.path.ends_with("/config") {
                Response {
                    status: 403,
                    body: Vec::new(),
                }
            } else {
                resp
            }
        }),
    };
    let start = node.now();
    node.run(&mut agent, &mut tamper, 20, |_| false);
    let rounds = ctl.count("attest", 201) - before;
    assert!(rounds >= 5, "{rounds} attests");
    let nominal: u64 = (0..rounds - 1).map(|i| 1000u64 << i.min(9)).sum();
    assert!(
        node.now() - start >= nominal / 2,
        "{rounds} rounds in {} ms",
        node.now() - start
    );
    assert_eq!(agent.status().uuid, Some(uuid.as_str()));
}

#[test]
fn certificates_from_another_controller_are_refused() {
    let ctl = start_controller("certs-a");
    let other = start_controller("certs-b");
    let onboard = onboarding_identity(7);
    ctl.ctl.onboard_add(&onboard.0, &[]).unwrap();
    let mut node = Node::new(&ctl, "SN-C", 70, onboard);
    let mut http = ctl.http();
    let mut foreign = other.http();
    let mut agent = node.boot();
    // `/certs` answered by a controller with another root.
    let wake = agent.poll(&mut foreign);
    assert_eq!(agent.status().phase, Phase::FetchCerts);
    assert_eq!(agent.status().counters.rejected.bad_chain, 1);
    node.clock.mono.set(wake);
    onboard_to_running(&node, &mut agent, &mut http);
}

#[test]
fn attestation_state_and_errors_reach_the_controller_in_device_info() {
    let ctl = start_controller("attest-info");
    let onboard = onboarding_identity(8);
    ctl.ctl.onboard_add(&onboard.0, &[]).unwrap();
    let mut node = Node::new(&ctl, "SN-A", 80, onboard);
    let mut http = ctl.http();
    let key = SoftwareSigner::from_bytes(&[0x35; 32]).unwrap();
    let mut agent = node.boot_with(DeviceKeySource::External(Box::new(key)));

    // The controller refuses to attest: the device keeps retrying and
    // meanwhile reports why.
    let mut refusing = Tamper {
        inner: &mut http,
        rewrite: Box::new(|req: &Request, resp: Response| {
            if req.path.ends_with("/attest") {
                Response {
                    status: 403,
                    body: Vec::new(),
                }
            } else {
                resp
            }
        }),
    };
    assert!(node.run(&mut agent, &mut refusing, 30, |a| a.status().phase
        == Phase::Attest
        && a.status().counters.info_sent >= 1));
    let uuid = agent.status().uuid.unwrap().to_owned();
    let d = stored_device_info(&ctl, &uuid);
    assert_eq!(d.state(), ZDeviceState::ZdeviceStateBooting);
    assert_eq!(d.hsm_status(), HwSecurityModuleStatus::Enabled);
    assert!(d.hsm_info.contains("TPM"), "{}", d.hsm_info);
    let attestation = d.attestation_info.expect("attestation info");
    assert_eq!(attestation.state(), AttestationState::RestartWait);
    let error = attestation.error.expect("attestation error");
    assert!(error.description.contains("403"), "{}", error.description);
    assert!(error.timestamp.is_some());
    assert_eq!(error.entities[0].entity(), Entity::Attestation);
    // The refusals are failed requests in the metrics too.
    let z = &stored_device_metrics(&ctl, &uuid).zedcloud[0];
    let attest = z
        .url_metrics
        .iter()
        .find(|u| u.url.ends_with("/attest"))
        .expect("attest url");
    assert!(attest.try_msg_count >= 1 && attest.sent_msg_count == 0);
    assert!(z.failures >= 1 && z.last_failure.is_some());

    // Once the controller attests it, the error is gone.
    onboard_to_running(&node, &mut agent, &mut http);
    node.run_until_time(&mut agent, &mut http, node.now() + 1_000);
    let d = stored_device_info(&ctl, &uuid);
    assert_eq!(d.state(), ZDeviceState::ZdeviceStateOnline);
    let attestation = d.attestation_info.unwrap();
    assert_eq!(attestation.state(), AttestationState::Complete);
    assert!(attestation.error.is_none());
}

#[test]
fn unsealed_log_lines_survive_a_power_loss() {
    let ctl = start_controller("log-power");
    let onboard = onboarding_identity(9);
    ctl.ctl.onboard_add(&onboard.0, &[]).unwrap();
    let mut node = Node::new(&ctl, "SN-P", 90, onboard);
    let mut http = ctl.http();
    let mut agent = node.boot();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    node.run_until_time(&mut agent, &mut http, node.now() + 1_000);

    // Lines logged, the persist window passes, no batch is sealed yet
    // (the upload timer is a minute and more away), and power goes.
    agent.log(warning("said just before the power loss"));
    agent.log(warning("and this one too"));
    node.run_until_time(&mut agent, &mut http, node.now() + 6_000);
    assert_eq!(agent.status().log_batches_queued, 0);
    let record = node.volume.get(REC_LOG_QUEUE).expect("log queue record");
    let saved = |text: &str| record.windows(text.len()).any(|w| w == text.as_bytes());
    assert!(saved("said just before the power loss") && saved("and this one too"));
    assert!(stored_lines(&ctl, &uuid, "and this one too").is_empty());
    drop(agent);

    // The next boot sends them, once.
    let mut agent = node.boot();
    onboard_to_running(&node, &mut agent, &mut http);
    node.run_until_time(&mut agent, &mut http, node.now() + 100_000);
    for text in ["said just before the power loss", "and this one too"] {
        assert_eq!(stored_lines(&ctl, &uuid, text).len(), 1, "{text}");
    }
}

#[test]
fn fast_upload_seals_after_10_s_and_uploads_every_3_s() {
    let ctl = start_controller("fast-upload");
    let onboard = onboarding_identity(10);
    ctl.ctl.onboard_add(&onboard.0, &[]).unwrap();
    let mut node = Node::new(&ctl, "SN-F", 100, onboard);
    let mut http = ctl.http();
    let mut agent = node.boot();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    node.run_until_time(&mut agent, &mut http, node.now() + 1_000);

    // EVE's default schedule: a quiet node uploads every 90 s.
    agent.log(warning("on the slow schedule"));
    node.run_until_time(&mut agent, &mut http, node.now() + 14_000);
    assert!(stored_lines(&ctl, &uuid, "on the slow schedule").is_empty());

    // Fast upload: that line, already older than 10 s, goes within 3 s.
    ctl.ctl
        .set_config(
            &uuid,
            "configItems:\n  - { key: newlog.allow.fastupload, value: \"true\" }\n",
        )
        .unwrap();
    assert!(node.run(&mut agent, &mut http, 20, |a| a.settings().log_fast_upload));
    let enabled = node.now();
    node.run_until_time(&mut agent, &mut http, enabled + 3_100);
    assert_eq!(stored_lines(&ctl, &uuid, "on the slow schedule").len(), 1);

    // Once the lines logged about the new config are gone, a new line is
    // sealed when 10 s old and sent at the next 3 s tick.
    node.run_until_time(&mut agent, &mut http, enabled + 15_000);
    assert_eq!(agent.status().log_batches_queued, 0);
    let logged = node.now();
    agent.log(warning("on the fast schedule"));
    node.run_until_time(&mut agent, &mut http, logged + 9_900);
    assert!(stored_lines(&ctl, &uuid, "on the fast schedule").is_empty());
    node.run_until_time(&mut agent, &mut http, logged + 13_100);
    assert_eq!(stored_lines(&ctl, &uuid, "on the fast schedule").len(), 1);
}

#[test]
fn content_becomes_tables_with_credentials_opened_and_its_reports_reach_the_controller() {
    let ctl = start_controller("content");
    let onboard = onboarding_identity(9);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-CONTENT".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-CONTENT", 7, onboard);
    let mut agent = node.boot();
    let mut http = ctl.http();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    ctl.ctl
        .set_config(
            &uuid,
            r#"
datastores:
  - { id: files, dType: DsHttps, fqdn: "files.example:8443", dpath: images, apiKey: ops, password: s3cret }
  - { id: registry, dType: DsContainerRegistry, fqdn: "docker://127.0.0.1:5000" }
contentInfo:
  - { displayName: disk, dsId: files, URL: vm.img, iformat: RAW, sha256: "ab" }
volumes:
  - displayName: root
    origin: { type: VCOT_DOWNLOAD, downloadContentTreeID: disk }
configItems:
  - { key: timer.gc.vdisk, value: "120" }
"#,
        )
        .expect("set config");
    assert!(node.run(
        &mut agent,
        &mut http,
        20,
        |a| a.status().counters.configs_accepted == 2
    ));
    let tables = agent.content_tables().expect("tables");
    let files = tables
        .datastores
        .values()
        .find(|d| d.config.as_ref().unwrap().fqdn == "files.example:8443")
        .expect("the https datastore");
    let config = files.config.as_ref().unwrap();
    assert_eq!(files.credentials_error, "");
    assert_eq!(
        (config.api_key.as_str(), config.password.as_str()),
        ("ops", "s3cret")
    );
    assert!(config.cipher_data.is_none());
    // The controller sealed them: the config itself carries no clear text.
    let sealed = agent.config().unwrap();
    assert!(sealed.datastores.iter().all(|d| d.password.is_empty()));
    assert!(sealed.datastores.iter().any(|d| d.cipher_data.is_some()));
    assert_eq!(tables.trees.len(), 1);
    assert_eq!(tables.volumes.len(), 1);
    assert_eq!(tables.settings.gc_vdisk_secs, 120);
    assert_eq!(tables.settings.download_retry_secs, 600);

    // volumemgr's reports go to the controller, one message per object.
    let tree = topics::content::ContentTreeState {
        uuid: tables.trees.keys().next().unwrap().clone(),
        display_name: "disk".into(),
        state: eve_proto::info::ZSwState::Error as i32,
        error: "sha256 mismatch: expected ab.., the bytes received hash to cd..".into(),
        error_unix: 1_700_000_000,
        ..Default::default()
    };
    agent.report_content(eveagent::ContentInfo::Tree(tree.clone()));
    agent.report_content(eveagent::ContentInfo::Blobs(topics::content::Blobs {
        blobs: vec![topics::content::BlobEntry {
            sha256: "cd".repeat(32),
            state: eve_proto::info::ZSwState::Verified as i32,
            size_bytes: 10,
            ..Default::default()
        }],
    }));
    agent.set_content_usage(topics::content::Usage {
        total_bytes: 100 << 20,
        free_bytes: 50 << 20,
        volumes: vec![topics::content::VolumeUsage {
            uuid: "v".into(),
            display_name: "root".into(),
            total_bytes: 8 << 20,
            used_bytes: 1 << 20,
            ..Default::default()
        }],
        ..Default::default()
    });
    // zedrouter's reports too, one message per network instance.
    agent.report_network_instance(eve_proto::info::ZInfoNetworkInstance {
        network_id: "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b".into(),
        activated: true,
        ip_assignments: vec![eve_proto::info::ZmetIpAssignmentEntry {
            mac_address: "02:16:3e:00:00:01".into(),
            ip_address: vec!["10.1.0.2".into()],
        }],
        ..Default::default()
    });
    let key = format!("content/{}", tree.uuid);
    let network_key = "network/0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b";
    assert!(node.run(&mut agent, &mut http, 20, |_| {
        let info = ctl.ctl.store().latest_info(&uuid).unwrap();
        info.iter().any(|r| r.key == key)
            && info.iter().any(|r| r.key.starts_with("type/"))
            && info.iter().any(|r| r.key == network_key)
    }));
    let info = ctl.ctl.store().latest_info(&uuid).unwrap();
    let rec = info.iter().find(|r| r.key == network_key).unwrap();
    let Some(InfoContent::Niinfo(ni)) = ZInfoMsg::decode(rec.msg.as_slice()).unwrap().info_content
    else {
        panic!("not network instance info")
    };
    assert_eq!(ni.ip_assignments[0].ip_address, ["10.1.0.2"]);
    let info = ctl.ctl.store().latest_info(&uuid).unwrap();
    let rec = info.iter().find(|r| r.key == key).unwrap();
    let Some(InfoContent::Cinfo(c)) = ZInfoMsg::decode(rec.msg.as_slice()).unwrap().info_content
    else {
        panic!("not content tree info")
    };
    assert_eq!(c.state, eve_proto::info::ZSwState::Error as i32);
    assert!(c.err.unwrap().description.contains("mismatch"));
    node.run_until_time(&mut agent, &mut http, node.now() + 61_000);
    let metrics = ctl.ctl.store().metrics(&uuid, 1).unwrap();
    let m = ZMetricMsg::decode(metrics[0].msg.as_slice()).unwrap();
    assert_eq!(m.vm.len(), 1);
    assert_eq!(m.vm[0].used_bytes, 1 << 20);
    let Some(MetricContent::Dm(dm)) = m.metric_content else {
        panic!("no device metrics")
    };
    assert!(
        dm.disk
            .iter()
            .any(|d| d.disk == "content" && d.total == 100)
    );
}

#[test]
fn sealed_app_user_data_is_opened_for_zedmanager() {
    let ctl = start_controller("userdata");
    let onboard = onboarding_identity(10);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-USERDATA".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-USERDATA", 8, onboard);
    let mut agent = node.boot();
    let mut http = ctl.http();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    ctl.ctl
        .set_config(
            &uuid,
            r#"
apps:
  - { displayname: web, userData: I2Nsb3VkLWNvbmZpZwo= }
  - { displayname: bare }
  - { displayname: broken, cipherData: { cipherContextId: nope, cipherData: AQID } }
"#,
        )
        .expect("set config");
    assert!(node.run(
        &mut agent,
        &mut http,
        20,
        |a| a.status().counters.configs_accepted == 2
    ));
    // The controller sealed it: the config carries no clear user data.
    let sealed = agent.config().unwrap();
    let web = sealed.apps.iter().find(|a| a.displayname == "web").unwrap();
    assert!(web.user_data.is_empty());
    assert!(web.cipher_data.is_some());
    // zedmanager's table has it opened, base64 as userData carries it.
    let table = agent.app_table().expect("apps");
    let by_name = |name: &str| {
        table
            .apps
            .values()
            .find(|a| a.displayname == name)
            .unwrap()
            .clone()
    };
    let web = by_name("web");
    assert_eq!(web.user_data, "I2Nsb3VkLWNvbmZpZwo=");
    assert!(web.cipher_data.is_none());
    assert_eq!(by_name("bare").user_data, "");

    // A block under a cipher context the config lacks is not opened: the
    // app falls back to its clear userData (none here), as EVE does.
    let broken = by_name("broken");
    assert_eq!((broken.user_data.as_str(), broken.cipher_data), ("", None));
    assert_eq!(table.unopened_user_data.len(), 1);
    assert!(
        table.unopened_user_data[0].1.contains("no cipher context"),
        "{:?}",
        table.unopened_user_data
    );
}

#[test]
fn with_a_tpm_the_ecdh_key_gets_a_certificate_the_controller_seals_for() {
    let ctl = start_controller("ecdh");
    let onboard = onboarding_identity(11);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-ECDH".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-ECDH", 17, onboard);
    // The TPM's keys, played by software keys behind the same interfaces:
    // the device key only signs, the ECDH key only agrees.
    let device = SoftwareSigner::new(&eve_proto::p256::SecretKey::from_slice(&[0x21; 32]).unwrap());
    let ecdh = eve_proto::p256::SecretKey::from_slice(&[0x37; 32]).unwrap();
    let mut agent = node.boot_with(DeviceKeySource::External(Box::new(device)));
    agent.use_ecdh_key(Box::new(ecdh.clone()), &ecdh.public_key());
    let mut http = ctl.http();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    let stored = ctl.ctl.store().device(&uuid).unwrap().unwrap();
    let cert = stored
        .attest
        .ecdh_cert_pem
        .expect("the controller took the ECDH certificate");
    let parsed = eve_proto::x509::parse_pem(cert.as_bytes()).unwrap();
    assert_eq!(
        eve_proto::x509::p256_public_key(&parsed).unwrap(),
        ecdh.public_key()
    );
    assert_eq!(
        ctl.count("attest", 201),
        2,
        "the certificate, then the quote"
    );
    ctl.ctl
        .set_config(
            &uuid,
            "datastores:\n  - { id: files, dType: DsHttps, fqdn: \"files.example\", apiKey: ops, password: s3cret }\n",
        )
        .expect("set config");
    assert!(node.run(
        &mut agent,
        &mut http,
        20,
        |a| a.status().counters.configs_accepted == 2
    ));
    let tables = agent.content_tables().unwrap();
    let ds = tables.datastores.values().next().unwrap();
    assert_eq!(ds.credentials_error, "");
    assert_eq!(ds.config.as_ref().unwrap().password, "s3cret");

    // The next boot finds the certificate on the state volume, already
    // taken: attestation is the quote alone.
    let device = SoftwareSigner::new(&eve_proto::p256::SecretKey::from_slice(&[0x21; 32]).unwrap());
    let mut agent = node.boot_with(DeviceKeySource::External(Box::new(device)));
    agent.use_ecdh_key(Box::new(ecdh.clone()), &ecdh.public_key());
    onboard_to_running(&node, &mut agent, &mut http);
    assert_eq!(ctl.count("attest", 201), 3);
    let again = ctl.ctl.store().device(&uuid).unwrap().unwrap();
    assert_eq!(again.attest.ecdh_cert_pem.as_deref(), Some(cert.as_str()));
}
