//! Apps on network instances: the domain's NICs, what zedrouter is told
//! (`app-network-config`), `ZInfoApp.network` from zedrouter's report, and
//! configs naming instances the config does not have.

use appmgr::Manager;
use appmgr::network::generated_mac;
use eve_proto::config::{
    Ace, AceAction, AceMatch, AppInstanceConfig, ContentTree, Format, NetworkAdapter,
    NetworkInstanceConfig, UuiDandVersion, VmConfig, VmMode, Volume, VolumeContentOrigin,
    VolumeContentOriginType, VolumeRef,
};
use eve_proto::info::{ZInfoApp, ZInfoNetwork, ZSwState};
use topics::apps::{DomainNic, PortMap};
use topics::content::VolumeState;
use topics::{AppNetworkState, network::AppNetwork};

const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const OTHER: &str = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";
const ROOT: &str = "a0000000-0000-4000-8000-000000000001";
const ROOT2: &str = "a0000000-0000-4000-8000-000000000002";
const IMAGE: &str = "c0000000-0000-4000-8000-000000000001";
const LOCAL: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b";
const NOW: u64 = 1_800_000_000;

fn portmap_ace(id: i32, lport: &str, app_port: u32) -> Ace {
    Ace {
        id,
        matches: vec![
            AceMatch {
                r#type: "protocol".into(),
                value: "tcp".into(),
            },
            AceMatch {
                r#type: "lport".into(),
                value: lport.into(),
            },
        ],
        actions: vec![AceAction {
            portmap: true,
            app_port,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn adapter(network_id: &str, mac: &str) -> NetworkAdapter {
    NetworkAdapter {
        name: "eth0".into(),
        network_id: network_id.into(),
        mac_address: mac.into(),
        acls: vec![portmap_ace(1, "8080", 80)],
        ..Default::default()
    }
}

fn app(uuid: &str, volume: &str, interfaces: Vec<NetworkAdapter>) -> AppInstanceConfig {
    AppInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: uuid.into(),
            version: "1".into(),
        }),
        displayname: "web".into(),
        fixedresources: Some(VmConfig {
            memory: 65536,
            vcpus: 1,
            virtualization_mode: VmMode::Pv as i32,
            ..Default::default()
        }),
        activate: true,
        volume_ref_list: vec![VolumeRef {
            uuid: volume.into(),
            ..Default::default()
        }],
        interfaces,
        user_data: "I2Nsb3VkLWNvbmZpZwo=".into(),
        meta_data_type: 1,
        ..Default::default()
    }
}

/// A manager with one local instance, a raw image and two volumes of it,
/// and `apps`; every volume ready.
fn manager(apps: &[AppInstanceConfig]) -> Manager {
    let mut m = Manager::new();
    m.set_tree_config(
        IMAGE,
        Some(ContentTree {
            uuid: IMAGE.into(),
            iformat: Format::Raw as i32,
            ..Default::default()
        }),
    );
    for v in [ROOT, ROOT2] {
        m.set_volume_config(
            v,
            Some(Volume {
                uuid: v.into(),
                origin: Some(VolumeContentOrigin {
                    r#type: VolumeContentOriginType::VcotDownload as i32,
                    download_content_tree_id: IMAGE.into(),
                }),
                ..Default::default()
            }),
        );
        m.set_volume_state(
            v,
            Some(VolumeState {
                uuid: v.into(),
                state: ZSwState::CreatedVolume as i32,
                host_volume: format!("{v}.0"),
                ..Default::default()
            }),
        );
    }
    m.set_network_instance(LOCAL, Some(NetworkInstanceConfig::default()));
    for a in apps {
        m.set_app(&a.uuidandversion.clone().unwrap().uuid, Some(a.clone()));
    }
    m.apps_synchronized();
    m.volumes_synchronized();
    m.trees_synchronized();
    m.instances_synchronized();
    m.reconcile(NOW);
    m
}

fn status(m: &Manager, key: &str) -> ZInfoApp {
    m.statuses().get(key).cloned().expect("a status")
}

#[test]
fn an_app_on_an_instance_gets_port_nics_and_is_told_to_zedrouter() {
    let mut m = manager(&[app(
        APP,
        ROOT,
        vec![adapter(LOCAL, ""), adapter(LOCAL, "02:00:00:00:00:09")],
    )]);
    let domain = m.domains()[APP].clone();
    let mac0 = generated_mac(APP, LOCAL, 0);
    assert_eq!(
        domain.nics,
        [
            DomainNic {
                index: 0,
                mac: mac0.clone()
            },
            DomainNic {
                index: 1,
                mac: "02:00:00:00:00:09".into()
            },
        ]
    );
    // zedrouter maps the ports: the domain has no user-mode forwards.
    assert!(domain.port_maps.is_empty());
    let told: &AppNetwork = &m.app_networks()[APP];
    assert_eq!(told.app_uuid, APP);
    assert_eq!(told.display_name, "web");
    assert!(told.activate);
    assert_eq!(told.user_data, b"#cloud-config\n");
    assert_eq!(told.meta_data_type, 1);
    assert_eq!(told.adapters.len(), 2);
    assert_eq!(told.adapters[0].nic, 0);
    assert_eq!(told.adapters[0].mac, mac0);
    assert_eq!(told.adapters[1].network_instance(), LOCAL);
    assert_eq!(
        told.adapters[1].adapter.as_ref().unwrap().acls,
        [portmap_ace(1, "8080", 80)]
    );
    assert!(status(&m, APP).network.is_empty());

    // zedrouter's report becomes ZInfoApp.network.
    let network = ZInfoNetwork {
        mac_addr: mac0,
        dev_name: "eth0".into(),
        ip_addrs: vec!["10.1.0.2".into()],
        default_routers: vec!["10.1.0.1".into()],
        ipv4_up: true,
        ..Default::default()
    };
    m.set_app_network_state(
        APP,
        Some(AppNetworkState {
            app_uuid: APP.into(),
            networks: vec![network.clone()],
        }),
    );
    m.reconcile(NOW);
    assert_eq!(status(&m, APP).network, [network]);

    // Deactivated: zedrouter is told so; removed: withdrawn.
    let mut halted = app(APP, ROOT, vec![adapter(LOCAL, "")]);
    halted.activate = false;
    m.set_app(APP, Some(halted));
    m.reconcile(NOW);
    assert!(!m.app_networks()[APP].activate);
    m.set_app(APP, None);
    m.reconcile(NOW);
    assert!(m.app_networks().is_empty());
    assert!(m.domains().is_empty());
}

#[test]
fn an_app_on_no_instance_keeps_its_user_mode_port_maps() {
    let m = manager(&[app(APP, ROOT, vec![adapter("", "")])]);
    let domain = m.domains()[APP].clone();
    assert!(domain.nics.is_empty());
    assert_eq!(
        domain.port_maps,
        [PortMap {
            host_port: 8080,
            app_port: 80
        }]
    );
    assert!(m.app_networks().is_empty());
}

#[test]
fn an_unknown_instance_is_the_apps_error_and_not_anothers() {
    let missing = "11111111-2222-4333-8444-555555555555";
    let mut m = manager(&[
        app(APP, ROOT, vec![adapter(missing, "")]),
        app(OTHER, ROOT2, vec![adapter(LOCAL, "")]),
    ]);
    let bad = status(&m, APP);
    assert_eq!(bad.state, ZSwState::Error as i32);
    assert_eq!(
        bad.app_err[0].description,
        format!("App web-{APP}: Can't find {missing} in network instances.")
    );
    assert!(!m.domains().contains_key(APP));
    assert!(!m.app_networks().contains_key(APP));
    assert!(m.app_networks().contains_key(OTHER));
    assert_eq!(m.domains()[OTHER].nics.len(), 1);

    // The instance arrives: the app goes on. The instance goes: OTHER is
    // in error, its domain and interfaces withdrawn.
    m.set_network_instance(missing, Some(NetworkInstanceConfig::default()));
    m.set_network_instance(LOCAL, None);
    m.reconcile(NOW);
    assert!(m.domains().contains_key(APP));
    assert_eq!(status(&m, OTHER).state, ZSwState::Error as i32);
    assert!(!m.domains().contains_key(OTHER));
    assert!(!m.app_networks().contains_key(OTHER));
}

#[test]
fn hostile_adapters_are_errors_not_panics() {
    let many = (0..100).map(|_| adapter(LOCAL, "")).collect::<Vec<_>>();
    for interfaces in [
        vec![adapter(LOCAL, "ff:ff:ff:ff:ff:ff")],
        vec![
            adapter(LOCAL, "02:00:00:00:00:01"),
            adapter(LOCAL, "02:00:00:00:00:01"),
        ],
        vec![adapter("not-a-uuid", "")],
        vec![adapter(LOCAL, "é2:00:00:00:00:01")],
        vec![adapter(LOCAL, ""), adapter("", "")],
        many,
    ] {
        let m = manager(&[
            app(APP, ROOT, interfaces.clone()),
            app(OTHER, ROOT2, vec![]),
        ]);
        assert_eq!(
            status(&m, APP).state,
            ZSwState::Error as i32,
            "{interfaces:?}"
        );
        assert!(m.app_networks().is_empty());
        assert!(m.domains().contains_key(OTHER));
    }
}

#[test]
fn nothing_is_decided_before_the_instances_are_known() {
    let mut m = Manager::new();
    m.set_app(APP, Some(app(APP, ROOT, vec![adapter(LOCAL, "")])));
    m.apps_synchronized();
    m.volumes_synchronized();
    m.trees_synchronized();
    assert!(!m.ready());
    m.instances_synchronized();
    assert!(m.ready());
}

/// domainmgr reports the app's domain in `state`, under its counters.
fn domainmgr_reports(m: &mut Manager, state: ZSwState) {
    let d = m.domains()[APP].clone();
    m.set_domain_state(
        APP,
        Some(topics::apps::DomainState {
            uuid: d.uuid.clone(),
            state: state as i32,
            restart_counter: d.restart_counter,
            purge_counter: d.purge_counter,
            ..Default::default()
        }),
    );
    m.reconcile(NOW);
}

#[test]
fn a_running_apps_acls_change_live_and_another_instance_waits_for_a_purge() {
    const SECOND: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4c";
    let mut config = app(APP, ROOT, vec![adapter(LOCAL, "02:00:00:00:00:09")]);
    let mut m = manager(&[config.clone()]);
    m.set_network_instance(SECOND, Some(NetworkInstanceConfig::default()));
    domainmgr_reports(&mut m, ZSwState::Running);
    let nics_then = m.domains()[APP].nics.clone();
    let told = |m: &Manager| m.app_networks()[APP].adapters[0].adapter.clone().unwrap();

    // A new ACL (another port map): zedrouter is told at once, the domain
    // keeps running as it is.
    config.interfaces[0].acls.push(portmap_ace(2, "8443", 443));
    m.set_app(APP, Some(config.clone()));
    m.reconcile(NOW);
    assert_eq!(told(&m).acls.len(), 2);
    assert_eq!(m.domains()[APP].nics, nics_then);
    assert!(status(&m, APP).app_err.is_empty(), "{:?}", status(&m, APP));
    assert_eq!(status(&m, APP).state, ZSwState::Running as i32);

    // Another network instance needs a purge: without one the app reports
    // so and runs on where it was, ACLs and all.
    config.interfaces[0].network_id = SECOND.into();
    m.set_app(APP, Some(config.clone()));
    m.reconcile(NOW);
    assert_eq!(told(&m).network_id, LOCAL);
    assert_eq!(told(&m).acls.len(), 2);
    let s = status(&m, APP);
    assert_eq!(s.state, ZSwState::Running as i32);
    assert_eq!(
        s.app_err[0].description,
        format!("Need purge due to Network changed from {LOCAL} to {SECOND} but not a purgeCmd")
    );

    // The purge: the domain halts, starts on the new disks with the NIC on
    // the new instance, and zedrouter is told then.
    config.purge = Some(eve_proto::config::InstanceOpsCmd {
        counter: 1,
        ..Default::default()
    });
    m.set_app(APP, Some(config));
    m.reconcile(NOW);
    assert_eq!(told(&m).network_id, LOCAL, "not before the domain halts");
    assert!(status(&m, APP).app_err.is_empty());
    assert!(!m.domains()[APP].activate);
    domainmgr_reports(&mut m, ZSwState::Halted);
    assert!(m.domains()[APP].activate);
    assert_eq!(m.domains()[APP].purge_counter, 1);
    assert_eq!(told(&m).network_id, SECOND);
    domainmgr_reports(&mut m, ZSwState::Running);
    assert_eq!(status(&m, APP).state, ZSwState::Running as i32);
    assert!(status(&m, APP).app_err.is_empty());
    assert_eq!(told(&m).network_id, SECOND);
}
