//! zedmanager's state machine, driven with scripted volumemgr and
//! domainmgr reports and a fake clock.

use appmgr::Manager;
use eve_proto::common::CipherBlock;
use eve_proto::config::{
    Ace, AceAction, AceMatch, AppInstanceConfig, ContentTree, Format, InstanceOpsCmd,
    NetworkAdapter, UuiDandVersion, VmConfig, VmMode, Volume, VolumeContentOrigin,
    VolumeContentOriginType, VolumeRef,
};
use eve_proto::info::{ZInfoApp, ZSwState};
use topics::apps::{Domain, DomainKind, DomainState, PortMap};
use topics::content::VolumeState;

const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const OTHER: &str = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";
const ROOT: &str = "a0000000-0000-4000-8000-000000000001";
const DATA: &str = "a0000000-0000-4000-8000-000000000002";
const IMAGE: &str = "c0000000-0000-4000-8000-000000000001";
const NOW: u64 = 1_800_000_000;

fn tree(uuid: &str, format: Format) -> ContentTree {
    ContentTree {
        uuid: uuid.into(),
        iformat: format as i32,
        ..Default::default()
    }
}

fn volume(uuid: &str, tree: Option<&str>, generation: i64) -> Volume {
    Volume {
        uuid: uuid.into(),
        generation_count: generation,
        origin: Some(VolumeContentOrigin {
            r#type: match tree {
                Some(_) => VolumeContentOriginType::VcotDownload,
                None => VolumeContentOriginType::VcotBlank,
            } as i32,
            download_content_tree_id: tree.unwrap_or_default().into(),
        }),
        ..Default::default()
    }
}

