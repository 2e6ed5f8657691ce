//! What [`crate::NodeAgent`] must remember across nodeagent's restarts
//! and the node's reboots: the command counters already acted on. Without
//! it, a reboot command would reboot the node again after every reboot.

/// The counters acted on, as saved (a protobuf message, so a record a
/// newer build wrote still reads).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Memory {
    /// `EdgeDevConfig.reboot.counter` acted on.
    #[prost(uint32, optional, tag = "1")]
    pub reboot_seen: Option<u32>,
    /// `EdgeDevConfig.shutdown.counter` acted on.
    #[prost(uint32, optional, tag = "2")]
    pub shutdown_seen: Option<u32>,
    /// `force.fallback.counter` acted on.
    #[prost(uint32, optional, tag = "3")]
    pub fallback_seen: Option<u32>,
}
