//! The DNS server of local instances: names it knows (the instance's
//! static names and its apps' host names) are answered at once; the rest
//! is forwarded to the uplink's DNS servers from a random outside port
//! with a random ID, and the answer, checked against the question, goes
//! back to the app. Answers are read to learn the addresses behind names
//! (for `host` rules) and to log the app's DNS requests.

pub(crate) mod wire;

use alloc::collections::BTreeMap;
use core::net::Ipv4Addr;

use smoltcp::time::Instant;

use crate::config::PortId;
use wire::Query;

/// A query forwarded upstream and not answered yet.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// The app interface that asked, and from where.
    pub port: PortId,
    pub client: (Ipv4Addr, u16),
    pub client_id: u16,
    pub query: Query,
    pub server: Ipv4Addr,
    pub upstream_id: u16,
    pub deadline: Instant,
}

/// Queries in flight, by (uplink, our outside port).
#[derive(Debug)]
pub(crate) struct Forwarder {
    pending: BTreeMap<(PortId, u16), Pending>,
    max: usize,
}

impl Forwarder {
    pub fn new(max: usize) -> Forwarder {
        Forwarder {
            pending: BTreeMap::new(),
            max,
        }
    }

    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.max
    }

    pub fn insert(&mut self, uplink: PortId, port: u16, pending: Pending) {
        self.pending.insert((uplink, port), pending);
    }

    pub fn get(&self, uplink: PortId, port: u16) -> Option<&Pending> {
        self.pending.get(&(uplink, port))
    }

    pub fn remove(&mut self, uplink: PortId, port: u16) -> Option<Pending> {
        self.pending.remove(&(uplink, port))
    }

    /// Takes the queries whose time is up: ((uplink, port), query).
    pub fn expired(&mut self, now: Instant) -> alloc::vec::Vec<((PortId, u16), Pending)> {
        let keys: alloc::vec::Vec<(PortId, u16)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.pending.remove(&k).map(|p| (k, p)))
            .collect()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }
}

#[cfg(test)]
mod tests;
