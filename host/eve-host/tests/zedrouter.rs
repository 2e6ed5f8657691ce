//! zedrouter in QEMU with the host's `ports` target and three `nettest`
//! VMs as apps. The broker and the ports target are set up from
//! a manifest as `eve-host run` does; the zedrouter VM runs with the
//! command line the host builds (its trunk NIC on the switch's socket); a
//! fake zedagent/zedmanager on the bus publishes one local network
//! instance and the apps' interfaces. zedrouter attaches the apps' ports
//! at the host, the apps get their leases from it, A serves TCP 7, B (its
//! ACL allows it) echoes 64 KiB through A, C (no rule) is refused, and
//! zedrouter publishes the instance's status with the three leases and
//! its counters of that traffic in `network-metrics`. Then the apps go
//! (their counters are withdrawn), and their flows are in the flow log (B's allowed by its
//! rule, C's dropped by the implicit one); zedrouter is restarted with C
//! alone, and C keeps its address: the engine's state came back from
//! zedrouter's state volume.

#[allow(dead_code)] // each scenario uses part of the rig
mod common;

use std::time::Duration;

use common::rig::{PATIENCE, Rig, Setup, ace, app, app_uuid, local_instance, mac};
use eve_proto::flowlog::AclAction;
use harness::Machine;
use topics::{AppNetworkStatus, NetworkInstanceStatus, NetworkMetrics, Topic};

const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b";

#[test]
fn on_x86_64_apps_get_leases_reach_each_other_as_acls_allow_and_keep_addresses_across_a_restart() {
    apps_through_zedrouter(Machine::Microvm);
}

#[test]
fn on_aarch64_apps_get_leases_reach_each_other_as_acls_allow_and_keep_addresses_across_a_restart() {
    apps_through_zedrouter(Machine::Virt);
}

