//! App disks in the device metrics against our real controller on
//! loopback: an app's `AppMetric.disk` lists each of the volumes
//! zedmanager reports for it, with volumemgr's sizes of them, as EVE's
//! zedagent fills it; another app's volume and a volume not measured yet
//! are not among them.

use eve_proto::Message;
use eve_proto::info::{ZInfoApp, ZSwState};
use eve_proto::metrics::{AppDiskMetric, AppMetric, ZMetricMsg};
use topics::content::{Usage, VolumeUsage};

mod common;

use common::*;

const WEB: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const ROOT: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a41";
const DATA: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a42";
const OTHER: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a43";
const UNMEASURED: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a44";

fn volume(uuid: &str, disk_type: &str, total: u64, used: u64, dirty: bool) -> VolumeUsage {
    VolumeUsage {
        uuid: uuid.into(),
        display_name: format!("volume {uuid}"),
        total_bytes: total,
        used_bytes: used,
        disk: format!("{uuid}.1"),
        disk_type: disk_type.into(),
        dirty,
    }
}

#[test]
fn an_apps_metrics_carry_each_of_its_volumes_as_a_disk() {
    let ctl = start_controller("app-disks");
    let onboard = onboarding_identity(23);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-APPD".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-APPD", 43, onboard);
    let mut agent = node.boot();
    let mut http = ctl.http();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    agent.report_app(
        WEB,
        Some(ZInfoApp {
            app_name: "web".into(),
            state: ZSwState::Running as i32,
            volume_refs: vec![ROOT.into(), DATA.into(), UNMEASURED.into()],
            ..Default::default()
        }),
    );
    agent.set_app_metrics(
        WEB,
        Some(AppMetric {
            app_name: "web".into(),
            ..Default::default()
        }),
    );
    agent.set_content_usage(Usage {
        total_bytes: 1 << 30,
        volumes: vec![
            // 2 GiB provisioned, 300.6 MiB on the host: rounded to 301.
            volume(ROOT, "qcow2", 2 << 30, (300 << 20) + (600 << 10), true),
            // 1.4 MiB used rounds down.
            volume(DATA, "raw", 64 << 20, (1 << 20) + (400 << 10), false),
            volume(OTHER, "raw", 1 << 20, 1 << 20, false),
        ],
        ..Default::default()
    });
    node.run_until_time(&mut agent, &mut http, node.now() + 61_000);
    let metrics = ctl.ctl.store().metrics(&uuid, 1).unwrap();
    let m = ZMetricMsg::decode(metrics[0].msg.as_slice()).unwrap();
    assert_eq!(m.am.len(), 1);
    assert_eq!(
        m.am[0].disk,
        vec![
            AppDiskMetric {
                disk: format!("{ROOT}.1"),
                provisioned: 2048,
                used: 301,
                disk_type: "qcow2".into(),
                dirty: true,
            },
            AppDiskMetric {
                disk: format!("{DATA}.1"),
                provisioned: 64,
                used: 1,
                disk_type: "raw".into(),
                dirty: false,
            },
        ]
    );
    // The same volumes in the device's volume metrics, the other app's too.
    assert_eq!(m.vm.len(), 3);

    // Once the app no longer reports the data volume, its disk goes.
    agent.report_app(
        WEB,
        Some(ZInfoApp {
            app_name: "web".into(),
            state: ZSwState::Running as i32,
            volume_refs: vec![ROOT.into()],
            ..Default::default()
        }),
    );
    node.run_until_time(&mut agent, &mut http, node.now() + 61_000);
    let metrics = ctl.ctl.store().metrics(&uuid, 1).unwrap();
    let m = ZMetricMsg::decode(metrics[0].msg.as_slice()).unwrap();
    let disks: Vec<&str> = m.am[0].disk.iter().map(|d| d.disk.as_str()).collect();
    assert_eq!(disks, [format!("{ROOT}.1")]);
}
