//! Why the node is in maintenance mode: asked for by the user (the config
//! item `maintenance.mode`, else the controller's
//! `EdgeDevConfig.maintenance_mode`), or entered by itself, as EVE's
//! nodeagent does, for what it watches on this node:
//!
//! - `LOW_DISK_SPACE`: the content store (the node's PERSIST) has no room
//!   left but its reserve. EVE's nodeagent adds this reason when
//!   volumemgr's remaining space (what is left after the reserves) is zero
//!   and drops it when space returns; here volumemgr's `content-usage`
//!   gives the same numbers from the host's disk.
//!
//! EVE's other automatic reasons have nothing to watch here: no vault is
//! unlocked by the TPM (`VAULT_LOCKED_UP`, `TPM_ENCRYPTION_FAILURE`: EVE's
//! vaultmgr and tpmmgr), and the node does not put itself in maintenance
//! for a refused quote or refused certificates (`TPM_QUOTE_FAILURE`,
//! `EDGE_NODE_CERTS_REFUSED`: zedagent keeps retrying those).

use alloc::vec::Vec;

use eve_proto::org::lfedge::eve::info::MaintenanceModeReason;
use topics::configitems::{GlobalConfig, TriState};
use topics::content::Usage;

use crate::Heard;

/// Whether the user asked for maintenance mode: the item when set, else
/// the controller's config.
fn user_requested(heard: &Heard<'_>) -> bool {
    match heard
        .items
        .map_or(TriState::None, GlobalConfig::maintenance_mode)
    {
        TriState::Enabled => true,
        TriState::Disabled => false,
        TriState::None => heard.config.is_some_and(|c| c.maintenance_mode),
    }
}

/// The content store has nothing left but its reserve. A store that
/// reports no size at all says nothing.
fn out_of_space(usage: &Usage) -> bool {
    usage.total_bytes > 0 && usage.free_bytes <= usage.reserve_bytes
}

/// Every reason that holds, as eve-api numbers for
/// `ZInfoDevice.maintenance_mode_reasons`; maintenance mode is on while
/// any does.
pub fn reasons(heard: &Heard<'_>) -> Vec<i32> {
    let mut reasons = Vec::new();
    if user_requested(heard) {
        reasons.push(MaintenanceModeReason::UserRequested as i32);
    }
    if heard.content_usage.is_some_and(out_of_space) {
        reasons.push(MaintenanceModeReason::LowDiskSpace as i32);
    }
    reasons
}

#[cfg(test)]
mod tests;
