//! `@device-facts`: what the host knows of the device it runs on. A
//! service VM sees only its own small machine; the controller wants the
//! device's (EVE fills `ZInfoDevice` from these facts).

use alloc::string::String;

use crate::Topic;

/// The host's facts about the device, one item under [`Self::KEY`];
/// published by the host (a broker topic).
pub struct DeviceFacts;

impl Topic for DeviceFacts {
    const NAME: &'static str = "@device-facts";
    type Value = Facts;
}

impl DeviceFacts {
    /// The one item: this device.
    pub const KEY: &'static str = "device";
}

/// The value of [`DeviceFacts`]. Strings are empty where the device does
/// not say (a VM without SMBIOS, a board without a serial).
#[derive(Clone, PartialEq, prost::Message)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Facts {
    /// Logical CPUs.
    #[prost(uint32, tag = "1")]
    pub cpu_count: u32,
    /// Memory, bytes.
    #[prost(uint64, tag = "2")]
    pub memory_bytes: u64,
    /// Size of the filesystem holding the node's state, bytes (EVE's
    /// persist partition).
    #[prost(uint64, tag = "3")]
    pub storage_bytes: u64,
    /// Of which free, bytes.
    #[prost(uint64, tag = "4")]
    pub storage_free_bytes: u64,
    /// Machine architecture as the kernel names it (`uname -m`).
    #[prost(string, tag = "5")]
    pub machine_arch: String,
    /// The system's manufacturer (SMBIOS `sys_vendor`).
    #[prost(string, tag = "6")]
    pub manufacturer: String,
    /// Product or board name (SMBIOS, or the device tree's `model`).
    #[prost(string, tag = "7")]
    pub product_name: String,
    /// Product version.
    #[prost(string, tag = "8")]
    pub product_version: String,
    /// The hardware serial number (SMBIOS, or the device tree's).
    #[prost(string, tag = "9")]
    pub serial: String,
    /// The system UUID (SMBIOS).
    #[prost(string, tag = "10")]
    pub product_uuid: String,
    #[prost(string, tag = "11")]
    pub bios_vendor: String,
    #[prost(string, tag = "12")]
    pub bios_version: String,
    #[prost(string, tag = "13")]
    pub bios_release_date: String,
    /// The device tree's `compatible` strings, comma separated.
    #[prost(string, tag = "14")]
    pub compatible: String,
    /// When the host booted, Unix milliseconds.
    #[prost(uint64, tag = "15")]
    pub boot_unix_ms: u64,
    /// The host's name.
    #[prost(string, tag = "16")]
    pub host_name: String,
    /// The version of the host software (eve-host).
    #[prost(string, tag = "17")]
    pub host_version: String,
}
