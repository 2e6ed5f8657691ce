//! What an app's config asks for, checked: every field zedmanager passes on
//! to domainmgr is validated here, so a hostile or malformed config becomes
//! one app's error text, never a panic nor another app's problem.
//!
//! The kind of domain follows `fixedresources.virtualizationMode` and the
//! first volume's content (see [`kind`]).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use base64::Engine;
use eve_proto::config::{
    AppInstanceConfig, ContentTree, Format, NetworkAdapter, VmMode, Volume, VolumeContentOriginType,
};
use topics::apps::{DomainKind, PortMap};

use crate::network::{Nic, nics};
use crate::uuid;

/// Guest RAM zedmanager passes on: at least 1 MiB, at most 1 TiB (in KiB,
/// as `VmConfig.memory`). Whether it fits the node is domainmgr's
/// admission; these bounds only refuse nonsense.
pub const MEMORY_KIB: (u64, u64) = (1024, 1 << 30);
/// Virtual CPUs zedmanager passes on.
pub const VCPUS: (u32, u32) = (1, 128);

/// What an app's config asks for, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Canonical lowercase UUID.
    pub uuid: String,
    pub name: String,
    pub version: String,
    pub activate: bool,
    pub kind: DomainKind,
    pub memory_kib: u64,
    pub vcpus: u32,
    pub extra_args: String,
    pub user_data: Vec<u8>,
    /// eve-api `MetaDataType`, for zedrouter's metadata server.
    pub meta_data_type: i32,
    /// The user-mode NIC's forwards of an app on no network instance.
    pub port_maps: Vec<PortMap>,
    /// The app's interfaces on network instances (then no port maps).
    pub nics: Vec<Nic>,
    /// The volumes' UUIDs (as the config spells them: the volume tables'
    /// keys), in drive order.
    pub volumes: Vec<String>,
    pub restart: u32,
    pub purge: u32,
}

/// The config's volumes and content trees, which say what a volume holds,
/// and its network instances (their keys), which adapters name.
pub struct Catalog<'a> {
    pub volumes: &'a BTreeMap<String, Volume>,
    pub trees: &'a BTreeMap<String, ContentTree>,
    pub instances: &'a BTreeSet<String>,
}

/// What a volume is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Blank,
    /// A content tree of this format.
    Image(Format),
}

impl Catalog<'_> {
    fn origin(&self, volume: &str) -> Result<Origin, String> {
        let config = self
            .volumes
            .get(volume)
            .ok_or_else(|| format!("volume {volume} is not in the config"))?;
        let origin = config.origin.clone().unwrap_or_default();
        match origin.r#type() {
            VolumeContentOriginType::VcotBlank => Ok(Origin::Blank),
            VolumeContentOriginType::VcotDownload => {
                let tree = &origin.download_content_tree_id;
                self.trees
                    .get(tree)
                    .map(|t| Origin::Image(t.iformat()))
                    .ok_or_else(|| {
                        format!("volume {volume}: content tree {tree} is not in the config")
                    })
            }
            VolumeContentOriginType::VcotUnknown => {
                Err(format!("volume {volume}: its origin is unknown"))
            }
        }
    }
}

/// The domain kind of an app, by this rule:
///
/// - the first volume is an OCI image (a `CONTAINER` content tree): a
///   container, whatever the mode (EVE's `NOHYPER` and a container in a VM
///   both run here in the shim VM);
/// - `PV`: the first volume is booted directly, without firmware, as EVE
///   boots a PV guest's kernel: a unikernel (a PVH ELF or arm64 Image), so
///   the volume must be `RAW`;
/// - `HVM`, `LEGACY`, `FML`: a disk image booted with UEFI, a Linux VM
///   (`RAW`, `QCOW`, `QCOW2`);
/// - anything else (`NOHYPER` without an OCI image, `Filler`, a number
///   eve-api does not define, a blank first volume) is refused.
pub fn kind(mode: i32, first: Origin) -> Result<DomainKind, String> {
    let format = match first {
        Origin::Image(Format::Container) => return Ok(DomainKind::Container),
        Origin::Image(format) => format,
        Origin::Blank => {
            return Err(String::from(
                "the first volume is blank: there is nothing to boot",
            ));
        }
    };
    let mode = VmMode::try_from(mode)
        .map_err(|_| format!("virtualization mode {mode} is not one eve-api defines"))?;
    match (mode, format) {
        (VmMode::Pv, Format::Raw) => Ok(DomainKind::Unikernel),
        (VmMode::Pv, other) => Err(format!(
            "a PV app boots its first volume directly, which must be RAW (a PVH ELF or arm64 Image), not {}",
            other.as_str_name()
        )),
        (
            VmMode::Hvm | VmMode::Legacy | VmMode::Fml,
            Format::Raw | Format::Qcow | Format::Qcow2,
        ) => Ok(DomainKind::LinuxVm),
        (VmMode::Hvm | VmMode::Legacy | VmMode::Fml, other) => Err(format!(
            "a {} app boots a disk image (RAW, QCOW, QCOW2), not {}",
            mode.as_str_name(),
            other.as_str_name()
        )),
        (VmMode::Nohyper, _) => Err(String::from(
            "a NOHYPER app runs an OCI image: its first volume must be a CONTAINER content tree",
        )),
        (VmMode::Filler, _) => Err(String::from(
            "virtualization mode Filler is not a kind of app",
        )),
    }
}

