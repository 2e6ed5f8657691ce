//! Host forwards for the port maps: each uplink port a port map of an
//! app listens on is forwarded from the same host port by the host's
//! `ports` target (`forward`, applied to this VM's user-mode uplink), so a
//! map is reachable from the host as `--port` promised; a forward goes
//! when its last map does.
//!
//! At start the host's list (`forwards`) is what a previous run left; the
//! first sync removes what no map wants. A zedrouter not granted the
//! operations (a test rig) leaves forwarding to its manifest.

use alloc::collections::BTreeSet;

use appnet::{Engine, MappedProto};
use hostops::ports::{
    Empty, Forward, ForwardProto, ForwardRef, ForwardRequest, Forwards, Unforward,
};
use runtime::service::{CallError, call};

/// A host port forwarded to the same uplink port.
type Port = (ForwardProto, u16);

/// The forwards this zedrouter asked the host for.
pub struct HostForwards {
    /// The host's forwards, as host port and uplink port.
    at_host: BTreeSet<(Port, u16)>,
    /// Ports the host refused, each logged once until it is asked again
    /// successfully or no map wants it.
    refused: BTreeSet<Port>,
    granted: bool,
}

fn proto(p: MappedProto) -> ForwardProto {
    match p {
        MappedProto::Tcp => ForwardProto::Tcp,
        MappedProto::Udp => ForwardProto::Udp,
    }
}

fn host_ref((proto, port): Port) -> ForwardRef {
    ForwardRef {
        proto: proto as i32,
        host_port: u32::from(port),
    }
}

impl HostForwards {
    /// What the host forwards for this service now.
    pub fn start() -> HostForwards {
        let mut forwards = HostForwards {
            at_host: BTreeSet::new(),
            refused: BTreeSet::new(),
            granted: true,
        };
        match call::<Forwards>(&Empty {}) {
            Ok(list) => {
                for f in list.forwards {
                    let host = f.host.unwrap_or_default();
                    let (Ok(port), Ok(uplink)) =
                        (u16::try_from(host.host_port), u16::try_from(f.uplink_port))
                    else {
                        continue;
                    };
                    forwards.at_host.insert(((host.proto(), port), uplink));
                }
            }
            Err(CallError::Refused(status)) => {
                log::info!(
                    "host forwards not granted ({status:?}): port maps reach the uplink only"
                );
                forwards.granted = false;
            }
            Err(e) => log::warn!("listing the host's forwards: {e}"),
        }
        forwards
    }

    /// Asks the host for the forwards the engine's port maps want and
    /// removes the others.
    pub fn sync(&mut self, engine: &Engine) {
        if !self.granted {
            return;
        }
        let wanted: BTreeSet<Port> = engine
            .mapped_uplink_ports()
            .into_iter()
            .map(|(p, port)| (proto(p), port))
            .collect();
        self.refused.retain(|p| wanted.contains(p));
        let stale: alloc::vec::Vec<(Port, u16)> = self
            .at_host
            .iter()
            .filter(|&&(host, uplink)| !wanted.contains(&host) || host.1 != uplink)
            .copied()
            .collect();
        for (host, uplink) in stale {
            match call::<Unforward>(&host_ref(host)) {
                Ok(_) => log::info!("host port {}/{} no longer forwarded", host.0.name(), host.1),
                Err(e) => log::warn!("removing the forward of {}/{}: {e}", host.0.name(), host.1),
            }
            // Either gone or unknown to the host: not ours any more.
            self.at_host.remove(&(host, uplink));
        }
        for port in wanted {
            if self.at_host.contains(&(port, port.1)) {
                continue;
            }
            let request = ForwardRequest {
                host: Some(host_ref(port)),
                uplink_port: u32::from(port.1),
            };
            match call::<Forward>(&request) {
                Ok(_) => {
                    log::info!(
                        "host port {}/{} forwarded to the uplink",
                        port.0.name(),
                        port.1
                    );
                    self.refused.remove(&port);
                    self.at_host.insert((port, port.1));
                }
                Err(e) => {
                    if self.refused.insert(port) {
                        log::warn!("forwarding host port {}/{}: {e}", port.0.name(), port.1);
                    }
                }
            }
        }
    }
}
