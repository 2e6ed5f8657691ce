//! Flow logs: every ended flow of an instance with `flowlog` on, and the
//! DNS answers its apps got, as eve-api `FlowMessage`s. As EVE does, a
//! record is made when its flow ends (times out, or its interface or
//! instance goes); a record holds the 5-tuple seen from the app (`src` is
//! the app), whether the remote end started it, the ACE that decided it
//! (id 0 for the implicit drop), its action, times and counters each way.
//! Records wait, bounded, until the caller takes them; a message holds at
//! most [`MAX_RECORDS_PER_MESSAGE`] of them, like EVE's.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use eve_proto::flowlog::{AclAction, DnsRequest, FlowMessage, FlowRecord, IpFlow, ScopeInfo};
use smoltcp::time::Instant;

use super::Engine;
use crate::config::PortId;
use crate::dns::wire::Learned;
use crate::flows::Flow;

/// EVE packs at most 125 flows and DNS requests in one message.
pub const MAX_RECORDS_PER_MESSAGE: usize = 125;

enum Item {
    Flow(FlowRecord),
    Dns(DnsRequest),
}

struct Entry {
    scope: ScopeInfo,
    item: Item,
}

pub(super) struct FlowLog {
    entries: VecDeque<Entry>,
    max: usize,
}

impl FlowLog {
    pub fn new(max: usize) -> FlowLog {
        FlowLog {
            entries: VecDeque::new(),
            max,
        }
    }
}

pub(crate) fn timestamp(unix_ms: u64) -> eve_proto::prost_types::Timestamp {
    eve_proto::prost_types::Timestamp {
        seconds: (unix_ms / 1000) as i64,
        nanos: ((unix_ms % 1000) * 1_000_000) as i32,
    }
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Engine {
    /// The scope of an app interface, if its instance logs flows.
    fn scope(&self, port: PortId) -> Option<ScopeInfo> {
        let app = self.apps.get(&port)?;
        let inst = self.instances.get(&app.inst)?;
        inst.cfg.flowlog.then(|| ScopeInfo {
            uuid: app.cfg.app_uuid.clone(),
            intf: app.cfg.adapter.clone(),
            local_intf: format!("bn{}", inst.cfg.bridge_num),
            net_inst_uuid: inst.cfg.uuid.clone(),
        })
    }

    fn record(&mut self, scope: ScopeInfo, item: Item) {
        if self.flowlog.entries.len() >= self.flowlog.max {
            self.counters.flow_records_dropped += 1;
            return;
        }
        self.flowlog.entries.push_back(Entry { scope, item });
    }

    pub(super) fn log_flow(&mut self, flow: &Flow, _now: Instant) {
        let Some(scope) = self.scope(flow.key.port) else {
            return;
        };
        let acl_name = self
            .apps
            .get(&flow.key.port)
            .zip(flow.verdict.rule)
            .and_then(|(app, i)| app.rules.get(i))
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let record = FlowRecord {
            flow: Some(IpFlow {
                src: flow.key.local.0.to_string(),
                src_port: i32::from(flow.key.local.1),
                dest: flow.key.remote.0.to_string(),
                dest_port: i32::from(flow.key.remote.1),
                protocol: i32::from(flow.key.proto),
            }),
            inbound: flow.inbound,
            acl_id: flow.verdict.rule_id,
            acl_name,
            start_time: Some(timestamp(flow.start_ms)),
            end_time: Some(timestamp(self.unix_ms(flow.last))),
            tx_bytes: count(flow.tx.bytes),
            tx_pkts: count(flow.tx.packets),
            rx_bytes: count(flow.rx.bytes),
            rx_pkts: count(flow.rx.packets),
            action: if flow.verdict.drop {
                AclAction::ActionDrop as i32
            } else {
                AclAction::ActionAccept as i32
            },
        };
        self.record(scope, Item::Flow(record));
    }

    pub(super) fn log_dns(&mut self, port: PortId, learned: &Learned, now: Instant) {
        let Some(scope) = self.scope(port) else {
            return;
        };
        let request = DnsRequest {
            host_name: learned.qname.clone(),
            addrs: learned.addrs.iter().map(|a| a.to_string()).collect(),
            request_time: Some(timestamp(self.unix_ms(now))),
            acl_num: 0,
        };
        self.record(scope, Item::Dns(request));
    }

    /// Takes the waiting flow records and DNS requests, grouped by app
    /// interface, at most [`MAX_RECORDS_PER_MESSAGE`] a message.
    pub fn take_flow_messages(&mut self) -> Vec<FlowMessage> {
        let mut messages: Vec<FlowMessage> = Vec::new();
        let mut open: Vec<(String, String, usize)> = Vec::new();
        for entry in core::mem::take(&mut self.flowlog.entries) {
            let key = (entry.scope.uuid.clone(), entry.scope.intf.clone());
            let at = open
                .iter()
                .position(|(u, i, _)| *u == key.0 && *i == key.1)
                .map(|i| open[i].2)
                .filter(|&m| {
                    messages[m].flows.len() + messages[m].dns_reqs.len() < MAX_RECORDS_PER_MESSAGE
                });
            let m = match at {
                Some(m) => m,
                None => {
                    messages.push(FlowMessage {
                        dev_id: self.node.device_uuid.clone(),
                        scope: Some(entry.scope),
                        flows: Vec::new(),
                        dns_reqs: Vec::new(),
                    });
                    let m = messages.len() - 1;
                    open.retain(|(u, i, _)| !(*u == key.0 && *i == key.1));
                    open.push((key.0, key.1, m));
                    m
                }
            };
            match entry.item {
                Item::Flow(record) => messages[m].flows.push(record),
                Item::Dns(request) => messages[m].dns_reqs.push(request),
            }
        }
        messages
    }
}
