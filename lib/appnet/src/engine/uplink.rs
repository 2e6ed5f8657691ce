//! The uplink side: ARP (answering for the uplink's address, resolving
//! next hops, holding frames until they resolve), and what arrives at the
//! uplink's address: replies of NATed flows, new connections to port
//! maps, the DNS forwarder's answers, ICMP errors about NATed packets,
//! pings; and the hairpin, by which apps reach port maps at the uplink's
//! address.

use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{ArpOperation, ArpRepr};

use super::verdict::{Start, app_ports, key_for, may_start};
use super::{ArpEntry, Engine, Waiting};
use crate::config::PortId;
use crate::flows::{FlowId, NatKey};
use crate::frag::{FRAGMENT_TIMEOUT, FragPlan};
use crate::wire::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, Eth, Ip, L4, PROTO_ICMP, Side};

/// How long a resolved next hop is trusted.
const ARP_TTL: Duration = Duration::from_secs(600);
/// Between two requests for the same next hop.
const ARP_RETRY: Duration = Duration::from_secs(1);
const ARP_TRIES: u8 = 3;

impl Engine {
    pub(super) fn uplink_from(&mut self, now: Instant, uplink: PortId, frame: &[u8]) {
        let Some((our_mac, our_ip)) = self
            .uplinks
            .get(&uplink)
            .map(|u| (u.cfg.mac, u.cfg.address.address()))
        else {
            return;
        };
        let Ok(eth) = wire::ethernet(frame) else {
            self.counters.malformed += 1;
            return;
        };
        if eth.dst != our_mac && !eth.dst.is_broadcast() {
            return;
        }
        match eth.ethertype {
            ETHERTYPE_ARP => self.uplink_arp(now, uplink, frame, &eth, our_ip),
            ETHERTYPE_IPV4 if eth.vlan.is_none() => {
                let Ok(ip) = wire::ipv4(frame, eth.l3) else {
                    self.counters.malformed += 1;
                    return;
                };
                if ip.dst != our_ip {
                    return;
                }
                self.uplink_ipv4(now, uplink, frame, &eth, &ip);
            }
            _ => {}
        }
    }

