//! What [`crate::Manager`] must remember across baseosmgr's restarts
//! (and so across the node's reboots, which restart it): the versions
//! that failed and the `retry_update` counter it last saw. Without it, a
//! version refused before a reboot would be written again after it, and a
//! counter raised while the node was down would not count as a retry.
//!
//! It is a protobuf message, so baseosmgr keeps it as bytes on its state
//! volume and a record a newer build wrote still reads.

use alloc::string::String;

/// The manager's memory, as saved.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Memory {
    /// The last `retry_update.counter` seen.
    #[prost(uint32, optional, tag = "1")]
    pub retry_seen: Option<u32>,
    /// The version that failed, if one did.
    #[prost(string, optional, tag = "2")]
    pub failed_version: Option<String>,
    /// Why it failed.
    #[prost(string, tag = "3")]
    pub failed_error: String,
    /// The fallen-back version already counted as failed.
    #[prost(string, optional, tag = "4")]
    pub fallback_noted: Option<String>,
}
