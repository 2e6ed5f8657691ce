//! Semantic checks of a parsed manifest, each problem at its line.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ops::Range,
    time::Duration,
};

use evebus::{LOG_TOPIC, name};
use hostops::TargetSpec;
use toml::Spanned;

use super::{
    Bus, Devices, Manifest, Node, PortForward, Problem, RestartPolicy, Service, Uplink, line_of,
    raw::{RawBackoff, RawForward, RawManifest, RawService},
};
use crate::vfio::Bdf;

/// Smallest RAM a service unikernel boots in (image, heap, DMA rings).
pub const MIN_RAM_MIB: u32 = 16;
pub const MAX_RAM_MIB: u32 = 16 * 1024;
pub const MAX_VCPUS: u32 = 16;
pub const MAX_STATE_MIB: u32 = 64 * 1024;
pub const MAX_CMDLINE_LEN: usize = 1024;
pub const MAX_HEARTBEAT_TIMEOUT_S: u32 = 3600;

/// Each topic's publisher and the line that declared it: a topic has one
/// publisher, which owns its table on the bus.
type Publishers = BTreeMap<String, (String, usize)>;

struct Checker<'t> {
    text: &'t str,
    problems: Vec<Problem>,
    /// The host targets services may be granted operations of.
    catalogue: &'t [&'t TargetSpec],
}

impl Checker<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    fn fail(&mut self, span: Range<usize>, message: String) {
        let line = self.line(span);
        self.problems.push(Problem { line, message });
    }
}

