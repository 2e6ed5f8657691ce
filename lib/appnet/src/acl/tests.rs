use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use eve_proto::config::{AceAction, AceMatch};

use super::*;

fn ace(id: i32, matches: &[(&str, &str)], actions: Vec<AceAction>) -> Ace {
    Ace {
        matches: matches
            .iter()
            .map(|(t, v)| AceMatch {
                r#type: t.to_string(),
                value: v.to_string(),
            })
            .collect(),
        actions,
        name: String::new(),
        id,
        dir: 0,
    }
}

fn one(a: Ace) -> Result<Option<Rule>, AclError> {
    compile_one(&a, false)
}

fn limit(rate: u32, unit: &str, burst: u32) -> AceAction {
    AceAction {
        limit: true,
        limitrate: rate,
        limitunit: unit.to_string(),
        limitburst: burst,
        ..Default::default()
    }
}

#[test]
fn actions_follow_eves_rules() {
    let allow = one(ace(1, &[("ip", "192.0.2.0/24")], vec![]))
        .unwrap()
        .unwrap();
    assert_eq!(allow.action, Action::Allow);
    assert_eq!(
        allow.remote,
        Some(Remote::Net(Ipv4Cidr::new(Ipv4Addr::new(192, 0, 2, 0), 24)))
    );
    let two = vec![AceAction::default(), AceAction::default()];
    assert_eq!(one(ace(1, &[], two)), Err(AclError::MultipleActions));
    let both = AceAction {
        drop: true,
        portmap: true,
        app_port: 80,
        ..Default::default()
    };
    assert_eq!(
        one(ace(1, &[], vec![both])),
        Err(AclError::ConflictingActions)
    );
    let map = AceAction {
        portmap: true,
        app_port: 80,
        ..Default::default()
    };
    assert_eq!(
        one(ace(1, &[("protocol", "tcp")], vec![map.clone()])),
        Err(AclError::PortMapWithoutLport)
    );
    assert_eq!(
        one(ace(1, &[("lport", "8080")], vec![map.clone()])),
        Err(AclError::PortWithoutProtocol)
    );
    let no_target = AceAction {
        portmap: true,
        ..Default::default()
    };
    assert_eq!(
        one(ace(
            1,
            &[("protocol", "tcp"), ("lport", "8080")],
            vec![no_target]
        )),
        Err(AclError::PortMapWithoutTarget)
    );
    let mapped = one(ace(1, &[("protocol", "tcp"), ("lport", "8080")], vec![map]))
        .unwrap()
        .unwrap();
    assert_eq!(mapped.action, Action::PortMap { app_port: 80 });
}

#[test]
fn matches_follow_eves_rules() {
    assert_eq!(
        one(ace(1, &[("fport", "80")], vec![])),
        Err(AclError::PortWithoutProtocol)
    );
    assert_eq!(
        one(ace(1, &[("protocol", "icmp"), ("fport", "80")], vec![])),
        Err(AclError::PortWithoutProtocol)
    );
    assert_eq!(
        one(ace(1, &[("eidset", "")], vec![])),
        Err(AclError::UnsupportedMatch)
    );
    assert_eq!(
        one(ace(1, &[("colour", "red")], vec![])),
        Err(AclError::UnsupportedMatch)
    );
    assert_eq!(
        one(ace(1, &[("protocol", "sctp")], vec![])),
        Err(AclError::BadProtocol)
    );
    assert_eq!(
        one(ace(1, &[("protocol", "132")], vec![]))
            .unwrap()
            .unwrap()
            .proto,
        Some(132)
    );
    assert_eq!(
        one(ace(1, &[("ip", "10.0.0.300")], vec![])),
        Err(AclError::BadAddress)
    );
    // An IPv6 rule is for the other IP version: skipped, no error.
    assert_eq!(one(ace(1, &[("ip", "2001:db8::/32")], vec![])), Ok(None));
    // A host given as an address is an ip match.
    let host_ip = one(ace(1, &[("host", "192.0.2.7")], vec![]))
        .unwrap()
        .unwrap();
    assert_eq!(
        host_ip.remote,
        Some(Remote::Net(Ipv4Cidr::new(Ipv4Addr::new(192, 0, 2, 7), 32)))
    );
    let host = one(ace(1, &[("host", "Example.ORG.")], vec![]))
        .unwrap()
        .unwrap();
    assert_eq!(host.remote, Some(Remote::Host("example.org".into())));
    assert_eq!(
        compile_one(&ace(1, &[("host", "example.org")], vec![]), true),
        Err(AclError::HostOnSwitch)
    );
    assert_eq!(
        one(ace(1, &[("host", "bad name!")], vec![])),
        Err(AclError::BadHostName)
    );
    let range = one(ace(
        1,
        &[("protocol", "udp"), ("lport", "1000:2000")],
        vec![],
    ))
    .unwrap()
    .unwrap();
    assert_eq!(
        range.lport,
        Some(Ports {
            first: 1000,
            last: 2000
        })
    );
    assert_eq!(
        one(ace(
            1,
            &[("protocol", "udp"), ("lport", "2000:1000")],
            vec![]
        )),
        Err(AclError::BadPort)
    );
    // iptables' open ends: `:M` from 0, `N:` to 65535; `:` is every port.
    let port_of = |value: &str| {
        one(ace(1, &[("protocol", "tcp"), ("fport", value)], vec![]))
            .map(|rule| rule.and_then(|r| r.fport).map(|p| (p.first, p.last)))
    };
    assert_eq!(port_of(":1024"), Ok(Some((0, 1024))));
    assert_eq!(port_of("8000:"), Ok(Some((8000, 65535))));
    assert_eq!(port_of(":"), Ok(Some((0, 65535))));
    // EVE matches no port when the value is empty.
    assert_eq!(port_of(""), Ok(None));
    for bad in ["http", "1-2", "65536", "1:2:3", " "] {
        assert_eq!(port_of(bad), Err(AclError::BadPort), "{bad:?}");
    }
}