fn apps_through_zedrouter(machine: Machine) {
    let arch = machine.arch();
    let apps = [1, 2, 3].map(app_uuid);
    // A accepts TCP 7 from the subnet; B may open TCP 7 in it; C has no
    // rule.
    let rig = Rig::start(
        machine,
        Setup {
            instances: vec![local_instance(NI, "10.1.0.0/24", &[])],
            apps: vec![
                app(
                    1,
                    NI,
                    vec![ace(
                        1,
                        &[("ip", "10.1.0.0/24"), ("protocol", "tcp"), ("lport", "7")],
                    )],
                ),
                app(
                    2,
                    NI,
                    vec![ace(
                        2,
                        &[("ip", "10.1.0.0/24"), ("protocol", "tcp"), ("fport", "7")],
                    )],
                ),
                app(3, NI, vec![]),
            ],
            ..Default::default()
        },
    );
    let router = rig.start_router();

    rig.until("zedrouter attached three ports", &router, || {
        rig.list().ports.len() == 3
    });
    let a = rig.app_vm(&app(1, NI, vec![]), "echo-on=7");
    assert!(
        a.wait_for("nettest: listening on 7", PATIENCE),
        "A never listened:\n{}\nzedrouter:\n{}",
        a.console(),
        router.console()
    );
    let c = rig.app_vm(&app(3, NI, vec![]), "echo-to=10.1.0.2:7 echo-bytes=1024");
    let b = rig.app_vm(&app(2, NI, vec![]), "echo-to=10.1.0.2:7 echo-bytes=65536");
    let b_console = b.finish(PATIENCE);
    let a_console = a.finish(Duration::from_secs(30));
    let c_console = c.finish(Duration::from_secs(60));

    let status = || rig.published::<NetworkInstanceStatus>(NI);
    rig.until("the instance's status lists three leases", &router, || {
        status().is_some_and(|s| s.ip_assignments.len() == 3)
    });
    let info = status().unwrap();
    let ports_then = rig.list();
    // Each app's interface as zedmanager reports it (ZInfoApp.network):
    // its MAC and the address zedrouter gave it.
    let networks = rig.broker.table(AppNetworkStatus::NAME);
    for (n, app) in apps.iter().enumerate() {
        let state = networks
            .get(app.as_str())
            .and_then(|v| topics::decode::<AppNetworkStatus>(v).ok())
            .unwrap_or_else(|| panic!("{arch}: no app-network-status of {app}: {networks:?}"));
        assert_eq!(state.networks.len(), 1, "{state:?}");
        let nic = &state.networks[0];
        assert_eq!(nic.mac_addr, mac(n + 1), "{state:?}");
        assert_eq!(nic.dev_name, "eth0", "{state:?}");
        assert!(
            nic.ip_addrs.len() == 1 && nic.ip_addrs[0].starts_with("10.1.0."),
            "{state:?}"
        );
    }

    // zedrouter's counters, at its metrics period: each app's interface
    // from the app's side (B sent its 64 KiB to A; C's packets to A were
    // dropped by C's implicit rule), and the instance's totals.
    let counted = |n: usize| {
        rig.published::<NetworkMetrics>(&NetworkMetrics::app_key(&apps[n]))
            .and_then(|c| c.app_interfaces().first().cloned())
            .unwrap_or_default()
    };
    rig.until("the apps' counters in network-metrics", &router, || {
        counted(1).tx_bytes >= 65_536
            && counted(0).rx_bytes >= 65_536
            && counted(2).tx_acl_drops > 0
            && rig
                .published::<NetworkMetrics>(&NetworkMetrics::instance_key(NI))
                .and_then(|c| c.as_instance()?.network_stats?.rx)
                .is_some_and(|rx| rx.total_bytes >= 65_536)
    });
    let b_counted = counted(1);
    assert_eq!(
        (
            b_counted.i_name.as_str(),
            b_counted.local_name.starts_with("nbu")
        ),
        ("eth0", true),
        "{b_counted:?}"
    );

    // The apps go: their flows end and are logged, B's allowed by its
    // rule, C's dropped by the implicit rule (ACE 0).
    for app in &apps {
        rig.change(app, None);
    }
    rig.until("zedrouter detached every port", &router, || {
        rig.list().ports.is_empty()
    });
    rig.until("the apps' interfaces withdrawn", &router, || {
        rig.broker.table(AppNetworkStatus::NAME).is_empty()
    });
    rig.until("the apps' counters withdrawn", &router, || {
        !rig.broker
            .table(NetworkMetrics::NAME)
            .keys()
            .any(|k| k.starts_with("app/"))
    });
    let logged = |app: &str| -> Vec<(i32, i32)> {
        rig.flows(app)
            .into_iter()
            .filter(|f| {
                f.flow
                    .as_ref()
                    .is_some_and(|f| f.dest_port == 7 || f.src_port == 7)
            })
            .map(|f| (f.acl_id, f.action))
            .collect()
    };
    let accept = AclAction::ActionAccept as i32;
    let dropped = AclAction::ActionDrop as i32;
    rig.until("the flows are in the flow log", &router, || {
        logged(&apps[1]).contains(&(2, accept)) && logged(&apps[2]).contains(&(0, dropped))
    });

    // A restarted zedrouter gives C its old address from its saved state,
    // though C is then the only app: a fresh one would give it the first.
    let router_console = router.finish(Duration::ZERO);
    rig.change(&apps[2], Some(app(3, NI, vec![])));
    let router = rig.start_router();
    // The new run attaches C under the first tag, so its VIF is
    // `nbu1x1` (it was `nbu3x1`): the status is the new run's.
    rig.until(
        "the restarted zedrouter restored C's address",
        &router,
        || {
            status().is_some_and(|s| {
                s.vifs.len() == 1
                    && s.vifs[0].vif_name == "nbu1x1"
                    && s.vifs[0].mac_address == mac(3)
                    && s.ip_assignments.len() == 1
                    && s.ip_assignments[0].mac_address == mac(3)
                    && s.ip_assignments[0].ip_address == ["10.1.0.4"]
            })
        },
    );
    assert!(
        router.console().contains("saved state restored"),
        "{}",
        router.console()
    );
    assert_eq!(rig.list().ports.len(), 1);
    drop(router);
    let list = ports_then;

    assert!(
        b_console.contains("PASS tcp-client"),
        "B:\n{b_console}\nzedrouter:\n{router_console}"
    );
    assert!(b_console.contains("PASS address"), "B:\n{b_console}");
    assert!(a_console.contains("PASS tcp-server"), "A:\n{a_console}");
    assert!(a_console.contains("10.1.0."), "A's lease:\n{a_console}");
    assert!(
        c_console.contains("PASS address"),
        "C got its lease:\n{c_console}"
    );
    assert!(
        c_console.contains("FAIL tcp-client"),
        "C was refused:\n{c_console}"
    );
    assert!(info.activated, "{info:?}");
    let mut leased: Vec<(String, Vec<String>)> = info
        .ip_assignments
        .iter()
        .map(|e| (e.mac_address.clone(), e.ip_address.clone()))
        .collect();
    leased.sort();
    assert_eq!(leased.len(), 3, "{info:?}");
    for (n, (mac_address, ips)) in leased.iter().enumerate() {
        assert_eq!(*mac_address, mac(n + 1));
        assert!(ips.iter().all(|ip| ip.starts_with("10.1.0.")), "{info:?}");
    }
    for port in &list.ports {
        let counters = port.counters.unwrap();
        assert!(counters.to_trunk > 0 && counters.from_trunk > 0, "{port:?}");
    }
    assert!(list.trunk.unwrap().connected);
}
