//! A running app's new ACLs (port maps included), applied as EVE's
//! zedrouter applies them: live, without touching the app's domain. The
//! interface is attached again in the engine under the same port with the
//! new rules, so the host's port (the domain's NIC) stays connected and
//! the app keeps its address; its flows end, each having been decided by
//! the old rules, and are logged. Any other change of an interface (its
//! instance, MAC, address, names) goes the long way: detached, host port
//! included, and attached again.

use appnet::{AppPortConfig, ConfigError, Engine, Instant};

/// Whether `want` is `have` with other ACLs and nothing else changed
/// (`want` already carries `have`'s port and VIF name).
pub fn acls_only(have: &AppPortConfig, want: &AppPortConfig) -> bool {
    have.acls != want.acls
        && *have
            == AppPortConfig {
                acls: have.acls.clone(),
                ..want.clone()
            }
}

/// Gives the interface `want.port` the rules of `want`; when the engine
/// refuses the new config (it never should: the rest is unchanged), the
/// old one is put back and the refusal returned.
pub fn reapply(
    engine: &mut Engine,
    now: Instant,
    have: &AppPortConfig,
    want: &AppPortConfig,
) -> Result<(), ConfigError> {
    engine.detach(now, want.port)?;
    match engine.attach(now, want.clone()) {
        Ok(_) => Ok(()),
        Err(e) => {
            if let Err(again) = engine.attach(now, have.clone()) {
                log::error!("app {} NIC {}: {again}", have.app_uuid, have.vif);
            }
            Err(e)
        }
    }
}