#[test]
fn limits_take_iptables_defaults_and_units() {
    let spec = |a: AceAction| match one(ace(1, &[], vec![a])).unwrap().unwrap().action {
        Action::Limit(spec) => spec,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        spec(limit(4, "s", 4)),
        LimitSpec {
            interval_ns: 250_000_000,
            burst: 4
        }
    );
    assert_eq!(spec(limit(60, "minute", 0)).interval_ns, 1_000_000_000);
    assert_eq!(spec(limit(60, "minute", 0)).burst, 5);
    assert_eq!(spec(limit(2, "h", 1)).interval_ns, 1_800_000_000_000);
    assert_eq!(spec(limit(1, "day", 1)).interval_ns, 86_400_000_000_000);
    assert_eq!(spec(limit(10, "S", 1)).interval_ns, 100_000_000);
    assert_eq!(spec(limit(10, "Sec", 1)).interval_ns, 100_000_000);
    assert_eq!(spec(limit(10, "m", 1)).interval_ns, 6_000_000_000);
    assert_eq!(spec(limit(10, "d", 1)).interval_ns, 8_640_000_000_000);
    // iptables' fastest: 10000 a second (so 600000 a minute).
    assert_eq!(spec(limit(10_000, "s", 1)).interval_ns, 100_000);
    assert_eq!(spec(limit(600_000, "minute", 1)).interval_ns, 100_000);
    assert_eq!(spec(limit(5, "s", 10_000)).burst, 10_000);
    for refused in [
        limit(10_001, "s", 1),
        limit(600_001, "m", 1),
        limit(5, "s", 10_001),
    ] {
        assert_eq!(one(ace(1, &[], vec![refused])), Err(AclError::BadLimit));
    }
    // EVE writes `RATE/UNIT`: iptables refuses an empty unit, a second
    // `/`, spaces, and anything not a prefix of a unit.
    for unit in ["", "/s", " s", "s ", "secs", "x"] {
        assert_eq!(
            one(ace(1, &[], vec![limit(10, unit, 1)])),
            Err(AclError::BadLimitUnit),
            "{unit:?}"
        );
    }
    // No rate: iptables' 3 an hour.
    // No rate: the unit is not handed to iptables at all.
    assert_eq!(
        spec(limit(0, "fortnight", 0)).interval_ns,
        1_200_000_000_000
    );
    assert_eq!(
        spec(limit(0, "", 0)),
        LimitSpec {
            interval_ns: 1_200_000_000_000,
            burst: 5
        }
    );
    assert_eq!(
        one(ace(1, &[], vec![limit(1, "fortnight", 1)])),
        Err(AclError::BadLimitUnit)
    );
}

#[test]
fn compile_keeps_the_good_rules_and_reports_the_bad() {
    let aces = vec![
        ace(1, &[("ip", "10.0.0.0/8")], vec![]),
        ace(2, &[("fport", "80")], vec![]),
        ace(3, &[("ip", "2001:db8::1")], vec![]),
        ace(4, &[("protocol", "tcp")], vec![]),
    ];
    let (rules, errors) = compile(&aces, false);
    assert_eq!(rules.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 4]);
    assert_eq!(
        errors,
        vec![RuleError {
            rule_id: 2,
            error: AclError::PortWithoutProtocol
        }]
    );
}

