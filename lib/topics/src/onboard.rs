//! `onboard-status`: how far zedagent is with its controller, for the
//! host's status display and for diag.

use alloc::string::String;

use crate::Topic;

/// zedagent's onboarding and controller link, one item under [`Self::KEY`].
pub struct OnboardStatus;

impl Topic for OnboardStatus {
    const NAME: &'static str = "onboard-status";
    type Value = Report;
}

impl OnboardStatus {
    /// The one item zedagent publishes.
    pub const KEY: &'static str = "zedagent";
}

/// Where onboarding stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Phase {
    Unspecified = 0,
    /// Fetching and verifying the controller's certificates.
    FetchCerts = 1,
    /// Registering with the onboarding certificate.
    Register = 2,
    /// Asking for the device UUID.
    FetchUuid = 3,
    /// Getting an integrity token.
    Attest = 4,
    /// Onboarded: the config, info, metrics and logs loops run.
    Running = 5,
}

/// The outcome of the last registration attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Registration {
    Unspecified = 0,
    NotTried = 1,
    /// 201 or 200: the controller knows the device.
    Onboarded = 2,
    /// 409: the onboarding certificate and serial belong to another device.
    Conflict = 3,
    /// 403: the onboarding certificate is not pre-registered.
    NotPreRegistered = 4,
    /// Another answer, or none.
    Failed = 5,
}

/// The device's attestation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Attestation {
    Unspecified = 0,
    /// No integrity token.
    None = 1,
    /// Holding an integrity token.
    Attested = 2,
    /// The controller refused the last attestation.
    Refused = 3,
}

/// The value of [`OnboardStatus`]. Times are zedagent's monotonic
/// milliseconds since its boot; absent means never.
#[derive(Clone, PartialEq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Report {
    #[prost(enumeration = "Phase", tag = "1")]
    pub phase: i32,
    /// The device UUID the controller assigned; empty before.
    #[prost(string, tag = "2")]
    pub uuid: String,
    /// `configHash` of the config in force; empty when there is none.
    #[prost(string, tag = "3")]
    pub config_hash: String,
    #[prost(enumeration = "Registration", tag = "4")]
    pub register: i32,
    #[prost(enumeration = "Attestation", tag = "5")]
    pub attest: i32,
    /// The last config poll answered (200 or 304).
    #[prost(uint64, optional, tag = "6")]
    pub last_config_ms: Option<u64>,
    /// The last device info the controller accepted.
    #[prost(uint64, optional, tag = "7")]
    pub last_info_ms: Option<u64>,
    /// The last metrics the controller accepted.
    #[prost(uint64, optional, tag = "8")]
    pub last_metrics_ms: Option<u64>,
    /// Log batches waiting for the controller.
    #[prost(uint32, tag = "9")]
    pub log_batches_queued: u32,
    /// Log lines dropped (queue bound or refused by the controller).
    #[prost(uint64, tag = "10")]
    pub log_lines_dropped: u64,
    /// zedagent's heap high-water mark, bytes.
    #[prost(uint64, tag = "11")]
    pub heap_peak_bytes: u64,
    /// Bus values zedagent received and could not decode.
    #[prost(uint64, tag = "12")]
    pub undecodable_values: u64,
}
