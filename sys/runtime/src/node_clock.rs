//! The node's clock: milliseconds since the host started the node, which,
//! unlike the guest's uptime, keeps counting when the host restarts this
//! service after a crash.
//!
//! The host puts the node's clock at the VM's start on the command line
//! (`guest_abi::NODE_MS_KEY`); the service adds its own uptime. The
//! simplest honest design: no host call, no grant, the same on both
//! arches (the command line reaches every guest), and the guest's own
//! monotonic clock does the counting between starts. The time QEMU takes
//! to reach the guest's first instruction is not counted, so the node's
//! clock runs behind by that much (well under a second) and a timer on it
//! fires that much late, never early. A service started without the key
//! (a runner other than eve-host) counts from its own start.

use core::sync::atomic::{AtomicU64, Ordering};

use bootinfo::cmdline::Cmdline;

static START_MS: AtomicU64 = AtomicU64::new(0);

/// Called once by [`crate::start`].
pub(crate) fn init(cmdline: Cmdline<'_>) {
    let start = guest_abi::node_ms_at_start(cmdline.get(guest_abi::NODE_MS_KEY));
    START_MS.store(start, Ordering::Relaxed);
}

/// The node's clock at `uptime_ms` of this VM.
pub fn at(uptime_ms: u64) -> u64 {
    START_MS.load(Ordering::Relaxed).saturating_add(uptime_ms)
}

/// Milliseconds since the host started the node, now.
pub fn now_ms() -> u64 {
    at(hal::clock::Instant::now().as_nanos() / 1_000_000)
}

/// Seconds since the host started the node, now.
pub fn now_s() -> u64 {
    now_ms() / 1000
}
