//! Connection tracking: one flow per app interface and 5-tuple, seen from
//! the app (local end = the app, remote end = whoever it talks to), with
//! the ACL decision taken on its first packet, its NAT binding when it
//! crosses an uplink, its TCP phase, counters and expiry.
//!
//! The table is bounded in total and per interface. A new flow that does
//! not fit takes the place of the flow idle the longest, if that one has
//! been idle long enough ([`FlowTable::oldest_idle`]); otherwise it is
//! refused. The caller counts both. Expiry is a sweep the engine runs at
//! most once a second ([`FlowTable::remove_where`]).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::time::{Duration, Instant};

use crate::config::PortId;
use crate::rng::Rng;
use crate::wire::{PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// A flow's identity, from the app's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FlowKey {
    pub port: PortId,
    pub proto: u8,
    pub local: (Ipv4Addr, u16),
    pub remote: (Ipv4Addr, u16),
}

/// A NAT binding's identity, from the uplink's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NatKey {
    pub uplink: PortId,
    pub proto: u8,
    pub external_port: u16,
    pub remote: (Ipv4Addr, u16),
}

/// How a flow crosses an uplink: the app's end appears there as
/// `external`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nat {
    pub uplink: PortId,
    pub external: (Ipv4Addr, u16),
}

/// Where a TCP flow is in its life, for its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpPhase {
    /// Only one side has spoken.
    Opening,
    Established,
    /// A FIN was seen.
    Closing,
    /// An RST, or FINs both ways.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Count {
    pub bytes: u64,
    pub packets: u64,
}

impl Count {
    pub fn add(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_add(bytes as u64);
        self.packets = self.packets.saturating_add(1);
    }
}

/// What the ACL said about a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Index of the rule in the interface's list, `None` for the implicit
    /// drop.
    pub rule: Option<usize>,
    /// EVE's ACE id of that rule (0 for the implicit drop, as EVE reports).
    pub rule_id: i32,
    pub drop: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flow {
    pub key: FlowKey,
    /// Started by the remote end.
    pub inbound: bool,
    pub verdict: Verdict,
    pub nat: Option<Nat>,
    /// Wall-clock start, in milliseconds since the Unix epoch.
    pub start_ms: u64,
    pub last: Instant,
    pub expires: Instant,
    pub tcp: TcpPhase,
    fin_local: bool,
    fin_remote: bool,
    /// Sent by the app.
    pub tx: Count,
    /// Received by the app.
    pub rx: Count,
}

/// How long flows live without traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_opening: Duration,
    /// At least 2 h 4 min (RFC 5382).
    pub tcp_established: Duration,
    pub tcp_closing: Duration,
    pub tcp_closed: Duration,
    /// UDP with traffic one way only.
    pub udp_unreplied: Duration,
    pub udp_replied: Duration,
    pub other: Duration,
    /// Dropped flows, kept to count their packets for the flow log.
    pub dropped: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_opening: Duration::from_secs(120),
            tcp_established: Duration::from_secs(7440),
            tcp_closing: Duration::from_secs(120),
            tcp_closed: Duration::from_secs(10),
            udp_unreplied: Duration::from_secs(30),
            udp_replied: Duration::from_secs(180),
            other: Duration::from_secs(30),
            dropped: Duration::from_secs(30),
        }
    }
}

impl Flow {
    pub fn new(key: FlowKey, inbound: bool, verdict: Verdict, start_ms: u64, now: Instant) -> Flow {
        Flow {
            key,
            inbound,
            verdict,
            nat: None,
            start_ms,
            last: now,
            expires: now,
            tcp: TcpPhase::Opening,
            fin_local: false,
            fin_remote: false,
            tx: Count::default(),
            rx: Count::default(),
        }
    }

    /// A flow read back from saved state.
    #[allow(clippy::too_many_arguments)]
    pub fn restored(
        key: FlowKey,
        inbound: bool,
        verdict: Verdict,
        nat: Option<Nat>,
        start_ms: u64,
        now: Instant,
        remaining: Duration,
        tcp: TcpPhase,
        counts: [u64; 4],
    ) -> Flow {
        let mut flow = Flow::new(key, inbound, verdict, start_ms, now);
        flow.nat = nat;
        flow.expires = now + remaining;
        flow.tcp = tcp;
        flow.tx = Count {
            bytes: counts[0],
            packets: counts[1],
        };
        flow.rx = Count {
            bytes: counts[2],
            packets: counts[3],
        };
        flow
    }

