//! Configuration: device ports, network instances, app interfaces.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::time::{Duration, Instant};

use super::{
    AppPort, Engine, InstId, Instance, Limiter, LocalState, PortCounters, PortMap, Uplink,
};
use crate::acl::{self, Action, HostSets, Remote, TokenBucket};
use crate::addresses::{Addresses, Reservation};
use crate::config::{
    AppPortConfig, ConfigError, ExternalPortConfig, InstanceConfig, InstanceKind, PortId,
    UplinkConfig,
};
use crate::dhcp::LEASE_SECS;
use crate::metadata::MetadataServer;

impl Engine {
    /// Adds or replaces an uplink. Flows NATed through it go when its
    /// address changes.
    pub fn set_uplink(&mut self, cfg: UplinkConfig) -> Result<(), ConfigError> {
        cfg.check()?;
        if self.apps.contains_key(&cfg.port) || self.externals.contains_key(&cfg.port) {
            return Err(ConfigError::PortInUse);
        }
        if self
            .instances
            .values()
            .any(|i| !i.cfg.is_local() && i.cfg.device_port == Some(cfg.port))
        {
            return Err(ConfigError::DevicePortConflict);
        }
        let port = cfg.port;
        let changed = self
            .uplinks
            .get(&port)
            .is_some_and(|u| u.cfg.address != cfg.address);
        match self.uplinks.get_mut(&port) {
            Some(uplink) => uplink.cfg = cfg,
            None => {
                self.uplinks.insert(
                    port,
                    Uplink {
                        cfg,
                        arp: BTreeMap::new(),
                        waiting: VecDeque::new(),
                        asked: BTreeMap::new(),
                    },
                );
            }
        }
        if changed {
            self.drop_flows(|f| f.nat.is_some_and(|n| n.uplink == port), None);
            if let Some(uplink) = self.uplinks.get_mut(&port) {
                uplink.arp.clear();
                uplink.waiting.clear();
                uplink.asked.clear();
            }
        }
        Ok(())
    }

    /// Adds or replaces the outside port of switch instances.
    pub fn set_external_port(&mut self, cfg: ExternalPortConfig) -> Result<(), ConfigError> {
        if self.apps.contains_key(&cfg.port) || self.uplinks.contains_key(&cfg.port) {
            return Err(ConfigError::PortInUse);
        }
        if self
            .instances
            .values()
            .any(|i| i.cfg.is_local() && i.cfg.device_port == Some(cfg.port))
        {
            return Err(ConfigError::DevicePortConflict);
        }
        self.externals.insert(cfg.port, cfg);
        Ok(())
    }

    /// Removes an uplink or outside port; flows through it go.
    pub fn remove_device_port(&mut self, port: PortId) {
        if self.uplinks.remove(&port).is_some() {
            self.drop_flows(|f| f.nat.is_some_and(|n| n.uplink == port), None);
        }
        self.externals.remove(&port);
        for inst in self.instances.values_mut() {
            inst.macs.retain(|_, (p, _)| *p != port);
        }
        self.fragments.forget_port(port);
    }

    /// Adds a network instance, or replaces the one with the same UUID (its
    /// app interfaces are attached again to the new one; an interface that
    /// no longer fits is detached and its error recorded on the instance).
    pub fn set_instance(&mut self, now: Instant, cfg: InstanceConfig) -> Result<(), ConfigError> {
        cfg.check()?;
        if let Some(device) = cfg.device_port {
            let conflict = if cfg.is_local() {
                self.externals.contains_key(&device)
            } else {
                self.uplinks.contains_key(&device)
            } || self.apps.contains_key(&device);
            if conflict {
                return Err(ConfigError::DevicePortConflict);
            }
        }
        if let Some(id) = self.by_uuid.get(&cfg.uuid).copied()
            && let Some(inst) = self.instances.get_mut(&id)
            && same_shape(&inst.cfg, &cfg)
        {
            // Names, versions, DNS and NTP lists, routes, flow logs,
            // activation: changed in place, flows and addresses kept.
            if let (Some(local), InstanceKind::Local(new)) = (inst.local.as_mut(), &cfg.kind) {
                local.cfg = new.clone();
            }
            inst.cfg = cfg;
            return Ok(());
        }
        let mut reattach = (Vec::new(), Vec::new());
        let started_ms = match self.by_uuid.get(&cfg.uuid).copied() {
            Some(id) => {
                let started = self.instances.get(&id).map(|i| i.started_ms);
                reattach = self.remove_instance_by_id(now, id);
                started.unwrap_or_else(|| self.unix_ms(now))
            }
            None => {
                if self.instances.len() >= self.limits.max_instances {
                    return Err(ConfigError::TooMany);
                }
                self.unix_ms(now)
            }
        };
        let id = self.next_inst;
        self.next_inst += 1;
        let local = match &cfg.kind {
            InstanceKind::Local(local) => Some(LocalState {
                cfg: local.clone(),
                addresses: Addresses::default(),
                by_ip: BTreeMap::new(),
                metadata: MetadataServer::new(
                    now,
                    self.rng.next_u64(),
                    cfg.mtu,
                    self.limits.metadata_connections,
                ),
            }),
            InstanceKind::Switch => None,
        };
        self.by_uuid.insert(cfg.uuid.clone(), id);
        self.instances.insert(
            id,
            Instance {
                cfg,
                ports: BTreeSet::new(),
                local,
                macs: BTreeMap::new(),
                hosts: HostSets::new(self.limits.max_host_addresses),
                port_maps: BTreeMap::new(),
                errors: Vec::new(),
                started_ms,
            },
        );
        let (configs, reservations) = reattach;
        if let Some(inst) = self.instances.get_mut(&id)
            && let Some(local) = inst.local.as_mut()
        {
            for (ip, r) in reservations {
                local.addresses.restore(&local.cfg, ip, r);
            }
        }
        for port_cfg in configs {
            let port = port_cfg.port;
            if let Err(e) = self.attach(now, port_cfg)
                && let Some(inst) = self.instances.get_mut(&id)
            {
                inst.errors.push(alloc::format!(
                    "interface on port {} not attached again: {e}",
                    port.0
                ));
            }
        }
        Ok(())
    }

