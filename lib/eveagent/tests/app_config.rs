//! The config's app instances as the `app-instance-config` table, from a
//! config our controller serves: keyed by the UUIDs the controller gave
//! them, following the config as apps come and go.

mod common;

use common::*;

#[test]
fn the_configs_apps_are_a_table_keyed_by_uuid_that_follows_the_config() {
    let ctl = start_controller("apps");
    let onboard = onboarding_identity(13);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-APPS".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-APPS", 23, onboard);
    let mut agent = node.boot();
    let mut http = ctl.http();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    assert_eq!(agent.app_table().expect("a config").apps.len(), 0);
    let two = r#"
volumes:
  - displayName: root
apps:
  - displayname: web
    activate: true
    fixedresources: { memory: 65536, vcpus: 1, virtualizationMode: PV }
    userData: "I2Nsb3VkLWNvbmZpZwo="
  - displayname: db
    activate: false
    fixedresources: { memory: 131072, vcpus: 2, virtualizationMode: HVM }
"#;
    ctl.ctl.set_config(&uuid, two).expect("set config");
    assert!(node.run(&mut agent, &mut http, 20, |a| {
        a.status().counters.configs_accepted == 2
    }));
    let table = agent.app_table().expect("a config");
    assert!(table.duplicates.is_empty());
    let config = agent.config().unwrap();
    assert_eq!(table.apps.len(), 2);
    for app in &config.apps {
        let id = app.uuidandversion.as_ref().unwrap();
        let key = id.uuid.to_ascii_lowercase();
        let mut expected = app.clone();
        if app.displayname == "web" {
            // The controller sealed web's user data for the device
            // (cipherData); the table carries it opened.
            assert!(app.user_data.is_empty(), "{key}: {}", app.user_data);
            assert!(app.cipher_data.is_some(), "{key}: not sealed");
            expected.cipher_data = None;
            expected.user_data = "I2Nsb3VkLWNvbmZpZwo=".into();
        }
        assert_eq!(table.apps.get(&key), Some(&expected), "{key}");
    }
    let web = table
        .apps
        .values()
        .find(|a| a.displayname == "web")
        .unwrap();
    assert!(web.activate);
    assert_eq!(web.fixedresources.as_ref().unwrap().memory, 65536);
    assert_eq!(web.user_data, "I2Nsb3VkLWNvbmZpZwo=");

    // The config drops "db": so does the table.
    let one = two.split("  - displayname: db").next().unwrap();
    ctl.ctl.set_config(&uuid, one).expect("set config");
    assert!(node.run(&mut agent, &mut http, 20, |a| {
        a.status().counters.configs_accepted == 3
    }));
    let table = agent.app_table().unwrap();
    let names: Vec<&str> = table
        .apps
        .values()
        .map(|a| a.displayname.as_str())
        .collect();
    assert_eq!(names, ["web"]);
}
