//! Apps' logs and flow logs against our real controller on loopback:
//! domainmgr's `app-logs` items reach the app's `newlogs` (read back as
//! `evectl app logs` reads them), and zedrouter's flow messages reach
//! `flowlog`, one upload per message, retried after failures.

use eve_proto::flowlog::{FlowMessage, FlowRecord, ScopeInfo};
use eveagent::io::{Http, Request, Response, TransportError};
use topics::{AppLogBatch, AppLogLine};

mod common;

use common::*;

const WEB: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const DB: &str = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";

fn lines(app: &str, sequence: u64, texts: &[&str]) -> AppLogBatch {
    AppLogBatch {
        app_uuid: app.into(),
        display_name: "web".into(),
        lines: texts
            .iter()
            .map(|t| AppLogLine {
                unix_ms: wall_now_ms(),
                text: (*t).into(),
            })
            .collect(),
        run: 1,
        sequence,
        ..Default::default()
    }
}

/// The app's lines the controller stored, oldest first.
fn app_lines(ctl: &Ctl, uuid: &str, app: &str) -> Vec<controller::store::LogRecord> {
    ctl.ctl
        .store()
        .query_logs(&controller::store::LogQuery {
            device: uuid.to_owned(),
            app: Some(app.to_owned()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
}

/// The controller's transport, answering `flowlog` with 503 the first
/// `fail` times without passing it on.
struct FlakyFlowlog<H> {
    inner: H,
    fail: usize,
    flowlog_tries: usize,
}

impl<H: Http> Http for FlakyFlowlog<H> {
    fn send(&mut self, request: &Request) -> Result<Response, TransportError> {
        if request.path.ends_with("/flowlog") {
            self.flowlog_tries += 1;
            if self.fail > 0 {
                self.fail -= 1;
                return Ok(Response {
                    status: 503,
                    body: Vec::new(),
                });
            }
        }
        self.inner.send(request)
    }
}

#[test]
fn app_console_lines_reach_the_apps_newlogs() {
    let ctl = start_controller("applogs");
    let onboard = onboarding_identity(23);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-APPLOGS".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-APPLOGS", 41, onboard);
    let mut agent = node.boot();
    let mut http = ctl.http();
    // Lines taken before the device has its UUID wait for it.
    agent.app_logs(&lines(WEB, 0, &["hello-http: listening on port 80"]));
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    agent.app_logs(&lines(WEB, 1, &["GET / <200> & done"]));
    agent.app_logs(&lines(DB, 2, &["db up"]));
    assert!(node.run(&mut agent, &mut http, 200, |_| {
        app_lines(&ctl, &uuid, WEB).len() == 2 && app_lines(&ctl, &uuid, DB).len() == 1
    }));
    let web = app_lines(&ctl, &uuid, WEB);
    assert_eq!(web[0].content, "hello-http: listening on port 80");
    assert_eq!(web[1].content, "GET / <200> & done");
    assert_eq!(web[0].severity, "info");
    assert_eq!(web[0].source, WEB);
    assert_eq!(web[0].app.as_deref(), Some(WEB));
    assert!((web[0].ts_ms - wall_now_ms() as i64).abs() < 600_000);
    assert_eq!(app_lines(&ctl, &uuid, DB)[0].content, "db up");
    // Not among the device's own logs.
    assert!(
        stored_lines(&ctl, &uuid, "db up")
            .iter()
            .all(|l| l.app.is_some())
    );
    assert_eq!(ctl.count("appnewlogs", 201), 2);
    assert_eq!(agent.status().counters.app_log_lines_sent, 3);
    let c = agent.app_log_counters();
    assert_eq!((c.input_lines, c.bound_dropped, c.refused), (3, 0, 0));
    // The device's metrics count them as EVE's logMetric does.
    assert!(node.run(&mut agent, &mut http, 50, |_| {
        stored_device_metrics(&ctl, &uuid)
            .log
            .is_some_and(|l| l.num_app_events_sent == 3)
    }));
    let log = stored_device_metrics(&ctl, &uuid).log.unwrap();
    assert_eq!((log.num_app_bundles_sent, log.total_app_log_input), (2, 3));
    assert!(log.num_app_bundle_proto_bytes_sent > 0);
}

#[test]
fn flow_messages_reach_flowlog_one_by_one_after_failures() {
    let ctl = start_controller("flowlogs");
    let onboard = onboarding_identity(24);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-FLOWS".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-FLOWS", 43, onboard);
    let mut agent = node.boot();
    let mut http = FlakyFlowlog {
        inner: ctl.http(),
        fail: 3,
        flowlog_tries: 0,
    };
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    for n in 0..3 {
        agent.flow_message(&FlowMessage {
            dev_id: uuid.clone(),
            scope: Some(ScopeInfo {
                uuid: WEB.into(),
                intf: "eth0".into(),
                ..Default::default()
            }),
            flows: vec![FlowRecord::default(); n + 1],
            ..Default::default()
        });
    }
    let start = node.now();
    assert!(node.run(&mut agent, &mut http, 200, |a| {
        a.flow_counters().success.messages == 3
    }));
    // Three failures of the first message: retried after 1, 2 and 4 s.
    assert!(node.now() - start >= 7_000, "{}", node.now() - start);
    assert_eq!(http.flowlog_tries, 6);
    assert_eq!(ctl.count("flowlog", 201), 3);
    let c = agent.flow_counters();
    assert_eq!((c.success.flows, c.drops.messages), (6, 0));
    assert_eq!(c.failed_attempts.messages, 3);
    assert!(node.run(&mut agent, &mut http, 50, |_| {
        stored_device_metrics(&ctl, &uuid)
            .flowlog
            .and_then(|f| f.messages)
            .is_some_and(|m| m.success == 3)
    }));
    let flowlog = stored_device_metrics(&ctl, &uuid).flowlog.unwrap();
    let flows = flowlog.flows.unwrap();
    assert_eq!(
        (flows.success, flows.drops, flows.failed_attempts),
        (6, 0, 3)
    );
}
