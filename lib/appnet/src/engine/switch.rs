//! Switch instances: one L2 segment between apps and (optionally) a
//! device port. Frames are switched by destination MAC (learned, bounded,
//! aged) or flooded; non-IP frames pass as they are, IPv6 is dropped
//! (instances are IPv4, and an IPv6 packet must not slip past the ACLs),
//! IPv4 goes through the ACLs of the app that sent it and of each app it
//! goes to. DHCP and DNS always pass; DHCP acknowledgements and ARP teach
//! the instance its apps' addresses, DNS answers feed the flow logs.

use alloc::vec::Vec;

use smoltcp::time::Instant;
use smoltcp::wire::ArpRepr;

use super::verdict::{Start, app_ports, key_for, may_start};
use super::{Engine, InstId};
use crate::config::PortId;
use crate::dhcp;
use crate::flows::FlowId;
use crate::frag::{FRAGMENT_TIMEOUT, FragPlan};
use crate::wire::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Eth, Ip, L4, PROTO_ICMP};

impl Engine {
    pub(super) fn switch_from(&mut self, now: Instant, id: InstId, in_port: PortId, frame: &[u8]) {
        let from_app = self.apps.get(&in_port).map(|a| a.cfg.mac);
        let eth = match wire::ethernet(frame) {
            Ok(eth) => eth,
            Err(_) => {
                self.counters.malformed += 1;
                if from_app.is_some() {
                    self.count_malformed(in_port);
                }
                return;
            }
        };
        if from_app.is_some_and(|mac| mac != eth.src) {
            return self.count_spoofed(in_port);
        }
        if !eth.src.is_unicast() {
            return self.count_tx_drop(in_port);
        }
        let Some(dests) = self.learn_and_route(now, id, in_port, &eth) else {
            return;
        };
        match eth.ethertype {
            ETHERTYPE_IPV6 => {
                self.counters.ipv6_dropped += 1;
                self.count_tx_drop(in_port);
            }
            ETHERTYPE_IPV4 => self.switch_ipv4(now, id, in_port, frame, &eth, dests),
            other => {
                if other == ETHERTYPE_ARP
                    && from_app.is_some()
                    && let Ok(ArpRepr::EthernetIpv4 {
                        source_protocol_addr,
                        ..
                    }) = wire::arp(frame, &eth)
                    && !source_protocol_addr.is_unspecified()
                    && let Some(app) = self.apps.get_mut(&in_port)
                {
                    app.ip = Some(source_protocol_addr);
                    app.bound = true;
                }
                self.flood(frame, &dests);
            }
        }
    }

    /// Learns the sender's MAC and says where the frame goes.
    fn learn_and_route(
        &mut self,
        now: Instant,
        id: InstId,
        in_port: PortId,
        eth: &Eth,
    ) -> Option<Vec<PortId>> {
        let max = self.limits.max_macs_per_switch;
        let from_app = self.apps.contains_key(&in_port);
        let inst = self.instances.get_mut(&id)?;
        // An outside station may not take over an app's MAC.
        let app_mac = inst
            .ports
            .iter()
            .any(|p| self.apps.get(p).is_some_and(|a| a.cfg.mac == eth.src));
        if (from_app || !app_mac) && (inst.macs.len() < max || inst.macs.contains_key(&eth.src)) {
            inst.macs.insert(eth.src, (in_port, now));
        }
        let mut all: Vec<PortId> = inst.ports.iter().copied().collect();
        if let Some(device) = inst.cfg.device_port
            && self.externals.contains_key(&device)
        {
            all.push(device);
        }
        all.retain(|p| *p != in_port);
        let dests = match inst.macs.get(&eth.dst) {
            Some((port, _)) if eth.dst.is_unicast() => {
                if *port == in_port {
                    return None;
                }
                alloc::vec![*port]
            }
            _ => all,
        };
        self.wake_at(now + self.limits.mac_age);
        Some(dests)
    }

    fn flood(&mut self, frame: &[u8], dests: &[PortId]) {
        for port in dests {
            self.send(*port, frame.to_vec());
        }
    }

