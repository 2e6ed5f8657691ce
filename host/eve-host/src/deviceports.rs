//! Device ports: the outside ends of switch network instances, EVE's
//! adapters named by a logical label (`eth1`) in
//! `NetworkInstanceConfig.port`. A service given `device_ports` in the
//! manifest has one NIC per label, MAC `guest_abi::device_port_mac(index)`
//! in the manifest's order, each a unix stream (QEMU's length-prefixed
//! frames) it connects to at [`device_port_socket`], reconnecting, and its
//! command line says the labels in order (`device_ports=eth1,eth2`).
//! Whatever listens on the socket is that port's wire: a test, or the
//! host's bridge to a Linux interface (`eve-host run --device-port
//! eth1=IFNAME`, [`DevicePortBridges`], the `portbridge` crate); on a
//! board the port would be a NIC passed through.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use portbridge::Bridge;

use crate::manifest::Manifest;
use crate::targets::ports::socket_dir;
use crate::vmm::VmSpec;

/// The longest label: a Linux interface name, as EVE's labels usually are.
pub const MAX_LABEL: usize = 15;

/// Why a label cannot name a device port, if it cannot.
pub fn label_problem(label: &str) -> Option<&'static str> {
    if label.is_empty() || label.len() > MAX_LABEL {
        return Some("a device port's label has 1 to 15 characters");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !label.chars().all(allowed) {
        return Some("a device port's label has only letters, digits, `-`, `_` and `.`");
    }
    None
}

/// The socket of the device port `label` of the node whose run directory
/// is `run`.
pub fn device_port_socket(run: &Path, label: &str) -> PathBuf {
    socket_dir(run).join(format!("device-{label}.sock"))
}

/// Gives `spec` the device ports `labels` (already checked): their sockets
/// and the command line naming them.
pub fn give(spec: &mut VmSpec, run: &Path, labels: &[String]) {
    if labels.is_empty() {
        return;
    }
    spec.device_ports = labels
        .iter()
        .map(|label| device_port_socket(run, label))
        .collect();
    spec.cmdline.push_str(" device_ports=");
    spec.cmdline.push_str(&labels.join(","));
}

/// A device port to bridge with a Linux interface: `LABEL=IFNAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBridgeChoice {
    pub label: String,
    pub interface: String,
}

impl FromStr for PortBridgeChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<PortBridgeChoice, String> {
        let (label, interface) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: give LABEL=INTERFACE, e.g. eth1=enp3s0"))?;
        if let Some(problem) = label_problem(label) {
            return Err(format!("{text:?}: {problem}"));
        }
        if interface.is_empty() {
            return Err(format!("{text:?}: the interface's name is missing"));
        }
        Ok(PortBridgeChoice {
            label: label.to_string(),
            interface: interface.to_string(),
        })
    }
}

/// Why the device ports' bridges could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeStartError {
    #[error("--device-port {label}=...: the manifest gives no service device port {label}")]
    UnknownLabel { label: String },
    #[error("--device-port {label}=... is given twice")]
    Twice { label: String },
    #[error("bridging device port {label} with {interface}: {source}")]
    Bridge {
        label: String,
        interface: String,
        source: portbridge::StartError,
    },
}

/// Starts the bridge of device port `label` of the node whose run
/// directory is `run` with the Linux interface `interface`.
pub fn bridge(run: &Path, label: &str, interface: &str) -> Result<Bridge, BridgeStartError> {
    Bridge::start(label, &device_port_socket(run, label), interface).map_err(|source| {
        BridgeStartError::Bridge {
            label: label.to_string(),
            interface: interface.to_string(),
            source,
        }
    })
}

/// The running bridges of a node's device ports, the bridges that could
/// not start (their interface missing, no CAP_NET_RAW) and the ports no
/// bridge was asked for: nothing listens on the sockets of these two,
/// so switch instances on them reach no network, but the node runs.
pub struct DevicePortBridges {
    pub bridges: Vec<(PortBridgeChoice, Bridge)>,
    pub failed: Vec<BridgeStartError>,
    pub unbridged: Vec<String>,
}

