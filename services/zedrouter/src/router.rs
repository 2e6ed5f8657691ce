//! What zedrouter is told, applied to the engine: the network instances of
//! the config and the apps' interfaces, each interface carried by a port
//! of the host's switch under a tag zedrouter picks (the engine numbers
//! the interface by the same tag).
//!
//! Every change is applied by [`Router::reconcile`], in an order that never
//! leaves an interface on an instance that is gone: interfaces that no
//! longer fit are detached first, then instances are removed, added or
//! changed, then missing interfaces are attached.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use appnet::{AppPortConfig, Engine, EthernetAddress, InstanceConfig, Instant, PortId};
use eve_proto::config::UuiDandVersion;
use eve_proto::config::{AppInstanceConfig, NetworkInstanceConfig};
use hostops::ports::{Attach, AttachRequest, Detach, PortName, PortRef, TAGS};
use runtime::service::{CallError, call};
use topics::AppNetwork;

use crate::deviceports::{self, DevicePorts};
use crate::liveacl;
use crate::nics::UPLINK;

/// An app interface: the app's UUID and the NIC's index.
type PortKey = (String, u32);

/// An interface the engine and the switch carry.
struct Attached {
    tag: u16,
    config: AppPortConfig,
}

/// The config as zedrouter has it and what it applied of it.
#[derive(Default)]
pub struct Router {
    instances: BTreeMap<String, NetworkInstanceConfig>,
    apps: BTreeMap<String, AppNetwork>,
    /// The instances the engine runs, as set.
    applied: BTreeMap<String, InstanceConfig>,
    attached: BTreeMap<PortKey, Attached>,
    /// Whether the uplink is configured: local instances are NATed to it.
    pub uplink: bool,
    /// The device ports, where switch instances that name one reach out.
    pub device_ports: DevicePorts,
    /// Whether the instances' table is complete: interfaces attach only
    /// then, after the saved state went back into the instances.
    instances_complete: bool,
    /// What the previous run saved, until the instances are complete.
    saved_state: Option<Vec<u8>>,
}

/// The MAC address an instance answers its apps with: locally
/// administered, naming the bridge.
fn bridge_mac(num: u32) -> EthernetAddress {
    let [_, a, b, c] = num.to_be_bytes();
    EthernetAddress([0x02, 0xeb, 0x00, a, b, c])
}

impl Router {
    pub fn set_instance(&mut self, uuid: &str, config: Option<NetworkInstanceConfig>) {
        match config {
            Some(c) => self.instances.insert(uuid.into(), c),
            None => self.instances.remove(uuid),
        };
    }

    pub fn set_app(&mut self, uuid: &str, app: Option<AppNetwork>) {
        match app {
            Some(a) => self.apps.insert(uuid.into(), a),
            None => self.apps.remove(uuid),
        };
    }

    /// Holds the previous run's state until the instances are complete.
    pub fn restore_later(&mut self, state: Vec<u8>) {
        self.saved_state = Some(state);
    }

    /// The instances' table is complete (again, after a reconnection).
    pub fn instances_complete(&mut self) {
        self.instances_complete = true;
    }

    /// The instances the engine runs.
    pub fn instance_uuids(&self) -> impl Iterator<Item = &str> {
        self.applied.keys().map(String::as_str)
    }

    /// The attached interfaces: app UUID, NIC index and VIF name, by app
    /// and NIC.
    pub fn attached(&self) -> impl Iterator<Item = (&str, u32, &str)> {
        self.attached
            .iter()
            .map(|((app, nic), a)| (app.as_str(), *nic, a.config.vif.as_str()))
    }

    /// The attached interfaces with the engine's port of each: app UUID,
    /// NIC index and port.
    pub fn attached_ports(&self) -> impl Iterator<Item = (&str, u32, appnet::PortId)> {
        self.attached
            .iter()
            .map(|((app, nic), a)| (app.as_str(), *nic, a.config.port))
    }

