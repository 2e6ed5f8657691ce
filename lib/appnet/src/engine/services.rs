//! The servers of a local instance: DHCP, DNS (local names, forwarding)
//! and the metadata server.

use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::time::Instant;
use smoltcp::wire::UdpPacket;

use super::local::Sender;
use super::{Engine, InstId};
use crate::config::PortId;
use crate::dhcp::{self, Client, Outcome};
use crate::dns::Pending;
use crate::dns::wire::{
    self as dnswire, DnsError, RCODE_FORMERR, RCODE_REFUSED, RCODE_SERVFAIL, TYPE_A,
};
use crate::metadata::content::{self, Caller, Context};
use crate::wire::{self, ETHERTYPE_IPV4, Ip, PROTO_UDP};

/// The payload of a UDP datagram whose checksum holds.
fn udp_payload<'a>(frame: &'a [u8], ip: &Ip) -> Option<&'a [u8]> {
    let bytes = frame.get(ip.l4()..ip.end())?;
    let packet = UdpPacket::new_checked(bytes).ok()?;
    if !packet.verify_checksum(&ip.src.into(), &ip.dst.into()) {
        return None;
    }
    bytes.get(8..usize::from(packet.len()))
}

impl Engine {
    pub(super) fn serve_dhcp(&mut self, now: Instant, sender: Sender, frame: &[u8], ip: &Ip) {
        let port = sender.port;
        if !self.spend(port, now) {
            return;
        }
        let Some(payload) = udp_payload(frame, ip) else {
            return self.count_malformed(port);
        };
        let Some(app) = self.apps.get(&port) else {
            return;
        };
        let Some(inst) = self.instances.get(&sender.inst) else {
            return;
        };
        let Some(local) = inst.local.as_ref() else {
            return;
        };
        let client = Client {
            mac: app.cfg.mac,
            ip: sender.ip,
            mtu: inst.cfg.mtu,
        };
        let bridge_mac = inst.cfg.bridge_mac;
        let gateway = local.cfg.gateway;
        match dhcp::serve(&local.cfg, &client, payload) {
            Ok(reply) => {
                let frame = wire::ipv4_udp_frame(
                    client.mac,
                    bridge_mac,
                    (gateway, dhcp::SERVER_PORT),
                    (reply.dst, dhcp::CLIENT_PORT),
                    &reply.payload,
                );
                if reply.bound
                    && let Some(app) = self.apps.get_mut(&port)
                {
                    app.bound = true;
                }
                self.send(port, frame);
            }
            Err(Outcome::Released) => {
                if let Some(app) = self.apps.get_mut(&port) {
                    app.bound = false;
                }
            }
            Err(Outcome::Declined | Outcome::Ignored) => {}
        }
    }

    /// The addresses of `name` the instance knows itself: its static names
    /// and its apps' host names (with or without the instance's domain).
    fn local_name(&self, inst: InstId, name: &str) -> Option<Vec<Ipv4Addr>> {
        let inst = self.instances.get(&inst)?;
        let local = inst.local.as_ref()?;
        let short = match local.cfg.domain.as_str() {
            "" => name,
            domain => name
                .strip_suffix(domain)
                .and_then(|n| n.strip_suffix('.'))
                .unwrap_or(name),
        };
        let is = |candidate: &str| {
            candidate.eq_ignore_ascii_case(name) || candidate.eq_ignore_ascii_case(short)
        };
        if let Some(host) = local.cfg.static_hosts.iter().find(|h| is(&h.name)) {
            return Some(host.addresses.clone());
        }
        inst.ports.iter().find_map(|p| {
            let app = self.apps.get(p)?;
            (!app.cfg.hostname.is_empty() && is(&app.cfg.hostname))
                .then(|| app.ip.into_iter().collect())
        })
    }

