//! Tracking a packet's flow: finding it, or starting it with the app's
//! ACL (and a NAT binding when it crosses an uplink); then counting the
//! packet on it and applying its verdict and rate limit.

use core::net::Ipv4Addr;

use smoltcp::time::Instant;

use super::Engine;
use crate::acl::{self, Action, Decision, FlowView};
use crate::config::PortId;
use crate::flows::{Flow, FlowId, FlowKey, Full, Nat, Verdict};
use crate::wire::L4;

/// Why a packet does not pass its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No flow, and this packet may not start one.
    NoFlow,
    OverBudget,
    TableFull,
    NoOutsidePort,
    Acl,
    RateLimited,
}

/// How a packet may start a flow.
#[derive(Debug, Clone, Copy)]
pub(super) struct Start {
    /// The remote end starts it.
    pub inbound: bool,
    /// The device port it goes through (for `adapter` matches).
    pub via: Option<PortId>,
    /// A NAT binding on this uplink, with a fixed outside port (a port
    /// map's, or 0 for protocols without ports) or a free one.
    pub nat: Option<(PortId, Option<u16>)>,
}

/// The ports of a packet as the app sees them: (the app's, the remote
/// end's). An echo's identifier is the app's port and the remote's is 0,
/// so a request and its reply name the same flow; protocols without ports
/// use 0 for both.
pub(super) fn app_ports(l4: &L4, from_app: bool) -> Option<(u16, u16)> {
    match *l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => Some(if from_app {
            (sport, dport)
        } else {
            (dport, sport)
        }),
        L4::EchoRequest { ident } | L4::EchoReply { ident } => Some((ident, 0)),
        L4::IcmpOther | L4::Other => Some((0, 0)),
        L4::IcmpError { .. } | L4::LaterFragment => None,
    }
}

/// Whether a packet without a flow may start one: any TCP segment but an
/// RST (loose pick-up, as Linux does), an echo request but not a reply.
pub(super) fn may_start(l4: &L4) -> bool {
    match l4 {
        L4::Tcp { flags, .. } => flags & crate::wire::TCP_RST == 0,
        L4::EchoReply { .. } => false,
        _ => true,
    }
}

/// The flow key of a packet from or to `port`, whose app end is `app_ip`.
pub(super) fn key_for(
    port: PortId,
    proto: u8,
    app_ip: Ipv4Addr,
    remote_ip: Ipv4Addr,
    ports: (u16, u16),
) -> FlowKey {
    FlowKey {
        port,
        proto,
        local: (app_ip, ports.0),
        remote: (remote_ip, ports.1),
    }
}

impl Engine {
    /// Finds or starts the flow `key` and counts the packet on it.
    pub(super) fn track(
        &mut self,
        now: Instant,
        key: FlowKey,
        start: Option<Start>,
        from_app: bool,
        bytes: usize,
        tcp_flags: u8,
    ) -> Result<FlowId, Refusal> {
        let id = match self.flows.find(&key) {
            Some(id) => id,
            None => {
                let start = start.ok_or(Refusal::NoFlow)?;
                self.start_flow(now, key, start)?
            }
        };
        self.admit(now, id, from_app, bytes, tcp_flags)
    }