/// Checks `config`, published under `key`, against the catalog.
pub fn plan(key: &str, config: &AppInstanceConfig, catalog: &Catalog) -> Result<Plan, String> {
    let id = config.uuidandversion.clone().unwrap_or_default();
    let uuid = uuid::canonical(&id.uuid)
        .ok_or_else(|| format!("the app's UUID {:?} is not a UUID", id.uuid))?;
    if uuid::canonical(key).as_deref() != Some(uuid.as_str()) {
        return Err(format!(
            "the app's UUID {uuid} is not the key {key:?} it was published under"
        ));
    }
    let vm = config
        .fixedresources
        .clone()
        .ok_or("the app has no fixedresources (memory, vcpus, mode)")?;
    let memory_kib = u64::from(vm.memory);
    if !(MEMORY_KIB.0..=MEMORY_KIB.1).contains(&memory_kib) {
        return Err(format!(
            "memory {memory_kib} KiB is outside {}..={} KiB",
            MEMORY_KIB.0, MEMORY_KIB.1
        ));
    }
    if !(VCPUS.0..=VCPUS.1).contains(&vm.vcpus) {
        return Err(format!(
            "vcpus {} is outside {}..={}",
            vm.vcpus, VCPUS.0, VCPUS.1
        ));
    }
    let volumes = volumes(config)?;
    let first = volumes.first().ok_or("the app has no volumes")?;
    let kind = kind(vm.virtualization_mode, catalog.origin(first)?)?;
    for volume in &volumes[1..] {
        catalog.origin(volume)?;
    }
    let nics = nics(
        &uuid,
        &config.displayname,
        &config.interfaces,
        catalog.instances,
    )?;
    // zedrouter maps the ports of an app on its instances.
    let port_maps = if nics.is_empty() {
        port_maps(&config.interfaces)?
    } else {
        Vec::new()
    };
    Ok(Plan {
        uuid,
        name: config.displayname.clone(),
        version: id.version,
        activate: config.activate,
        kind,
        memory_kib,
        vcpus: vm.vcpus,
        extra_args: vm.extraargs,
        user_data: user_data(config)?,
        meta_data_type: config.meta_data_type,
        port_maps,
        nics,
        volumes,
        restart: config.restart.as_ref().map_or(0, |c| c.counter),
        purge: config.purge.as_ref().map_or(0, |c| c.counter),
    })
}

fn volumes(config: &AppInstanceConfig) -> Result<Vec<String>, String> {
    let mut seen = BTreeSet::new();
    let mut volumes = Vec::with_capacity(config.volume_ref_list.len());
    for r in &config.volume_ref_list {
        let canonical = uuid::canonical(&r.uuid)
            .ok_or_else(|| format!("volume reference {:?} is not a UUID", r.uuid))?;
        if !seen.insert(canonical) {
            return Err(format!("volume {} is referenced twice", r.uuid));
        }
        volumes.push(r.uuid.clone());
    }
    Ok(volumes)
}

/// `userData`, base64 as EVE sends it. zedagent, which holds the device's
/// keys, opens sealed user data (`cipherData`) and hands it on here in
/// `userData`; a block still present was not opened, and, as EVE's
/// domainmgr does, the app falls back to its clear `userData`.
fn user_data(config: &AppInstanceConfig) -> Result<Vec<u8>, String> {
    let text = config.user_data.trim();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("userData is not base64: {e}"))
}

/// The TCP port maps of the app's adapters: each ACE with a `portmap`
/// action maps its `lport` match (the host port) to the action's
/// `appPort`. ACEs for another protocol are not port maps of a domain's
/// user-mode NIC, which forwards TCP only.
fn port_maps(adapters: &[NetworkAdapter]) -> Result<Vec<PortMap>, String> {
    let mut maps: Vec<PortMap> = Vec::new();
    for ace in adapters.iter().flat_map(|a| &a.acls) {
        let Some(action) = ace.actions.iter().find(|a| a.portmap) else {
            continue;
        };
        let matching = |kind: &str| {
            ace.matches
                .iter()
                .find(|m| m.r#type.eq_ignore_ascii_case(kind))
                .map(|m| m.value.trim())
        };
        if matching("protocol").is_some_and(|p| !p.eq_ignore_ascii_case("tcp")) {
            continue;
        }
        let port = |text: &str| text.parse::<u16>().ok().filter(|p| *p != 0);
        let host_port = matching("lport")
            .and_then(port)
            .ok_or_else(|| format!("port map {:?} has no valid lport", ace.name))?;
        let app_port = u16::try_from(action.app_port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                format!(
                    "port map {:?}: appPort {} is not a port",
                    ace.name, action.app_port
                )
            })?;
        if maps.iter().any(|m| m.host_port == u32::from(host_port)) {
            return Err(format!("host port {host_port} is mapped twice"));
        }
        maps.push(PortMap {
            host_port: u32::from(host_port),
            app_port: u32::from(app_port),
        });
    }
    Ok(maps)
}
