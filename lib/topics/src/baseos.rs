//! The base OS: what zedagent hands baseosmgr from the config, and what
//! baseosmgr reports for zedagent's `ZInfoDevice.swList`.
//!
//! The image itself travels as any content does: the config lists the
//! base OS's content tree in `contentInfo`, zedagent publishes it in
//! `content-tree-config` with the others, volumemgr has it fetched and
//! verified and reports it in `content-tree-status`; baseosmgr follows
//! that tree's status and hands the verified blob's digest to the host.

use alloc::vec::Vec;

use crate::Topic;

/// `base-os-config`: the config's base OS (EVE's `BaseOS`), one item
/// under [`Self::KEY`]; absent when the config names none.
pub struct BaseOsConfig;

impl Topic for BaseOsConfig {
    const NAME: &'static str = "base-os-config";
    type Value = eve_proto::config::BaseOs;
}

impl BaseOsConfig {
    /// The one item.
    pub const KEY: &'static str = "baseos";
}

/// `base-os-status`: both base OS partitions as eve-api `ZInfoDevSw`, the
/// booted one first, one item under [`Self::KEY`].
pub struct BaseOsStatus;

impl Topic for BaseOsStatus {
    const NAME: &'static str = "base-os-status";
    type Value = SwList;
}

impl BaseOsStatus {
    /// The one item.
    pub const KEY: &'static str = "baseos";
}

/// What zedagent copies into `ZInfoDevice.swList`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SwList {
    #[prost(message, repeated, tag = "1")]
    pub partitions: Vec<eve_proto::info::ZInfoDevSw>,
}
