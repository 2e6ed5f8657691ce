//! The config's global items for other services (`config-items`): taken
//! from the controller's config, validated, and kept on the state volume,
//! so a refused value keeps the last good one across zedagent's restarts.

use eve_proto::Message;
use eveagent::agent::REC_CONFIG_ITEMS;
use topics::configitems::{GlobalConfig, TriState};

mod common;

use common::*;

#[test]
fn items_reach_the_topic_value_and_survive_a_restart() {
    let ctl = start_controller("items");
    let onboard = onboarding_identity(7);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-ITEMS".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-ITEMS", 70, onboard);
    let mut http = ctl.http();
    let mut agent = node.boot();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    assert_eq!(agent.config_items(), &GlobalConfig::default());

    ctl.ctl
        .set_config(
            &uuid,
            "configItems:\n  - { key: timer.test.baseimage.update, value: \"120\" }\n  - { key: timer.reboot.no.network, value: \"3600\" }\n  - { key: maintenance.mode, value: \"enabled\" }\n",
        )
        .expect("set config");
    assert!(node.run(
        &mut agent,
        &mut http,
        20,
        |a| a.config_items().test_baseimage_update_s == 120
    ));
    let items = agent.config_items().clone();
    assert_eq!(items.reboot_no_network_s, 3600);
    assert_eq!(items.maintenance_mode(), TriState::Enabled);
    assert_eq!(items.update_fallback_no_network_s, 300);
    let saved = node.volume.get(REC_CONFIG_ITEMS).expect("items saved");
    assert_eq!(GlobalConfig::decode(saved.as_slice()).unwrap(), items);

    // A bad value keeps the one in force, here and after a restart.
    ctl.ctl
        .set_config(
            &uuid,
            "configItems:\n  - { key: timer.test.baseimage.update, value: \"5\" }\n  - { key: timer.reboot.no.network, value: \"3600\" }\n",
        )
        .expect("set config");
    assert!(node.run(
        &mut agent,
        &mut http,
        20,
        |a| a.config_items().maintenance_mode() == TriState::None
    ));
    assert_eq!(agent.config_items().test_baseimage_update_s, 120);
    assert_eq!(
        agent.config_items().refused,
        ["timer.test.baseimage.update"]
    );
    let before = agent.config_items().clone();
    drop(agent);
    let restarted = node.boot();
    assert_eq!(restarted.config_items(), &before);
}