    fn start_flow(&mut self, now: Instant, key: FlowKey, start: Start) -> Result<FlowId, Refusal> {
        if !self.spend(key.port, now) {
            return Err(Refusal::OverBudget);
        }
        if let Err(full) = self.flows.room_for(key.port) {
            let idle_since = now - self.limits.flow_evict_idle;
            match self.flows.oldest_idle(key.port, full, idle_since) {
                Some(oldest) => {
                    if let Some(gone) = self.flows.remove(oldest) {
                        self.counters.flows_evicted += 1;
                        self.log_flow(&gone, now);
                    }
                }
                None => {
                    match full {
                        Full::Table => self.counters.flow_table_full += 1,
                        Full::Port => self.counters.flow_port_full += 1,
                    }
                    return Err(Refusal::TableFull);
                }
            }
        }
        let app = self.apps.get(&key.port).ok_or(Refusal::NoFlow)?;
        let inst = self.instances.get(&app.inst).ok_or(Refusal::NoFlow)?;
        let label = start.via.and_then(|p| {
            self.uplinks
                .get(&p)
                .map(|u| u.cfg.label.as_str())
                .or_else(|| self.externals.get(&p).map(|e| e.label.as_str()))
        });
        let view = FlowView {
            inbound: start.inbound,
            proto: key.proto,
            local_port: key.local.1,
            remote: key.remote.0,
            remote_port: key.remote.1,
            uplink_label: label,
        };
        let verdict = match acl::decide(&app.rules, &view, &inst.hosts) {
            Decision::Rule(i) => Verdict {
                rule: Some(i),
                rule_id: app.rules[i].id,
                drop: app.rules[i].action == Action::Drop,
            },
            Decision::DefaultDrop => Verdict {
                rule: None,
                rule_id: 0,
                drop: true,
            },
        };
        let mut flow = Flow::new(key, start.inbound, verdict, self.unix_ms(now), now);
        if !verdict.drop
            && let Some((uplink, fixed)) = start.nat
        {
            let address = self
                .uplinks
                .get(&uplink)
                .map(|u| u.cfg.address.address())
                .ok_or(Refusal::NoFlow)?;
            let proto = key.proto;
            let outside = match fixed {
                Some(port) => port,
                None => {
                    let instances = &self.instances;
                    let reserved = |p: u16| {
                        instances.values().any(|i| {
                            i.cfg.device_port == Some(uplink)
                                && i.port_maps.contains_key(&(proto, p))
                        })
                    };
                    match self.flows.free_port(uplink, proto, &mut self.rng, reserved) {
                        Some(port) => port,
                        None => {
                            self.counters.nat_ports_exhausted += 1;
                            return Err(Refusal::NoOutsidePort);
                        }
                    }
                }
            };
            flow.nat = Some(Nat {
                uplink,
                external: (address, outside),
            });
        }
        match self.flows.insert(flow) {
            Ok(id) => Ok(id),
            Err(_) => {
                self.counters.nat_ports_exhausted += 1;
                Err(Refusal::NoOutsidePort)
            }
        }
    }

    fn admit(
        &mut self,
        now: Instant,
        id: FlowId,
        from_app: bool,
        bytes: usize,
        tcp_flags: u8,
    ) -> Result<FlowId, Refusal> {
        let timeouts = self.limits.timeouts;
        let flow = self.flows.get_mut(id).ok_or(Refusal::NoFlow)?;
        flow.seen(now, from_app, bytes, tcp_flags, &timeouts);
        let (verdict, port, expires) = (flow.verdict, flow.key.port, flow.expires);
        self.wake_at(expires);
        let app = self.apps.get_mut(&port).ok_or(Refusal::NoFlow)?;
        if verdict.drop {
            if from_app {
                app.counters.tx_acl_drops += 1;
            } else {
                app.counters.rx_acl_drops += 1;
            }
            return Err(Refusal::Acl);
        }
        if let Some(i) = verdict.rule
            && let Some(Some(limiter)) = app.limiters.get_mut(i)
        {
            let passed = if from_app {
                limiter.egress.take(now)
            } else {
                limiter.ingress.take(now)
            };
            if !passed {
                if from_app {
                    app.counters.tx_rate_limit_drops += 1;
                } else {
                    app.counters.rx_rate_limit_drops += 1;
                }
                return Err(Refusal::RateLimited);
            }
        }
        Ok(id)
    }

    /// The flow of a packet related to an existing one (an ICMP error
    /// about it): passes only if that flow exists and is allowed.
    pub(super) fn related(
        &mut self,
        now: Instant,
        key: &FlowKey,
        from_app: bool,
        bytes: usize,
    ) -> Option<FlowId> {
        let id = self.flows.find(key)?;
        let timeouts = self.limits.timeouts;
        let flow = self.flows.get_mut(id)?;
        if flow.verdict.drop {
            return None;
        }
        let expires = flow.expires;
        flow.seen(now, from_app, bytes, 0, &timeouts);
        // An error does not prolong the flow.
        flow.expires = expires;
        Some(id)
    }
}