/// Validates `raw`, parsed from `text`; every problem is returned, sorted
/// by line.
pub(super) fn check(
    text: &str,
    raw: RawManifest,
    catalogue: &[&TargetSpec],
) -> Result<Manifest, Vec<Problem>> {
    let mut c = Checker {
        text,
        problems: Vec::new(),
        catalogue,
    };
    let node_span = raw.node.span();
    let raw_node = raw.node.into_inner();
    if let Err(why) = check_name(raw_node.name.get_ref()) {
        c.fail(
            raw_node.name.span(),
            format!("node: name `{}` {why}", raw_node.name.get_ref()),
        );
    }
    let node = Node {
        name: raw_node.name.into_inner(),
        arch: raw_node.arch,
    };
    if raw.services.is_empty() {
        c.fail(
            node_span,
            "node has no services: add a [[service]] table".into(),
        );
    }

    let mut names: HashMap<String, usize> = HashMap::new();
    let mut owners = Owners::default();
    let mut publishers = Publishers::new();
    let mut subscriptions: Vec<(String, Spanned<String>)> = Vec::new();
    let mut services = Vec::new();

    for raw_service in raw.services {
        let line = c.line(raw_service.span());
        let raw_service = raw_service.into_inner();
        let name = raw_service.name.get_ref().clone();
        let name_span = raw_service.name.span();
        if let Err(why) = check_name(&name) {
            c.fail(name_span.clone(), format!("service name `{name}` {why}"));
        }
        if let Some(first) = names.get(&name) {
            c.fail(
                name_span,
                format!("service `{name}` is defined twice (first at line {first})"),
            );
        } else {
            names.insert(name.clone(), line);
        }
        let service = check_service(
            &mut c,
            line,
            raw_service,
            &mut owners,
            &mut publishers,
            &mut subscriptions,
        );
        services.push(service);
    }

    for (service, topic) in subscriptions {
        if !topic.get_ref().starts_with(name::BROKER_PREFIX)
            && !publishers.contains_key(topic.get_ref())
        {
            let known: Vec<&str> = publishers.keys().map(String::as_str).collect();
            c.fail(
                topic.span(),
                format!(
                    "service `{service}`: subscribes to topic `{}` that no service publishes (published: {})",
                    topic.get_ref(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
    }

    if c.problems.is_empty() {
        Ok(Manifest { node, services })
    } else {
        c.problems.sort_by_key(|p| p.line);
        Err(c.problems)
    }
}

/// What one service of the node may have alone, and which service has it.
#[derive(Default)]
struct Owners {
    host_ports: HashMap<u16, String>,
    pci: HashMap<Bdf, String>,
    trunk: Option<String>,
}

fn check_service(
    c: &mut Checker<'_>,
    line: usize,
    raw: RawService,
    owners: &mut Owners,
    publishers: &mut Publishers,
    subscriptions: &mut Vec<(String, Spanned<String>)>,
) -> Service {
    let name = raw.name.into_inner();
    let at = |what: &str| format!("service `{name}`: {what}");

    let image = raw.image.get_ref();
    if image.is_empty()
        || !image
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        c.fail(
            raw.image.span(),
            at(&format!(
                "image `{image}` is not a service crate name ([a-z0-9_-])"
            )),
        );
    }

    let ram = *raw.ram_mib.get_ref();
    if ram < MIN_RAM_MIB {
        c.fail(
            raw.ram_mib.span(),
            at(&format!("ram_mib {ram} must be at least {MIN_RAM_MIB}")),
        );
    } else if ram > MAX_RAM_MIB {
        c.fail(
            raw.ram_mib.span(),
            at(&format!("ram_mib {ram} must be at most {MAX_RAM_MIB}")),
        );
    }

    let vcpus = match raw.vcpus {
        Some(v) => {
            let n = *v.get_ref();
            if !(1..=MAX_VCPUS).contains(&n) {
                c.fail(
                    v.span(),
                    at(&format!("vcpus {n} must be between 1 and {MAX_VCPUS}")),
                );
            }
            n
        }
        None => 1,
    };

    let cmdline = match raw.cmdline {
        Some(cmdline) => {
            let text = cmdline.get_ref();
            if text.len() > MAX_CMDLINE_LEN {
                c.fail(
                    cmdline.span(),
                    at(&format!(
                        "cmdline is {} bytes, at most {MAX_CMDLINE_LEN}",
                        text.len()
                    )),
                );
            } else if text.chars().any(|ch| ch.is_control()) {
                c.fail(
                    cmdline.span(),
                    at("cmdline has a control character (newline, tab, ...)"),
                );
            }
            cmdline.into_inner()
        }
        None => String::new(),
    };

    let trunk = raw.devices.trunk.clone();
    let device_ports = raw.devices.device_ports.clone();
    let has_trunk = trunk.as_ref().is_some_and(|t| *t.get_ref());
    let devices = check_devices(
        c,
        &name,
        raw.devices,
        &mut owners.host_ports,
        &mut owners.pci,
    );
    let bus = check_bus(c, &name, raw.bus, publishers, subscriptions);
    if let Some(trunk) = trunk.filter(|t| *t.get_ref()) {
        check_trunk(c, &name, trunk.span(), &bus, &mut owners.trunk);
    }
    let device_ports = check_device_ports(c, &name, device_ports, has_trunk);
    let restart = check_backoff(c, &name, raw.restart.unwrap_or_default(), raw.backoff);

    let devices = Devices {
        device_ports,
        ..devices
    };
    Service {
        name,
        image: raw.image.into_inner(),
        ram_mib: ram,
        vcpus,
        cmdline,
        devices,
        bus,
        restart,
        line,
    }
}

fn check_devices(
    c: &mut Checker<'_>,
    name: &str,
    raw: super::raw::RawDevices,
    host_ports: &mut HashMap<u16, String>,
    pci_owners: &mut HashMap<Bdf, String>,
) -> Devices {
    let at = |what: &str| format!("service `{name}`: {what}");
    let forward = |c: &mut Checker<'_>, f: &Spanned<RawForward>, list: &str| {
        let RawForward {
            host_port,
            guest_port,
        } = *f.get_ref();
        if host_port == 0 || guest_port == 0 {
            c.fail(f.span(), at(&format!("{list}: port 0 is not a port")));
        }
        if !raw.net {
            c.fail(f.span(), at(&format!("{list} needs `net = true`")));
        }
        PortForward {
            host_port,
            guest_port,
        }
    };
    let mut host_forward = Vec::new();
    for f in &raw.host_forward {
        let pf = forward(c, f, "host_forward");
        if pf.host_port != 0 {
            if let Some(owner) = host_ports.get(&pf.host_port) {
                c.fail(
                    f.span(),
                    at(&format!(
                        "host port {} is already forwarded to service `{owner}`",
                        pf.host_port
                    )),
                );
            } else {
                host_ports.insert(pf.host_port, name.to_string());
            }
        }
        host_forward.push(pf);
    }
    let guest_forward = raw
        .guest_forward
        .iter()
        .map(|f| forward(c, f, "guest_forward"))
        .collect();

    if let Some(state) = &raw.state_mib {
        let mib = *state.get_ref();
        if !(1..=MAX_STATE_MIB).contains(&mib) {
            c.fail(
                state.span(),
                at(&format!(
                    "state_mib {mib} must be between 1 and {MAX_STATE_MIB}"
                )),
            );
        }
    }

    let mut pci = Vec::new();
    for text in &raw.pci {
        match text.get_ref().parse::<Bdf>() {
            Ok(bdf) => {
                if let Some(owner) = pci_owners.get(&bdf) {
                    c.fail(
                        text.span(),
                        at(&format!(
                            "PCI device {bdf} is already given to service `{owner}`"
                        )),
                    );
                } else {
                    pci_owners.insert(bdf, name.to_string());
                    pci.push(bdf);
                }
            }
            Err(e) => c.fail(text.span(), at(&e.to_string())),
        }
    }

    Devices {
        net: raw.net.then_some(Uplink {
            host_forward,
            guest_forward,
        }),
        state_mib: raw.state_mib.map(Spanned::into_inner),
        config: raw.config,
        pci,
        trunk: raw.trunk.is_some_and(|t| *t.get_ref()),
        device_ports: Vec::new(),
    }
}

/// Device ports are the outside ends of switch instances, which live on
/// the trunk's service: labels it may be told on its command line, each
/// once, at most `guest_abi::MAX_DEVICE_PORTS`.
fn check_device_ports(
    c: &mut Checker<'_>,
    name: &str,
    labels: Vec<Spanned<String>>,
    trunk: bool,
) -> Vec<String> {
    let mut checked: Vec<String> = Vec::new();
    for label in labels {
        let span = label.span();
        let label = label.into_inner();
        let problem = if !trunk {
            Some("device ports need `trunk = true` (they are switch instances' ports)")
        } else if checked.len() == guest_abi::MAX_DEVICE_PORTS {
            Some("at most 8 device ports")
        } else if checked.contains(&label) {
            Some("a device port is listed twice")
        } else {
            crate::deviceports::label_problem(&label)
        };
        match problem {
            Some(problem) => c.fail(span, format!("service `{name}`: {problem}: `{label}`")),
            None => checked.push(label),
        }
    }
    checked
}

/// The trunk is the switch of the `ports` target, which the host opens
/// only for a node that grants it: one service has it, and that service
/// is granted the target (it attaches the ports it carries).
fn check_trunk(
    c: &mut Checker<'_>,
    name: &str,
    span: Range<usize>,
    bus: &Bus,
    owner: &mut Option<String>,
) {
    let ports = <hostops::ports::Ports as hostops::Target>::SPEC.name;
    if let Some(first) = owner {
        c.fail(
            span.clone(),
            format!("service `{name}`: the trunk is already given to service `{first}`"),
        );
    } else {
        *owner = Some(name.to_string());
    }
    if !bus.call.contains_key(ports) {
        c.fail(
            span,
            format!(
                "service `{name}`: `trunk = true` needs operations of target `{ports}` in `call`"
            ),
        );
    }
}

fn check_bus(
    c: &mut Checker<'_>,
    name: &str,
    raw: super::raw::RawBus,
    publishers: &mut Publishers,
    subscriptions: &mut Vec<(String, Spanned<String>)>,
) -> Bus {
    let at = |what: &str| format!("service `{name}`: {what}");
    let topics = |c: &mut Checker<'_>, list: Vec<Spanned<String>>, what: &str| {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for topic in list {
            let checked = if topic.get_ref().starts_with('@') {
                check_broker_topic(topic.get_ref(), what == "subscribe")
            } else {
                check_topic(topic.get_ref())
            };
            if let Err(why) = checked {
                c.fail(
                    topic.span(),
                    at(&format!("{what} topic `{}` {why}", topic.get_ref())),
                );
            } else if !seen.insert(topic.get_ref().clone()) {
                c.fail(
                    topic.span(),
                    at(&format!("{what} topic `{}` listed twice", topic.get_ref())),
                );
            } else {
                out.push(topic);
            }
        }
        out
    };
    let mut publish = Vec::new();
    for topic in topics(c, raw.publish, "publish") {
        let line = c.line(topic.span());
        match publishers.get(topic.get_ref()) {
            Some((owner, first)) => c.fail(
                topic.span(),
                at(&format!(
                    "publishes topic `{}` already published by service `{owner}` (line {first}): a topic has one publisher",
                    topic.get_ref()
                )),
            ),
            None => {
                publishers.insert(topic.get_ref().clone(), (name.to_string(), line));
            }
        }
        publish.push(topic.into_inner());
    }
    let subscribe = topics(c, raw.subscribe, "subscribe");
    let subscribe_names = subscribe.iter().map(|t| t.get_ref().clone()).collect();
    subscriptions.extend(subscribe.into_iter().map(|t| (name.to_string(), t)));
    let call = check_calls(c, name, raw.call);

    let heartbeat_timeout = raw.heartbeat_timeout_s.map(|t| {
        let s = *t.get_ref();
        if !(1..=MAX_HEARTBEAT_TIMEOUT_S).contains(&s) {
            c.fail(
                t.span(),
                at(&format!(
                    "heartbeat_timeout_s {s} must be between 1 and {MAX_HEARTBEAT_TIMEOUT_S}"
                )),
            );
        }
        Duration::from_secs(u64::from(s))
    });

    Bus {
        publish,
        subscribe: subscribe_names,
        call,
        heartbeat_timeout,
    }
}

