//! The node's clock handed to each service at each start (see
//! `guest_abi::NODE_MS_KEY`): the time since the supervisor started the
//! node, on the service's command line. A VM restarted after a crash gets
//! the time of its restart, not zero, so timers measured on the node's
//! clock (nodeagent's no-controller timers, baseosmgr's test window) keep
//! counting across the restart.

use std::time::Duration;

use crate::vmm::VmSpec;

/// `spec` to launch `since_start` after the node started: its command line
/// with the node's clock appended.
pub fn spec_at(spec: &VmSpec, since_start: Duration) -> VmSpec {
    let mut spec = spec.clone();
    let node = format!("{}={}", guest_abi::NODE_MS_KEY, since_start.as_millis());
    spec.cmdline = if spec.cmdline.is_empty() {
        node
    } else {
        format!("{} {node}", spec.cmdline)
    };
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Accel, Arch};

    #[test]
    fn the_node_clock_follows_the_command_line() {
        let mut spec = VmSpec::new("a", Arch::X86_64, Accel::Tcg, "img".into());
        spec.cmdline = "service=a log=debug".into();
        let at = spec_at(&spec, Duration::from_millis(61_234));
        assert_eq!(at.cmdline, "service=a log=debug node.ms=61234");
        assert_eq!(
            spec.cmdline, "service=a log=debug",
            "the setup is unchanged"
        );
    }

    #[test]
    fn an_empty_command_line_gets_only_the_clock() {
        let spec = VmSpec::new("a", Arch::Aarch64, Accel::Tcg, "img".into());
        assert_eq!(spec_at(&spec, Duration::ZERO).cmdline, "node.ms=0");
    }
}
