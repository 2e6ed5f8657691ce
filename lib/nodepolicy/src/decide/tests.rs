//! Every timer and command played through with a fake clock.

use alloc::vec;

use eve_proto::org::lfedge::eve::config::{DeviceOpsCmd, EdgeDevConfig};
use eve_proto::org::lfedge::eve::info::MaintenanceModeReason;
use hostops::partitions::{PartitionInfo, PartitionsStatus};
use prost::Message;
use topics::configitems::{GlobalConfig, TriState};

use super::*;

fn part(label: &str, state: &str, version: &str, booted: bool) -> PartitionInfo {
    PartitionInfo {
        label: label.into(),
        state: state.into(),
        version: version.into(),
        size_bytes: 1 << 30,
        booted,
    }
}

fn committed() -> PartitionsStatus {
    PartitionsStatus {
        partitions: vec![
            part("IMGA", "active", "1.0", true),
            part("IMGB", "unused", "0.9", false),
        ],
    }
}

fn trial() -> PartitionsStatus {
    PartitionsStatus {
        partitions: vec![
            part("IMGA", "active", "1.0", false),
            part("IMGB", "inprogress", "2.0", true),
        ],
    }
}

fn config(reboot: u32, shutdown: u32) -> EdgeDevConfig {
    EdgeDevConfig {
        reboot: Some(DeviceOpsCmd {
            counter: reboot,
            ..Default::default()
        }),
        shutdown: Some(DeviceOpsCmd {
            counter: shutdown,
            ..Default::default()
        }),
        ..Default::default()
    }
}

const DISCONNECT: Action = Action::Reboot {
    reason: BootReason::Disconnect,
};
const FALLBACK: Action = Action::Reboot {
    reason: BootReason::Fallback,
};
const COMMANDED: Action = Action::Reboot {
    reason: BootReason::RebootCmd,
};

#[test]
fn no_controller_for_seven_days_reboots_once() {
    let mut n = NodeAgent::new(100, Memory::default());
    let disk = committed();
    let heard = Heard {
        partitions: Some(&disk),
        ..Heard::default()
    };
    let week = 7 * 24 * 3600;
    assert_eq!(n.decide(100 + week - 1, heard).action, Action::Nothing);
    let d = n.decide(100 + week, heard);
    assert_eq!(d.action, DISCONNECT);
    assert!(d.status.reboot_inprogress);
    assert_eq!(n.decide(100 + 2 * week, heard).action, Action::Nothing);
    // The host refused: the timer asks again.
    n.stop_failed();
    assert_eq!(n.decide(100 + 2 * week, heard).action, DISCONNECT);
}

#[test]
fn contact_restarts_the_no_network_timer_and_the_item_sets_it() {
    let mut n = NodeAgent::new(0, Memory::default());
    let items = GlobalConfig {
        reboot_no_network_s: 600,
        ..GlobalConfig::default()
    };
    let heard = Heard {
        items: Some(&items),
        ..Heard::default()
    };
    n.contact(500);
    // An older contact does not move the clock back.
    n.contact(400);
    assert_eq!(n.decide(1099, heard).action, Action::Nothing);
    assert_eq!(n.decide(1100, heard).action, DISCONNECT);
}

#[test]
fn a_trial_without_the_controller_falls_back_after_the_fallback_timer() {
    let disk = trial();
    let items = GlobalConfig {
        update_fallback_no_network_s: 120,
        ..GlobalConfig::default()
    };
    let mut n = NodeAgent::new(10, Memory::default());
    let heard = Heard {
        items: Some(&items),
        partitions: Some(&disk),
        ..Heard::default()
    };
    assert_eq!(n.decide(129, heard).action, Action::Nothing);
    assert_eq!(n.decide(130, heard).action, FALLBACK);
    // With the default (300 s), and contact on the way, later.
    let mut n = NodeAgent::new(0, Memory::default());
    let heard = Heard {
        partitions: Some(&disk),
        ..Heard::default()
    };
    n.contact(200);
    assert_eq!(n.decide(499, heard).action, Action::Nothing);
    assert_eq!(n.decide(500, heard).action, FALLBACK);
    // A committed boot has no such timer.
    let disk = committed();
    let mut n = NodeAgent::new(0, Memory::default());
    let heard = Heard {
        partitions: Some(&disk),
        ..Heard::default()
    };
    assert_eq!(n.decide(10_000, heard).action, Action::Nothing);
}

