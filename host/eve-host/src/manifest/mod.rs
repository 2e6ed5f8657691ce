//! The node manifest: one TOML file that says which service unikernels a
//! node runs, with what resources, devices, bus topics and host operations.
//! xtask builds from it and the host runs from it.
//!
//! Host operations are checked against a catalogue of targets and their
//! operations ([`hostops::TargetSpec`]): the host's own
//! ([`hostops::CATALOGUE`]) unless a caller gives another
//! ([`Manifest::parse_with`]), so the parser knows no target by name.
//!
//! A manifest is refused as a whole with every problem found, each naming
//! its line, so a broken node never half-starts. The format is documented
//! in `nodes/default.toml`.

mod check;
mod raw;

use std::{collections::BTreeMap, fmt, path::Path, time::Duration};

use hostops::TargetSpec;
use serde::Deserialize;

use crate::{Arch, vfio::Bdf};

/// A validated node manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub node: Node,
    pub services: Vec<Service>,
}

/// The node as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub arch: Arch,
}

/// One service unikernel of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Unique in the node, following `evebus::name::NAME_RULE`: names files,
    /// sockets and log lines.
    pub name: String,
    /// The service crate xtask builds the image from.
    pub image: String,
    pub ram_mib: u32,
    pub vcpus: u32,
    /// Appended to the guest's command line.
    pub cmdline: String,
    pub devices: Devices,
    pub bus: Bus,
    pub restart: RestartPolicy,
    /// The line of the service's `[[service]]` table, for later messages.
    pub line: usize,
}

/// What a service's VM is given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Devices {
    /// The user-mode network uplink, if any.
    pub net: Option<Uplink>,
    /// Size of the service's own state volume, if it has one.
    pub state_mib: Option<u32>,
    /// Whether the CONFIG partition is attached (always read-only).
    pub config: bool,
    /// Host PCI devices passed through with VFIO.
    pub pci: Vec<Bdf>,
    /// A second NIC on the host's port switch trunk (zedrouter's link to
    /// the app ports of the `ports` target).
    pub trunk: bool,
    /// Device ports by their labels (EVE's logical labels, `eth1`): NICs
    /// for the outside ends of switch network instances, each a unix
    /// socket the VM connects to (`crate::deviceports`); on a board, a
    /// NIC passed through (`pci`) would be one.
    pub device_ports: Vec<String>,
}

/// A user-mode network uplink and its port forwards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uplink {
    /// `127.0.0.1:host_port` on the host reaches the guest's `guest_port`.
    pub host_forward: Vec<PortForward>,
    /// The guest's connections to `10.0.2.100:guest_port` reach
    /// `127.0.0.1:host_port` on the host.
    pub guest_forward: Vec<PortForward>,
}

/// A TCP port forward between the host's loopback and a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    pub host_port: u16,
    pub guest_port: u16,
}

/// A service's place on the node bus.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bus {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// Host operations it may call: target -> operations.
    pub call: BTreeMap<String, Vec<String>>,
    /// A running service silent on the bus for longer is hung.
    pub heartbeat_timeout: Option<Duration>,
}

/// When a service that ended is started again.
///
/// EVE services are long-running, so any end is unexpected: the default
/// restarts on every exit, clean ones included (a clean exit is reported
/// as such, not as a crash). `never` is for one-shot services and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    #[default]
    Always,
    /// Restart unless the guest exited with status 0.
    OnFailure,
    Never,
}

/// Restart timing for one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub mode: RestartMode,
    /// Delay before the first restart; doubled on each further one.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A run at least this long resets the backoff.
    pub stable_after: Duration,
    /// This many ends within `crash_loop_window` is a crash loop.
    pub crash_loop_count: u32,
    pub crash_loop_window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::Always,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            stable_after: Duration::from_secs(30),
            crash_loop_count: 5,
            crash_loop_window: Duration::from_secs(60),
        }
    }
}

/// One thing wrong with a manifest, at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Syntax {
        line: Option<usize>,
        message: String,
    },
    #[error("{}", .0.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl Manifest {
    /// Reads and validates the manifest at `path` against the host's
    /// targets.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        Manifest::load_with(path, hostops::CATALOGUE)
    }

    /// Reads and validates the manifest at `path`; host operations must be
    /// in `catalogue`.
    pub fn load_with(path: &Path, catalogue: &[&TargetSpec]) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Manifest::parse_with(&text, catalogue)
    }

    /// Parses and validates manifest text against the host's targets.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse_with(text, hostops::CATALOGUE)
    }

    /// Parses and validates manifest text; host operations must be in
    /// `catalogue` (a host with targets of its own passes them here).
    pub fn parse_with(text: &str, catalogue: &[&TargetSpec]) -> Result<Manifest, ManifestError> {
        let raw: raw::RawManifest = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().trim_end().to_string(),
        })?;
        check::check(text, raw, catalogue).map_err(ManifestError::Invalid)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

impl fmt::Display for Manifest {
    /// A readable summary, what `eve-host check` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "node {} ({})", self.node.name, self.node.arch)?;
        for s in &self.services {
            write!(
                f,
                "  {}: image {}, {} MiB, {} vCPU, restart {:?}",
                s.name, s.image, s.ram_mib, s.vcpus, s.restart.mode
            )?;
            let d = &s.devices;
            if let Some(net) = &d.net {
                write!(
                    f,
                    ", net ({} host / {} guest forwards)",
                    net.host_forward.len(),
                    net.guest_forward.len()
                )?;
            }
            if let Some(mib) = d.state_mib {
                write!(f, ", state {mib} MiB")?;
            }
            if d.config {
                write!(f, ", config (read-only)")?;
            }
            if d.trunk {
                write!(f, ", trunk")?;
            }
            if !d.device_ports.is_empty() {
                write!(f, ", device ports [{}]", d.device_ports.join(", "))?;
            }
            if !d.pci.is_empty() {
                let pci: Vec<_> = d.pci.iter().map(Bdf::to_string).collect();
                write!(f, ", pci [{}]", pci.join(", "))?;
            }
            writeln!(f)?;
            if s.bus != Bus::default() {
                writeln!(
                    f,
                    "    bus: publishes [{}], subscribes [{}]{}",
                    s.bus.publish.join(", "),
                    s.bus.subscribe.join(", "),
                    s.bus
                        .heartbeat_timeout
                        .map(|t| format!(", heartbeat within {} s", t.as_secs()))
                        .unwrap_or_default()
                )?;
            }
            if !s.bus.call.is_empty() {
                let calls: Vec<String> = s
                    .bus
                    .call
                    .iter()
                    .map(|(target, ops)| format!("{target} [{}]", ops.join(", ")))
                    .collect();
                writeln!(f, "    calls: {}", calls.join(", "))?;
            }
        }
        Ok(())
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
