//! Device ports: NICs whose other end is outside the node (the manifest's
//! `device_ports`), each the outside end of the switch instance whose
//! `port` names its label. The host gives NIC `i` the MAC
//! `guest_abi::device_port_mac(i)` and the labels in order on the command
//! line (`device_ports=eth1,eth2`). The engine numbers them after every
//! trunk tag (tags are 1-4094, the uplink 0).

use alloc::string::String;
use alloc::vec::Vec;

use appnet::{Engine, ExternalPortConfig, PortId};
use eve_proto::config::NetworkInstanceConfig;

/// The engine's number of device port 0.
const FIRST: u16 = 4096;

/// The engine's number of device port `index`.
pub fn port_id(index: usize) -> PortId {
    PortId(FIRST + index as u16)
}

/// The engine's number for a device port this node does not have: never
/// configured, so the engine reports the instance's device port missing
/// (EVE's zedrouter fails an instance whose port it does not know).
const UNKNOWN: PortId = PortId(u16::MAX);

/// The device port of a switch instance: none when its `port` names none
/// (an L2 segment of its apps), [`UNKNOWN`] when it names a label this
/// node has no port for. EVE's controller names the port's logical label
/// in `port.name`.
pub fn switch_port(ports: &DevicePorts, ni: &NetworkInstanceConfig) -> Option<PortId> {
    let label = ni.port.as_ref().map(|a| a.name.as_str()).unwrap_or("");
    if label.is_empty() {
        return None;
    }
    Some(ports.port_of(label).unwrap_or_else(|| {
        log::warn!("network instance names device port {label:?}, which this node has not");
        UNKNOWN
    }))
}

/// Which device port the engine's `port` is, if it is one.
pub fn index_of(port: PortId) -> Option<usize> {
    port.0
        .checked_sub(FIRST)
        .map(usize::from)
        .filter(|i| *i < guest_abi::MAX_DEVICE_PORTS)
}

/// The labels of the device ports, by index.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DevicePorts {
    labels: Vec<String>,
}

impl DevicePorts {
    /// From the command line's `device_ports=` (none without it); at most
    /// `guest_abi::MAX_DEVICE_PORTS`, the rest ignored.
    pub fn from_cmdline(value: Option<&str>) -> DevicePorts {
        let labels = value
            .unwrap_or("")
            .split(',')
            .filter(|l| !l.is_empty())
            .take(guest_abi::MAX_DEVICE_PORTS)
            .map(String::from)
            .collect();
        DevicePorts { labels }
    }

    pub fn label(&self, index: usize) -> Option<&str> {
        self.labels.get(index).map(String::as_str)
    }

    /// The engine's port of the device port named `label`.
    pub fn port_of(&self, label: &str) -> Option<PortId> {
        self.labels.iter().position(|l| l == label).map(port_id)
    }

    /// Tells the engine of the device ports that have a NIC (`present`,
    /// by index), as outside ports of switch instances.
    pub fn configure(&self, engine: &mut Engine, present: &[usize]) {
        for &index in present {
            let Some(label) = self.label(index) else {
                continue;
            };
            let config = ExternalPortConfig {
                port: port_id(index),
                label: label.into(),
            };
            match engine.set_external_port(config) {
                Ok(()) => log::info!("device port {label}"),
                Err(e) => log::error!("device port {label}: {e}"),
            }
        }
    }
}