    /// Counts a packet (`from_app` or to it) and moves the timeout.
    pub fn seen(
        &mut self,
        now: Instant,
        from_app: bool,
        bytes: usize,
        tcp_flags: u8,
        timeouts: &Timeouts,
    ) {
        if from_app {
            self.tx.add(bytes);
        } else {
            self.rx.add(bytes);
        }
        self.last = now;
        if self.key.proto == PROTO_TCP {
            self.tcp_step(from_app, tcp_flags);
        }
        self.expires = now + self.timeout(timeouts);
    }

    fn tcp_step(&mut self, from_app: bool, flags: u8) {
        if flags & TCP_RST != 0 {
            self.tcp = TcpPhase::Closed;
            return;
        }
        if flags & TCP_FIN != 0 {
            if from_app {
                self.fin_local = true;
            } else {
                self.fin_remote = true;
            }
        }
        self.tcp = if self.fin_local && self.fin_remote {
            TcpPhase::Closed
        } else if self.fin_local || self.fin_remote {
            TcpPhase::Closing
        } else if self.tx.packets > 0 && self.rx.packets > 0 && flags & TCP_ACK != 0 {
            TcpPhase::Established
        } else if flags & TCP_SYN != 0 {
            TcpPhase::Opening
        } else {
            self.tcp
        };
    }

    /// Both ends have sent something.
    pub fn replied(&self) -> bool {
        self.tx.packets > 0 && self.rx.packets > 0
    }

    fn timeout(&self, t: &Timeouts) -> Duration {
        if self.verdict.drop {
            return t.dropped;
        }
        let replied = self.replied();
        match self.key.proto {
            PROTO_TCP => match self.tcp {
                TcpPhase::Opening => t.tcp_opening,
                TcpPhase::Established => t.tcp_established,
                TcpPhase::Closing => t.tcp_closing,
                TcpPhase::Closed => t.tcp_closed,
            },
            PROTO_UDP if replied => t.udp_replied,
            PROTO_UDP => t.udp_unreplied,
            _ => t.other,
        }
    }

    pub fn nat_key(&self) -> Option<NatKey> {
        self.nat.map(|nat| NatKey {
            uplink: nat.uplink,
            proto: self.key.proto,
            external_port: nat.external.1,
            remote: self.key.remote,
        })
    }
}

/// Why a flow could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Table,
    Port,
}

pub(crate) type FlowId = u32;

#[derive(Debug)]
pub(crate) struct FlowTable {
    slots: Vec<Option<Flow>>,
    free: Vec<FlowId>,
    by_key: BTreeMap<FlowKey, FlowId>,
    by_nat: BTreeMap<NatKey, FlowId>,
    per_port: BTreeMap<PortId, usize>,
    /// Outside ports in use per (uplink, protocol), with their users:
    /// NAT bindings and the DNS forwarder's queries.
    ports_in_use: BTreeMap<(PortId, u8, u16), u32>,
    max: usize,
    max_per_port: usize,
}

/// The outside ports NAT takes from (RFC 6056's range, above the
/// well-known ports).
const FIRST_NAT_PORT: u16 = 1024;

impl FlowTable {
    pub fn new(max: usize, max_per_port: usize) -> FlowTable {
        FlowTable {
            slots: Vec::new(),
            free: Vec::new(),
            by_key: BTreeMap::new(),
            by_nat: BTreeMap::new(),
            per_port: BTreeMap::new(),
            ports_in_use: BTreeMap::new(),
            max,
            max_per_port,
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn find(&self, key: &FlowKey) -> Option<FlowId> {
        self.by_key.get(key).copied()
    }

    pub fn find_nat(&self, key: &NatKey) -> Option<FlowId> {
        self.by_nat.get(key).copied()
    }

    pub fn get(&self, id: FlowId) -> Option<&Flow> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, id: FlowId) -> Option<&mut Flow> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.slots.iter().flatten()
    }

    pub fn count_for(&self, port: PortId) -> usize {
        self.per_port.get(&port).copied().unwrap_or(0)
    }