fn app(uuid: &str, mode: VmMode, volumes: &[&str]) -> AppInstanceConfig {
    AppInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: uuid.into(),
            version: "1".into(),
        }),
        displayname: "web".into(),
        fixedresources: Some(VmConfig {
            memory: 65536,
            vcpus: 2,
            virtualization_mode: mode as i32,
            extraargs: "console=ttyS0".into(),
            ..Default::default()
        }),
        activate: true,
        volume_ref_list: volumes
            .iter()
            .map(|v| VolumeRef {
                uuid: (*v).into(),
                generation_count: 0,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn counter(n: u32) -> Option<InstanceOpsCmd> {
    Some(InstanceOpsCmd {
        counter: n,
        ..Default::default()
    })
}

fn ready_volume(uuid: &str, generation: i64) -> VolumeState {
    VolumeState {
        uuid: uuid.into(),
        state: ZSwState::CreatedVolume as i32,
        generation_count: generation,
        host_volume: format!("{uuid}.{generation}"),
        ..Default::default()
    }
}

fn domain_state(domain: &Domain, state: ZSwState) -> DomainState {
    DomainState {
        uuid: domain.uuid.clone(),
        state: state as i32,
        restart_counter: domain.restart_counter,
        purge_counter: domain.purge_counter,
        disks: domain.disks.iter().map(|d| d.host_volume.clone()).collect(),
        boot_unix: if state == ZSwState::Running {
            NOW - 5
        } else {
            0
        },
        ..Default::default()
    }
}

/// A manager whose config holds a raw image (`IMAGE`), its volume `ROOT`,
/// a blank `DATA` volume, and `apps` (keyed by their UUIDs).
fn manager(apps: &[AppInstanceConfig]) -> Manager {
    let mut m = Manager::new();
    m.set_tree_config(IMAGE, Some(tree(IMAGE, Format::Raw)));
    m.set_volume_config(ROOT, Some(volume(ROOT, Some(IMAGE), 0)));
    m.set_volume_config(DATA, Some(volume(DATA, None, 0)));
    for a in apps {
        let key = a.uuidandversion.clone().unwrap().uuid;
        m.set_app(&key, Some(a.clone()));
    }
    m.apps_synchronized();
    m.volumes_synchronized();
    m.trees_synchronized();
    m.instances_synchronized();
    m
}

fn status(m: &Manager, key: &str) -> ZInfoApp {
    m.statuses().get(key).cloned().expect("a status")
}

fn state(m: &Manager, key: &str) -> ZSwState {
    ZSwState::try_from(status(m, key).state).unwrap()
}

fn error(m: &Manager, key: &str) -> String {
    let s = status(m, key);
    assert_eq!(s.state, ZSwState::Error as i32, "{s:?}");
    s.app_err[0].description.clone()
}

fn domain(m: &Manager, key: &str) -> Domain {
    m.domains().get(key).cloned().expect("a domain")
}

/// Runs the app of `m` until domainmgr reports it in `state`.
fn domainmgr_reports(m: &mut Manager, key: &str, state: ZSwState, now: u64) {
    let d = domain(m, key);
    m.set_domain_state(key, Some(domain_state(&d, state)));
    m.reconcile(now);
}

#[test]
fn an_app_waits_for_every_volume_then_boots_with_its_disks_in_drive_order() {
    let mut m = manager(&[app(APP, VmMode::Pv, &[ROOT, DATA])]);
    m.reconcile(NOW);
    assert_eq!(state(&m, APP), ZSwState::Initial);
    assert!(m.domains().is_empty());

    m.set_volume_state(
        ROOT,
        Some(VolumeState {
            uuid: ROOT.into(),
            state: ZSwState::DownloadStarted as i32,
            progress_percent: 40,
            ..Default::default()
        }),
    );
    m.set_volume_state(
        DATA,
        Some(VolumeState {
            uuid: DATA.into(),
            state: ZSwState::CreatingVolume as i32,
            ..Default::default()
        }),
    );
    m.reconcile(NOW);
    assert_eq!(state(&m, APP), ZSwState::DownloadStarted);
    m.set_volume_state(DATA, Some(ready_volume(DATA, 0)));
    m.set_volume_state(
        ROOT,
        Some(VolumeState {
            uuid: ROOT.into(),
            state: ZSwState::CreatingVolume as i32,
            ..Default::default()
        }),
    );
    m.reconcile(NOW);
    assert_eq!(state(&m, APP), ZSwState::CreatingVolume);
    assert!(
        m.domains().is_empty(),
        "no domain before every disk is ready"
    );

    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    let d = domain(&m, APP);
    assert_eq!(d.kind, DomainKind::Unikernel as i32);
    assert!(d.activate);
    assert_eq!((d.memory_kib, d.vcpus), (65536, 2));
    assert_eq!(d.extra_args, "console=ttyS0");
    let disks: Vec<(&str, &str)> = d
        .disks
        .iter()
        .map(|x| (x.host_volume.as_str(), x.volume_uuid.as_str()))
        .collect();
    assert_eq!(
        disks,
        [
            (format!("{ROOT}.0").as_str(), ROOT),
            (format!("{DATA}.0").as_str(), DATA)
        ]
    );
    assert_eq!(state(&m, APP), ZSwState::Booting);

    domainmgr_reports(&mut m, APP, ZSwState::Booting, NOW);
    assert_eq!(state(&m, APP), ZSwState::Booting);
    domainmgr_reports(&mut m, APP, ZSwState::Running, NOW);
    let s = status(&m, APP);
    assert_eq!(s.state, ZSwState::Running as i32);
    assert_eq!(s.boot_time.unwrap().seconds, (NOW - 5) as i64);
    assert_eq!((s.app_id.as_str(), s.app_name.as_str()), (APP, "web"));
    assert_eq!(s.app_version, "1");
    assert_eq!(s.volume_refs, [ROOT, DATA]);
    assert!(s.app_err.is_empty());
}

#[test]
fn the_kind_follows_the_mode_and_the_first_volume() {
    let oci = "c0000000-0000-4000-8000-000000000002";
    let qcow = "c0000000-0000-4000-8000-000000000003";
    let oci_volume = "a0000000-0000-4000-8000-000000000004";
    let qcow_volume = "a0000000-0000-4000-8000-000000000005";
    let kind = |mode: i32, first: &str| {
        let mut config = app(APP, VmMode::Pv, &[first]);
        config.fixedresources.as_mut().unwrap().virtualization_mode = mode;
        let mut m = manager(&[config]);
        m.set_tree_config(oci, Some(tree(oci, Format::Container)));
        m.set_tree_config(qcow, Some(tree(qcow, Format::Qcow2)));
        m.set_volume_config(oci_volume, Some(volume(oci_volume, Some(oci), 0)));
        m.set_volume_config(qcow_volume, Some(volume(qcow_volume, Some(qcow), 0)));
        m.set_volume_state(first, Some(ready_volume(first, 0)));
        m.reconcile(NOW);
        match m.domains().get(APP) {
            Some(d) => Ok(DomainKind::try_from(d.kind).unwrap()),
            None => Err(error(&m, APP)),
        }
    };
    assert_eq!(kind(VmMode::Pv as i32, ROOT), Ok(DomainKind::Unikernel));
    for mode in [VmMode::Hvm, VmMode::Legacy, VmMode::Fml] {
        assert_eq!(kind(mode as i32, qcow_volume), Ok(DomainKind::LinuxVm));
        assert_eq!(kind(mode as i32, ROOT), Ok(DomainKind::LinuxVm));
    }
    for mode in [VmMode::Pv, VmMode::Hvm, VmMode::Nohyper] {
        assert_eq!(kind(mode as i32, oci_volume), Ok(DomainKind::Container));
    }
    let refused = |mode: i32, first: &str, words: &str| {
        let e = kind(mode, first).unwrap_err();
        assert!(e.contains(words), "{e}");
    };
    refused(VmMode::Pv as i32, qcow_volume, "must be RAW");
    refused(VmMode::Nohyper as i32, ROOT, "NOHYPER");
    refused(VmMode::Filler as i32, ROOT, "Filler");
    refused(99, ROOT, "mode 99");
    refused(VmMode::Hvm as i32, DATA, "blank");
}

/// A change that makes a config hostile or malformed.
type Spoil = Box<dyn Fn(&mut AppInstanceConfig)>;

#[test]
fn hostile_configs_are_errors_of_their_app_only() {
    let good = app(OTHER, VmMode::Pv, &[ROOT]);
    let cases: Vec<(&str, Spoil)> = vec![
        (
            "memory 0 KiB",
            Box::new(|c| c.fixedresources.as_mut().unwrap().memory = 0),
        ),
        (
            "memory 4294967295 KiB",
            Box::new(|c| c.fixedresources.as_mut().unwrap().memory = u32::MAX),
        ),
        (
            "vcpus 0",
            Box::new(|c| c.fixedresources.as_mut().unwrap().vcpus = 0),
        ),
        (
            "vcpus 4096",
            Box::new(|c| c.fixedresources.as_mut().unwrap().vcpus = 4096),
        ),
        ("no fixedresources", Box::new(|c| c.fixedresources = None)),
        (
            "volume a0000000-0000-4000-8000-0000000000ff is not in the config",
            Box::new(|c| c.volume_ref_list[0].uuid = "a0000000-0000-4000-8000-0000000000ff".into()),
        ),
        (
            "is not a UUID",
            Box::new(|c| c.volume_ref_list[0].uuid = "../../etc".into()),
        ),
        ("no volumes", Box::new(|c| c.volume_ref_list.clear())),
        (
            "referenced twice",
            Box::new(|c| {
                let again = c.volume_ref_list[0].clone();
                c.volume_ref_list.push(again);
            }),
        ),
        (
            "not the key",
            Box::new(|c| c.uuidandversion.as_mut().unwrap().uuid = OTHER.into()),
        ),
        (
            "userData is not base64",
            Box::new(|c| c.user_data = "%%%".into()),
        ),
        (
            "no valid lport",
            Box::new(|c| c.interfaces = vec![adapter("http", None, 80)]),
        ),
        (
            "appPort 70000",
            Box::new(|c| c.interfaces = vec![adapter("http", Some("8080"), 70000)]),
        ),
        (
            "host port 8080 is mapped twice",
            Box::new(|c| {
                c.interfaces = vec![
                    adapter("a", Some("8080"), 80),
                    adapter("b", Some("8080"), 81),
                ]
            }),
        ),
    ];
    for (words, spoil) in cases {
        let mut bad = app(APP, VmMode::Pv, &[ROOT]);
        spoil(&mut bad);
        let mut m = manager(std::slice::from_ref(&good));
        m.set_app(APP, Some(bad));
        m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
        m.reconcile(NOW);
        let e = error(&m, APP);
        assert!(e.contains(words), "{words}: {e}");
        assert_eq!(
            status(&m, APP).app_err[0].timestamp.unwrap().seconds,
            NOW as i64
        );
        assert!(!m.domains().contains_key(APP), "{words}");
        assert_eq!(state(&m, OTHER), ZSwState::Booting, "{words}");
    }
}

#[test]
fn a_bad_uuid_is_reported_under_its_key_and_a_duplicate_uuid_loses() {
    let mut bad = app("not-a-uuid", VmMode::Pv, &[ROOT]);
    bad.displayname = "bad".into();
    let mut m = manager(&[bad]);
    let upper = APP.to_ascii_uppercase();
    m.set_app(APP, Some(app(APP, VmMode::Pv, &[ROOT])));
    m.set_app(&upper, Some(app(&upper, VmMode::Pv, &[ROOT])));
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    assert!(error(&m, "not-a-uuid").contains("is not a UUID"));
    assert_eq!(status(&m, "not-a-uuid").app_name, "bad");
    // The app keyed by the canonical form holds the UUID.
    assert_eq!(state(&m, APP), ZSwState::Booting);
    assert!(error(&m, &upper).contains("already the app"));
    assert_eq!(m.domains().len(), 1);
}

fn adapter(name: &str, lport: Option<&str>, app_port: u32) -> NetworkAdapter {
    NetworkAdapter {
        name: name.into(),
        acls: vec![Ace {
            name: name.into(),
            matches: lport
                .map(|p| AceMatch {
                    r#type: "lport".into(),
                    value: p.into(),
                })
                .into_iter()
                .collect(),
            actions: vec![AceAction {
                portmap: true,
                app_port,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn user_data_is_decoded_and_port_maps_come_from_the_acls() {
    let mut config = app(APP, VmMode::Pv, &[ROOT]);
    config.user_data = "I2Nsb3VkLWNvbmZpZwo=".into();
    config.interfaces = vec![
        adapter("http", Some("8080"), 80),
        NetworkAdapter {
            acls: vec![
                Ace {
                    matches: vec![
                        AceMatch {
                            r#type: "protocol".into(),
                            value: "udp".into(),
                        },
                        AceMatch {
                            r#type: "lport".into(),
                            value: "5353".into(),
                        },
                    ],
                    actions: vec![AceAction {
                        portmap: true,
                        app_port: 53,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                Ace {
                    matches: vec![AceMatch {
                        r#type: "host".into(),
                        value: "example.com".into(),
                    }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    ];
    // A sealed block zedagent could not open: the clear userData is used.
    config.cipher_data = Some(CipherBlock {
        cipher_data: vec![1, 2, 3],
        ..Default::default()
    });
    let mut second = app(OTHER, VmMode::Pv, &[ROOT]);
    second.interfaces = vec![adapter("also", Some("8080"), 80)];
    let mut m = manager(&[config, second]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    let d = domain(&m, APP);
    assert_eq!(d.user_data, b"#cloud-config\n");
    assert_eq!(
        d.port_maps,
        [PortMap {
            host_port: 8080,
            app_port: 80
        }]
    );
    assert!(error(&m, OTHER).contains(&format!("host port 8080 is already mapped to app {APP}")));
}

#[test]
fn activate_false_halts_and_true_starts_again() {
    let mut config = app(APP, VmMode::Pv, &[ROOT]);
    let mut m = manager(&[config.clone()]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    domainmgr_reports(&mut m, APP, ZSwState::Running, NOW);
    config.activate = false;
    m.set_app(APP, Some(config.clone()));
    m.reconcile(NOW);
    assert!(!domain(&m, APP).activate);
    assert_eq!(state(&m, APP), ZSwState::Halting);
    domainmgr_reports(&mut m, APP, ZSwState::Halted, NOW);
    assert_eq!(state(&m, APP), ZSwState::Halted);
    config.activate = true;
    m.set_app(APP, Some(config));
    m.reconcile(NOW);
    assert!(domain(&m, APP).activate);
    assert_eq!(state(&m, APP), ZSwState::Booting);
    domainmgr_reports(&mut m, APP, ZSwState::Running, NOW);
    assert_eq!(state(&m, APP), ZSwState::Running);
}

#[test]
fn a_shutdown_halts_every_app_and_starts_none() {
    let mut m = manager(&[app(APP, VmMode::Pv, &[ROOT])]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    domainmgr_reports(&mut m, APP, ZSwState::Running, NOW);
    m.set_apps_shut_down(true);
    m.reconcile(NOW);
    assert!(!domain(&m, APP).activate);
    assert_eq!(state(&m, APP), ZSwState::Halting);
    domainmgr_reports(&mut m, APP, ZSwState::Halted, NOW);
    assert_eq!(state(&m, APP), ZSwState::Halted);
    // An app deployed while the apps are shut down is not started.
    const OTHER_ROOT: &str = "a0000000-0000-4000-8000-000000000003";
    m.set_volume_config(OTHER_ROOT, Some(volume(OTHER_ROOT, Some(IMAGE), 0)));
    m.set_app(OTHER, Some(app(OTHER, VmMode::Pv, &[OTHER_ROOT])));
    m.set_volume_state(OTHER_ROOT, Some(ready_volume(OTHER_ROOT, 0)));
    m.reconcile(NOW);
    assert!(!domain(&m, OTHER).activate);
    assert_eq!(state(&m, OTHER), ZSwState::Halted);
    assert!(!domain(&m, APP).activate);
    assert_eq!(state(&m, APP), ZSwState::Halted);
    // Once it no longer holds (after the node's reboot) both start.
    m.set_apps_shut_down(false);
    m.reconcile(NOW);
    assert!(domain(&m, APP).activate);
    assert!(domain(&m, OTHER).activate);
    assert_eq!(state(&m, APP), ZSwState::Booting);
    assert_eq!(state(&m, OTHER), ZSwState::Booting);
}

#[test]
fn an_app_never_activated_is_halted() {
    let mut config = app(APP, VmMode::Pv, &[ROOT]);
    config.activate = false;
    let mut m = manager(&[config]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    assert!(!domain(&m, APP).activate);
    assert_eq!(state(&m, APP), ZSwState::Halted);
}

#[test]
fn a_bumped_restart_counter_restarts_once() {
    let mut config = app(APP, VmMode::Pv, &[ROOT]);
    // A new app's counters are where it starts: no restart.
    config.restart = counter(5);
    let mut m = manager(&[config.clone()]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    assert_eq!(domain(&m, APP).restart_counter, 5);
    domainmgr_reports(&mut m, APP, ZSwState::Running, NOW);
    assert_eq!(state(&m, APP), ZSwState::Running);

    config.restart = counter(6);
    m.set_app(APP, Some(config));
    m.reconcile(NOW);
    assert_eq!(domain(&m, APP).restart_counter, 6);
    assert_eq!(state(&m, APP), ZSwState::Restarting);
    // domainmgr still on the old counter: still restarting.
    let old = DomainState {
        restart_counter: 5,
        ..domain_state(&domain(&m, APP), ZSwState::Running)
    };
    m.set_domain_state(APP, Some(old));
    m.reconcile(NOW);
    assert_eq!(state(&m, APP), ZSwState::Restarting);
    domainmgr_reports(&mut m, APP, ZSwState::Halting, NOW);
    assert_eq!(state(&m, APP), ZSwState::Restarting);
    domainmgr_reports(&mut m, APP, ZSwState::Booting, NOW);
    assert_eq!(state(&m, APP), ZSwState::Restarting);
    domainmgr_reports(&mut m, APP, ZSwState::Running, NOW);
    assert_eq!(state(&m, APP), ZSwState::Running);
    m.reconcile(NOW + 60);
    assert_eq!(domain(&m, APP).restart_counter, 6, "once");
    assert_eq!(state(&m, APP), ZSwState::Running);
}

#[test]
fn a_bumped_purge_counter_rebuilds_the_volumes_make_before_break() {
    let mut config = app(APP, VmMode::Pv, &[ROOT, DATA]);
    let mut m = manager(&[config.clone()]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.set_volume_state(DATA, Some(ready_volume(DATA, 0)));
    m.reconcile(NOW);
    domainmgr_reports(&mut m, APP, ZSwState::Running, NOW);

    // The controller bumps the purge counter and the volumes' generation.
    config.purge = counter(1);
    for r in &mut config.volume_ref_list {
        r.generation_count = 1;
    }
    m.set_app(APP, Some(config));
    m.set_volume_config(ROOT, Some(volume(ROOT, Some(IMAGE), 1)));
    m.set_volume_config(DATA, Some(volume(DATA, None, 1)));
    let building = |uuid: &str| VolumeState {
        state: ZSwState::CreatingVolume as i32,
        generation_count: 1,
        host_volume: format!("{uuid}.0"),
        ..ready_volume(uuid, 0)
    };
    m.set_volume_state(ROOT, Some(building(ROOT)));
    m.set_volume_state(DATA, Some(ready_volume(DATA, 1)));
    m.reconcile(NOW);
    // The app runs on the old disks while the new ones are prepared.
    let d = domain(&m, APP);
    assert!(d.activate);
    assert_eq!(d.purge_counter, 0);
    assert_eq!(d.disks[0].host_volume, format!("{ROOT}.0"));
    assert_eq!(d.disks[1].host_volume, format!("{DATA}.0"));
    assert_eq!(state(&m, APP), ZSwState::Purging);

    // Every new generation is ready: halt first.
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 1)));
    m.reconcile(NOW);
    let d = domain(&m, APP);
    assert!(!d.activate);
    assert_eq!(
        (d.purge_counter, d.disks[0].host_volume.as_str()),
        (0, format!("{ROOT}.0").as_str())
    );
    assert_eq!(state(&m, APP), ZSwState::Purging);
    domainmgr_reports(&mut m, APP, ZSwState::Halting, NOW);
    assert!(!domain(&m, APP).activate);

    // Halted: the new disks, the new counter, started.
    domainmgr_reports(&mut m, APP, ZSwState::Halted, NOW);
    let d = domain(&m, APP);
    assert!(d.activate);
    assert_eq!(d.purge_counter, 1);
    let disks: Vec<String> = d.disks.iter().map(|x| x.host_volume.clone()).collect();
    assert_eq!(disks, [format!("{ROOT}.1"), format!("{DATA}.1")]);
    assert_eq!(state(&m, APP), ZSwState::Purging);
    domainmgr_reports(&mut m, APP, ZSwState::Booting, NOW);
    assert_eq!(state(&m, APP), ZSwState::Purging);
    domainmgr_reports(&mut m, APP, ZSwState::Running, NOW);
    assert_eq!(state(&m, APP), ZSwState::Running);
    assert_eq!(domain(&m, APP).purge_counter, 1);
}

#[test]
fn a_purge_of_a_halted_app_swaps_without_starting_it() {
    let mut config = app(APP, VmMode::Pv, &[ROOT]);
    config.activate = false;
    let mut m = manager(&[config.clone()]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    domainmgr_reports(&mut m, APP, ZSwState::Halted, NOW);
    config.purge = counter(3);
    m.set_app(APP, Some(config));
    m.set_volume_config(ROOT, Some(volume(ROOT, Some(IMAGE), 1)));
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 1)));
    m.reconcile(NOW);
    let d = domain(&m, APP);
    assert!(!d.activate);
    assert_eq!(
        (d.purge_counter, d.disks[0].host_volume.clone()),
        (3, format!("{ROOT}.1"))
    );
    assert_eq!(state(&m, APP), ZSwState::Halted);
}

#[test]
fn a_purge_before_the_first_boot_starts_on_the_new_generation() {
    let mut config = app(APP, VmMode::Pv, &[ROOT]);
    let mut m = manager(&[config.clone()]);
    let building = |generation: i64| VolumeState {
        state: ZSwState::CreatingVolume as i32,
        generation_count: generation,
        host_volume: String::new(),
        ..ready_volume(ROOT, generation)
    };
    m.set_volume_state(ROOT, Some(building(0)));
    m.reconcile(NOW);
    assert_eq!(state(&m, APP), ZSwState::CreatingVolume);
    config.purge = counter(1);
    m.set_app(APP, Some(config));
    m.set_volume_config(ROOT, Some(volume(ROOT, Some(IMAGE), 1)));
    m.set_volume_state(ROOT, Some(building(1)));
    m.reconcile(NOW);
    assert_eq!(state(&m, APP), ZSwState::Purging);
    assert!(m.domains().is_empty());
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 1)));
    m.reconcile(NOW);
    let d = domain(&m, APP);
    assert!(d.activate);
    assert_eq!(
        (d.purge_counter, d.disks[0].host_volume.clone()),
        (1, format!("{ROOT}.1"))
    );
    assert_eq!(state(&m, APP), ZSwState::Purging);
    domainmgr_reports(&mut m, APP, ZSwState::Running, NOW);
    assert_eq!(state(&m, APP), ZSwState::Running);
}

#[test]
fn a_fixed_config_starts_afresh() {
    let mut config = app(APP, VmMode::Pv, &[ROOT]);
    config.restart = counter(2);
    let mut m = manager(&[config.clone()]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    domainmgr_reports(&mut m, APP, ZSwState::Running, NOW);
    let mut broken = config.clone();
    broken.fixedresources.as_mut().unwrap().vcpus = 0;
    m.set_app(APP, Some(broken));
    m.reconcile(NOW);
    assert!(m.domains().is_empty());
    m.set_domain_state(APP, None);
    config.restart = counter(3);
    m.set_app(APP, Some(config));
    m.reconcile(NOW);
    let d = domain(&m, APP);
    assert_eq!(d.restart_counter, 3);
    assert_eq!(
        state(&m, APP),
        ZSwState::Booting,
        "a new domain, not a restart"
    );
}

#[test]
fn a_failed_new_generation_is_an_error_while_the_app_runs_on() {
    let mut config = app(APP, VmMode::Pv, &[ROOT]);
    let mut m = manager(&[config.clone()]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    domainmgr_reports(&mut m, APP, ZSwState::Running, NOW);
    config.purge = counter(1);
    m.set_app(APP, Some(config));
    m.set_volume_state(
        ROOT,
        Some(VolumeState {
            state: ZSwState::Error as i32,
            error: "building the volume failed: no space".into(),
            error_unix: NOW + 3,
            generation_count: 1,
            ..ready_volume(ROOT, 0)
        }),
    );
    m.reconcile(NOW + 10);
    assert!(error(&m, APP).contains("no space"));
    assert_eq!(
        status(&m, APP).app_err[0].timestamp.unwrap().seconds,
        (NOW + 3) as i64
    );
    let d = domain(&m, APP);
    assert!(d.activate);
    assert_eq!(d.disks[0].host_volume, format!("{ROOT}.0"));
}

#[test]
fn a_domain_error_is_the_apps_and_its_time_stays_while_the_text_does() {
    let mut m = manager(&[app(APP, VmMode::Pv, &[ROOT])]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    let crashed = DomainState {
        error: "the guest crashed: triple fault".into(),
        ..domain_state(&domain(&m, APP), ZSwState::Error)
    };
    m.set_domain_state(APP, Some(crashed.clone()));
    m.reconcile(NOW + 1);
    assert!(error(&m, APP).contains("triple fault"));
    assert_eq!(
        status(&m, APP).app_err[0].timestamp.unwrap().seconds,
        (NOW + 1) as i64
    );
    m.reconcile(NOW + 30);
    assert_eq!(
        status(&m, APP).app_err[0].timestamp.unwrap().seconds,
        (NOW + 1) as i64
    );
    let refused = DomainState {
        error: "needs 64 MiB, 10 MiB free".into(),
        ..crashed
    };
    m.set_domain_state(APP, Some(refused));
    m.reconcile(NOW + 40);
    assert_eq!(
        status(&m, APP).app_err[0].timestamp.unwrap().seconds,
        (NOW + 40) as i64
    );
    assert!(
        domain(&m, APP).activate,
        "domainmgr retries; the domain stays wanted"
    );
}

#[test]
fn a_crash_the_host_retried_is_reported_while_the_app_runs_again() {
    let mut m = manager(&[app(APP, VmMode::Pv, &[ROOT])]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    let running = domain_state(&domain(&m, APP), ZSwState::Running);
    m.set_domain_state(APP, Some(running.clone()));
    m.reconcile(NOW + 1);
    assert!(status(&m, APP).app_err.is_empty());
    let retried = DomainState {
        error: "crashed: panic in hello-http".into(),
        error_unix: NOW + 5,
        ..running
    };
    m.set_domain_state(APP, Some(retried));
    m.reconcile(NOW + 10);
    let info = status(&m, APP);
    assert_eq!(info.state, ZSwState::Running as i32);
    assert_eq!(info.app_err.len(), 1);
    assert!(info.app_err[0].description.contains("panic in hello-http"));
    assert_eq!(info.app_err[0].timestamp.unwrap().seconds, (NOW + 5) as i64);
}

#[test]
fn a_removed_app_loses_its_domain_and_its_report() {
    let mut m = manager(&[
        app(APP, VmMode::Pv, &[ROOT]),
        app(OTHER, VmMode::Pv, &[ROOT]),
    ]);
    m.set_volume_state(ROOT, Some(ready_volume(ROOT, 0)));
    m.reconcile(NOW);
    assert_eq!(m.domains().len(), 2);
    m.set_app(APP, None);
    m.reconcile(NOW);
    assert!(!m.domains().contains_key(APP));
    assert!(!m.statuses().contains_key(APP));
    assert!(m.domains().contains_key(OTHER));
}

#[test]
fn a_restarted_zedmanager_takes_up_the_domains_counters_and_disks() {
    let mut config = app(APP, VmMode::Pv, &[ROOT]);
    config.restart = counter(4);
    config.purge = counter(2);
    let mut m = Manager::new();
    m.set_tree_config(IMAGE, Some(tree(IMAGE, Format::Raw)));
    m.set_volume_config(ROOT, Some(volume(ROOT, Some(IMAGE), 1)));
    m.set_app(APP, Some(config));
    assert!(!m.ready());
    m.apps_synchronized();
    m.volumes_synchronized();
    assert!(!m.ready());
    m.trees_synchronized();
    m.instances_synchronized();
    assert!(m.ready());
    // The domain already runs under counters 4 and 1 on generation 0,
    // while volumemgr builds generation 1: a purge was under way.
    m.set_domain_state(
        APP,
        Some(DomainState {
            uuid: APP.into(),
            state: ZSwState::Running as i32,
            restart_counter: 4,
            purge_counter: 1,
            disks: vec![format!("{ROOT}.0")],
            ..Default::default()
        }),
    );
    m.set_volume_state(
        ROOT,
        Some(VolumeState {
            state: ZSwState::CreatingVolume as i32,
            generation_count: 1,
            ..ready_volume(ROOT, 0)
        }),
    );
    m.reconcile(NOW);
    let d = domain(&m, APP);
    assert_eq!((d.restart_counter, d.purge_counter), (4, 1));
    assert_eq!(d.disks[0].host_volume, format!("{ROOT}.0"));
    assert!(d.activate);
    assert_eq!(state(&m, APP), ZSwState::Purging);
}

/// A tiny deterministic generator for the garbage test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbage_configs_and_reports_never_panic() {
    use prost::Message;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seed = app(APP, VmMode::Pv, &[ROOT, DATA]).encode_to_vec();
    let mut m = manager(&[]);
    for round in 0..3000u64 {
        let mut bytes = seed.clone();
        for _ in 0..(rng.next() % 6) {
            let at = (rng.next() as usize) % bytes.len();
            bytes[at] = rng.next() as u8;
        }
        let key = if round % 2 == 0 { APP } else { OTHER };
        if let Ok(config) = AppInstanceConfig::decode(bytes.as_slice()) {
            m.set_app(key, Some(config));
        }
        let vstate = VolumeState {
            uuid: ROOT.into(),
            state: (rng.next() % 40) as i32 - 5,
            generation_count: (rng.next() % 3) as i64 - 1,
            host_volume: ["", "x", &format!("{ROOT}.0")][(rng.next() % 3) as usize].into(),
            ..Default::default()
        };
        m.set_volume_state(ROOT, Some(vstate));
        let dstate = DomainState {
            uuid: [APP, OTHER, ""][(rng.next() % 3) as usize].into(),
            state: (rng.next() % 40) as i32 - 5,
            restart_counter: (rng.next() % 3) as u32,
            purge_counter: (rng.next() % 3) as u32,
            disks: vec!["no-dot".into(), String::new()],
            boot_unix: rng.next(),
            error_unix: rng.next(),
            ..Default::default()
        };
        m.set_domain_state(key, Some(dstate));
        m.reconcile(rng.next());
        assert!(m.statuses().len() <= 2);
    }
}