    fn uplink_arp(
        &mut self,
        now: Instant,
        uplink: PortId,
        frame: &[u8],
        eth: &Eth,
        our_ip: Ipv4Addr,
    ) {
        let Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) = wire::arp(frame, eth)
        else {
            self.counters.malformed += 1;
            return;
        };
        let Some(up) = self.uplinks.get_mut(&uplink) else {
            return;
        };
        let for_us = target_protocol_addr == our_ip;
        // Learn only what we asked for or who asks us: anyone else's
        // chatter does not get into the cache.
        if (for_us || up.asked.contains_key(&source_protocol_addr))
            && source_hardware_addr.is_unicast()
            && !source_protocol_addr.is_unspecified()
        {
            up.arp.insert(
                source_protocol_addr,
                ArpEntry {
                    mac: source_hardware_addr,
                    expires: now + ARP_TTL,
                },
            );
            up.asked.remove(&source_protocol_addr);
        }
        let our_mac = up.cfg.mac;
        if operation == ArpOperation::Request && for_us {
            let reply =
                wire::arp_reply(our_mac, our_ip, source_hardware_addr, source_protocol_addr);
            self.send(uplink, reply);
        }
        self.release_waiting(now, uplink);
    }

    /// Sends the frames whose next hop is now known.
    fn release_waiting(&mut self, now: Instant, uplink: PortId) {
        let Some(up) = self.uplinks.get_mut(&uplink) else {
            return;
        };
        let mut ready = Vec::new();
        let mut keep = alloc::collections::VecDeque::new();
        while let Some(w) = up.waiting.pop_front() {
            match up.arp.get(&w.next_hop).filter(|e| e.expires > now) {
                Some(entry) => {
                    let mut frame = w.frame;
                    wire::set_macs(&mut frame, entry.mac, up.cfg.mac);
                    ready.push(frame);
                }
                None => keep.push_back(w),
            }
        }
        up.waiting = keep;
        for frame in ready {
            self.send(uplink, frame);
        }
    }

    /// Sends an IPv4 packet in `frame` (its MACs to be set) towards `dst`.
    pub(super) fn uplink_send(
        &mut self,
        now: Instant,
        uplink: PortId,
        dst: Ipv4Addr,
        mut frame: Vec<u8>,
    ) {
        let max_waiting = self.limits.max_arp_waiting;
        let Some(up) = self.uplinks.get_mut(&uplink) else {
            return;
        };
        if dst == up.cfg.address.address() {
            return self.hairpin(now, uplink, frame);
        }
        let next_hop = if up.cfg.address.contains_addr(&dst) {
            dst
        } else if let Some(gateway) = up.cfg.gateway {
            gateway
        } else {
            self.counters.uplink_unmatched += 1;
            return;
        };
        if let Some(entry) = up.arp.get(&next_hop).filter(|e| e.expires > now) {
            wire::set_macs(&mut frame, entry.mac, up.cfg.mac);
            return self.send(uplink, frame);
        }
        if up.waiting.len() >= max_waiting {
            up.waiting.pop_front();
            self.counters.arp_waiting_dropped += 1;
        }
        up.waiting.push_back(Waiting {
            next_hop,
            frame,
            since: now,
        });
        let ask = match up.asked.get(&next_hop) {
            None => true,
            Some((at, tries)) => *at + ARP_RETRY <= now && *tries < ARP_TRIES,
        };
        if ask {
            let tries = up.asked.get(&next_hop).map_or(0, |(_, t)| *t) + 1;
            up.asked.insert(next_hop, (now, tries));
            let request = wire::arp_request(up.cfg.mac, up.cfg.address.address(), next_hop);
            self.send(uplink, request);
            self.wake_at(now + ARP_RETRY);
        }
    }

    /// Hairpin NAT: a packet an app sent to the uplink's own address,
    /// already translated as it leaves (its source the uplink's address
    /// and the flow's outside port), arrives back at the uplink as if from
    /// outside. So a port map answers an app behind the same uplink as it
    /// answers the outside, its server seeing the uplink's address as a
    /// NATed client's, and the replies find the app's flow the way the
    /// outside's do. One turn only: a hairpinned packet that makes the
    /// engine send to its own address again (an ICMP error about it) is
    /// dropped, so nothing loops.
    fn hairpin(&mut self, now: Instant, uplink: PortId, mut frame: Vec<u8>) {
        let Some(our_mac) = self.uplinks.get(&uplink).map(|u| u.cfg.mac) else {
            return;
        };
        if self.hairpinning {
            self.counters.uplink_unmatched += 1;
            return;
        }
        wire::set_macs(&mut frame, our_mac, our_mac);
        self.hairpinning = true;
        self.uplink_from(now, uplink, &frame);
        self.hairpinning = false;
    }

    /// Retries ARP, gives up on next hops that do not answer; returns when
    /// to look again.
    pub(super) fn sweep_uplinks(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut requests = Vec::new();
        let mut dropped = 0;
        for (port, up) in self.uplinks.iter_mut() {
            up.arp.retain(|_, e| e.expires > now);
            let mut gave_up = Vec::new();
            for (hop, (at, tries)) in up.asked.iter_mut() {
                if *at + ARP_RETRY > now {
                    continue;
                }
                if *tries >= ARP_TRIES {
                    gave_up.push(*hop);
                } else if up.waiting.iter().any(|w| w.next_hop == *hop) {
                    *at = now;
                    *tries += 1;
                    requests.push((
                        *port,
                        wire::arp_request(up.cfg.mac, up.cfg.address.address(), *hop),
                    ));
                }
            }
            for hop in gave_up {
                up.asked.remove(&hop);
                let before = up.waiting.len();
                up.waiting.retain(|w| w.next_hop != hop);
                dropped += before - up.waiting.len();
            }
            let stale = now - Duration::from_secs(u64::from(ARP_TRIES) * 2);
            let before = up.waiting.len();
            up.waiting.retain(|w| w.since > stale);
            dropped += before - up.waiting.len();
            if !up.waiting.is_empty() || !up.asked.is_empty() {
                let t = now + ARP_RETRY;
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        self.counters.arp_waiting_dropped += dropped as u64;
        for (port, request) in requests {
            self.send(port, request);
        }
        next
    }

    fn uplink_ipv4(&mut self, now: Instant, uplink: PortId, frame: &[u8], eth: &Eth, ip: &Ip) {
        if ip.is_later_fragment() {
            return self.follow_fragment(now, uplink, frame, ip);
        }
        let Ok(l4) = wire::transport(frame, ip) else {
            self.counters.malformed += 1;
            return;
        };
        match l4 {
            L4::IcmpError { inner, .. } => {
                return self.uplink_icmp_error(now, uplink, frame, ip, &l4, inner);
            }
            L4::EchoRequest { .. } => {
                if let Some(our_mac) = self.uplinks.get(&uplink).map(|u| u.cfg.mac)
                    && let Some(reply) = wire::icmp_echo_reply(frame, ip, our_mac, eth.src)
                {
                    if self.hairpinning && ip.src == ip.dst {
                        // An app's ping of the uplink's address, come
                        // round the hairpin: the answer goes back the
                        // same way, to the app's NATed ping.
                        self.uplink_from(now, uplink, &reply);
                    } else {
                        self.send(uplink, reply);
                    }
                }
                return;
            }
            _ => {}
        }
        let Some((_, remote_port)) = app_ports(&l4, false) else {
            self.counters.uplink_unmatched += 1;
            return;
        };
        let outside_port = match l4 {
            L4::Tcp { dport, .. } | L4::Udp { dport, .. } => dport,
            L4::EchoReply { ident } => ident,
            _ => 0,
        };
        let nat_key = NatKey {
            uplink,
            proto: ip.proto,
            external_port: outside_port,
            remote: (ip.src, remote_port),
        };
        let flags = match l4 {
            L4::Tcp { flags, .. } => flags,
            _ => 0,
        };
        if let Some(id) = self.flows.find_nat(&nat_key) {
            let Some(key) = self.flows.get(id).map(|f| f.key) else {
                return;
            };
            if self
                .track(now, key, None, false, ip.total_len, flags)
                .is_ok()
            {
                self.deliver_inbound(now, id, frame, ip, &l4, None);
            }
            return;
        }
        if let L4::Udp { sport: 53, dport } = l4
            && self.dns.get(uplink, dport).is_some()
        {
            return self.dns_answer(now, uplink, frame, ip, dport);
        }
        if matches!(l4, L4::Tcp { .. } | L4::Udp { .. })
            && may_start(&l4)
            && self.port_mapped(now, uplink, frame, ip, &l4, flags)
        {
            return;
        }
        self.counters.uplink_unmatched += 1;
    }

    /// A new connection to a port map: started on the app's interface
    /// and decided by its ACL, seen from the app.
    fn port_mapped(
        &mut self,
        now: Instant,
        uplink: PortId,
        frame: &[u8],
        ip: &Ip,
        l4: &L4,
        flags: u8,
    ) -> bool {
        let Some((sport, dport)) = l4.ports() else {
            return false;
        };
        let found = self.instances.values().find_map(|i| {
            (i.cfg.device_port == Some(uplink) && i.cfg.activated)
                .then(|| i.port_maps.get(&(ip.proto, dport)).copied())
                .flatten()
        });
        let Some(map) = found else {
            return false;
        };
        let Some(app_ip) = self.apps.get(&map.port).and_then(|a| a.ip) else {
            return false;
        };
        let key = key_for(map.port, ip.proto, app_ip, ip.src, (map.app_port, sport));
        let start = Start {
            inbound: true,
            via: Some(uplink),
            nat: Some((uplink, Some(dport))),
        };
        if let Ok(id) = self.track(now, key, Some(start), false, ip.total_len, flags) {
            self.deliver_inbound(now, id, frame, ip, l4, None);
        }
        true
    }

    /// A packet of NATed flow `id` to its app: destination translated
    /// back, TTL down, MACs of the instance.
    fn deliver_inbound(
        &mut self,
        now: Instant,
        id: FlowId,
        frame: &[u8],
        ip: &Ip,
        l4: &L4,
        icmp_inner: Option<&wire::Inner>,
    ) {
        let Some(flow) = self.flows.get(id) else {
            return;
        };
        let (port, app_end, nat) = (flow.key.port, flow.key.local, flow.nat);
        let Some(app) = self.apps.get(&port) else {
            return;
        };
        let Some(inst) = self.instances.get(&app.inst) else {
            return;
        };
        let (app_mac, bridge_mac, mtu) =
            (app.cfg.mac, inst.cfg.bridge_mac, usize::from(inst.cfg.mtu));
        if ip.total_len > mtu {
            self.counters.too_big += 1;
            if let Some(nat) = nat
                && ip.dont_frag
            {
                let uplink = nat.uplink;
                if let Some(our_mac) = self.uplinks.get(&uplink).map(|u| u.cfg.mac)
                    && let Some(icmp) = wire::icmp_frag_needed(
                        frame,
                        ip,
                        nat.external.0,
                        our_mac,
                        our_mac,
                        mtu as u16,
                    )
                {
                    // Its MACs are set once the next hop is known.
                    self.uplink_send(now, uplink, ip.src, icmp);
                }
            }
            return;
        }
        let mut out = frame[..ip.end()].to_vec();
        if wire::decrement_ttl(&mut out, ip).is_none() {
            self.counters.ttl_expired += 1;
            return;
        }
        if let Some(inner) = icmp_inner
            && wire::rewrite_icmp_error(&mut out, ip, inner, Side::Src, app_end.0, app_end.1)
                .is_none()
        {
            return;
        }
        let new_port = match l4 {
            L4::Tcp { .. } | L4::Udp { .. } | L4::EchoReply { .. } => Some(app_end.1),
            _ => None,
        };
        if wire::rewrite_address(&mut out, ip, l4, Side::Dst, app_end.0, new_port).is_none() {
            return;
        }
        wire::set_macs(&mut out, app_mac, bridge_mac);
        if ip.is_fragment() {
            let in_port = nat.map_or(port, |n| n.uplink);
            self.remember_fragment(
                now,
                in_port,
                ip,
                FragPlan {
                    outs: vec![port],
                    rewrite: Some((Side::Dst, app_end.0)),
                    macs: Some((app_mac, bridge_mac)),
                    routed: true,
                    uplink: None,
                    flows: vec![(id, false)],
                    expires: now + FRAGMENT_TIMEOUT,
                },
            );
        }
        self.send(port, out);
    }

    /// An ICMP error about a packet an app sent out through NAT.
    fn uplink_icmp_error(
        &mut self,
        now: Instant,
        uplink: PortId,
        frame: &[u8],
        ip: &Ip,
        l4: &L4,
        inner: wire::Inner,
    ) {
        let remote_port = if inner.proto == PROTO_ICMP {
            0
        } else {
            inner.dport
        };
        let nat_key = NatKey {
            uplink,
            proto: inner.proto,
            external_port: inner.sport,
            remote: (inner.dst, remote_port),
        };
        let Some(id) = self.flows.find_nat(&nat_key) else {
            self.counters.uplink_unmatched += 1;
            return;
        };
        let Some(key) = self.flows.get(id).map(|f| f.key) else {
            return;
        };
        if self.related(now, &key, false, ip.total_len).is_some() {
            self.deliver_inbound(now, id, frame, ip, l4, Some(&inner));
        }
    }
}