    /// Whether a new flow for `port` would fit.
    pub fn room_for(&self, port: PortId) -> Result<(), Full> {
        if self.len() >= self.max {
            Err(Full::Table)
        } else if self.count_for(port) >= self.max_per_port {
            Err(Full::Port)
        } else {
            Ok(())
        }
    }

    pub fn insert(&mut self, flow: Flow) -> Result<FlowId, Full> {
        self.room_for(flow.key.port)?;
        if let Some(id) = self.by_key.get(&flow.key) {
            return Ok(*id);
        }
        let key = flow.key;
        let nat_key = flow.nat_key();
        if let Some(nat_key) = nat_key
            && self.by_nat.contains_key(&nat_key)
        {
            return Err(Full::Table);
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(flow);
                id
            }
            None => {
                self.slots.push(Some(flow));
                (self.slots.len() - 1) as FlowId
            }
        };
        self.by_key.insert(key, id);
        if let Some(nat_key) = nat_key {
            self.by_nat.insert(nat_key, id);
            *self
                .ports_in_use
                .entry((nat_key.uplink, nat_key.proto, nat_key.external_port))
                .or_insert(0) += 1;
        }
        *self.per_port.entry(key.port).or_insert(0) += 1;
        Ok(id)
    }

    pub fn remove(&mut self, id: FlowId) -> Option<Flow> {
        let flow = self.slots.get_mut(id as usize)?.take()?;
        self.free.push(id);
        self.by_key.remove(&flow.key);
        if let Some(nat_key) = flow.nat_key() {
            self.by_nat.remove(&nat_key);
            self.release_port(nat_key.uplink, nat_key.proto, nat_key.external_port);
        }
        if let Some(count) = self.per_port.get_mut(&flow.key.port) {
            *count -= 1;
            if *count == 0 {
                self.per_port.remove(&flow.key.port);
            }
        }
        Some(flow)
    }

    /// The flow idle the longest among those `full` says must make room
    /// (the interface's own for [`Full::Port`], any for [`Full::Table`]),
    /// if it has seen nothing since `idle_since`: the one a new flow may
    /// take the place of. A scan of the table, run only when it is full.
    pub fn oldest_idle(&self, port: PortId, full: Full, idle_since: Instant) -> Option<FlowId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Some((i as FlowId, f.as_ref()?)))
            .filter(|(_, f)| full == Full::Table || f.key.port == port)
            .filter(|(_, f)| f.last <= idle_since)
            .min_by_key(|(_, f)| f.last)
            .map(|(id, _)| id)
    }

    /// Removes (and returns) every flow `pick` chooses.
    pub fn remove_where(&mut self, mut pick: impl FnMut(&Flow) -> bool) -> Vec<Flow> {
        let ids: Vec<FlowId> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().filter(|f| pick(f)).map(|_| i as FlowId))
            .collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    pub fn port_in_use(&self, uplink: PortId, proto: u8, port: u16) -> bool {
        self.ports_in_use.contains_key(&(uplink, proto, port))
    }

    /// Marks an outside port as used by someone other than a flow.
    pub fn hold_port(&mut self, uplink: PortId, proto: u8, port: u16) {
        *self.ports_in_use.entry((uplink, proto, port)).or_insert(0) += 1;
    }

    pub fn release_port(&mut self, uplink: PortId, proto: u8, port: u16) {
        if let Some(users) = self.ports_in_use.get_mut(&(uplink, proto, port)) {
            *users -= 1;
            if *users == 0 {
                self.ports_in_use.remove(&(uplink, proto, port));
            }
        }
    }

    /// A free outside port on `uplink` for `proto`, starting at a random
    /// place (RFC 6056) and skipping ports `reserved` says are taken (port
    /// maps). `None` when a bounded search finds none.
    pub fn free_port(
        &self,
        uplink: PortId,
        proto: u8,
        rng: &mut Rng,
        reserved: impl Fn(u16) -> bool,
    ) -> Option<u16> {
        let span = u32::from(u16::MAX - FIRST_NAT_PORT) + 1;
        let start = u32::from(rng.next_u16()) % span;
        (0..span.min(4096)).find_map(|step| {
            let port = FIRST_NAT_PORT + ((start + step * 7919) % span) as u16;
            (!self.port_in_use(uplink, proto, port) && !reserved(port)).then_some(port)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16, local_port: u16) -> FlowKey {
        FlowKey {
            port: PortId(port),
            proto: PROTO_UDP,
            local: (Ipv4Addr::new(10, 1, 0, 2), local_port),
            remote: (Ipv4Addr::new(192, 0, 2, 1), 53),
        }
    }

    fn flow(port: u16, local_port: u16, now: Instant) -> Flow {
        let verdict = Verdict {
            rule: Some(0),
            rule_id: 1,
            drop: false,
        };
        Flow::new(key(port, local_port), false, verdict, 0, now)
    }

    #[test]
    fn bounded_in_total_and_per_port() {
        let now = Instant::from_secs(1);
        let mut table = FlowTable::new(3, 2);
        table.insert(flow(1, 1000, now)).unwrap();
        table.insert(flow(1, 1001, now)).unwrap();
        assert_eq!(table.insert(flow(1, 1002, now)), Err(Full::Port));
        table.insert(flow(2, 1000, now)).unwrap();
        assert_eq!(table.insert(flow(3, 1000, now)), Err(Full::Table));
        let id = table.find(&key(1, 1000)).unwrap();
        table.remove(id).unwrap();
        table.insert(flow(3, 1000, now)).unwrap();
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn the_oldest_idle_flow_of_the_full_share_is_picked() {
        let t0 = Instant::from_secs(1);
        let mut table = FlowTable::new(4, 2);
        let mut a = flow(1, 1000, t0);
        a.last = t0 + Duration::from_secs(2);
        table.insert(a).unwrap();
        let mut b = flow(1, 1001, t0);
        b.last = t0 + Duration::from_secs(1);
        let b = table.insert(b).unwrap();
        let c = table.insert(flow(2, 1000, t0)).unwrap();
        let later = t0 + Duration::from_secs(5);
        // Port 1's share is full: its own oldest goes, not port 2's.
        assert_eq!(table.room_for(PortId(1)), Err(Full::Port));
        assert_eq!(table.oldest_idle(PortId(1), Full::Port, later), Some(b));
        // The whole table: anyone's oldest.
        assert_eq!(table.oldest_idle(PortId(3), Full::Table, later), Some(c));
        // Nothing idle long enough: nothing to take the place of.
        assert_eq!(table.oldest_idle(PortId(1), Full::Port, t0), None);
    }

    #[test]
    fn nat_ports_are_held_until_the_flow_goes() {
        let now = Instant::from_secs(1);
        let mut table = FlowTable::new(10, 10);
        let mut f = flow(1, 1000, now);
        f.nat = Some(Nat {
            uplink: PortId(100),
            external: (Ipv4Addr::new(198, 51, 100, 1), 40000),
        });
        let id = table.insert(f).unwrap();
        assert!(table.port_in_use(PortId(100), PROTO_UDP, 40000));
        let nat = NatKey {
            uplink: PortId(100),
            proto: PROTO_UDP,
            external_port: 40000,
            remote: (Ipv4Addr::new(192, 0, 2, 1), 53),
        };
        assert_eq!(table.find_nat(&nat), Some(id));
        table.remove(id);
        assert!(!table.port_in_use(PortId(100), PROTO_UDP, 40000));
        assert_eq!(table.find_nat(&nat), None);
    }

    #[test]
    fn sweeping_removes_expired_flows_only() {
        let t0 = Instant::from_secs(1);
        let timeouts = Timeouts::default();
        let mut table = FlowTable::new(10, 10);
        let mut a = flow(1, 1000, t0);
        a.seen(t0, true, 100, 0, &timeouts);
        table.insert(a).unwrap();
        let mut b = flow(1, 1001, t0);
        b.seen(t0, true, 100, 0, &timeouts);
        b.seen(t0 + Duration::from_secs(20), false, 100, 0, &timeouts);
        table.insert(b).unwrap();
        let later = t0 + Duration::from_secs(31);
        let gone = table.remove_where(|f| f.expires <= later);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].key.local.1, 1000);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn free_ports_skip_used_and_reserved() {
        let mut table = FlowTable::new(10, 10);
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            let port = table
                .free_port(PortId(1), PROTO_UDP, &mut rng, |p| p % 2 == 0)
                .unwrap();
            assert!(port >= FIRST_NAT_PORT && port % 2 == 1);
            assert!(!table.port_in_use(PortId(1), PROTO_UDP, port));
            table.hold_port(PortId(1), PROTO_UDP, port);
        }
    }
}
