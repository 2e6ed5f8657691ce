//! zedrouter's data plane and servers as a sans-IO engine: frames in (from
//! app interfaces and device ports, with the time), frames out, plus EVE's
//! reports and flow logs. `no_std` + `alloc`, no unsafe, no clock, no
//! sockets: the zedrouter service feeds it from its NICs; host tests feed
//! it crafted frames.
//!
//! - *Local* network instances ([`InstanceKind::Local`]): DHCP, DNS (local
//!   names, forwarding), NAT to an uplink, port maps, the metadata server
//!   at 169.254.169.254.
//! - *Switch* network instances: one L2 segment between apps and a device
//!   port, non-IP frames included.
//! - EVE's ACLs on every app interface (see [`acl`](crate::acl)), with
//!   connection tracking, rate limits and flow logs.
//! - Anti-spoofing, per-interface budgets and bounded tables everywhere.
//!
//! Frames are parsed with smoltcp's checked `wire` views; hostile bytes
//! are counted and dropped, never a panic.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod acl;
mod addresses;
mod config;
mod dhcp;
mod dns;
mod engine;
mod eve;
mod flows;
mod frag;
mod metadata;
mod rng;
mod state;
pub mod uplink_dhcp;
mod wire;

pub use acl::{AclError, RuleError};
pub use config::{
    AddressRange, AppBlob, AppMetadata, AppPortConfig, ConfigError, ExternalPortConfig,
    InstanceConfig, InstanceKind, LocalConfig, MetadataKind, NodeInfo, PortId, StaticHost,
    StaticRoute, UplinkConfig,
};
pub use engine::{
    Counters, Engine, EngineConfig, Limits, MAX_FRAME, MAX_RECORDS_PER_MESSAGE, MAX_SAVED_FLOWS,
    MappedProto, PortCounters, RestoreSummary, Transmit, mac_string,
};
pub use eve::{EveConfigError, instance_from_eve, parse_mac, port_from_eve, ssh_keys};
pub use flows::Timeouts;
pub use metadata::content::METADATA_ADDR;
pub use state::{PARKED_FOR, StateError};
pub use wire::Malformed;

/// Re-exported so callers name times and addresses as the engine does.
pub use smoltcp::time::{Duration, Instant};
pub use smoltcp::wire::{EthernetAddress, Ipv4Cidr};
