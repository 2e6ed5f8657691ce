//! The engine: configuration in, frames in and out, reports and saved
//! state out. It never blocks and never reads a clock: every call that
//! moves time takes `now`, and [`Engine::poll_at`] says when it next
//! needs a call to [`Engine::poll`] (nothing to do means `None`, so an
//! idle zedrouter sleeps).

mod flowlog;
mod local;
mod persist;
mod portmaps;
pub use portmaps::MappedProto;
mod reports;
mod services;
mod setup;
mod switch;
mod uplink;
mod verdict;

pub use flowlog::MAX_RECORDS_PER_MESSAGE;
pub use persist::{MAX_SAVED_FLOWS, RestoreSummary};
pub use reports::mac_string;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;

use crate::acl::{HostSets, Rule, RuleError, TokenBucket};
use crate::addresses::Addresses;
use crate::config::{
    AppPortConfig, ExternalPortConfig, InstanceConfig, LocalConfig, NodeInfo, PortId, UplinkConfig,
};
use crate::dns::Forwarder;
use crate::flows::{FlowTable, Timeouts};
use crate::frag::Fragments;
use crate::metadata::MetadataServer;
use crate::rng::Rng;
use crate::state::Parked;

/// Frames longer than this are refused (64 KiB, QEMU's largest).
pub const MAX_FRAME: usize = 65_536;

/// The engine's bounds. Every table it keeps has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_instances: usize,
    pub max_ports: usize,
    /// Tracked flows in all (NAT bindings are flows).
    pub max_flows: usize,
    /// Tracked flows of one app interface, so one app cannot take them all.
    pub max_flows_per_port: usize,
    /// When the table (or an interface's share) is full, a new flow takes
    /// the place of the flow idle the longest if it has been idle this
    /// long; otherwise the new flow is refused. Both are counted.
    pub flow_evict_idle: Duration,
    pub timeouts: Timeouts,
    /// DNS queries forwarded and not answered yet.
    pub max_dns_pending: usize,
    pub max_dns_pending_per_port: usize,
    pub dns_timeout: Duration,
    /// Frames waiting for the caller to take them.
    pub max_queued_frames: usize,
    /// Work that is not a tracked flow's packet (new flows, DHCP, DNS,
    /// ARP, pings to the gateway, metadata connections), per app interface:
    /// a sustained rate and a burst. A flooding app loses its own excess,
    /// nobody else's.
    pub slow_path_per_second: u32,
    pub slow_path_burst: u32,
    pub max_macs_per_switch: usize,
    pub mac_age: Duration,
    /// Addresses remembered per `host` rule name.
    pub max_host_addresses: usize,
    pub max_fragment_plans: usize,
    /// Ended flows and DNS requests waiting to be taken as flow logs.
    pub max_flow_records: usize,
    /// Frames waiting for an ARP answer, per uplink.
    pub max_arp_waiting: usize,
    /// Concurrent connections to each local instance's metadata server.
    pub metadata_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_instances: 256,
            max_ports: 1024,
            max_flows: 16_384,
            max_flows_per_port: 4096,
            flow_evict_idle: Duration::from_secs(10),
            timeouts: Timeouts::default(),
            max_dns_pending: 512,
            max_dns_pending_per_port: 32,
            dns_timeout: Duration::from_secs(5),
            max_queued_frames: 4096,
            slow_path_per_second: 1000,
            slow_path_burst: 200,
            max_macs_per_switch: 1024,
            mac_age: Duration::from_secs(300),
            max_host_addresses: 256,
            max_fragment_plans: 256,
            max_flow_records: 8192,
            max_arp_waiting: 64,
            metadata_connections: 8,
        }
    }
}

/// How the engine starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EngineConfig {
    /// The device, for the metadata server and flow logs.
    pub node: NodeInfo,
    /// From the caller's entropy source: NAT ports, DNS IDs, TCP.
    pub seed: u64,
    pub limits: Limits,
}

/// A frame to send on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub port: PortId,
    pub frame: Vec<u8>,
}