    /// The engine's view of each configured instance that converts.
    fn wanted_instances(&self) -> BTreeMap<String, InstanceConfig> {
        let mut wanted = BTreeMap::new();
        for (uuid, ni) in &self.instances {
            let bridge_num = self
                .applied
                .get(uuid)
                .map(|a| a.bridge_num)
                .unwrap_or_else(|| self.free_bridge_num(&wanted));
            let local = ni.inst_type == eve_proto::config::ZNetworkInstType::ZnetInstLocal as i32;
            let device = if local {
                self.uplink.then_some(UPLINK)
            } else {
                deviceports::switch_port(&self.device_ports, ni)
            };
            match appnet::instance_from_eve(ni, device, bridge_mac(bridge_num), bridge_num) {
                Ok(config) if config.uuid == *uuid => {
                    wanted.insert(uuid.clone(), config);
                }
                Ok(config) => {
                    log::warn!("network instance {uuid}: its config names {}", config.uuid)
                }
                Err(e) => log::warn!("network instance {uuid}: {e:?}"),
            }
        }
        wanted
    }

    fn free_bridge_num(&self, taken: &BTreeMap<String, InstanceConfig>) -> u32 {
        let used: BTreeSet<u32> = self
            .applied
            .values()
            .map(|a| a.bridge_num)
            .chain(taken.values().map(|c| c.bridge_num))
            .collect();
        (1..).find(|n| !used.contains(n)).unwrap_or(u32::MAX)
    }

    /// The engine's view of each activated app's interfaces on instances
    /// in `instances`; the port number is filled in when attached.
    fn wanted_ports(
        &self,
        instances: &BTreeMap<String, InstanceConfig>,
    ) -> BTreeMap<PortKey, AppPortConfig> {
        let mut wanted = BTreeMap::new();
        for (uuid, app) in self.apps.iter().filter(|(_, a)| a.activate) {
            let eve_app = AppInstanceConfig {
                uuidandversion: Some(UuiDandVersion {
                    uuid: uuid.clone(),
                    version: String::new(),
                }),
                displayname: app.display_name.clone(),
                meta_data_type: app.meta_data_type,
                ..Default::default()
            };
            for adapter in &app.adapters {
                let Some(eve) = adapter.adapter.as_ref() else {
                    continue;
                };
                if !instances.contains_key(&eve.network_id) {
                    continue;
                }
                let Some(mac) = appnet::parse_mac(&adapter.mac) else {
                    log::warn!(
                        "app {uuid} NIC {}: MAC {:?} is not one",
                        adapter.nic,
                        adapter.mac
                    );
                    continue;
                };
                // The port and the VIF name follow from the tag, picked
                // when it is attached.
                match appnet::port_from_eve(
                    &eve_app,
                    eve,
                    PortId(0),
                    "",
                    mac,
                    Some(app.user_data.clone()),
                ) {
                    Ok(config) => {
                        wanted.insert((uuid.clone(), adapter.nic), config);
                    }
                    Err(e) => log::warn!("app {uuid} NIC {}: {e:?}", adapter.nic),
                }
            }
        }
        wanted
    }