    fn switch_ipv4(
        &mut self,
        now: Instant,
        id: InstId,
        in_port: PortId,
        frame: &[u8],
        eth: &Eth,
        dests: Vec<PortId>,
    ) {
        let ip = match wire::ipv4(frame, eth.l3) {
            Ok(ip) => ip,
            Err(_) => return self.count_malformed(in_port),
        };
        if ip.is_later_fragment() {
            return self.follow_fragment(now, in_port, frame, &ip);
        }
        let l4 = match wire::transport(frame, &ip) {
            Ok(l4) => l4,
            Err(_) => return self.count_malformed(in_port),
        };
        let essential = match l4 {
            L4::Udp { sport, dport } => {
                [sport, dport].contains(&53)
                    || (sport, dport) == (dhcp::CLIENT_PORT, dhcp::SERVER_PORT)
                    || (sport, dport) == (dhcp::SERVER_PORT, dhcp::CLIENT_PORT)
            }
            L4::Tcp { sport, dport, .. } => sport == 53 || dport == 53,
            _ => false,
        };
        let from_app = self.apps.contains_key(&in_port);
        let mut flows: Vec<(FlowId, bool)> = Vec::new();
        let mut allowed = Vec::new();
        if essential {
            if from_app && !self.spend(in_port, now) {
                return;
            }
            self.snoop(now, frame, &ip, &l4, &dests);
            allowed = dests;
        } else {
            let via = self.instances.get(&id).and_then(|i| i.cfg.device_port);
            if from_app && !self.switch_admit(now, in_port, &ip, &l4, true, via, &mut flows) {
                return;
            }
            for dest in dests {
                if !self.apps.contains_key(&dest)
                    || self.switch_admit(now, dest, &ip, &l4, false, via, &mut flows)
                {
                    allowed.push(dest);
                }
            }
        }
        let out = &frame[..ip.end().max(eth.l3)];
        if ip.is_fragment() {
            self.remember_fragment(
                now,
                in_port,
                &ip,
                FragPlan {
                    outs: allowed.clone(),
                    rewrite: None,
                    macs: None,
                    routed: false,
                    uplink: None,
                    flows,
                    expires: now + FRAGMENT_TIMEOUT,
                },
            );
        }
        self.flood(out, &allowed);
    }

    /// Tracks the packet on `port`'s flow (it comes `from_app` or goes to
    /// it); false if the app's ACL refuses it.
    #[allow(clippy::too_many_arguments)]
    fn switch_admit(
        &mut self,
        now: Instant,
        port: PortId,
        ip: &Ip,
        l4: &L4,
        from_app: bool,
        via: Option<PortId>,
        flows: &mut Vec<(FlowId, bool)>,
    ) -> bool {
        let (app_ip, remote_ip) = if from_app {
            (ip.src, ip.dst)
        } else {
            (ip.dst, ip.src)
        };
        if let L4::IcmpError { inner, .. } = l4 {
            // From the app: about a packet it got; to it: about one it sent.
            let ports = match (inner.proto == PROTO_ICMP, from_app) {
                (true, _) => (inner.sport, 0),
                (false, true) => (inner.dport, inner.sport),
                (false, false) => (inner.sport, inner.dport),
            };
            let key = key_for(port, inner.proto, app_ip, remote_ip, ports);
            return match self.related(now, &key, from_app, ip.total_len) {
                Some(id) => {
                    flows.push((id, from_app));
                    true
                }
                None => {
                    self.count_tx_drop(port);
                    false
                }
            };
        }
        let Some(ports) = app_ports(l4, from_app) else {
            return false;
        };
        let flags = match l4 {
            L4::Tcp { flags, .. } => *flags,
            _ => 0,
        };
        let key = key_for(port, ip.proto, app_ip, remote_ip, ports);
        let start = may_start(l4).then_some(Start {
            inbound: !from_app,
            via,
            nat: None,
        });
        match self.track(now, key, start, from_app, ip.total_len, flags) {
            Ok(id) => {
                flows.push((id, from_app));
                true
            }
            Err(_) => false,
        }
    }

    /// Learns from DHCP acknowledgements and DNS answers going to apps.
    fn snoop(&mut self, now: Instant, frame: &[u8], ip: &Ip, l4: &L4, dests: &[PortId]) {
        let Some(payload) = frame.get(ip.l4() + 8..ip.end()) else {
            return;
        };
        match *l4 {
            L4::Udp {
                sport: dhcp::SERVER_PORT,
                dport: dhcp::CLIENT_PORT,
            } => {
                for port in dests {
                    let Some(app) = self.apps.get_mut(port) else {
                        continue;
                    };
                    if let Some(addr) = dhcp::snoop_ack(payload, app.cfg.mac) {
                        app.ip = Some(addr);
                        app.bound = true;
                    }
                }
            }
            L4::Udp { sport: 53, .. } => {
                let ports: Vec<PortId> = dests
                    .iter()
                    .copied()
                    .filter(|p| self.apps.contains_key(p))
                    .collect();
                if let Ok(learned) = crate::dns::wire::parse_answer(payload) {
                    for port in ports {
                        self.log_dns(port, &learned, now);
                    }
                }
            }
            _ => {}
        }
    }
}
