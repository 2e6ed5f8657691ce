//! The uplink ports the engine's port maps listen on, for whoever must
//! make them reachable from outside the uplink (zedrouter asks the host to
//! forward them).

use alloc::collections::BTreeSet;

use super::Engine;
use crate::wire::{PROTO_TCP, PROTO_UDP};

/// The transport of a port map's uplink port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MappedProto {
    Tcp,
    Udp,
}

impl Engine {
    /// Every uplink port (by transport) a port map of an activated local
    /// instance with an uplink takes, whichever app has it.
    pub fn mapped_uplink_ports(&self) -> BTreeSet<(MappedProto, u16)> {
        self.instances
            .values()
            .filter(|i| i.cfg.activated && i.cfg.device_port.is_some())
            .flat_map(|i| i.port_maps.keys())
            .filter_map(|&(proto, port)| match proto {
                PROTO_TCP => Some((MappedProto::Tcp, port)),
                PROTO_UDP => Some((MappedProto::Udp, port)),
                _ => None,
            })
            .collect()
    }
}