    /// Brings the engine and the switch to the config; interfaces attach once
    /// the instances' table is complete.
    pub fn reconcile(&mut self, engine: &mut Engine, now: Instant) {
        let instances = self.wanted_instances();
        let ports = self.wanted_ports(&instances);

        // Interfaces whose ACLs alone changed take them in place.
        for (key, a) in &mut self.attached {
            let Some(want) = ports.get(key) else {
                continue;
            };
            let mut want = want.clone();
            want.port = PortId(a.tag);
            want.vif.clone_from(&a.config.vif);
            if !liveacl::acls_only(&a.config, &want) {
                continue;
            }
            match liveacl::reapply(engine, now, &a.config, &want) {
                Ok(()) => {
                    log::info!("app {} NIC {}: new ACLs applied", key.0, key.1);
                    a.config = want;
                }
                Err(e) => log::warn!("app {} NIC {}: new ACLs: {e}", key.0, key.1),
            }
        }

        // Interfaces whose app, instance or config changed go first.
        let stale: Vec<PortKey> = self
            .attached
            .iter()
            .filter(|(key, a)| {
                ports.get(*key).is_none_or(|want| {
                    let mut want = want.clone();
                    want.port = PortId(a.tag);
                    want.vif.clone_from(&a.config.vif);
                    want != a.config
                })
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(a) = self.attached.remove(&key) {
                self.detach(engine, now, &key, a.tag);
            }
        }

        let gone: Vec<String> = self
            .applied
            .keys()
            .filter(|uuid| !instances.contains_key(*uuid))
            .cloned()
            .collect();
        for uuid in gone {
            if let Err(e) = engine.remove_instance(now, &uuid) {
                log::warn!("network instance {uuid}: removing: {e}");
            }
            self.applied.remove(&uuid);
            log::info!("network instance {uuid} removed");
        }
        for (uuid, config) in instances {
            if self.applied.get(&uuid) == Some(&config) {
                continue;
            }
            match engine.set_instance(now, config.clone()) {
                Ok(()) => {
                    log::info!("network instance {uuid} ({}) set", config.name);
                    self.applied.insert(uuid, config);
                }
                Err(e) => log::warn!("network instance {uuid}: {e}"),
            }
        }
        if !self.instances_complete {
            return;
        }
        if let Some(state) = self.saved_state.take() {
            match engine.restore_state(now, &state) {
                Ok(summary) => log::info!(
                    "saved state restored: {} address reservations, {} flows and addresses waiting for their interfaces",
                    summary.reservations,
                    summary.waiting
                ),
                Err(e) => log::warn!("the saved state does not read: {e}"),
            }
        }
        // An instance set again may have dropped an interface that no
        // longer fits it.
        let dropped: Vec<PortKey> = self
            .attached
            .iter()
            .filter(|(_, a)| engine.port_counters(PortId(a.tag)).is_none())
            .map(|(key, _)| key.clone())
            .collect();
        for key in dropped {
            if let Some(a) = self.attached.remove(&key) {
                self.detach(engine, now, &key, a.tag);
            }
        }

        for (key, mut config) in ports {
            if self.attached.contains_key(&key) {
                continue;
            }
            let Some(tag) = self.free_tag() else {
                log::warn!("app {} NIC {}: every tag is in use", key.0, key.1);
                break;
            };
            config.port = PortId(tag);
            config.vif = format!("nbu{tag}x{}", key.1 + 1);
            let request = AttachRequest {
                tag: u32::from(tag),
                name: Some(PortName {
                    app_uuid: key.0.clone(),
                    nic: key.1,
                }),
            };
            if let Err(e) = call::<Attach>(&request) {
                log::warn!("app {} NIC {}: the host's port: {e}", key.0, key.1);
                continue;
            }
            match engine.attach(now, config.clone()) {
                Ok(address) => {
                    log::info!(
                        "app {} NIC {} on {} as tag {tag}, address {address:?}",
                        key.0,
                        key.1,
                        config.instance
                    );
                    self.attached.insert(key, Attached { tag, config });
                }
                Err(e) => {
                    log::warn!("app {} NIC {}: {e}", key.0, key.1);
                    host_detach(tag);
                }
            }
        }
    }

    fn free_tag(&self) -> Option<u16> {
        let used: BTreeSet<u16> = self.attached.values().map(|a| a.tag).collect();
        TAGS.filter_map(|t| u16::try_from(t).ok())
            .find(|t| !used.contains(t))
    }

    fn detach(&mut self, engine: &mut Engine, now: Instant, key: &PortKey, tag: u16) {
        // The engine may have dropped it already (its instance was reset).
        let _ = engine.detach(now, PortId(tag));
        host_detach(tag);
        log::info!("app {} NIC {} (tag {tag}) detached", key.0, key.1);
    }
}

/// Stops the host carrying `tag`; a port the host does not have is fine.
fn host_detach(tag: u16) {
    match call::<Detach>(&PortRef {
        tag: u32::from(tag),
    }) {
        Ok(_) => {}
        Err(CallError::Failed(e)) if e.code() == hostops::ports::PortErrorCode::NotFound => {}
        Err(e) => log::warn!("tag {tag}: the host's port: {e}"),
    }
}