/// The host operations a service is granted: each target must be in the
/// catalogue and each operation one of its own, listed once.
fn check_calls(
    c: &mut Checker<'_>,
    name: &str,
    raw: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
) -> BTreeMap<String, Vec<String>> {
    let at = |what: &str| format!("service `{name}`: {what}");
    let mut calls = BTreeMap::new();
    for (target, operations) in raw {
        let span = operations.span();
        let Some(spec) = c.catalogue.iter().find(|t| t.name == target).copied() else {
            let known: Vec<&str> = c.catalogue.iter().map(|t| t.name).collect();
            c.fail(
                span,
                at(&format!(
                    "calls target `{target}` that this host does not have (targets: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )),
            );
            continue;
        };
        let operations = operations.into_inner();
        if operations.is_empty() {
            c.fail(
                span,
                at(&format!("grants no operation of target `{target}`")),
            );
            continue;
        }
        let mut granted: Vec<String> = Vec::new();
        for operation in operations {
            let op = operation.get_ref();
            if !spec.serves(op) {
                c.fail(
                    operation.span(),
                    at(&format!(
                        "target `{target}` has no operation `{op}` (operations: {})",
                        spec.operations.join(", ")
                    )),
                );
            } else if granted.contains(op) {
                c.fail(
                    operation.span(),
                    at(&format!("operation `{op}` of `{target}` listed twice")),
                );
            } else {
                granted.push(operation.into_inner());
            }
        }
        calls.insert(target, granted);
    }
    calls
}

fn check_backoff(
    c: &mut Checker<'_>,
    name: &str,
    mode: super::RestartMode,
    raw: Option<Spanned<RawBackoff>>,
) -> RestartPolicy {
    let defaults = RestartPolicy {
        mode,
        ..RestartPolicy::default()
    };
    let Some(raw) = raw else {
        return defaults;
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let ms = |v: Option<u32>, d: Duration| v.map_or(d, |v| Duration::from_millis(u64::from(v)));
    let secs = |v: Option<u32>, d: Duration| v.map_or(d, |v| Duration::from_secs(u64::from(v)));
    let policy = RestartPolicy {
        mode,
        initial_backoff: ms(raw.initial_ms, defaults.initial_backoff),
        max_backoff: ms(raw.max_ms, defaults.max_backoff),
        stable_after: secs(raw.stable_after_s, defaults.stable_after),
        crash_loop_count: raw.crash_loop_count.unwrap_or(defaults.crash_loop_count),
        crash_loop_window: secs(raw.crash_loop_window_s, defaults.crash_loop_window),
    };
    let mut wrong = |what: String| c.fail(span.clone(), format!("service `{name}`: {what}"));
    if policy.initial_backoff.is_zero() {
        wrong("backoff initial_ms must be at least 1".into());
    }
    if policy.max_backoff < policy.initial_backoff {
        wrong(format!(
            "backoff max_ms {} is below initial_ms {}",
            policy.max_backoff.as_millis(),
            policy.initial_backoff.as_millis()
        ));
    }
    if policy.stable_after.is_zero() {
        wrong("backoff stable_after_s must be at least 1".into());
    }
    if policy.crash_loop_count < 2 {
        wrong("backoff crash_loop_count must be at least 2".into());
    }
    if policy.crash_loop_window.is_zero() {
        wrong("backoff crash_loop_window_s must be at least 1".into());
    }
    policy
}

/// Node and service names follow the bus's one naming rule: they name
/// files, sockets and log prefixes, and a service's name is what it says
/// Hello with.
fn check_name(name: &str) -> Result<(), String> {
    name::check_name(name).map_err(|e| e.to_string())
}

/// Topics starting with `@` are the bus broker's own: nobody publishes
/// them; a service may subscribe to the log stream (a service that
/// forwards the node's logs, like zedagent) and to the tables the host
/// fills (`topics::BROKER_TOPICS`).
fn check_broker_topic(topic: &str, subscribing: bool) -> Result<(), String> {
    if subscribing && (topic == LOG_TOPIC || topics::BROKER_TOPICS.contains(&topic)) {
        Ok(())
    } else if subscribing {
        Err(format!(
            "is not a topic of the broker: topics starting with @ belong to the broker, which offers `{LOG_TOPIC}`, `{}`",
            topics::BROKER_TOPICS.join("`, `")
        ))
    } else {
        Err("belongs to the broker: topics starting with @ are not published by services".into())
    }
}

fn check_topic(topic: &str) -> Result<(), String> {
    name::check_name(topic).map_err(|e| e.to_string())
}
