//! Frames from apps on local instances. The instance is the apps' router:
//! it answers ARP for every address of the subnet with its own MAC (so
//! apps reach each other through it, under their ACLs), serves DHCP, DNS
//! and ping at its gateway address and the metadata server at
//! 169.254.169.254, routes to the other apps of the subnet, and NATs the
//! rest to its uplink. An app may only send from its MAC and address
//! (and 0.0.0.0 for DHCP).

use alloc::vec;
use core::net::Ipv4Addr;

use smoltcp::time::Instant;
use smoltcp::wire::{ArpOperation, ArpRepr};

use super::verdict::{Start, app_ports, key_for, may_start};
use super::{Engine, InstId};
use crate::config::PortId;
use crate::dhcp;
use crate::frag::{FRAGMENT_TIMEOUT, FragKey, FragPlan};
use crate::metadata::content::METADATA_ADDR;
use crate::wire::{
    self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Eth, Ip, L4, Side, TCP_ACK, TCP_SYN,
};

/// The facts about an app and its instance a packet needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sender {
    pub port: PortId,
    pub inst: InstId,
    pub ip: Ipv4Addr,
}

impl Engine {
    pub(super) fn local_from_app(&mut self, now: Instant, port: PortId, frame: &[u8]) {
        let Some(app) = self.apps.get(&port) else {
            return;
        };
        let (mac, inst, ip) = (app.cfg.mac, app.inst, app.ip);
        let Some(ip) = ip else {
            self.count_tx_drop(port);
            return;
        };
        let eth = match wire::ethernet(frame) {
            Ok(eth) => eth,
            Err(_) => return self.count_malformed(port),
        };
        if eth.src != mac {
            return self.count_spoofed(port);
        }
        if eth.vlan.is_some() {
            return self.count_tx_drop(port);
        }
        let sender = Sender { port, inst, ip };
        match eth.ethertype {
            ETHERTYPE_ARP => self.local_arp(now, sender, frame, &eth),
            ETHERTYPE_IPV4 => self.local_ipv4(now, sender, frame, &eth),
            ETHERTYPE_IPV6 => {
                self.counters.ipv6_dropped += 1;
                self.count_tx_drop(port);
            }
            _ => self.count_tx_drop(port),
        }
    }

