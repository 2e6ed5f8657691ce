//! The console's account of what the engine dropped for reasons other
//! than an ACL: per app interface, what the app sent that was spoofed,
//! malformed or over its budget; for the engine as a whole, new flows
//! refused because a table was full or no outside port was free, idle
//! flows evicted to make room for new ones, frames
//! lost to a full output queue or an unanswered ARP, and uplink packets no
//! flow wanted. One line per interface, and one for the engine, whose
//! counts grew since the last report, so a misbehaving app or a full table
//! shows up in the node's logs. (ACL drops are in the flow logs already.)

use alloc::collections::BTreeMap;

use appnet::{Counters, Engine, PortCounters, PortId};

use crate::router::Router;

/// The counts as last reported, per engine port, and the engine's.
#[derive(Default)]
pub struct DropReport {
    reported: BTreeMap<PortId, (u64, u64, u64)>,
    engine: EngineDrops,
}

fn counts(c: &PortCounters) -> (u64, u64, u64) {
    (c.spoofed, c.over_budget, c.tx_drops)
}

/// The engine-wide counters that mean a flow or a frame was refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct EngineDrops {
    flow_table_full: u64,
    flow_port_full: u64,
    flows_evicted: u64,
    nat_ports_exhausted: u64,
    queue_full: u64,
    arp_waiting_dropped: u64,
    uplink_unmatched: u64,
}

impl EngineDrops {
    fn of(c: &Counters) -> EngineDrops {
        EngineDrops {
            flow_table_full: c.flow_table_full,
            flow_port_full: c.flow_port_full,
            flows_evicted: c.flows_evicted,
            nat_ports_exhausted: c.nat_ports_exhausted,
            queue_full: c.queue_full,
            arp_waiting_dropped: c.arp_waiting_dropped,
            uplink_unmatched: c.uplink_unmatched,
        }
    }
}

impl DropReport {
    pub fn report(&mut self, engine: &Engine, router: &Router) {
        let mut now = BTreeMap::new();
        for (app, nic, port) in router.attached_ports() {
            let Some(c) = engine.port_counters(port) else {
                continue;
            };
            let (spoofed, over_budget, dropped) = counts(&c);
            if self.reported.get(&port).copied().unwrap_or_default()
                != (spoofed, over_budget, dropped)
                && dropped > 0
            {
                log::warn!(
                    "app {app} nic {nic}: {dropped} frames dropped ({spoofed} from addresses it was not given, {over_budget} over its budget)"
                );
            }
            now.insert(port, (spoofed, over_budget, dropped));
        }
        self.reported = now;
        let engine_drops = EngineDrops::of(&engine.counters());
        if engine_drops != self.engine {
            let d = engine_drops;
            log::warn!(
                "flows refused: {} with the table full ({} flows tracked), {} over an interface's share, {} without a free outside port; {} idle flows evicted for new ones; frames dropped: {} with the output queue full, {} waiting for ARP; {} uplink packets no flow wanted",
                d.flow_table_full,
                engine.flow_count(),
                d.flow_port_full,
                d.nat_ports_exhausted,
                d.flows_evicted,
                d.queue_full,
                d.arp_waiting_dropped,
                d.uplink_unmatched
            );
            self.engine = engine_drops;
        }
    }
}
