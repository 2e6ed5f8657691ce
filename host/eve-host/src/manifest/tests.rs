use super::*;

const DEFAULT: &str = include_str!("../../../../nodes/default.toml");

fn problems(text: &str) -> Vec<String> {
    match Manifest::parse(text) {
        Err(ManifestError::Invalid(problems)) => problems.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected semantic problems, got {other:?}"),
    }
}

fn syntax(text: &str) -> String {
    match Manifest::parse(text) {
        Err(e @ ManifestError::Syntax { .. }) => e.to_string(),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

const ONE: &str = r#"[node]
name = "n"
arch = "x86_64"

[[service]]
name = "a"
image = "selftest"
ram_mib = 32
"#;

#[test]
fn the_default_node_is_valid() {
    let m = Manifest::parse(DEFAULT).expect("default manifest");
    assert_eq!(m.node.name, "default");
    assert_eq!(m.node.arch, Arch::X86_64);
    let zedagent = m.service("zedagent").expect("zedagent");
    assert_eq!(zedagent.devices.state_mib, Some(8));
    assert!(zedagent.devices.config && zedagent.devices.net.is_some());
    assert_eq!(zedagent.bus.call["tpm"].len(), 8);
    assert_eq!(zedagent.bus.publish[..2], ["edge-config", "onboard-status"]);
    assert_eq!(
        zedagent.bus.subscribe[..3],
        ["diag-report", "@log", "@device-facts"]
    );
    let diag = m.service("diag").expect("diag");
    assert_eq!(diag.devices.state_mib, None);
    assert!(m.service("zedrouter").expect("zedrouter").devices.trunk);
    assert!(diag.bus.call.is_empty());
    assert!(m.to_string().contains("zedagent: image zedagent, 64 MiB"));
    assert!(
        m.to_string()
            .contains("calls: power [boot-reason], tpm [create-device-key, sign, read-pcrs, quote, read-ek-cert, create-ecdh-key, ecdh, create-attestation-key]")
    );
    let nodeagent = m.service("nodeagent").expect("nodeagent");
    assert_eq!(nodeagent.bus.call["power"], ["reboot"]);
    assert_eq!(nodeagent.bus.call["partitions"], ["status", "fallback"]);
}

#[test]
fn defaults_fill_what_is_left_out() {
    let m = Manifest::parse(ONE).expect("minimal manifest");
    let a = &m.services[0];
    assert_eq!(a.vcpus, 1);
    assert_eq!(a.cmdline, "");
    assert_eq!(a.restart, RestartPolicy::default());
    assert_eq!(a.devices, Devices::default());
    assert_eq!(a.bus, Bus::default());
    assert_eq!(a.line, 5);
}

#[test]
fn semantic_errors_name_the_line() {
    let text = ONE.replace("ram_mib = 32", "ram_mib = 0");
    assert_eq!(
        problems(&text),
        ["line 8: service `a`: ram_mib 0 must be at least 16"]
    );
    let text = format!("{ONE}vcpus = 99\n");
    assert_eq!(
        problems(&text),
        ["line 9: service `a`: vcpus 99 must be between 1 and 16"]
    );
}

#[test]
fn all_problems_are_reported_in_line_order() {
    let text = r#"[node]
name = "Bad Name"
arch = "aarch64"

[[service]]
name = "a"
image = "selftest"
ram_mib = 8

[[service]]
name = "a"
image = "Self Test"
ram_mib = 32
cmdline = "x=1
y=2"
"#
    .replace("x=1\ny=2", "x=1\\ny=2");
    assert_eq!(
        problems(&text),
        [
            "line 2: node: name `Bad Name` starts with 'B', not a letter a-z (names follow [a-z][a-z0-9-]{0,31})",
            "line 8: service `a`: ram_mib 8 must be at least 16",
            "line 11: service `a` is defined twice (first at line 5)",
            "line 12: service `a`: image `Self Test` is not a service crate name ([a-z0-9_-])",
            "line 14: service `a`: cmdline has a control character (newline, tab, ...)",
        ]
    );
}

#[test]
fn unknown_fields_and_bad_values_are_refused_with_their_line() {
    let text = format!("{ONE}colour = \"red\"\n");
    let err = syntax(&text);
    assert!(err.starts_with("line 9: unknown field `colour`"), "{err}");

    let err = syntax(&ONE.replace("x86_64", "riscv64"));
    assert!(
        err.starts_with("line 3: unknown variant `riscv64`"),
        "{err}"
    );

    let text = format!("{ONE}[service.devices]\ntpm = [\"sign\"]\n");
    let err = syntax(&text);
    assert!(err.starts_with("line 10: unknown field `tpm`"), "{err}");

    let text = format!(
        "{ONE}[service.devices]\nnet = true\nhost_forward = [{{ host_port = 70000, guest_port = 80 }}]\n"
    );
    let err = syntax(&text);
    assert!(err.starts_with("line 11: "), "{err}");

    let err = syntax("[node]\nname = \"n\"\narch = \"x86_64\"\n[[service]\n");
    assert!(err.starts_with("line 4: "), "{err}");

    let err = syntax("[[service]]\nname = \"a\"\nimage = \"x\"\nram_mib = 32\n");
    assert!(err.contains("missing field `node`"), "{err}");
}

#[test]
fn a_node_without_services_is_refused() {
    assert_eq!(
        problems("[node]\nname = \"n\"\narch = \"x86_64\"\n"),
        ["line 1: node has no services: add a [[service]] table"]
    );
}

#[test]
fn topics_must_have_a_publisher_and_be_well_formed() {
    let text = format!(
        "{ONE}[service.bus]\npublish = [\"x\", \"x\", \"Y\"]\nsubscribe = [\"x\", \"nobody\"]\nheartbeat_timeout_s = 0\n"
    );
    assert_eq!(
        problems(&text),
        [
            "line 10: service `a`: publish topic `x` listed twice",
            "line 10: service `a`: publish topic `Y` starts with 'Y', not a letter a-z (names follow [a-z][a-z0-9-]{0,31})",
            "line 11: service `a`: subscribes to topic `nobody` that no service publishes (published: x)",
            "line 12: service `a`: heartbeat_timeout_s 0 must be between 1 and 3600",
        ]
    );
}

#[test]
fn a_topic_published_by_a_later_service_counts() {
    let text = r#"[node]
name = "n"
arch = "x86_64"

[[service]]
name = "reader"
image = "selftest"
ram_mib = 32
bus.subscribe = ["news"]

[[service]]
name = "writer"
image = "selftest"
ram_mib = 32
bus.publish = ["news"]
bus.heartbeat_timeout_s = 5
"#;
    let m = Manifest::parse(text).expect("valid");
    assert_eq!(m.services[0].bus.subscribe, ["news"]);
    assert_eq!(
        m.services[1].bus.heartbeat_timeout,
        Some(Duration::from_secs(5))
    );
}

#[test]
fn a_topic_has_one_publisher() {
    let text = r#"[node]
name = "n"
arch = "x86_64"

[[service]]
name = "first"
image = "selftest"
ram_mib = 32
bus.publish = ["news", "weather"]

[[service]]
name = "second"
image = "selftest"
ram_mib = 32
bus.publish = ["sport", "news"]
"#;
    assert_eq!(
        problems(text),
        [
            "line 15: service `second`: publishes topic `news` already published by service `first` (line 9): a topic has one publisher"
        ]
    );
}

#[test]
fn only_the_broker_s_own_topics_may_be_subscribed() {
    let text = format!("{ONE}[service.bus]\nsubscribe = [\"@log\", \"@device-facts\"]\n");
    let m = Manifest::parse(&text).expect("the broker's topics need no publisher");
    assert_eq!(m.services[0].bus.subscribe, ["@log", "@device-facts"]);
    let text = format!("{ONE}[service.bus]\npublish = [\"@log\"]\nsubscribe = [\"@metrics\"]\n");
    assert_eq!(
        problems(&text),
        [
            "line 10: service `a`: publish topic `@log` belongs to the broker: topics starting with @ are not published by services",
            "line 11: service `a`: subscribe topic `@metrics` is not a topic of the broker: topics starting with @ belong to the broker, which offers `@log`, `@device-facts`",
        ]
    );
}

#[test]
fn devices_are_checked() {
    let text = r#"[node]
name = "n"
arch = "x86_64"

[[service]]
name = "a"
image = "selftest"
ram_mib = 32
[service.devices]
host_forward = [{ host_port = 8080, guest_port = 0 }]
state_mib = 0
pci = ["0000:01:00.0", "01:00.9"]

[[service]]
name = "b"
image = "selftest"
ram_mib = 32
[service.devices]
net = true
host_forward = [{ host_port = 8080, guest_port = 80 }]
pci = ["01:00.0"]
"#;
    assert_eq!(
        problems(text),
        [
            "line 10: service `a`: host_forward: port 0 is not a port",
            "line 10: service `a`: host_forward needs `net = true`",
            "line 11: service `a`: state_mib 0 must be between 1 and 65536",
            "line 12: service `a`: `01:00.9` is not a PCI address (DDDD:BB:DD.F or BB:DD.F, hex): function must be at most 7",
            "line 20: service `b`: host port 8080 is already forwarded to service `a`",
            "line 21: service `b`: PCI device 0000:01:00.0 is already given to service `a`",
        ]
    );
}

#[test]
fn host_operations_are_checked_against_the_catalogue() {
    let text = format!(
        r#"{ONE}[service.bus]
call.tpm = ["sign", "sign", "export-key"]
call.reboot = ["start"]
call.watchdog = []
"#
    );
    assert_eq!(
        problems(&text),
        [
            "line 10: service `a`: operation `sign` of `tpm` listed twice",
            "line 10: service `a`: target `tpm` has no operation `export-key` (operations: create-device-key, device-public-key, sign, read-pcrs, quote, read-ek-cert, create-ecdh-key, ecdh, create-attestation-key)",
            "line 11: service `a`: calls target `reboot` that this host does not have (targets: tpm, blobs, volumes, ports, domains, partitions, power)",
            "line 12: service `a`: calls target `watchdog` that this host does not have (targets: tpm, blobs, volumes, ports, domains, partitions, power)",
        ]
    );
    let inline = format!("{ONE}[service.bus]\ncall = {{ tpm = [\"quote\", \"sign\"] }}\n");
    let m = Manifest::parse(&inline).unwrap();
    assert_eq!(m.services[0].bus.call["tpm"], ["quote", "sign"]);
}

#[test]
fn another_catalogue_grants_other_targets() {
    static BLOBS: hostops::TargetSpec = hostops::TargetSpec {
        name: "blobs",
        version: 1,
        operations: &["write", "commit"],
    };
    let text = format!("{ONE}[service.bus]\ncall.blobs = [\"write\"]\ncall.tpm = []\n");
    assert_eq!(
        Manifest::parse_with(&text, &[&BLOBS])
            .unwrap_err()
            .to_string(),
        "line 11: service `a`: calls target `tpm` that this host does not have (targets: blobs)"
    );
    let text = format!("{ONE}[service.bus]\ncall.blobs = []\n");
    assert_eq!(
        Manifest::parse_with(&text, &[&BLOBS])
            .unwrap_err()
            .to_string(),
        "line 10: service `a`: grants no operation of target `blobs`"
    );
    let text = format!("{ONE}[service.bus]\ncall.blobs = [\"commit\", \"write\"]\n");
    let m = Manifest::parse_with(&text, &[&BLOBS]).unwrap();
    assert_eq!(m.services[0].bus.call["blobs"], ["commit", "write"]);
}

#[test]
fn devices_parse_into_their_representation() {
    let text = format!(
        "{ONE}restart = \"never\"\n[service.devices]\nnet = true\nguest_forward = [{{ guest_port = 7, host_port = 4000 }}]\nconfig = true\npci = [\"3a:00.1\"]\n"
    );
    let m = Manifest::parse(&text).expect("valid");
    let a = &m.services[0];
    assert_eq!(a.restart.mode, RestartMode::Never);
    assert_eq!(
        a.devices.net,
        Some(Uplink {
            host_forward: vec![],
            guest_forward: vec![PortForward {
                host_port: 4000,
                guest_port: 7
            }],
        })
    );
    assert!(a.devices.config);
    assert_eq!(a.devices.pci[0].to_string(), "0000:3a:00.1");
}

#[test]
fn device_ports_are_plain_labels_on_the_trunks_service() {
    let ok = format!(
        "{ONE}[service.devices]\ntrunk = true\ndevice_ports = [\"eth1\", \"eth2\"]\n[service.bus]\ncall.ports = [\"attach\"]\n"
    );
    let m = Manifest::parse(&ok).unwrap();
    assert_eq!(m.services[0].devices.device_ports, ["eth1", "eth2"]);
    assert!(m.to_string().contains("device ports [eth1, eth2]"), "{m}");
    let bad = |ports: &str, trunk: bool| {
        let text = format!(
            "{ONE}[service.devices]\ntrunk = {trunk}\ndevice_ports = {ports}\n[service.bus]\ncall.ports = [\"attach\"]\n"
        );
        problems(&text).join("\n")
    };
    assert!(bad(r#"["eth1"]"#, false).contains("need `trunk = true`"));
    assert!(bad(r#"["eth1", "eth1"]"#, true).contains("listed twice"));
    assert!(bad(r#"["eth1,eth2"]"#, true).contains("only letters"));
}

#[test]
fn the_trunk_goes_to_one_service_granted_the_ports_target() {
    let text = r#"[node]
name = "n"
arch = "x86_64"

[[service]]
name = "a"
image = "selftest"
ram_mib = 32
[service.devices]
trunk = true

[[service]]
name = "b"
image = "selftest"
ram_mib = 32
[service.devices]
trunk = true
[service.bus]
call.ports = ["attach"]
"#;
    assert_eq!(
        problems(text),
        [
            "line 10: service `a`: `trunk = true` needs operations of target `ports` in `call`",
            "line 17: service `b`: the trunk is already given to service `a`",
        ]
    );
    let good = format!(
        "{ONE}[service.devices]\ntrunk = true\n[service.bus]\ncall.ports = [\"attach\", \"list\"]\n"
    );
    let m = Manifest::parse(&good).expect("valid");
    assert!(m.services[0].devices.trunk);
    assert!(m.to_string().contains(", trunk"), "{m}");
    let off = format!("{ONE}[service.devices]\ntrunk = false\n");
    assert!(!Manifest::parse(&off).unwrap().services[0].devices.trunk);
    assert!(syntax(&format!("{ONE}[service.devices]\ntrunk = 1\n")).contains("line 10"));
}

#[test]
fn backoff_knobs_are_checked() {
    let text =
        format!("{ONE}[service.backoff]\ninitial_ms = 2000\nmax_ms = 1000\ncrash_loop_count = 1\n");
    assert_eq!(
        problems(&text),
        [
            "line 9: service `a`: backoff max_ms 1000 is below initial_ms 2000",
            "line 9: service `a`: backoff crash_loop_count must be at least 2",
        ]
    );
    let text = format!(
        "{ONE}restart = \"on-failure\"\n[service.backoff]\ninitial_ms = 100\nstable_after_s = 5\n"
    );
    let policy = Manifest::parse(&text).expect("valid").services[0].restart;
    assert_eq!(policy.mode, RestartMode::OnFailure);
    assert_eq!(policy.initial_backoff, Duration::from_millis(100));
    assert_eq!(policy.stable_after, Duration::from_secs(5));
    assert_eq!(policy.max_backoff, RestartPolicy::default().max_backoff);
}

#[test]
fn names_are_restricted() {
    for bad in ["", "-a", "1a", "A", "a_b", "a.b", "a/b", &"x".repeat(33)] {
        let text = ONE.replace("name = \"a\"", &format!("name = \"{bad}\""));
        let found = problems(&text);
        assert!(
            found.len() == 1 && found[0].starts_with("line 6: service name"),
            "{bad:?}: {found:?}"
        );
    }
}

#[test]
fn the_manifest_and_the_bus_accept_the_same_names() {
    let names = [
        "a",
        "zedagent",
        "diag-report",
        "a-",
        "x1",
        "1x",
        "-a",
        "A",
        "a_b",
        "a.b",
        "a/b",
        "",
    ];
    let long = "x".repeat(32);
    let too_long = "x".repeat(33);
    for name in names
        .iter()
        .copied()
        .chain([long.as_str(), too_long.as_str()])
    {
        let service = ONE.replace("name = \"a\"", &format!("name = \"{name}\""));
        let topic = format!("{ONE}bus.publish = [\"{name}\"]\n");
        let bus = evebus::name::valid_name(name);
        assert_eq!(Manifest::parse(&service).is_ok(), bus, "service {name:?}");
        assert_eq!(Manifest::parse(&topic).is_ok(), bus, "topic {name:?}");
        let hello = evebus::Message::Hello {
            service: name.into(),
            protocol: evebus::PROTOCOL_VERSION,
            boot_counter: 0,
        };
        let subscribe = evebus::Message::Subscribe { topic: name.into() };
        let limits = evebus::Limits::DEFAULT;
        assert_eq!(hello.validate(&limits).is_ok(), bus, "hello {name:?}");
        assert_eq!(subscribe.validate(&limits).is_ok(), bus, "topic {name:?}");
    }
}

#[test]
fn hostile_text_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let bytes = DEFAULT.as_bytes();
    for _ in 0..300 {
        let mut mutated = bytes.to_vec();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % mutated.len();
            mutated[at] = (seed >> 32) as u8;
        }
        let text = String::from_utf8_lossy(&mutated);
        let _ = Manifest::parse(&text);
    }
}