    /// Removes a network instance and detaches its app interfaces.
    pub fn remove_instance(&mut self, now: Instant, uuid: &str) -> Result<(), ConfigError> {
        let id = *self.by_uuid.get(uuid).ok_or(ConfigError::UnknownInstance)?;
        self.remove_instance_by_id(now, id);
        Ok(())
    }

    /// Removes an instance; returns its interfaces' configs and its
    /// address reservations, so a replacement can take them back.
    fn remove_instance_by_id(
        &mut self,
        now: Instant,
        id: InstId,
    ) -> (Vec<AppPortConfig>, Vec<(Ipv4Addr, Reservation)>) {
        let ports: Vec<PortId> = self
            .instances
            .get(&id)
            .map(|i| i.ports.iter().copied().collect())
            .unwrap_or_default();
        let mut configs = Vec::new();
        for port in ports {
            if let Some(cfg) = self.apps.get(&port).map(|a| a.cfg.clone()) {
                let _ = self.detach(now, port);
                configs.push(cfg);
            }
        }
        let reservations = self
            .instances
            .get(&id)
            .and_then(|i| i.local.as_ref())
            .map(|l| l.addresses.reservations().collect())
            .unwrap_or_default();
        if let Some(inst) = self.instances.remove(&id) {
            self.by_uuid.remove(&inst.cfg.uuid);
        }
        (configs, reservations)
    }

