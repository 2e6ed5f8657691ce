//! The console's account of what apps sent that the engine dropped for
//! reasons other than their ACLs (spoofed sources, malformed frames, work
//! over an app's budget): one line per interface whose counts grew since
//! the last report, so a misbehaving app shows up in the node's logs.
//! (ACL drops are in the flow logs already.)

use alloc::collections::BTreeMap;

use appnet::{Engine, PortCounters, PortId};

use crate::router::Router;

/// The counts as last reported, per engine port.
#[derive(Default)]
pub struct DropReport {
    reported: BTreeMap<PortId, (u64, u64, u64)>,
}

fn counts(c: &PortCounters) -> (u64, u64, u64) {
    (c.spoofed, c.over_budget, c.tx_drops)
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
    }
}
