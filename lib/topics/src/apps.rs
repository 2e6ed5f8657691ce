//! App instances: the config's apps as a table (zedagent publishes it),
//! the domains zedmanager asks domainmgr for and what domainmgr reports of
//! them, and what zedmanager and domainmgr report per app, which zedagent
//! sends to the controller (`ZInfoApp`, `AppMetric`).
//!
//! Every table here is keyed by the app instance's UUID (canonical
//! lowercase form). States are eve-api's `ZSwState` numbers
//! (`eve_proto::info::ZSwState`), as EVE reports them.

use alloc::string::String;
use alloc::vec::Vec;

use crate::Topic;

/// `app-instance-config`: the config's app instances (EVE's
/// `AppInstanceConfig`), published by zedagent for zedmanager.
pub struct AppInstanceConfig;

impl Topic for AppInstanceConfig {
    const NAME: &'static str = "app-instance-config";
    type Value = eve_proto::config::AppInstanceConfig;
}

/// `app-status`: each app as zedmanager sees it, in the form zedagent
/// sends to the controller (EVE's `ZInfoApp`).
pub struct AppStatus;

impl Topic for AppStatus {
    const NAME: &'static str = "app-status";
    type Value = eve_proto::info::ZInfoApp;
}

/// `app-metrics`: each running app's use of CPU, memory, disks and
/// network as the host measures it (EVE's `AppMetric`), published by
/// domainmgr.
pub struct AppMetrics;

impl Topic for AppMetrics {
    const NAME: &'static str = "app-metrics";
    type Value = eve_proto::metrics::AppMetric;
}

/// `domain-config`: the domains zedmanager wants, for domainmgr.
pub struct DomainConfig;

impl Topic for DomainConfig {
    const NAME: &'static str = "domain-config";
    type Value = Domain;
}

/// `domain-status`: each domain as domainmgr has it, for zedmanager.
pub struct DomainStatus;

impl Topic for DomainStatus {
    const NAME: &'static str = "domain-status";
    type Value = DomainState;
}

/// What runs in an app's domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DomainKind {
    Unspecified = 0,
    /// A PVH ELF (x86_64) or arm64 Image, the first disk's content,
    /// booted directly.
    Unikernel = 1,
    /// A disk image booted with UEFI.
    LinuxVm = 2,
    /// An OCI image (a `Container` volume) run in the shim VM.
    Container = 3,
}

/// One disk of a domain.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct DomainDisk {
    /// The host volume (`<uuid>.<generation>`, the `volumes` target's
    /// name): services never see host paths.
    #[prost(string, tag = "1")]
    pub host_volume: String,
    /// The config's volume UUID the disk comes from.
    #[prost(string, tag = "2")]
    pub volume_uuid: String,
    #[prost(bool, tag = "3")]
    pub readonly: bool,
}

/// A domain zedmanager wants. domainmgr runs it while `activate` is set
/// and its disks are ready, and restarts it once each time
/// `restart_counter` grows.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Domain {
    /// The app instance's UUID.
    #[prost(string, tag = "1")]
    pub uuid: String,
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// Whether it should run (EVE's `activate`).
    #[prost(bool, tag = "3")]
    pub activate: bool,
    #[prost(enumeration = "DomainKind", tag = "4")]
    pub kind: i32,
    /// Guest RAM in KiB (EVE's `VmConfig.memory`).
    #[prost(uint64, tag = "5")]
    pub memory_kib: u64,
    #[prost(uint32, tag = "6")]
    pub vcpus: u32,
    /// In boot order; the first holds the unikernel, the bootable disk
    /// image or the container image.
    #[prost(message, repeated, tag = "7")]
    pub disks: Vec<DomainDisk>,
    /// Appended to the kernel command line (EVE's `VmConfig.extraArgs`).
    #[prost(string, tag = "8")]
    pub extra_args: String,
    /// Cloud-init user data, decoded (EVE's `userData` is base64); empty
    /// for none.
    #[prost(bytes = "vec", tag = "9")]
    pub user_data: Vec<u8>,
    /// EVE's `restart` counter as zedmanager last accepted it.
    #[prost(uint32, tag = "10")]
    pub restart_counter: u32,
    /// EVE's `purge` counter: a new value means new disks (zedmanager
    /// swaps them in while the domain is halted).
    #[prost(uint32, tag = "11")]
    pub purge_counter: u32,
    /// For an app on no network instance: its one user-mode NIC's
    /// loopback forwards, the `portmap` ACEs of its adapters. Empty when
    /// the app has [`Domain::nics`].
    #[prost(message, repeated, tag = "12")]
    pub port_maps: Vec<PortMap>,
    /// The app's interfaces on zedrouter's network instances, in NIC
    /// order: each NIC is carried by the host's port `<uuid>.<index>`,
    /// the port zedrouter attaches. When there are any, the domain gets
    /// these NICs only (no user-mode NIC), so zedrouter is its only path.
    #[prost(message, repeated, tag = "13")]
    pub nics: Vec<DomainNic>,
}

/// One NIC of a domain on a port of the host's switch.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct DomainNic {
    /// The NIC's index in the domain (0 first), which with the app's UUID
    /// names the host port.
    #[prost(uint32, tag = "1")]
    pub index: u32,
    /// The NIC's MAC (`xx:xx:xx:xx:xx:xx`): the one zedrouter expects
    /// the app's frames from.
    #[prost(string, tag = "2")]
    pub mac: String,
}

/// A host port forwarded to an app port.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct PortMap {
    /// The port on the host's loopback.
    #[prost(uint32, tag = "1")]
    pub host_port: u32,
    /// The app's TCP port.
    #[prost(uint32, tag = "2")]
    pub app_port: u32,
}

/// A domain as domainmgr has it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct DomainState {
    #[prost(string, tag = "1")]
    pub uuid: String,
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// eve-api `ZSwState`: BOOTING, RUNNING, HALTING, HALTED, or ERROR
    /// with `error`.
    #[prost(int32, tag = "3")]
    pub state: i32,
    /// Why it failed, crashed or was refused (admission says what was
    /// needed and what was free).
    #[prost(string, tag = "4")]
    pub error: String,
    #[prost(uint64, tag = "5")]
    pub error_unix: u64,
    /// When the running guest booted.
    #[prost(uint64, tag = "6")]
    pub boot_unix: u64,
    /// The `restart_counter` and `purge_counter` this state follows.
    #[prost(uint32, tag = "7")]
    pub restart_counter: u32,
    #[prost(uint32, tag = "8")]
    pub purge_counter: u32,
    /// The host volumes the domain runs with.
    #[prost(string, repeated, tag = "9")]
    pub disks: Vec<String>,
    /// Boots since the config asked for it (crash retries count).
    #[prost(uint32, tag = "10")]
    pub boot_count: u32,
}