fn view(
    inbound: bool,
    proto: u8,
    local_port: u16,
    remote: [u8; 4],
    remote_port: u16,
) -> FlowView<'static> {
    FlowView {
        inbound,
        proto,
        local_port,
        remote: Ipv4Addr::from(remote),
        remote_port,
        uplink_label: Some("eth0"),
    }
}

#[test]
fn the_first_matching_rule_decides() {
    let aces = vec![
        ace(
            10,
            &[("ip", "192.0.2.66")],
            vec![AceAction {
                drop: true,
                ..Default::default()
            }],
        ),
        ace(
            11,
            &[
                ("ip", "192.0.2.0/24"),
                ("protocol", "tcp"),
                ("fport", "443"),
            ],
            vec![],
        ),
        ace(12, &[("protocol", "udp"), ("lport", "5000")], vec![]),
        ace(13, &[("adapter", "eth1")], vec![]),
    ];
    let (rules, _) = compile(&aces, false);
    let hosts = HostSets::default();
    let decide_id = |v: FlowView<'_>| match decide(&rules, &v, &hosts) {
        Decision::Rule(i) => rules[i].id,
        Decision::DefaultDrop => 0,
    };
    assert_eq!(
        decide_id(view(false, PROTO_TCP, 40000, [192, 0, 2, 66], 443)),
        10
    );
    assert_eq!(
        decide_id(view(false, PROTO_TCP, 40000, [192, 0, 2, 5], 443)),
        11
    );
    assert_eq!(
        decide_id(view(false, PROTO_TCP, 40000, [192, 0, 2, 5], 80)),
        0
    );
    assert_eq!(
        decide_id(view(true, PROTO_UDP, 5000, [203, 0, 113, 1], 9)),
        12
    );
    assert_eq!(
        decide_id(view(true, PROTO_UDP, 5001, [203, 0, 113, 1], 9)),
        0
    );
    // `adapter` matches the device port's label only.
    assert_eq!(
        decide_id(view(false, PROTO_ICMP, 0, [203, 0, 113, 1], 0)),
        0
    );
    let mut via_eth1 = view(false, PROTO_ICMP, 0, [203, 0, 113, 1], 0);
    via_eth1.uplink_label = Some("eth1");
    assert_eq!(decide_id(via_eth1), 13);
}

#[test]
fn directions_and_port_maps() {
    let mut egress_only = ace(1, &[("protocol", "tcp")], vec![]);
    egress_only.dir = AceDirection::Egress as i32;
    let mut ingress_only = ace(2, &[("protocol", "udp")], vec![]);
    ingress_only.dir = AceDirection::Ingress as i32;
    let map = ace(
        3,
        &[("protocol", "tcp"), ("lport", "8080")],
        vec![AceAction {
            portmap: true,
            app_port: 80,
            ..Default::default()
        }],
    );
    let (rules, _) = compile(&[egress_only, ingress_only, map], false);
    let hosts = HostSets::default();
    let id = |v: FlowView<'_>| match decide(&rules, &v, &hosts) {
        Decision::Rule(i) => rules[i].id,
        Decision::DefaultDrop => 0,
    };
    assert_eq!(id(view(false, PROTO_TCP, 1, [1, 1, 1, 1], 2)), 1);
    assert_eq!(id(view(false, PROTO_UDP, 1, [1, 1, 1, 1], 2)), 0);
    assert_eq!(id(view(true, PROTO_UDP, 1, [1, 1, 1, 1], 2)), 2);
    // The port map admits connections into the app's port 80, and only those.
    assert_eq!(id(view(true, PROTO_TCP, 80, [1, 1, 1, 1], 3333)), 3);
    assert_eq!(id(view(true, PROTO_TCP, 8080, [1, 1, 1, 1], 3333)), 0);
}

#[test]
fn host_rules_match_addresses_learned_for_the_name() {
    let (rules, _) = compile(&[ace(5, &[("host", "example.org")], vec![])], false);
    let mut hosts = HostSets::new(8);
    hosts.set_patterns(["example.org".to_string()].into_iter().collect());
    let flow = view(false, PROTO_TCP, 1, [198, 51, 100, 7], 443);
    assert_eq!(decide(&rules, &flow, &hosts), Decision::DefaultDrop);
    hosts.learn(
        &["www.example.org".to_string()],
        &[Ipv4Addr::new(198, 51, 100, 7)],
        smoltcp::time::Instant::from_secs(1),
    );
    assert_eq!(decide(&rules, &flow, &hosts), Decision::Rule(0));
}