impl DevicePortBridges {
    /// Starts a bridge for each of `choices`; refuses choices naming a
    /// port the manifest's services do not have, or one port twice.
    pub fn start(
        manifest: &Manifest,
        run: &Path,
        choices: &[PortBridgeChoice],
    ) -> Result<DevicePortBridges, BridgeStartError> {
        let labels: Vec<&String> = manifest
            .services
            .iter()
            .flat_map(|s| &s.devices.device_ports)
            .collect();
        let mut chosen = BTreeSet::new();
        for choice in choices {
            if !labels.contains(&&choice.label) {
                return Err(BridgeStartError::UnknownLabel {
                    label: choice.label.clone(),
                });
            }
            if !chosen.insert(choice.label.as_str()) {
                return Err(BridgeStartError::Twice {
                    label: choice.label.clone(),
                });
            }
        }
        let mut bridges = Vec::new();
        let mut failed = Vec::new();
        for choice in choices {
            match bridge(run, &choice.label, &choice.interface) {
                Ok(bridge) => bridges.push((choice.clone(), bridge)),
                Err(e) => failed.push(e),
            }
        }
        let unbridged = labels
            .into_iter()
            .filter(|label| !chosen.contains(label.as_str()))
            .cloned()
            .collect();
        Ok(DevicePortBridges {
            bridges,
            failed,
            unbridged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Accel, Arch};

    #[test]
    fn a_bridge_choice_is_a_label_and_an_interface() {
        assert_eq!(
            "eth1=enp3s0".parse(),
            Ok(PortBridgeChoice {
                label: "eth1".into(),
                interface: "enp3s0".into()
            })
        );
        for bad in ["eth1", "eth1=", "=enp3s0", "eth 1=enp3s0"] {
            assert!(bad.parse::<PortBridgeChoice>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bridges_name_ports_the_manifest_has_each_once() {
        let manifest = Manifest::parse(
            "[node]\nname = \"n\"\narch = \"x86_64\"\n[[service]]\nname = \"r\"\n\
             image = \"r\"\nram_mib = 32\n[service.devices]\ntrunk = true\ndevice_ports = [\"eth1\", \"eth2\"]\n\
             [service.bus]\ncall.ports = [\"attach\"]\n",
        )
        .unwrap();
        let run = Path::new("/nonexistent/run");
        let none = DevicePortBridges::start(&manifest, run, &[]).unwrap();
        assert!(none.bridges.is_empty());
        assert_eq!(none.unbridged, ["eth1", "eth2"]);
        let choice = |text: &str| text.parse::<PortBridgeChoice>().unwrap();
        assert!(matches!(
            DevicePortBridges::start(&manifest, run, &[choice("eth3=lo")]),
            Err(BridgeStartError::UnknownLabel { label }) if label == "eth3"
        ));
        assert!(matches!(
            DevicePortBridges::start(&manifest, run, &[choice("eth1=a"), choice("eth1=b")]),
            Err(BridgeStartError::Twice { label }) if label == "eth1"
        ));
        let missing =
            DevicePortBridges::start(&manifest, run, &[choice("eth1=evenosuchif0")]).unwrap();
        assert!(missing.bridges.is_empty());
        assert!(matches!(
            missing.failed.as_slice(),
            [BridgeStartError::Bridge { label, .. }] if label == "eth1"
        ));
        assert_eq!(missing.unbridged, ["eth2"]);
    }

    #[test]
    fn labels_are_short_plain_names() {
        for good in ["eth1", "port-2", "wlan_0", "a.b"] {
            assert_eq!(label_problem(good), None, "{good}");
        }
        for bad in ["", "eth1,eth2", "eth 1", "a=b", "sixteen-chars-xx"] {
            assert!(label_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn a_spec_gets_a_socket_per_label_and_the_labels_on_its_command_line() {
        let mut spec = VmSpec::new("zedrouter", Arch::X86_64, Accel::Tcg, "k".into());
        spec.cmdline = "service=zedrouter".into();
        give(&mut spec, Path::new("/run/node"), &[]);
        assert!(spec.device_ports.is_empty());
        assert_eq!(spec.cmdline, "service=zedrouter");
        give(
            &mut spec,
            Path::new("/run/node"),
            &["eth1".to_string(), "eth2".to_string()],
        );
        assert_eq!(
            spec.device_ports,
            [
                PathBuf::from("/run/node/ports/device-eth1.sock"),
                PathBuf::from("/run/node/ports/device-eth2.sock")
            ]
        );
        assert_eq!(spec.cmdline, "service=zedrouter device_ports=eth1,eth2");
    }
}
