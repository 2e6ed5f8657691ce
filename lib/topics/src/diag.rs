//! `diag-report`: diag's verdict on the path to the controller, step by
//! step, as EVE's diag prints it.

use alloc::{string::String, vec::Vec};

use crate::Topic;

/// diag's latest walk, one item under [`Self::KEY`].
pub struct DiagReport;

impl Topic for DiagReport {
    const NAME: &'static str = "diag-report";
    type Value = Verdict;
}

impl DiagReport {
    /// The one item: the walk to the controller.
    pub const KEY: &'static str = "controller";
}

/// The steps of a walk, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Check {
    Unspecified = 0,
    /// The controller's address and root certificate were found.
    Config = 1,
    /// A network device is there and up.
    Link = 2,
    /// An IPv4 address.
    Dhcp = 3,
    /// The controller's name resolves.
    Dns = 4,
    /// The controller's port accepts a connection.
    Tcp = 5,
    /// The controller proved its identity in a TLS handshake.
    Tls = 6,
    /// `GET /api/v2/edgedevice/ping` answered 200.
    Ping = 7,
}

/// How a step went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Outcome {
    Unspecified = 0,
    Pass = 1,
    Fail = 2,
    /// Not run because an earlier step failed.
    Skip = 3,
}

/// One step of a walk.
#[derive(Clone, PartialEq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Step {
    #[prost(enumeration = "Check", tag = "1")]
    pub check: i32,
    #[prost(enumeration = "Outcome", tag = "2")]
    pub outcome: i32,
    /// What was found, or why it failed.
    #[prost(string, tag = "3")]
    pub detail: String,
    /// How long the step took.
    #[prost(uint64, tag = "4")]
    pub micros: u64,
}

/// The value of [`DiagReport`].
#[derive(Clone, PartialEq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Verdict {
    /// Every step passed.
    #[prost(bool, tag = "1")]
    pub reachable: bool,
    /// The controller checked, `host[:port]`.
    #[prost(string, tag = "2")]
    pub controller: String,
    /// Each step of the walk, in order.
    #[prost(message, repeated, tag = "3")]
    pub steps: Vec<Step>,
    /// Walks since diag started, this one included.
    #[prost(uint64, tag = "4")]
    pub walks: u64,
    /// Bus values diag received and could not decode.
    #[prost(uint64, tag = "5")]
    pub undecodable_values: u64,
}
