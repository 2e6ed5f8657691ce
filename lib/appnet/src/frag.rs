//! IPv4 fragments without reassembly. The first fragment carries the
//! ports, so it is decided like any packet; what was done to it is
//! remembered for a while under (input port, source, destination,
//! protocol, identification), and the later fragments of that datagram get
//! the same treatment: the same output ports, the same address rewrite
//! (the transport checksum, in the first fragment, already covers it).
//! A later fragment that arrives before its first, or for a datagram that
//! was dropped, is dropped and counted. Bounded; the oldest plan goes
//! when the table is full.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;

use crate::config::PortId;
use crate::flows::FlowId;
use crate::wire::Side;

/// How long later fragments are expected after the first.
pub(crate) const FRAGMENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FragKey {
    pub port: PortId,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ident: u16,
}

/// What happened to a datagram's first fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FragPlan {
    pub outs: Vec<PortId>,
    pub rewrite: Option<(Side, Ipv4Addr)>,
    /// New Ethernet destination and source, if the first fragment's were
    /// rewritten (routed traffic).
    pub macs: Option<(EthernetAddress, EthernetAddress)>,
    pub routed: bool,
    /// Sent out of this uplink towards the destination (resolved per
    /// fragment), rather than to `outs`.
    pub uplink: Option<PortId>,
    /// Flows to count the fragments on, and whether they go from the app.
    pub flows: Vec<(FlowId, bool)>,
    pub expires: Instant,
}

#[derive(Debug)]
pub(crate) struct Fragments {
    plans: BTreeMap<FragKey, FragPlan>,
    max: usize,
}

impl Fragments {
    pub fn new(max: usize) -> Fragments {
        Fragments {
            plans: BTreeMap::new(),
            max: max.max(1),
        }
    }

    pub fn remember(&mut self, key: FragKey, plan: FragPlan) {
        if self.plans.len() >= self.max && !self.plans.contains_key(&key) {
            let oldest = self
                .plans
                .iter()
                .min_by_key(|(_, p)| p.expires)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.plans.remove(&oldest);
            }
        }
        self.plans.insert(key, plan);
    }

    pub fn plan(&self, key: &FragKey, now: Instant) -> Option<&FragPlan> {
        self.plans.get(key).filter(|p| p.expires > now)
    }

    /// Forgets a datagram once its last fragment went through.
    pub fn forget(&mut self, key: &FragKey) {
        self.plans.remove(key);
    }

    pub fn sweep(&mut self, now: Instant) {
        self.plans.retain(|_, p| p.expires > now);
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.plans.values().map(|p| p.expires).min()
    }

    /// Forgets plans that send to `port`.
    pub fn forget_port(&mut self, port: PortId) {
        self.plans
            .retain(|k, p| k.port != port && !p.outs.contains(&port));
    }
}