    pub(super) fn serve_dns(
        &mut self,
        now: Instant,
        sender: Sender,
        frame: &[u8],
        ip: &Ip,
        sport: u16,
    ) {
        let port = sender.port;
        if !self.spend(port, now) {
            return;
        }
        let Some(payload) = udp_payload(frame, ip) else {
            return self.count_malformed(port);
        };
        let client = (sender.ip, sport);
        let query = match dnswire::parse_query(payload) {
            Ok(query) => query,
            Err(DnsError::NotAQuery) => return self.count_tx_drop(port),
            Err(_) => {
                if let Some(answer) = dnswire::header_only_error(payload, RCODE_FORMERR) {
                    self.dns_reply(sender, client, &answer);
                }
                return;
            }
        };
        if let Some(addrs) = self.local_name(sender.inst, &query.name) {
            let addrs = if query.qtype == TYPE_A {
                addrs
            } else {
                Vec::new()
            };
            let answer = dnswire::answer(&query, &addrs, 0);
            let learned = dnswire::Learned {
                id: query.id,
                rcode: 0,
                qname: query.name.clone(),
                names: alloc::vec![query.name.clone()],
                addrs: addrs.clone(),
            };
            // `host` rules follow the instance's own answers as well as
            // upstream's: a static entry may name a server outside.
            if let Some(i) = self.instances.get_mut(&sender.inst) {
                i.hosts.learn(&learned.names, &learned.addrs, now);
            }
            self.log_dns(port, &learned, now);
            return self.dns_reply(sender, client, &answer);
        }
        self.forward_dns(now, sender, client, payload, query);
    }

    fn forward_dns(
        &mut self,
        now: Instant,
        sender: Sender,
        client: (Ipv4Addr, u16),
        payload: &[u8],
        query: dnswire::Query,
    ) {
        let port = sender.port;
        let upstream = self
            .instances
            .get(&sender.inst)
            .and_then(|i| i.cfg.device_port)
            .and_then(|p| self.uplinks.get(&p).map(|u| (p, u)))
            .filter(|(_, u)| !u.cfg.dns_servers.is_empty())
            .map(|(p, u)| (p, u.cfg.address.address(), u.cfg.dns_servers.clone()));
        let Some((uplink, our_ip, servers)) = upstream else {
            let answer = dnswire::answer(&query, &[], RCODE_REFUSED);
            return self.dns_reply(sender, client, &answer);
        };
        let per_port = self.limits.max_dns_pending_per_port;
        if self.dns.is_full()
            || self
                .apps
                .get(&port)
                .is_none_or(|a| a.dns_pending >= per_port)
        {
            self.counters.dns_pending_full += 1;
            return self.count_tx_drop(port);
        }
        let instances = &self.instances;
        let reserved = |p: u16| {
            instances.values().any(|i| {
                i.cfg.device_port == Some(uplink) && i.port_maps.contains_key(&(PROTO_UDP, p))
            })
        };
        let Some(our_port) = self
            .flows
            .free_port(uplink, PROTO_UDP, &mut self.rng, reserved)
        else {
            self.counters.nat_ports_exhausted += 1;
            return self.count_tx_drop(port);
        };
        self.flows.hold_port(uplink, PROTO_UDP, our_port);
        let server = servers[usize::from(self.rng.next_u16()) % servers.len()];
        let upstream_id = self.rng.next_u16();
        let mut message = payload.to_vec();
        dnswire::set_id(&mut message, upstream_id);
        let deadline = now + self.limits.dns_timeout;
        self.dns.insert(
            uplink,
            our_port,
            Pending {
                port,
                client,
                client_id: query.id,
                query,
                server,
                upstream_id,
                deadline,
            },
        );
        if let Some(app) = self.apps.get_mut(&port) {
            app.dns_pending += 1;
        }
        self.counters.dns_forwarded += 1;
        self.wake_at(deadline);
        let frame = wire::ipv4_udp_frame(
            smoltcp::wire::EthernetAddress::BROADCAST,
            smoltcp::wire::EthernetAddress::BROADCAST,
            (our_ip, our_port),
            (server, 53),
            &message,
        );
        self.uplink_send(now, uplink, server, frame);
    }