    fn local_arp(&mut self, now: Instant, sender: Sender, frame: &[u8], eth: &Eth) {
        let repr = match wire::arp(frame, eth) {
            Ok(repr) => repr,
            Err(_) => return self.count_malformed(sender.port),
        };
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } = repr
        else {
            return self.count_malformed(sender.port);
        };
        if source_hardware_addr != eth.src
            || (source_protocol_addr != sender.ip && !source_protocol_addr.is_unspecified())
        {
            return self.count_spoofed(sender.port);
        }
        let Some((subnet, bridge_mac)) = self
            .instances
            .get(&sender.inst)
            .and_then(|i| i.local.as_ref().map(|l| (l.cfg.subnet, i.cfg.bridge_mac)))
        else {
            return;
        };
        let asks_other = operation == ArpOperation::Request
            && target_protocol_addr != sender.ip
            && subnet.contains_addr(&target_protocol_addr)
            && crate::config::is_host_of(subnet, target_protocol_addr);
        if !asks_other || source_protocol_addr.is_unspecified() {
            return;
        }
        if !self.spend(sender.port, now) {
            return;
        }
        let reply = wire::arp_reply(bridge_mac, target_protocol_addr, eth.src, sender.ip);
        self.send(sender.port, reply);
    }

    fn local_ipv4(&mut self, now: Instant, sender: Sender, frame: &[u8], eth: &Eth) {
        let port = sender.port;
        let ip = match wire::ipv4(frame, eth.l3) {
            Ok(ip) => ip,
            Err(_) => return self.count_malformed(port),
        };
        let l4 = match wire::transport(frame, &ip) {
            Ok(l4) => l4,
            Err(_) => return self.count_malformed(port),
        };
        let dhcp_client = matches!(
            l4,
            L4::Udp {
                sport: dhcp::CLIENT_PORT,
                dport: dhcp::SERVER_PORT
            }
        );
        if ip.src != sender.ip && !(ip.src.is_unspecified() && dhcp_client) {
            return self.count_spoofed(port);
        }
        let Some((gateway, subnet)) = self
            .instances
            .get(&sender.inst)
            .and_then(|i| i.local.as_ref())
            .map(|l| (l.cfg.gateway, l.cfg.subnet))
        else {
            return;
        };
        let broadcast = ip.dst.is_broadcast() || subnet.broadcast() == Some(ip.dst);
        if dhcp_client && (ip.dst == gateway || broadcast) && !ip.is_fragment() {
            return self.serve_dhcp(now, sender, frame, &ip);
        }
        if ip.is_later_fragment() {
            return self.follow_fragment(now, port, frame, &ip);
        }
        if ip.dst == gateway || ip.dst == METADATA_ADDR {
            if ip.is_fragment() {
                self.counters.fragments_to_self += 1;
                return self.count_tx_drop(port);
            }
            return match (ip.dst == gateway, l4) {
                (true, L4::Udp { sport, dport: 53 }) => {
                    self.serve_dns(now, sender, frame, &ip, sport)
                }
                (true, L4::EchoRequest { .. }) => self.ping_gateway(now, sender, frame, &ip),
                (
                    false,
                    L4::Tcp {
                        dport: 80, flags, ..
                    },
                ) => self.metadata_request(now, sender, frame, &ip, flags),
                _ => self.count_tx_drop(port),
            };
        }
        if broadcast || ip.dst.is_multicast() || ip.dst.is_unspecified() {
            return self.count_tx_drop(port);
        }
        if subnet.contains_addr(&ip.dst) {
            self.app_to_app(now, sender, frame, &ip, &l4);
        } else {
            self.out_of_uplink(now, sender, frame, &ip, &l4);
        }
    }

    fn ping_gateway(&mut self, now: Instant, sender: Sender, frame: &[u8], ip: &Ip) {
        if !self.spend(sender.port, now) {
            return;
        }
        let Some((bridge_mac, app_mac)) = self.macs_of(sender) else {
            return;
        };
        if let Some(reply) = wire::icmp_echo_reply(frame, ip, bridge_mac, app_mac) {
            self.send(sender.port, reply);
        }
    }

    /// The instance's MAC and the app's.
    pub(super) fn macs_of(
        &self,
        sender: Sender,
    ) -> Option<(
        smoltcp::wire::EthernetAddress,
        smoltcp::wire::EthernetAddress,
    )> {
        let inst = self.instances.get(&sender.inst)?;
        let app = self.apps.get(&sender.port)?;
        Some((inst.cfg.bridge_mac, app.cfg.mac))
    }

    fn metadata_request(&mut self, now: Instant, sender: Sender, frame: &[u8], ip: &Ip, flags: u8) {
        let opening = flags & TCP_SYN != 0 && flags & TCP_ACK == 0;
        if opening && !self.spend(sender.port, now) {
            return;
        }
        let Some(local) = self
            .instances
            .get_mut(&sender.inst)
            .and_then(|i| i.local.as_mut())
        else {
            return;
        };
        let packet = frame.get(ip.l3..ip.end()).unwrap_or(&[]);
        if !local.metadata.deliver(packet) {
            self.counters.metadata_queue_full += 1;
            return self.count_tx_drop(sender.port);
        }
        self.poll_metadata_of(now, sender.inst);
    }

    /// The peer app on the same subnet, through both apps' ACLs.
    fn app_to_app(&mut self, now: Instant, sender: Sender, frame: &[u8], ip: &Ip, l4: &L4) {
        let port = sender.port;
        let peer = self
            .instances
            .get(&sender.inst)
            .and_then(|i| i.local.as_ref())
            .and_then(|l| l.by_ip.get(&ip.dst).copied());
        let Some(peer) = peer.filter(|p| *p != port) else {
            return self.count_tx_drop(port);
        };
        let bytes = ip.total_len;
        let flows = if let L4::IcmpError { inner, .. } = l4 {
            // The app reports a problem with a packet it got from the peer.
            let own = key_for(
                port,
                inner.proto,
                ip.src,
                ip.dst,
                (inner.dport, inner.sport),
            );
            let theirs = key_for(
                peer,
                inner.proto,
                ip.dst,
                ip.src,
                (inner.sport, inner.dport),
            );
            let echo = inner.proto == crate::wire::PROTO_ICMP;
            let (own, theirs) = if echo {
                (
                    key_for(port, inner.proto, ip.src, ip.dst, (inner.sport, 0)),
                    key_for(peer, inner.proto, ip.dst, ip.src, (inner.sport, 0)),
                )
            } else {
                (own, theirs)
            };
            match (
                self.related(now, &own, true, bytes),
                self.related(now, &theirs, false, bytes),
            ) {
                (Some(a), Some(b)) => vec![(a, true), (b, false)],
                _ => return self.count_tx_drop(port),
            }
        } else {
            let Some(ports) = app_ports(l4, true) else {
                return self.count_tx_drop(port);
            };
            let flags = match l4 {
                L4::Tcp { flags, .. } => *flags,
                _ => 0,
            };
            let start = may_start(l4);
            let own = key_for(port, ip.proto, ip.src, ip.dst, ports);
            let own_start = start.then_some(Start {
                inbound: false,
                via: None,
                nat: None,
            });
            let Ok(a) = self.track(now, own, own_start, true, bytes, flags) else {
                return;
            };
            let Some(peer_ports) = app_ports(l4, false) else {
                return;
            };
            let theirs = key_for(peer, ip.proto, ip.dst, ip.src, peer_ports);
            let their_start = start.then_some(Start {
                inbound: true,
                via: None,
                nat: None,
            });
            let Ok(b) = self.track(now, theirs, their_start, false, bytes, flags) else {
                return;
            };
            vec![(a, true), (b, false)]
        };
        let Some(peer_mac) = self.apps.get(&peer).map(|a| a.cfg.mac) else {
            return;
        };
        let Some(bridge_mac) = self.instances.get(&sender.inst).map(|i| i.cfg.bridge_mac) else {
            return;
        };
        let mut out = frame[..ip.end()].to_vec();
        wire::set_macs(&mut out, peer_mac, bridge_mac);
        if ip.is_fragment() {
            self.remember_fragment(
                now,
                port,
                ip,
                FragPlan {
                    outs: vec![peer],
                    rewrite: None,
                    macs: Some((peer_mac, bridge_mac)),
                    routed: false,
                    flows,
                    uplink: None,
                    expires: now + FRAGMENT_TIMEOUT,
                },
            );
        }
        self.send(peer, out);
    }

    /// Out through the instance's uplink, NATed.
    fn out_of_uplink(&mut self, now: Instant, sender: Sender, frame: &[u8], ip: &Ip, l4: &L4) {
        let port = sender.port;
        let uplink = self
            .instances
            .get(&sender.inst)
            .and_then(|i| i.cfg.device_port)
            .filter(|p| self.uplinks.contains_key(p));
        let Some(uplink) = uplink else {
            return self.count_tx_drop(port);
        };
        let Some(uplink_mtu) = self.uplinks.get(&uplink).map(|u| usize::from(u.cfg.mtu)) else {
            return;
        };
        let bytes = ip.total_len;
        // The flow, and how the packet is rewritten.
        let (id, rewrite_port) = if let L4::IcmpError { inner, .. } = l4 {
            // About a packet the app got through a port map or reply.
            let ports = if inner.proto == crate::wire::PROTO_ICMP {
                (inner.sport, 0)
            } else {
                (inner.dport, inner.sport)
            };
            let key = key_for(port, inner.proto, ip.src, ip.dst, ports);
            match self.related(now, &key, true, bytes) {
                Some(id) => (id, None),
                None => return self.count_tx_drop(port),
            }
        } else {
            let Some(ports) = app_ports(l4, true) else {
                return self.count_tx_drop(port);
            };
            let flags = match l4 {
                L4::Tcp { flags, .. } => *flags,
                _ => 0,
            };
            let has_ports = matches!(
                l4,
                L4::Tcp { .. } | L4::Udp { .. } | L4::EchoRequest { .. } | L4::EchoReply { .. }
            );
            let key = key_for(port, ip.proto, ip.src, ip.dst, ports);
            let start = may_start(l4).then_some(Start {
                inbound: false,
                via: Some(uplink),
                nat: Some((uplink, if has_ports { None } else { Some(0) })),
            });
            match self.track(now, key, start, true, bytes, flags) {
                Ok(id) => (id, has_ports.then_some(())),
                Err(_) => return,
            }
        };
        let Some(nat) = self.flows.get(id).and_then(|f| f.nat) else {
            return self.count_tx_drop(port);
        };
        if ip.total_len > uplink_mtu {
            self.counters.too_big += 1;
            if ip.dont_frag
                && let Some((bridge_mac, app_mac)) = self.macs_of(sender)
                && let Some(gateway) = self.gateway_of(sender.inst)
                && let Some(icmp) = wire::icmp_frag_needed(
                    frame,
                    ip,
                    gateway,
                    bridge_mac,
                    app_mac,
                    uplink_mtu as u16,
                )
            {
                self.send(port, icmp);
            }
            return self.count_tx_drop(port);
        }
        let mut out = frame[..ip.end()].to_vec();
        if wire::decrement_ttl(&mut out, ip).is_none() {
            self.counters.ttl_expired += 1;
            return self.count_tx_drop(port);
        }
        if let L4::IcmpError { inner, .. } = l4 {
            // The quoted packet went from the remote end to the app:
            // its destination is the app, shown outside as the NAT's.
            if wire::rewrite_icmp_error(
                &mut out,
                ip,
                inner,
                Side::Dst,
                nat.external.0,
                nat.external.1,
            )
            .is_none()
            {
                return self.count_malformed(port);
            }
        }
        let new_port = rewrite_port.map(|()| nat.external.1);
        if wire::rewrite_address(&mut out, ip, l4, Side::Src, nat.external.0, new_port).is_none() {
            return self.count_malformed(port);
        }
        if ip.is_fragment() {
            self.remember_fragment(
                now,
                port,
                ip,
                FragPlan {
                    outs: vec![uplink],
                    rewrite: Some((Side::Src, nat.external.0)),
                    macs: None,
                    routed: true,
                    flows: vec![(id, true)],
                    uplink: Some(uplink),
                    expires: now + FRAGMENT_TIMEOUT,
                },
            );
        }
        self.uplink_send(now, uplink, ip.dst, out);
    }

    pub(super) fn gateway_of(&self, inst: InstId) -> Option<Ipv4Addr> {
        self.instances
            .get(&inst)?
            .local
            .as_ref()
            .map(|l| l.cfg.gateway)
    }

    pub(super) fn remember_fragment(
        &mut self,
        now: Instant,
        port: PortId,
        ip: &Ip,
        plan: FragPlan,
    ) {
        let key = FragKey {
            port,
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            ident: ip.ident,
        };
        self.fragments.remember(key, plan);
        self.wake_at(now + FRAGMENT_TIMEOUT);
    }

    /// A fragment after the first: treated as its first was.
    pub(super) fn follow_fragment(&mut self, now: Instant, port: PortId, frame: &[u8], ip: &Ip) {
        let key = FragKey {
            port,
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            ident: ip.ident,
        };
        let Some(plan) = self.fragments.plan(&key, now).cloned() else {
            self.counters.fragments_unmatched += 1;
            return self.count_tx_drop(port);
        };
        for (id, from_app) in &plan.flows {
            if let Some(flow) = self.flows.get_mut(*id) {
                if *from_app {
                    flow.tx.add(ip.total_len);
                } else {
                    flow.rx.add(ip.total_len);
                }
            }
        }
        let mut out = frame[..ip.end()].to_vec();
        if plan.routed && wire::decrement_ttl(&mut out, ip).is_none() {
            self.counters.ttl_expired += 1;
            return;
        }
        if let Some((side, addr)) = plan.rewrite
            && wire::rewrite_address(&mut out, ip, &L4::LaterFragment, side, addr, None).is_none()
        {
            return;
        }
        if !ip.more_frags {
            self.fragments.forget(&key);
        }
        if let Some(uplink) = plan.uplink {
            return self.uplink_send(now, uplink, ip.dst, out);
        }
        for (i, out_port) in plan.outs.iter().enumerate() {
            let mut copy = if i + 1 == plan.outs.len() {
                core::mem::take(&mut out)
            } else {
                out.clone()
            };
            if let Some((dst, src)) = plan.macs {
                wire::set_macs(&mut copy, dst, src);
            }
            self.send(*out_port, copy);
        }
    }
}
