//! Why this boot happened, from the host's boot record (`power`
//! target, `boot-reason`): the host sees how the previous boot ended (a
//! reboot it was asked for and why, a power cut, a stop from outside),
//! which this VM cannot, so its record replaces the VM's guess in
//! `ZInfoDevice.last_boot_reason`.

use alloc::string::String;

use eveagent::io::{BootReason, DeviceFacts};
use hostops::power::{self, BootRecord, Empty};
use runtime::service;

/// The host's record of this boot; `None` without a bus or a grant (the
/// VM's own guess then stands).
pub fn read() -> Option<BootRecord> {
    if !runtime::bus::present() {
        return None;
    }
    service::call::<power::BootReasonOf>(&Empty {})
        .inspect_err(|e| log::warn!("no boot record from the host: {e}"))
        .ok()
}

/// Puts the record into the facts reported: the reason (same numbers as
/// eve-api's) and its name as `last_reboot_reason`.
pub fn apply(record: &BootRecord, facts: &mut DeviceFacts) {
    let reason = BootReason::try_from(record.reason).unwrap_or(BootReason::Unspecified);
    facts.boot_reason = reason;
    facts.last_reboot_reason = String::from(reason.as_str_name());
}
