//! Deciding a new flow: the first rule that matches, else the implicit
//! drop.

use core::net::Ipv4Addr;

use super::{Action, HostSets, Remote, Rule, RuleDir};

/// A new flow as seen from the app's interface.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlowView<'a> {
    /// Started by the remote end (into the app).
    pub inbound: bool,
    pub proto: u8,
    /// The app's port (after a port map's translation).
    pub local_port: u16,
    pub remote: Ipv4Addr,
    pub remote_port: u16,
    /// The label of the device port the flow leaves by, if any.
    pub uplink_label: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The rule at this index of the list matched.
    Rule(usize),
    /// No rule matched.
    DefaultDrop,
}

fn matches(rule: &Rule, flow: &FlowView<'_>, hosts: &HostSets) -> bool {
    let dir_ok = match rule.dir {
        RuleDir::Both => true,
        RuleDir::Ingress => flow.inbound,
        RuleDir::Egress => !flow.inbound,
    };
    if !dir_ok || rule.proto.is_some_and(|p| p != flow.proto) {
        return false;
    }
    let remote_ok = match &rule.remote {
        None => true,
        Some(Remote::Net(net)) => net.contains_addr(&flow.remote),
        Some(Remote::Host(pattern)) => hosts.contains(pattern, flow.remote),
    };
    if !remote_ok
        || rule.fport.is_some_and(|p| !p.contains(flow.remote_port))
        || rule
            .adapter
            .as_deref()
            .is_some_and(|a| flow.uplink_label != Some(a))
    {
        return false;
    }
    match rule.action {
        // A port map only admits what it maps, looked at after the
        // translation: into the app, on its target port.
        Action::PortMap { app_port } => flow.inbound && flow.local_port == app_port,
        _ => rule.lport.is_none_or(|p| p.contains(flow.local_port)),
    }
}

pub(crate) fn decide(rules: &[Rule], flow: &FlowView<'_>, hosts: &HostSets) -> Decision {
    rules
        .iter()
        .position(|rule| matches(rule, flow, hosts))
        .map_or(Decision::DefaultDrop, Decision::Rule)
}
