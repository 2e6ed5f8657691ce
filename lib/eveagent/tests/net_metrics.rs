//! zedrouter's counters against our real controller on loopback: each
//! network instance's `ZMetricNetworkInstance` reaches the controller in
//! `ZMetricMsg.nm`, each running app's interfaces' counters in its
//! `appMetric.network`, and withdrawn items leave the next message.

use eve_proto::Message;
use eve_proto::metrics::{AppMetric, NetworkMetric, ZMetricMsg, ZMetricNetworkInstance};
use topics::NetworkMetrics;
use topics::netmetrics::NetworkCounters;

mod common;

use common::*;

const WEB: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const IDLE: &str = "6ba7b812-9dad-11d1-80b4-00c04fd430c8";
const MANY: &str = "6ba7b813-9dad-11d1-80b4-00c04fd430c8";
const STOPPED: &str = "6ba7b814-9dad-11d1-80b4-00c04fd430c8";
const NI: &str = "0b4c7e1a-3f7e-4d1c-8a2b-9c8d7e6f5a4b";

fn interface(name: &str, vif: &str, sent: u64) -> NetworkMetric {
    NetworkMetric {
        i_name: name.into(),
        local_name: vif.into(),
        tx_bytes: sent,
        tx_pkts: sent / 100,
        rx_bytes: 2 * sent,
        rx_acl_drops: 1,
        ..Default::default()
    }
}

fn instance(received: u64) -> ZMetricNetworkInstance {
    ZMetricNetworkInstance {
        network_id: NI.into(),
        displayname: "lan".into(),
        activated: true,
        network: vec![NetworkMetric {
            i_name: "bn1".into(),
            local_name: "bn1".into(),
            rx_bytes: received,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn network_metrics_reach_the_controller_with_the_apps_and_go_when_withdrawn() {
    let ctl = start_controller("net-metrics");
    let onboard = onboarding_identity(23);
    ctl.ctl
        .onboard_add(&onboard.0, &["SN-NETM".into()])
        .expect("pre-register");
    let mut node = Node::new(&ctl, "SN-NETM", 43, onboard);
    let mut agent = node.boot();
    let mut http = ctl.http();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    for app in [WEB, IDLE, MANY] {
        agent.set_app_metrics(
            app,
            Some(AppMetric {
                app_name: app[..8].into(),
                ..Default::default()
            }),
        );
    }
    agent.set_network_metrics(
        &NetworkMetrics::instance_key(NI),
        Some(NetworkCounters::instance(instance(4200))),
    );
    let web = vec![
        interface("eth0", "nbu1x1", 4200),
        interface("eth1", "nbu2x2", 300),
    ];
    agent.set_network_metrics(
        &NetworkMetrics::app_key(WEB),
        Some(NetworkCounters::app(web.clone())),
    );
    // Over the bound: the interfaces beyond it are not kept.
    let many: Vec<NetworkMetric> = (0..=NetworkMetrics::MAX_INTERFACES)
        .map(|n| interface("eth0", &format!("nbu{n}x1"), 1))
        .collect();
    agent.set_network_metrics(
        &NetworkMetrics::app_key(MANY),
        Some(NetworkCounters::app(many.clone())),
    );
    agent.set_network_metrics(
        &NetworkMetrics::app_key(STOPPED),
        Some(NetworkCounters::app(web.clone())),
    );
    node.run_until_time(&mut agent, &mut http, node.now() + 61_000);
    let newest = |ctl: &Ctl| {
        let m = ctl.ctl.store().metrics(&uuid, 1).unwrap();
        ZMetricMsg::decode(m[0].msg.as_slice()).unwrap()
    };
    let m = newest(&ctl);
    assert_eq!(m.nm, vec![instance(4200)]);
    let app = |m: &ZMetricMsg, id: &str| m.am.iter().find(|a| a.app_id == id).cloned().unwrap();
    assert_eq!(app(&m, WEB).network, web);
    assert_eq!(app(&m, WEB).app_name, "6ba7b810");
    // An app on no network instance has no network metrics; counters of
    // an app that does not run are not sent.
    assert!(app(&m, IDLE).network.is_empty());
    assert_eq!(
        app(&m, MANY).network,
        many[..NetworkMetrics::MAX_INTERFACES].to_vec()
    );
    assert_eq!(m.am.len(), 3);
    assert!(!m.am.iter().any(|a| a.app_id == STOPPED));

    // New counters replace the old; withdrawn ones are gone.
    agent.set_network_metrics(
        &NetworkMetrics::instance_key(NI),
        Some(NetworkCounters::instance(instance(9000))),
    );
    agent.set_network_metrics(&NetworkMetrics::app_key(WEB), None);
    node.run_until_time(&mut agent, &mut http, node.now() + 61_000);
    let m = newest(&ctl);
    assert_eq!(m.nm, vec![instance(9000)]);
    assert!(app(&m, WEB).network.is_empty());
    agent.set_network_metrics(&NetworkMetrics::instance_key(NI), None);
    node.run_until_time(&mut agent, &mut http, node.now() + 61_000);
    assert!(newest(&ctl).nm.is_empty());
}