#[test]
fn commands_act_once_on_a_change_and_survive_restarts() {
    let mut n = NodeAgent::new(0, Memory::default());
    let first = config(3, 1);
    let heard = Heard {
        config: Some(&first),
        ..Heard::default()
    };
    // The first counters seen are remembered, not acted on.
    let d = n.decide(1, heard);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(
        (
            d.status.reboot_config_counter,
            d.status.shutdown_config_counter
        ),
        (3, 1)
    );
    let raised = config(4, 1);
    let heard = Heard {
        config: Some(&raised),
        ..Heard::default()
    };
    let d = n.decide(2, heard);
    assert_eq!(d.action, COMMANDED);
    assert_eq!(d.status.reboot_config_counter, 4);
    let saved = n.memory().encode_to_vec();
    // After the reboot the same counter is not a command again.
    let mut n = NodeAgent::new(0, Memory::decode(saved.as_slice()).unwrap());
    assert_eq!(n.decide(1, heard).action, Action::Nothing);
    let off = config(4, 2);
    let heard = Heard {
        config: Some(&off),
        ..Heard::default()
    };
    let d = n.decide(2, heard);
    assert_eq!(d.action, Action::Nothing);
    assert!(d.status.apps_shut_down);
    // While rebooting nothing else is asked.
    let again = config(5, 3);
    let heard = Heard {
        config: Some(&again),
        ..Heard::default()
    };
    assert_eq!(n.decide(3, heard).action, COMMANDED);
    assert_eq!(n.decide(4, heard).action, Action::Nothing);
}

#[test]
fn a_shutdown_command_shuts_the_apps_down_and_leaves_the_node_on() {
    let mut n = NodeAgent::new(0, Memory::default());
    let first = config(1, 1);
    let heard = Heard {
        config: Some(&first),
        ..Heard::default()
    };
    let d = n.decide(1, heard);
    assert!(!d.status.apps_shut_down, "the first counter is only seen");
    let raised = config(1, 2);
    let heard = Heard {
        config: Some(&raised),
        ..Heard::default()
    };
    let d = n.decide(2, heard);
    assert_eq!(d.action, Action::Nothing, "no power action");
    assert!(d.status.apps_shut_down);
    assert!(!d.status.reboot_inprogress);
    assert_eq!(d.status.shutdown_config_counter, 2);
    // The apps stay shut down for the rest of this boot.
    let d = n.decide(3, heard);
    assert_eq!(d.action, Action::Nothing);
    assert!(d.status.apps_shut_down);
    // The node still reboots on command.
    let reboot = config(2, 2);
    let heard = Heard {
        config: Some(&reboot),
        ..Heard::default()
    };
    let d = n.decide(4, heard);
    assert_eq!(d.action, COMMANDED);
    assert!(d.status.apps_shut_down);
    // After the reboot the apps run again and the same counter is not
    // a command again.
    let saved = n.memory().encode_to_vec();
    let mut n = NodeAgent::new(0, Memory::decode(saved.as_slice()).unwrap());
    let d = n.decide(1, heard);
    assert_eq!(d.action, Action::Nothing);
    assert!(!d.status.apps_shut_down);
}