/// Counters of one app interface, from the app's side: `tx` is what the
/// app sent, `rx` what it was sent (as EVE reports app interfaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortCounters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// The app's frames dropped for reasons other than its ACL: spoofed,
    /// malformed, over its budget, nowhere to go.
    pub tx_drops: u64,
    /// Frames for the app dropped because the output queue was full.
    pub rx_drops: u64,
    pub tx_errors: u64,
    pub tx_acl_drops: u64,
    pub rx_acl_drops: u64,
    pub tx_rate_limit_drops: u64,
    pub rx_rate_limit_drops: u64,
    /// Frames from a MAC or IP address the app was not given.
    pub spoofed: u64,
    /// Slow-path work refused because the app was over its budget.
    pub over_budget: u64,
}

/// Counters of the engine as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub malformed: u64,
    pub oversize: u64,
    /// Frames on a port the engine does not know.
    pub unknown_port: u64,
    /// New flows refused because the flow table was full.
    pub flow_table_full: u64,
    /// New flows refused because their app had its share of the table.
    pub flow_port_full: u64,
    /// Flows ended early to make room for a new one (the table or the
    /// app's share full, the flow idle the longest and long enough).
    pub flows_evicted: u64,
    /// New flows refused for want of a free outside port.
    pub nat_ports_exhausted: u64,
    pub dns_forwarded: u64,
    pub dns_pending_full: u64,
    pub dns_timeouts: u64,
    /// Answers from upstream that match no query (late, forged).
    pub dns_unmatched: u64,
    pub arp_waiting_dropped: u64,
    pub fragments_unmatched: u64,
    /// Fragments addressed to the engine's own servers.
    pub fragments_to_self: u64,
    /// Packets over the next hop's MTU.
    pub too_big: u64,
    pub ttl_expired: u64,
    pub queue_full: u64,
    /// Packets to an uplink address no flow, port map or server wants.
    pub uplink_unmatched: u64,
    /// IPv6 frames dropped (instances are IPv4).
    pub ipv6_dropped: u64,
    pub flow_records_dropped: u64,
    pub metadata_queue_full: u64,
}

pub(crate) type InstId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ArpEntry {
    mac: EthernetAddress,
    expires: Instant,
}

/// A frame waiting for its next hop's MAC address.
#[derive(Debug)]
struct Waiting {
    next_hop: Ipv4Addr,
    frame: Vec<u8>,
    since: Instant,
}

struct Uplink {
    cfg: UplinkConfig,
    arp: BTreeMap<Ipv4Addr, ArpEntry>,
    waiting: VecDeque<Waiting>,
    /// Next hops asked for: when, and how often.
    asked: BTreeMap<Ipv4Addr, (Instant, u8)>,
}

/// A port map of a local instance's app: outside (protocol, port) to the
/// app's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortMap {
    port: PortId,
    app_port: u16,
    rule_id: i32,
}

struct LocalState {
    cfg: LocalConfig,
    addresses: Addresses,
    by_ip: BTreeMap<Ipv4Addr, PortId>,
    metadata: MetadataServer,
}

struct Instance {
    cfg: InstanceConfig,
    ports: BTreeSet<PortId>,
    local: Option<LocalState>,
    /// A switch's learned MAC addresses.
    macs: BTreeMap<EthernetAddress, (PortId, Instant)>,
    hosts: HostSets,
    port_maps: BTreeMap<(u8, u16), PortMap>,
    errors: Vec<String>,
    started_ms: u64,
}

/// A rate limit rule's buckets, one per direction.
struct Limiter {
    egress: TokenBucket,
    ingress: TokenBucket,
}

struct AppPort {
    cfg: AppPortConfig,
    inst: InstId,
    rules: Vec<Rule>,
    rule_errors: Vec<RuleError>,
    limiters: Vec<Option<Limiter>>,
    /// The address: assigned on a local instance, learned on a switch.
    ip: Option<Ipv4Addr>,
    /// The app took its address (DHCP ACK, or seen using it).
    bound: bool,
    counters: PortCounters,
    budget: TokenBucket,
    dns_pending: usize,
}

/// Maps the engine's monotonic time to the wall clock.
#[derive(Debug, Clone, Copy)]
struct Clock {
    at: Instant,
    unix_ms: u64,
}