    /// Attaches an app interface to its network instance and returns its
    /// address (on a local instance).
    pub fn attach(
        &mut self,
        now: Instant,
        cfg: AppPortConfig,
    ) -> Result<Option<Ipv4Addr>, ConfigError> {
        let id = *self
            .by_uuid
            .get(&cfg.instance)
            .ok_or(ConfigError::UnknownInstance)?;
        if self.is_port_taken(cfg.port)
            || self
                .instances
                .values()
                .any(|i| i.cfg.device_port == Some(cfg.port))
        {
            return Err(ConfigError::PortInUse);
        }
        if self.apps.len() >= self.limits.max_ports {
            return Err(ConfigError::TooMany);
        }
        // Outside ports the other instances on the same uplink map.
        let device = self.instances.get(&id).and_then(|i| i.cfg.device_port);
        let mapped_elsewhere: BTreeSet<(u8, u16)> = self
            .instances
            .iter()
            .filter(|(other, i)| **other != id && device.is_some() && i.cfg.device_port == device)
            .flat_map(|(_, i)| i.port_maps.keys().copied())
            .collect();
        let inst = self
            .instances
            .get_mut(&id)
            .ok_or(ConfigError::UnknownInstance)?;
        let mac_taken = inst
            .ports
            .iter()
            .any(|p| self.apps.get(p).is_some_and(|a| a.cfg.mac == cfg.mac));
        if !cfg.mac.is_unicast() || mac_taken {
            return Err(ConfigError::BadMac);
        }
        let ip = match inst.local.as_mut() {
            Some(local) => {
                let ip = local
                    .addresses
                    .assign(&local.cfg, cfg.mac, cfg.static_ip, now)?;
                local.by_ip.insert(ip, cfg.port);
                Some(ip)
            }
            None => None,
        };
        let on_switch = !inst.cfg.is_local();
        let (rules, rule_errors) = acl::compile(&cfg.acls, on_switch);
        let limiters = rules
            .iter()
            .map(|r| match r.action {
                Action::Limit(spec) => Some(Limiter {
                    egress: TokenBucket::new(spec.interval_ns, spec.burst),
                    ingress: TokenBucket::new(spec.interval_ns, spec.burst),
                }),
                _ => None,
            })
            .collect();
        for error in &rule_errors {
            inst.errors.push(alloc::format!(
                "app {} adapter {}: ACL rule {} skipped: {}",
                cfg.app_name,
                cfg.adapter,
                error.rule_id,
                error.error
            ));
        }
        if inst.cfg.is_local() {
            for rule in &rules {
                let Action::PortMap { app_port } = rule.action else {
                    continue;
                };
                let (Some(proto), Some(lport)) = (rule.proto, rule.lport) else {
                    continue;
                };
                let key = (proto, lport.first);
                let taken = mapped_elsewhere.contains(&key)
                    || inst.port_maps.get(&key).is_some_and(|m| m.port != cfg.port);
                if taken {
                    inst.errors.push(alloc::format!(
                        "app {} adapter {}: port map {} of rule {} already taken",
                        cfg.app_name,
                        cfg.adapter,
                        lport.first,
                        rule.id
                    ));
                } else {
                    let map = PortMap {
                        port: cfg.port,
                        app_port,
                        rule_id: rule.id,
                    };
                    inst.port_maps.insert(key, map);
                }
            }
        }
        inst.ports.insert(cfg.port);
        let port = cfg.port;
        let budget = TokenBucket::per_second(
            self.limits.slow_path_per_second,
            self.limits.slow_path_burst,
        );
        self.apps.insert(
            port,
            AppPort {
                cfg,
                inst: id,
                rules,
                rule_errors,
                limiters,
                ip,
                bound: false,
                counters: PortCounters::default(),
                budget,
                dns_pending: 0,
            },
        );
        self.refresh_host_patterns(id);
        self.unpark(now);
        Ok(ip)
    }

    /// Detaches an app interface: its flows end (and are logged), its
    /// address is held for the lease time, its port maps go.
    pub fn detach(&mut self, now: Instant, port: PortId) -> Result<(), ConfigError> {
        let app = self.apps.get(&port).ok_or(ConfigError::UnknownPort)?;
        let id = app.inst;
        let mac = app.cfg.mac;
        let ip = app.ip;
        self.drop_flows(|f| f.key.port == port, Some(now));
        self.fragments.forget_port(port);
        self.apps.remove(&port);
        if let Some(inst) = self.instances.get_mut(&id) {
            inst.ports.remove(&port);
            inst.port_maps.retain(|_, m| m.port != port);
            inst.macs.retain(|_, (p, _)| *p != port);
            if let Some(local) = inst.local.as_mut() {
                if let Some(ip) = ip {
                    local.by_ip.remove(&ip);
                }
                let until = now + Duration::from_secs(u64::from(LEASE_SECS));
                local.addresses.hold(mac, until);
            }
        }
        self.wake_at(now + Duration::from_secs(u64::from(LEASE_SECS)));
        self.refresh_host_patterns(id);
        Ok(())
    }

    /// Tells an instance's host sets which names its rules use now.
    fn refresh_host_patterns(&mut self, id: InstId) {
        let Some(inst) = self.instances.get(&id) else {
            return;
        };
        let patterns: BTreeSet<String> = inst
            .ports
            .iter()
            .filter_map(|p| self.apps.get(p))
            .flat_map(|a| a.rules.iter())
            .filter_map(|r| match &r.remote {
                Some(Remote::Host(name)) => Some(name.clone()),
                _ => None,
            })
            .collect();
        if let Some(inst) = self.instances.get_mut(&id) {
            inst.hosts.set_patterns(patterns);
        }
    }
}

/// Whether `new` can replace `old` in place: the same kind, device port
/// and MTU, and for a local instance the same subnet, gateway and range.
fn same_shape(old: &InstanceConfig, new: &InstanceConfig) -> bool {
    let addressing = match (&old.kind, &new.kind) {
        (InstanceKind::Local(a), InstanceKind::Local(b)) => {
            a.subnet == b.subnet && a.gateway == b.gateway && a.dhcp_range == b.dhcp_range
        }
        (InstanceKind::Switch, InstanceKind::Switch) => true,
        _ => false,
    };
    addressing && old.device_port == new.device_port && old.mtu == new.mtu
}