#[test]
fn a_changed_force_fallback_counter_boots_the_other_partition() {
    let disk = committed();
    let mut n = NodeAgent::new(0, Memory::default());
    let zero = GlobalConfig::default();
    let heard = Heard {
        items: Some(&zero),
        partitions: Some(&disk),
        ..Heard::default()
    };
    assert_eq!(n.decide(1, heard).action, Action::Nothing);
    let one = GlobalConfig {
        force_fallback_counter: 1,
        ..GlobalConfig::default()
    };
    let heard = Heard {
        items: Some(&one),
        partitions: Some(&disk),
        ..Heard::default()
    };
    assert_eq!(n.decide(2, heard).action, Action::FallbackAndReboot);
    assert_eq!(n.memory().fallback_seen, Some(1));
    // Not on a trial boot, nor towards an empty partition (a change refused
    // there counts as seen); a drop is a change too.
    let mut n = NodeAgent::new(0, Memory::default());
    let on_trial = trial();
    for (items, disk) in [(&zero, &on_trial), (&one, &on_trial)] {
        let heard = Heard {
            items: Some(items),
            partitions: Some(disk),
            ..Heard::default()
        };
        assert_eq!(n.decide(1, heard).action, Action::Nothing);
    }
    let empty = PartitionsStatus {
        partitions: vec![
            part("IMGA", "active", "1.0", true),
            part("IMGB", "unused", "", false),
        ],
    };
    let two = GlobalConfig {
        force_fallback_counter: 2,
        ..GlobalConfig::default()
    };
    let heard = Heard {
        items: Some(&two),
        partitions: Some(&empty),
        ..Heard::default()
    };
    assert_eq!(n.decide(2, heard).action, Action::Nothing);
    let heard = Heard {
        items: Some(&zero),
        partitions: Some(&disk),
        ..Heard::default()
    };
    assert_eq!(n.decide(3, heard).action, Action::FallbackAndReboot);
}

#[test]
fn maintenance_mode_is_the_item_else_the_controllers_flag() {
    let mut n = NodeAgent::new(0, Memory::default());
    let flagged = EdgeDevConfig {
        maintenance_mode: true,
        ..Default::default()
    };
    let mut items = GlobalConfig::default();
    for (item, flag, on) in [
        (TriState::None, false, false),
        (TriState::None, true, true),
        (TriState::Disabled, true, false),
        (TriState::Enabled, false, true),
    ] {
        items.maintenance_mode = item as i32;
        let plain = EdgeDevConfig::default();
        let heard = Heard {
            items: Some(&items),
            config: Some(if flag { &flagged } else { &plain }),
            ..Heard::default()
        };
        let status = n.decide(1, heard).status;
        assert_eq!(status.maintenance_mode, on, "{item:?} {flag}");
        assert_eq!(
            status.maintenance_mode_reasons,
            if on {
                vec![MaintenanceModeReason::UserRequested as i32]
            } else {
                vec![]
            }
        );
    }
}

#[test]
fn a_restarted_nodeagent_keeps_the_deadlines_of_the_run_before() {
    let disk = trial();
    let items = GlobalConfig {
        update_fallback_no_network_s: 120,
        reboot_no_network_s: 600,
        ..GlobalConfig::default()
    };
    let heard = Heard {
        items: Some(&items),
        partitions: Some(&disk),
        ..Heard::default()
    };
    // The first run hears the controller at 30 s of the node's clock and
    // dies at 100 s.
    let mut first = NodeAgent::new(0, Memory::default());
    first.contact(30);
    assert_eq!(first.decide(100, heard).action, Action::Nothing);
    // The next run starts at 140 s and hears zedagent's last answer
    // again: the fallback comes at 150 s, as it would have.
    let mut next = NodeAgent::new(0, first.memory());
    next.contact(30);
    assert_eq!(next.decide(149, heard).action, Action::Nothing);
    assert_eq!(next.decide(150, heard).action, FALLBACK);
    // A run that never hears the controller counts from the node's start.
    let committed_disk = committed();
    let quiet = Heard {
        items: Some(&items),
        partitions: Some(&committed_disk),
        ..Heard::default()
    };
    let mut late = NodeAgent::new(0, Memory::default());
    assert_eq!(late.decide(600, quiet).action, DISCONNECT);
}
