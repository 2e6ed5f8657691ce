//! `node-status`: what nodeagent decides about the node as a whole, for
//! zedagent's `ZInfoDevice`, for baseosmgr (which starts no update in
//! maintenance mode) and for zedmanager (which halts every app once the
//! controller's `shutdown` command was acted on).

use alloc::vec::Vec;

use crate::Topic;

/// nodeagent's view of the node, one item under [`Self::KEY`].
pub struct NodeStatus;

impl Topic for NodeStatus {
    const NAME: &'static str = "node-status";
    type Value = Node;
}

impl NodeStatus {
    /// The one item.
    pub const KEY: &'static str = "node";
}

/// The value of [`NodeStatus`]; field names follow `ZInfoDevice`'s.
#[derive(Clone, PartialEq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Node {
    /// In maintenance mode (the config item, else the controller's
    /// `EdgeDevConfig.maintenance_mode`).
    #[prost(bool, tag = "1")]
    pub maintenance_mode: bool,
    /// Why (eve-api `MaintenanceModeReason` numbers); empty when off.
    #[prost(int32, repeated, tag = "2")]
    pub maintenance_mode_reasons: Vec<i32>,
    /// The controller's `reboot.counter` the node has acted on.
    #[prost(uint32, tag = "3")]
    pub reboot_config_counter: u32,
    /// The controller's `shutdown.counter` the node has acted on.
    #[prost(uint32, tag = "4")]
    pub shutdown_config_counter: u32,
    /// A reboot is asked of the host.
    #[prost(bool, tag = "5")]
    pub reboot_inprogress: bool,
    /// The controller's `shutdown` command was acted on this boot: every
    /// app is halted (zedmanager) while the node stays on, since nothing
    /// could power it on again remotely. A reboot ends it.
    #[prost(bool, tag = "6")]
    pub apps_shut_down: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode};

    #[test]
    fn values_round_trip() {
        let n = Node {
            maintenance_mode: true,
            maintenance_mode_reasons: alloc::vec![1],
            reboot_config_counter: 4,
            shutdown_config_counter: 2,
            reboot_inprogress: true,
            apps_shut_down: true,
        };
        assert_eq!(decode::<NodeStatus>(&encode::<NodeStatus>(&n)), Ok(n));
        assert!(decode::<NodeStatus>(&[0x18]).is_err());
    }
}
