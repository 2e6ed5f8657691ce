//! What the node's other parts say about the node, in `ZInfoDevice`:
//! the host's boot reason (through the platform's facts, as zedagent
//! fills them from `power.boot-reason`) and nodeagent's `node-status`
//! (maintenance mode, command counters, a reboot under way).

use eve_proto::info::{BootReason, MaintenanceModeReason};
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
