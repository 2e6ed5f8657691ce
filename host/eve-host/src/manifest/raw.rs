//! The manifest as written: the TOML shape, with the source span of every
//! value a semantic check may need to point at.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::RestartMode;
use crate::Arch;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub node: Spanned<RawNode>,
    #[serde(default, rename = "service")]
    pub services: Vec<Spanned<RawService>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub name: Spanned<String>,
    pub arch: Arch,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub name: Spanned<String>,
    pub image: Spanned<String>,
    pub ram_mib: Spanned<u32>,
    #[serde(default)]
    pub vcpus: Option<Spanned<u32>>,
    #[serde(default)]
    pub cmdline: Option<Spanned<String>>,
    #[serde(default)]
    pub restart: Option<RestartMode>,
    #[serde(default)]
    pub devices: RawDevices,
    #[serde(default)]
    pub bus: RawBus,
    #[serde(default)]
    pub backoff: Option<Spanned<RawBackoff>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevices {
    #[serde(default)]
    pub net: bool,
    #[serde(default)]
    pub host_forward: Vec<Spanned<RawForward>>,
    #[serde(default)]
    pub guest_forward: Vec<Spanned<RawForward>>,
    #[serde(default)]
    pub state_mib: Option<Spanned<u32>>,
    #[serde(default)]
    pub config: bool,
    #[serde(default)]
    pub pci: Vec<Spanned<String>>,
    #[serde(default)]
    pub trunk: Option<Spanned<bool>>,
    #[serde(default)]
    pub device_ports: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForward {
    pub host_port: u16,
    pub guest_port: u16,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBus {
    #[serde(default)]
    pub publish: Vec<Spanned<String>>,
    #[serde(default)]
    pub subscribe: Vec<Spanned<String>>,
    /// Host operations: target -> operations.
    #[serde(default)]
    pub call: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub heartbeat_timeout_s: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackoff {
    pub initial_ms: Option<u32>,
    pub max_ms: Option<u32>,
    pub stable_after_s: Option<u32>,
    pub crash_loop_count: Option<u32>,
    pub crash_loop_window_s: Option<u32>,
}
