//! Stopping the node: SIGINT, SIGTERM or SIGHUP (the terminal closed)
//! only set a flag, which the status display watches; then the host is asked to stop (it stops its VMs and
//! swtpm) and the controller is stopped after it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::session::Session;

/// A flag set by SIGINT, SIGTERM or SIGHUP.
pub fn on_signals() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("installing the handler for signal {signal}: {e}"))?;
    }
    Ok(stop)
}

/// Stops the host, then the controller. Returns whether the host stopped
/// by itself (rather than being killed after its grace time).
pub fn stop(mut session: Session) -> bool {
    let host_clean = session.host.stop();
    drop(session);
    host_clean
}
