//! What [`crate::Manager`] must remember across baseosmgr's restarts
//! (and so across the node's reboots, which restart it): the versions
//! that failed and the `retry_update` counter it last saw. Without it, a
//! version refused before a reboot would be written again after it, and a
//! counter raised while the node was down would not count as a retry.
//! It also keeps when a trial's test window began, so a restart of
//! baseosmgr during the window does not begin it again.
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
    /// The version on trial whose test window runs.
    #[prost(string, optional, tag = "5")]
    pub testing_version: Option<String>,
    /// When its test window began: the first controller answer of the
    /// trial boot, seconds on the node's clock (which a restart of
    /// baseosmgr does not reset, but a reboot does).
    #[prost(uint64, optional, tag = "6")]
    pub test_started: Option<u64>,
}
