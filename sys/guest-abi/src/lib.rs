//! The small contract between a guest and whatever runs it (xtask, the
//! integration tests, later the host).
//!
//! A guest reports two things out of band of its ordinary log: its exit
//! status, because PSCI `SYSTEM_OFF` on aarch64 cannot carry one and
//! `isa-debug-exit` on x86_64 mangles it, and boot-timer stamps, the idea of
//! Firecracker's boot-timer device: the guest says "I reached stage X at
//! guest time T" and the runner notes when the line arrived. Both travel as
//! marker lines on the serial console, the one device every VMM and board
//! gives us, so the same runner code reads every machine type.
#![no_std]
#![forbid(unsafe_code)]

/// Prefix of the line a guest prints just before it powers off.
pub const EXIT_MARKER: &str = "@@ exit ";
/// Prefix of a boot-timer line: `@@ boot-timer <stage> <guest-ns>`.
pub const BOOT_TIMER_MARKER: &str = "@@ boot-timer ";
/// Prefix of a measurement line: `@@ metric <name> <value>`, the unit in
/// the name (`tcp_send_us`, `tcp_send_bytes`): how test services hand
/// numbers to `cargo xtask bench` without it parsing log prose.
pub const METRIC_MARKER: &str = "@@ metric ";

/// The service finished and everything it checked held.
pub const EXIT_SUCCESS: i32 = 0;
/// The service finished and found a failure.
pub const EXIT_FAILURE: i32 = 1;
/// The service panicked.
pub const EXIT_PANIC: i32 = 101;
/// The CPU took an exception the guest cannot handle.
pub const EXIT_EXCEPTION: i32 = 102;

/// The MAC address the host gives a service's trunk NIC (zedrouter's link
/// to the host's port switch), so the service tells it from its uplink
/// whatever order the machine lists the two NICs in.
pub const TRUNK_MAC: [u8; 6] = [0x02, 0x00, 0x7e, 0x00, 0x00, 0x01];

/// The most device ports (switch instances' outside ends) a service is
/// given: the last byte of their MACs numbers them.
pub const MAX_DEVICE_PORTS: usize = 8;

/// The MAC address the host gives a service's device port number `index`
/// (the order of the manifest's `device_ports`), so the service tells its
/// NICs apart and names each by its label whatever order the machine
/// lists them in.
pub const fn device_port_mac(index: u8) -> [u8; 6] {
    [0x02, 0x00, 0x7e, 0x00, 0x01, index]
}

/// The index of a device port's NIC from its MAC, if it is one.
pub fn device_port_index(mac: [u8; 6]) -> Option<usize> {
    let index = usize::from(mac[5]);
    (mac[..5] == device_port_mac(0)[..5] && index < MAX_DEVICE_PORTS).then_some(index)
}

/// Command-line key by which the host hands a service the node's clock as
/// the service's VM starts: milliseconds since the host started the node
/// (`node.ms=12345`). A service adds its own uptime to it (the runtime's
/// `node_clock`), so a timer measured on it keeps counting across the
/// service's crashes and restarts, which the guest's uptime does not.
pub const NODE_MS_KEY: &str = "node.ms";

/// The node's clock at a VM's start from the value of [`NODE_MS_KEY`] on
/// its command line; 0 (count from this start) when it is missing or not a
/// number, so a hostile value never stops a service.
pub fn node_ms_at_start(value: Option<&str>) -> u64 {
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// I/O port of QEMU's `isa-debug-exit` device as our runners configure it.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Turns a QEMU process exit code into the status the guest wrote to
/// `isa-debug-exit`: QEMU exits with `(status << 1) | 1`, so only odd codes
/// carry a status; anything else was not written by the guest.
pub fn debug_exit_status(qemu_exit_code: i32) -> Option<i32> {
    (qemu_exit_code & 1 == 1).then_some(qemu_exit_code >> 1)
}

/// One marker line from a guest console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker<'a> {
    /// The guest is powering off with this status.
    Exit(i32),
    /// The guest reached `stage` when its own clock read `guest_ns`.
    BootTimer { stage: &'a str, guest_ns: u64 },
    /// A measurement.
    Metric { name: &'a str, value: u64 },
}

/// Recognises a marker line (trailing `\r` allowed); ordinary log lines and
/// malformed markers give `None`.
pub fn parse_marker(line: &str) -> Option<Marker<'_>> {
    let line = line.trim_end_matches('\r');
    if let Some(rest) = line.strip_prefix(EXIT_MARKER) {
        return rest.trim().parse().ok().map(Marker::Exit);
    }
    let (rest, metric) = match line.strip_prefix(BOOT_TIMER_MARKER) {
        Some(rest) => (rest, false),
        None => (line.strip_prefix(METRIC_MARKER)?, true),
    };
    let mut words = rest.split_ascii_whitespace();
    let name = words.next()?;
    let value = words.next()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some(if metric {
        Marker::Metric { name, value }
    } else {
        Marker::BootTimer {
            stage: name,
            guest_ns: value,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_clock_at_start_reads_only_a_number() {
        assert_eq!(node_ms_at_start(Some("61234")), 61_234);
        assert_eq!(node_ms_at_start(None), 0);
        assert_eq!(node_ms_at_start(Some("")), 0);
        assert_eq!(node_ms_at_start(Some("-5")), 0);
        assert_eq!(node_ms_at_start(Some("99999999999999999999999")), 0);
    }

    #[test]
    fn exit_codes_decode_only_when_odd() {
        assert_eq!(debug_exit_status(1), Some(EXIT_SUCCESS));
        assert_eq!(debug_exit_status(3), Some(EXIT_FAILURE));
        assert_eq!(debug_exit_status(203), Some(EXIT_PANIC));
        assert_eq!(debug_exit_status(0), None);
        assert_eq!(debug_exit_status(2), None);
    }

    #[test]
    fn markers_parse() {
        assert_eq!(parse_marker("@@ exit 0"), Some(Marker::Exit(0)));
        assert_eq!(parse_marker("@@ exit 101\r"), Some(Marker::Exit(101)));
        assert_eq!(
            parse_marker("@@ boot-timer main 812345"),
            Some(Marker::BootTimer {
                stage: "main",
                guest_ns: 812_345
            })
        );
    }

    #[test]
    fn metrics_parse() {
        assert_eq!(
            parse_marker("@@ metric tcp_send_us 5120"),
            Some(Marker::Metric {
                name: "tcp_send_us",
                value: 5120
            })
        );
        assert_eq!(parse_marker("@@ metric x"), None);
        assert_eq!(parse_marker("@@ metric x 1 2"), None);
    }

    #[test]
    fn malformed_markers_are_ignored() {
        for line in [
            "",
            "@@ exit",
            "@@ exit x",
            "@@ exit 99999999999999999999",
            "@@ boot-timer",
            "@@ boot-timer main",
            "@@ boot-timer main -1",
            "@@ boot-timer main 1 2",
            "[ 0.000] selftest INFO: @@ exit 0 is only text here",
        ] {
            assert_eq!(parse_marker(line), None, "{line:?}");
        }
    }
}