    /// An answer at one of the forwarder's outside ports.
    pub(super) fn dns_answer(
        &mut self,
        now: Instant,
        uplink: PortId,
        frame: &[u8],
        ip: &Ip,
        our_port: u16,
    ) {
        let Some(pending) = self.dns.get(uplink, our_port) else {
            return;
        };
        let Some(payload) = udp_payload(frame, ip) else {
            self.counters.dns_unmatched += 1;
            return;
        };
        let genuine = ip.src == pending.server
            && wire_id(payload) == Some(pending.upstream_id)
            && dnswire::same_question(&pending.query, payload);
        if !genuine {
            self.counters.dns_unmatched += 1;
            return;
        }
        let Some(pending) = self.dns.remove(uplink, our_port) else {
            return;
        };
        self.flows.release_port(uplink, PROTO_UDP, our_port);
        let port = pending.port;
        let Some(app) = self.apps.get_mut(&port) else {
            return;
        };
        app.dns_pending = app.dns_pending.saturating_sub(1);
        let (inst, app_ip) = (app.inst, app.ip);
        if let Ok(learned) = dnswire::parse_answer(payload) {
            if let Some(i) = self.instances.get_mut(&inst) {
                i.hosts.learn(&learned.names, &learned.addrs, now);
            }
            self.log_dns(port, &learned, now);
        }
        if app_ip != Some(pending.client.0) {
            return;
        }
        let mut message = payload.to_vec();
        dnswire::set_id(&mut message, pending.client_id);
        let sender = Sender {
            port,
            inst,
            ip: pending.client.0,
        };
        self.dns_reply(sender, pending.client, &message);
    }

    fn dns_reply(&mut self, sender: Sender, client: (Ipv4Addr, u16), message: &[u8]) {
        let Some((bridge_mac, app_mac)) = self.macs_of(sender) else {
            return;
        };
        let Some(gateway) = self.gateway_of(sender.inst) else {
            return;
        };
        let frame = wire::ipv4_udp_frame(app_mac, bridge_mac, (gateway, 53), client, message);
        self.send(sender.port, frame);
    }

    /// Queries the uplink's DNS never answered get SERVFAIL, so the app's
    /// resolver moves on at once rather than after its own timeout.
    pub(super) fn sweep_dns(&mut self, now: Instant) {
        for ((uplink, our_port), pending) in self.dns.expired(now) {
            self.counters.dns_timeouts += 1;
            self.flows.release_port(uplink, PROTO_UDP, our_port);
            let Some(app) = self.apps.get_mut(&pending.port) else {
                continue;
            };
            app.dns_pending = app.dns_pending.saturating_sub(1);
            if app.ip != Some(pending.client.0) {
                continue;
            }
            let sender = Sender {
                port: pending.port,
                inst: app.inst,
                ip: pending.client.0,
            };
            let answer = dnswire::answer(&pending.query, &[], RCODE_SERVFAIL);
            self.dns_reply(sender, pending.client, &answer);
        }
    }

    pub(super) fn poll_metadata(&mut self, now: Instant) {
        let ids: Vec<InstId> = self
            .instances
            .iter()
            .filter(|(_, i)| i.local.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.poll_metadata_of(now, id);
        }
    }

    /// Runs an instance's metadata server and sends what it answers.
    pub(super) fn poll_metadata_of(&mut self, now: Instant, id: InstId) {
        let apps = &self.apps;
        let node = &self.node;
        let uplinks = &self.uplinks;
        let Some(inst) = self.instances.get_mut(&id) else {
            return;
        };
        let bridge_mac = inst.cfg.bridge_mac;
        let external_ip = inst
            .cfg
            .device_port
            .and_then(|p| uplinks.get(&p))
            .map(|u| u.cfg.address.address());
        let Some(local) = inst.local.as_mut() else {
            return;
        };
        let by_ip = &local.by_ip;
        let mut answer = |remote: (Ipv4Addr, u16), request: &crate::metadata::http::Request| {
            let app = by_ip
                .get(&remote.0)
                .and_then(|p| apps.get(p))
                .map(|a| Caller {
                    uuid: &a.cfg.app_uuid,
                    name: &a.cfg.app_name,
                    metadata: &a.cfg.metadata,
                });
            let ctx = Context {
                remote,
                app,
                external_ip,
                node,
            };
            content::respond(request, &ctx)
        };
        local.metadata.poll(now, &mut answer);
        let mut out = Vec::new();
        while let Some(packet) = local.metadata.take_output() {
            let Some(dst) = packet
                .get(16..20)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(Ipv4Addr::from)
            else {
                continue;
            };
            let Some(port) = by_ip.get(&dst).copied() else {
                continue;
            };
            let Some(app_mac) = apps.get(&port).map(|a| a.cfg.mac) else {
                continue;
            };
            out.push((
                port,
                wire::with_ethernet(app_mac, bridge_mac, ETHERTYPE_IPV4, &packet),
            ));
        }
        for (port, frame) in out {
            self.send(port, frame);
        }
    }
}

fn wire_id(message: &[u8]) -> Option<u16> {
    wirebytes::be_u16_at(message, 0).ok()
}
