//! What the node's other parts say about the node, in `ZInfoDevice`:
//! the host's boot reason (through the platform's facts, as zedagent
//! fills them from `power.boot-reason`) and nodeagent's `node-status`
//! (maintenance mode, command counters, a reboot under way, the apps shut
//! down by the controller's `shutdown`).

use eve_proto::info::{BootReason, MaintenanceModeReason, ZDeviceState, ZInfoApp, ZSwState};
use topics::nodestatus::Node as NodeReport;

mod common;

use common::*;

#[test]
fn boot_reason_and_node_status_reach_the_controller() {
    let ctl = start_controller("nodestatus");
    let onboard = onboarding_identity(9);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-NODE".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-NODE", 90, onboard);
    {
        let mut facts = node.platform.facts.borrow_mut();
        facts.boot_reason = BootReason::Update;
        facts.last_reboot_reason = BootReason::Update.as_str_name().into();
    }
    let mut http = ctl.http();
    let mut agent = node.boot();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    node.run_until_time(&mut agent, &mut http, node.now() + 2_000);
    let d = stored_device_info(&ctl, &uuid);
    assert_eq!(d.last_boot_reason(), BootReason::Update);
    assert_eq!(d.last_reboot_reason, "BOOT_REASON_UPDATE");
    assert!(!d.maintenance_mode);
    assert_eq!(d.reboot_config_counter, 0);

    agent.set_node_status(NodeReport {
        maintenance_mode: true,
        maintenance_mode_reasons: vec![MaintenanceModeReason::UserRequested as i32],
        reboot_config_counter: 4,
        shutdown_config_counter: 2,
        reboot_inprogress: true,
        apps_shut_down: false,
    });
    // Reported at once, not at the next 600 s device info.
    node.run_until_time(&mut agent, &mut http, node.now() + 2_000);
    let d = stored_device_info(&ctl, &uuid);
    assert!(d.maintenance_mode);
    assert_eq!(
        d.maintenance_mode_reasons,
        [MaintenanceModeReason::UserRequested as i32]
    );
    assert_eq!((d.reboot_config_counter, d.shutdown_config_counter), (4, 2));
    assert!(d.reboot_inprogress);
}

#[test]
fn a_shutdown_is_preparing_poweroff_until_every_app_halts() {
    const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    let ctl = start_controller("nodeshutdown");
    let onboard = onboarding_identity(10);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-SHUT".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-SHUT", 91, onboard);
    let mut http = ctl.http();
    let mut agent = node.boot();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    let app = |state: ZSwState| ZInfoApp {
        app_name: "web".into(),
        state: state as i32,
        ..Default::default()
    };
    agent.report_app(APP, Some(app(ZSwState::Running)));
    node.run_until_time(&mut agent, &mut http, node.now() + 2_000);
    assert_eq!(
        stored_device_info(&ctl, &uuid).state(),
        ZDeviceState::ZdeviceStateOnline
    );

    agent.set_node_status(NodeReport {
        shutdown_config_counter: 2,
        apps_shut_down: true,
        ..Default::default()
    });
    node.run_until_time(&mut agent, &mut http, node.now() + 2_000);
    let d = stored_device_info(&ctl, &uuid);
    assert_eq!(d.state(), ZDeviceState::ZdeviceStatePreparingPoweroff);
    assert_eq!(d.shutdown_config_counter, 2);

    // The app's halt is reported at once, not at the next device info.
    agent.report_app(APP, Some(app(ZSwState::Halted)));
    node.run_until_time(&mut agent, &mut http, node.now() + 2_000);
    assert_eq!(
        stored_device_info(&ctl, &uuid).state(),
        ZDeviceState::ZdeviceStatePreparedPoweroff
    );
}