pub struct Engine {
    node: NodeInfo,
    limits: Limits,
    rng: Rng,
    clock: Clock,
    uplinks: BTreeMap<PortId, Uplink>,
    externals: BTreeMap<PortId, ExternalPortConfig>,
    instances: BTreeMap<InstId, Instance>,
    by_uuid: BTreeMap<String, InstId>,
    next_inst: InstId,
    apps: BTreeMap<PortId, AppPort>,
    flows: FlowTable,
    dns: Forwarder,
    fragments: Fragments,
    out: VecDeque<Transmit>,
    flowlog: flowlog::FlowLog,
    counters: Counters,
    /// Saved flows and learned addresses waiting for their interfaces.
    parked: Parked,
    /// When the next sweep of timed-out things is due.
    deadline: Option<Instant>,
    last_sweep: Option<Instant>,
    /// A packet is going round a hairpin ([`Engine::hairpin`]).
    hairpinning: bool,
}

/// Sweeps run at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        let limits = config.limits;
        Engine {
            node: config.node,
            rng: Rng::new(config.seed),
            clock: Clock {
                at: Instant::ZERO,
                unix_ms: 0,
            },
            uplinks: BTreeMap::new(),
            externals: BTreeMap::new(),
            instances: BTreeMap::new(),
            by_uuid: BTreeMap::new(),
            next_inst: 1,
            apps: BTreeMap::new(),
            flows: FlowTable::new(limits.max_flows, limits.max_flows_per_port),
            dns: Forwarder::new(limits.max_dns_pending),
            fragments: Fragments::new(limits.max_fragment_plans),
            out: VecDeque::new(),
            flowlog: flowlog::FlowLog::new(limits.max_flow_records),
            counters: Counters::default(),
            parked: Parked::default(),
            deadline: None,
            last_sweep: None,
            hairpinning: false,
            limits,
        }
    }

    /// Anchors the wall clock: at `now`, it is `unix_ms` milliseconds since
    /// the Unix epoch. Flow logs and saved state use it.
    pub fn set_clock(&mut self, now: Instant, unix_ms: u64) {
        self.clock = Clock { at: now, unix_ms };
    }

    pub(crate) fn unix_ms(&self, now: Instant) -> u64 {
        let delta = now.total_millis() - self.clock.at.total_millis();
        if delta >= 0 {
            self.clock.unix_ms.saturating_add(delta as u64)
        } else {
            self.clock.unix_ms.saturating_sub(delta.unsigned_abs())
        }
    }

    pub fn set_node(&mut self, node: NodeInfo) {
        self.node = node;
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The counters of an attached app interface.
    pub fn port_counters(&self, port: PortId) -> Option<PortCounters> {
        self.apps.get(&port).map(|a| a.counters)
    }

    /// The address an attached app interface has (assigned on a local
    /// instance, learned on a switch).
    pub fn port_address(&self, port: PortId) -> Option<Ipv4Addr> {
        self.apps.get(&port).and_then(|a| a.ip)
    }

    /// The rules of an interface EVE's semantics made the engine skip.
    pub fn rule_errors(&self, port: PortId) -> Vec<RuleError> {
        self.apps
            .get(&port)
            .map(|a| a.rule_errors.clone())
            .unwrap_or_default()
    }

    /// How many flows are tracked.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    fn wake_at(&mut self, at: Instant) {
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    fn is_port_taken(&self, port: PortId) -> bool {
        self.apps.contains_key(&port)
            || self.uplinks.contains_key(&port)
            || self.externals.contains_key(&port)
    }

    /// Ends the flows `pick` chooses, logging them when `log_at` is given.
    fn drop_flows(&mut self, pick: impl Fn(&crate::flows::Flow) -> bool, log_at: Option<Instant>) {
        let gone = self.flows.remove_where(pick);
        if let Some(now) = log_at {
            for flow in gone {
                self.log_flow(&flow, now);
            }
        }
    }

    /// Takes one frame that arrived on `port`.
    pub fn receive(&mut self, now: Instant, port: PortId, frame: &[u8]) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.sweep(now);
        }
        if frame.len() > MAX_FRAME {
            self.counters.oversize += 1;
            if let Some(app) = self.apps.get_mut(&port) {
                app.counters.tx_drops += 1;
            }
            return;
        }
        if let Some(app) = self.apps.get_mut(&port) {
            app.counters.tx_packets += 1;
            app.counters.tx_bytes += frame.len() as u64;
            let id = app.inst;
            let Some(inst) = self.instances.get(&id) else {
                return;
            };
            if !inst.cfg.activated {
                if let Some(app) = self.apps.get_mut(&port) {
                    app.counters.tx_drops += 1;
                }
                return;
            }
            if inst.cfg.is_local() {
                self.local_from_app(now, port, frame);
            } else {
                self.switch_from(now, id, port, frame);
            }
        } else if self.uplinks.contains_key(&port) {
            self.uplink_from(now, port, frame);
        } else if self.externals.contains_key(&port) {
            let ids: Vec<InstId> = self
                .instances
                .iter()
                .filter(|(_, i)| i.cfg.device_port == Some(port) && i.cfg.activated)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                self.switch_from(now, id, port, frame);
            }
        } else {
            self.counters.unknown_port += 1;
        }
    }

    /// Runs the engine's timers: TCP of the metadata servers, ARP retries,
    /// expiries. Call it at [`Engine::poll_at`].
    pub fn poll(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.sweep(now);
        }
        self.poll_metadata(now);
    }

    /// When [`Engine::poll`] is next needed; `None` when nothing is timed.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let mut at = self.deadline;
        for inst in self.instances.values_mut() {
            if let Some(local) = inst.local.as_mut()
                && let Some(t) = local.metadata.poll_at(now)
            {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        }
        at
    }

    /// The next frame to send.
    pub fn pop_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Queues a frame; counts it on the app it goes to.
    fn send(&mut self, port: PortId, frame: Vec<u8>) {
        if self.out.len() >= self.limits.max_queued_frames {
            self.counters.queue_full += 1;
            if let Some(app) = self.apps.get_mut(&port) {
                app.counters.rx_drops += 1;
            }
            return;
        }
        if let Some(app) = self.apps.get_mut(&port) {
            app.counters.rx_packets += 1;
            app.counters.rx_bytes += frame.len() as u64;
        }
        self.out.push_back(Transmit { port, frame });
    }

    /// Takes one slow-path token of an app interface.
    fn spend(&mut self, port: PortId, now: Instant) -> bool {
        let Some(app) = self.apps.get_mut(&port) else {
            return true;
        };
        if app.budget.take(now) {
            true
        } else {
            app.counters.over_budget += 1;
            app.counters.tx_drops += 1;
            false
        }
    }

    fn count_tx_drop(&mut self, port: PortId) {
        if let Some(app) = self.apps.get_mut(&port) {
            app.counters.tx_drops += 1;
        }
    }

    fn count_malformed(&mut self, port: PortId) {
        self.counters.malformed += 1;
        if let Some(app) = self.apps.get_mut(&port) {
            app.counters.tx_errors += 1;
            app.counters.tx_drops += 1;
        }
    }

    fn count_spoofed(&mut self, port: PortId) {
        if let Some(app) = self.apps.get_mut(&port) {
            app.counters.spoofed += 1;
            app.counters.tx_drops += 1;
        }
    }

    /// Everything that times out.
    fn sweep(&mut self, now: Instant) {
        if self.last_sweep.is_some_and(|t| now < t + SWEEP_EVERY) {
            self.deadline = self.last_sweep.map(|t| t + SWEEP_EVERY);
            return;
        }
        self.last_sweep = Some(now);
        self.deadline = None;
        let gone = self.flows.remove_where(|f| f.expires <= now);
        for flow in &gone {
            self.log_flow(flow, now);
        }
        let mut next: Option<Instant> = self.flows.flows().map(|f| f.expires).min();
        self.sweep_dns(now);
        if let Some(t) = self.dns.next_deadline() {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if self.parked.until.is_some_and(|t| t <= now) {
            self.parked = Parked::default();
        }
        if let Some(t) = self.parked.until {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        self.fragments.sweep(now);
        if let Some(t) = self.fragments.next_expiry() {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        let mac_age = self.limits.mac_age;
        for inst in self.instances.values_mut() {
            inst.macs.retain(|_, (_, seen)| *seen + mac_age > now);
            if let Some(t) = inst.macs.values().map(|(_, seen)| *seen + mac_age).min() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            if let Some(local) = inst.local.as_mut() {
                local.addresses.sweep(now);
                let held = local
                    .addresses
                    .reservations()
                    .filter_map(|(_, r)| r.held_until)
                    .min();
                if let Some(t) = held {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
        }
        if let Some(t) = self.sweep_uplinks(now) {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if let Some(t) = next {
            self.wake_at(t.max(now + SWEEP_EVERY));
        }
    }
}
