//! App reports against our real controller on loopback: zedmanager's
//! `ZInfoApp`s reach the controller as `ZiApp` info (on change, again with
//! each device info, UUID-only when the app is gone) and domainmgr's
//! `AppMetric`s ride in the device metrics.

use eve_proto::Message;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::info::{ErrorInfo, ZInfoApp, ZInfoMsg, ZInfoTypes, ZSwState};
use eve_proto::metrics::{AppCpuMetric, AppMetric, ZMetricMsg};

mod common;

use common::*;

const WEB: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const DB: &str = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";

/// The app info the controller stored last for `app`, with its message's
/// time stamp (Unix ms, the agent's clock).
fn stored_app(ctl: &Ctl, uuid: &str, app: &str) -> Option<(ZInfoApp, i64)> {
    let info = ctl.ctl.store().latest_info(uuid).unwrap();
    let rec = info.iter().find(|r| r.key == format!("app/{app}"))?;
    let msg = ZInfoMsg::decode(rec.msg.as_slice()).unwrap();
    assert_eq!(msg.ztype, ZInfoTypes::ZiApp as i32);
    assert_eq!(msg.dev_id, uuid);
    let ts = msg.at_time_stamp.unwrap();
    match msg.info_content {
        Some(InfoContent::Ainfo(a)) => {
            Some((a, ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000))
        }
        other => panic!("app info expected, got {other:?}"),
    }
}

fn running(name: &str) -> ZInfoApp {
    ZInfoApp {
        app_name: name.into(),
        state: ZSwState::Running as i32,
        volume_refs: vec!["vol-1".into()],
        ..Default::default()
    }
}

#[test]
fn app_status_reaches_the_controller_on_change_periodically_and_on_delete() {
    let ctl = start_controller("apps");
    let onboard = onboarding_identity(21);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-APPS".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-APPS", 31, onboard);
    let mut agent = node.boot();
    let mut http = ctl.http();
    // Reported before the device has a UUID: kept and sent once it has.
    agent.report_app(WEB, Some(running("web")));
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    assert!(node.run(&mut agent, &mut http, 20, |_| {
        stored_app(&ctl, &uuid, WEB).is_some()
    }));
    let (web, first) = stored_app(&ctl, &uuid, WEB).unwrap();
    assert_eq!(web.app_id, WEB);
    assert_eq!(web.app_name, "web");
    assert_eq!(web.state, ZSwState::Running as i32);
    assert_eq!(web.volume_refs, vec!["vol-1".to_string()]);

    // A change goes out at once; the app's UUID is the bus key's, whatever
    // the status said.
    let failed = ZInfoApp {
        app_id: "not-the-key".into(),
        app_name: "db".into(),
        state: ZSwState::Error as i32,
        app_err: vec![ErrorInfo {
            description: "no memory for 4096 MiB".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    agent.report_app(DB, Some(failed));
    assert!(node.run(&mut agent, &mut http, 20, |_| {
        stored_app(&ctl, &uuid, DB).is_some()
    }));
    let (db, _) = stored_app(&ctl, &uuid, DB).unwrap();
    assert_eq!(db.app_id, DB);
    assert_eq!(db.state, ZSwState::Error as i32);
    assert_eq!(db.app_err[0].description, "no memory for 4096 MiB");
    assert!(
        !ctl.ctl
            .store()
            .latest_info(&uuid)
            .unwrap()
            .iter()
            .any(|r| r.key == "app/not-the-key")
    );

    // With the periodic device info, every app again.
    node.run_until_time(&mut agent, &mut http, node.now() + 601_000);
    let (again, later) = stored_app(&ctl, &uuid, WEB).unwrap();
    assert!(later >= first + 600_000, "{later} vs {first}");
    assert_eq!(again, web);

    // Gone: the UUID alone, as EVE tells a controller of a deleted app.
    agent.report_app(WEB, None);
    assert!(node.run(&mut agent, &mut http, 20, |_| {
        stored_app(&ctl, &uuid, WEB).is_some_and(|(a, _)| a.app_name.is_empty())
    }));
    let (gone, _) = stored_app(&ctl, &uuid, WEB).unwrap();
    assert_eq!(gone, eveagent::agent::deleted_app_info(WEB));
    assert_eq!(gone.state, ZSwState::Invalid as i32);
    // And not re-sent as running with the next device info.
    node.run_until_time(&mut agent, &mut http, node.now() + 601_000);
    assert_eq!(stored_app(&ctl, &uuid, WEB).unwrap().0, gone);
    assert_eq!(stored_app(&ctl, &uuid, DB).unwrap().0.app_id, DB);
}

#[test]
fn app_metrics_ride_in_the_device_metrics_until_the_app_stops() {
    let ctl = start_controller("app-metrics");
    let onboard = onboarding_identity(22);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-APPM".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-APPM", 41, onboard);
    let mut agent = node.boot();
    let mut http = ctl.http();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    agent.set_app_metrics(
        WEB,
        Some(AppMetric {
            app_name: "web".into(),
            cpu: Some(AppCpuMetric {
                total: 3,
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    node.run_until_time(&mut agent, &mut http, node.now() + 61_000);
    let newest = |ctl: &Ctl| {
        let m = ctl.ctl.store().metrics(&uuid, 1).unwrap();
        ZMetricMsg::decode(m[0].msg.as_slice()).unwrap()
    };
    let m = newest(&ctl);
    assert_eq!(m.am.len(), 1);
    assert_eq!(m.am[0].app_id, WEB);
    assert_eq!(m.am[0].app_name, "web");
    assert_eq!(m.am[0].cpu.as_ref().unwrap().total, 3);
    agent.set_app_metrics(WEB, None);
    node.run_until_time(&mut agent, &mut http, node.now() + 61_000);
    assert!(newest(&ctl).am.is_empty());
}
