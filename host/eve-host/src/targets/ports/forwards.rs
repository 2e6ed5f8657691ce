//! Uplink forwards: host ports forwarded to a port of the calling
//! service's own user-mode uplink (zedrouter's, where its port maps
//! listen), applied to the service's QEMU with the monitor's
//! `hostfwd_add` and `hostfwd_remove` through its QMP socket.
//!
//! A service granted `ports.forward` gets that socket,
//! `<run>/ports/<service>.qmp` ([`monitor_socket`]). The host keeps each
//! service's forwards: a restarted VM (a new QEMU, with none) gets them
//! again, as soon as the watcher sees its new monitor or at the service's
//! next call, whichever comes first. Forwards listen on one host address,
//! 127.0.0.1 unless `eve-host run --forward-address` says otherwise (a
//! board whose apps are served on its LAN).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use hostops::ports::{
    Empty, ForwardList, ForwardProto, ForwardRef, ForwardRequest, PortError, PortErrorCode,
};
use qmp::Qmp;

use super::{Answer, host_error, socket_dir};
use crate::manifest::Manifest;
use crate::targets::Refused;

/// The user-mode network's id in the service's QEMU (`qemu::user_netdev`).
const UPLINK_NETDEV: &str = "net0";

/// How often the watcher looks for a restarted VM's monitor.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// The QMP socket of `service`'s VM in the node whose run directory is
/// `run`.
pub fn monitor_socket(run: &Path, service: &str) -> PathBuf {
    socket_dir(run).join(format!("{service}.qmp"))
}

/// Whether `service`'s grants give its VM a monitor socket: it may
/// forward.
pub fn wants_monitor(call: &BTreeMap<String, Vec<String>>) -> bool {
    call.get(<hostops::ports::Ports as hostops::Target>::SPEC.name)
        .is_some_and(|ops| {
            ops.iter()
                .any(|op| op == <hostops::ports::Forward as hostops::Operation>::NAME)
        })
}

/// What the host allows forwards to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardOptions {
    /// The host address forwards listen on.
    pub address: Ipv4Addr,
    /// The lowest host port a service may forward (ports under 1024 are
    /// the system's unless a board says otherwise).
    pub lowest_port: u16,
    /// Host TCP ports the manifest forwards statically (`host_forward`).
    pub reserved: Vec<u16>,
}

impl Default for ForwardOptions {
    fn default() -> ForwardOptions {
        ForwardOptions {
            address: Ipv4Addr::LOCALHOST,
            lowest_port: 1024,
            reserved: Vec::new(),
        }
    }
}

impl ForwardOptions {
    /// `self` with the host ports `manifest` forwards statically reserved.
    pub fn reserving(mut self, manifest: &Manifest) -> ForwardOptions {
        self.reserved.extend(
            manifest
                .services
                .iter()
                .filter_map(|s| s.devices.net.as_ref())
                .flat_map(|net| net.host_forward.iter().map(|f| f.host_port)),
        );
        self
    }
}

/// One host port, by transport, as a map key.
type HostPort = (ForwardProto, u16);

/// One service's forwards and its monitor connection.
#[derive(Default)]
struct ServiceForwards {
    /// Host port to uplink port.
    forwards: BTreeMap<HostPort, u16>,
    qmp: Option<Qmp>,
}

/// Every service's forwards.
struct State {
    run: PathBuf,
    options: ForwardOptions,
    services: BTreeMap<String, ServiceForwards>,
}

/// The forwards of the node's services.
pub struct UplinkForwards {
    state: Arc<Mutex<State>>,
}

impl UplinkForwards {
    /// Forwards for the node whose run directory is `run`, with a watcher
    /// thread that applies them again to restarted VMs (it ends with
    /// `self`).
    pub fn start(run: &Path, options: ForwardOptions) -> std::io::Result<UplinkForwards> {
        let state = Arc::new(Mutex::new(State {
            run: run.to_path_buf(),
            options,
            services: BTreeMap::new(),
        }));
        let weak = Arc::downgrade(&state);
        std::thread::Builder::new()
            .name("uplink-forwards".into())
            .spawn(move || watch(&weak))?;
        Ok(UplinkForwards { state })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The host address forwards listen on.
    pub fn address(&self) -> Ipv4Addr {
        self.state().options.address
    }

    pub fn forward(&self, caller: &str, request: ForwardRequest) -> Answer<Empty> {
        let host = request.host.unwrap_or_default();
        let proto = ForwardProto::try_from(host.proto)
            .map_err(|_| Refused::BadRequest(format!("no transport {}", host.proto)))?;
        let (host_port, uplink_port) = ports(host.host_port, request.uplink_port)?;
        let subject = format!("{}/{host_port}", proto.name());
        let mut state = self.state();
        if host_port < state.options.lowest_port {
            return Err(Refused::Failed(PortError::new(
                PortErrorCode::PortNotAllowed,
                &subject,
            )));
        }
        let statically = proto == ForwardProto::Tcp && state.options.reserved.contains(&host_port);
        let elsewhere = state.services.iter().any(|(service, s)| {
            s.forwards
                .get(&(proto, host_port))
                .is_some_and(|&up| service != caller || up != uplink_port)
        });
        if statically || elsewhere {
            return Err(Refused::Failed(PortError::new(
                PortErrorCode::PortInUse,
                &subject,
            )));
        }
        let address = state.options.address;
        let run = state.run.clone();
        let service = state.services.entry(caller.to_string()).or_default();
        if service.forwards.contains_key(&(proto, host_port)) {
            return Ok(Empty {});
        }
        let qmp = connect(service, &run, caller, address).map_err(|e| host_error(&subject, e))?;
        add(qmp, address, proto, host_port, uplink_port).map_err(|e| host_error(&subject, e))?;
        log::info!(
            "ports: {caller}'s uplink port {uplink_port} forwarded from {address}:{subject}"
        );
        service.forwards.insert((proto, host_port), uplink_port);
        Ok(Empty {})
    }

    pub fn unforward(&self, caller: &str, request: ForwardRef) -> Answer<Empty> {
        let proto = ForwardProto::try_from(request.proto)
            .map_err(|_| Refused::BadRequest(format!("no transport {}", request.proto)))?;
        let subject = format!("{}/{}", proto.name(), request.host_port);
        let no_forward = || Refused::Failed(PortError::new(PortErrorCode::NoForward, &subject));
        let host_port = u16::try_from(request.host_port).map_err(|_| no_forward())?;
        let mut state = self.state();
        let address = state.options.address;
        let run = state.run.clone();
        let service = state.services.get_mut(caller).ok_or_else(no_forward)?;
        service
            .forwards
            .remove(&(proto, host_port))
            .ok_or_else(no_forward)?;
        // A VM whose monitor cannot be reached is gone, and its forwards
        // with it; the next one will not get this one.
        if let Ok(qmp) = connect(service, &run, caller, address) {
            let command = format!(
                "hostfwd_remove {UPLINK_NETDEV} {}:{address}:{host_port}",
                proto.name()
            );
            let printed = qmp
                .human_command(&command)
                .map_err(|e| host_error(&subject, e.to_string()))?;
            // QEMU says "host forwarding rule for ... removed" or "... not
            // found".
            if !printed.trim().is_empty() && !printed.trim_end().ends_with("removed") {
                return Err(host_error(&subject, printed.trim().to_string()));
            }
        }
        log::info!("ports: {caller}'s forward from {address}:{subject} removed");
        Ok(Empty {})
    }

    pub fn list(&self, caller: &str) -> Answer<ForwardList> {
        let state = self.state();
        let forwards = state
            .services
            .get(caller)
            .map(|s| {
                s.forwards
                    .iter()
                    .map(|(&(proto, host_port), &uplink_port)| ForwardRequest {
                        host: Some(ForwardRef {
                            proto: proto as i32,
                            host_port: u32::from(host_port),
                        }),
                        uplink_port: u32::from(uplink_port),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ForwardList {
            forwards,
            address: state.options.address.to_string(),
        })
    }

    /// How many forwards the node's services have.
    pub fn count(&self) -> usize {
        self.state()
            .services
            .values()
            .map(|s| s.forwards.len())
            .sum()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every change is one insert or remove, so a panic left it whole.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn ports(host_port: u32, uplink_port: u32) -> Result<(u16, u16), Refused<PortError>> {
    let port = |p: u32| u16::try_from(p).ok().filter(|&p| p != 0);
    port(host_port).zip(port(uplink_port)).ok_or_else(|| {
        Refused::BadRequest(format!(
            "ports {host_port} and {uplink_port} are not 1-65535"
        ))
    })
}

/// The service's live monitor connection: the one it has, or a new one to
/// a new QEMU, which first gets every forward the service has (one that
/// fails there, its host port taken meanwhile, is logged and kept, so a
/// later `forwards` still names it for the service to remove).
fn connect<'a>(
    service: &'a mut ServiceForwards,
    run: &Path,
    name: &str,
    address: Ipv4Addr,
) -> Result<&'a mut Qmp, String> {
    if service.qmp.as_ref().is_none_or(Qmp::is_closed) {
        service.qmp = None;
        let mut qmp = Qmp::connect(&monitor_socket(run, name)).map_err(|e| e.to_string())?;
        for (&(proto, host_port), &uplink_port) in &service.forwards {
            if let Err(e) = add(&mut qmp, address, proto, host_port, uplink_port) {
                log::warn!("ports: {name}'s forward {}/{host_port}: {e}", proto.name());
            }
        }
        if !service.forwards.is_empty() {
            log::info!(
                "ports: {} forwards applied again to {name}'s new VM",
                service.forwards.len()
            );
        }
        service.qmp = Some(qmp);
    }
    service
        .qmp
        .as_mut()
        .ok_or_else(|| String::from("no monitor connection"))
}

fn add(
    qmp: &mut Qmp,
    address: Ipv4Addr,
    proto: ForwardProto,
    host_port: u16,
    uplink_port: u16,
) -> Result<(), String> {
    let command = format!(
        "hostfwd_add {UPLINK_NETDEV} {}:{address}:{host_port}-:{uplink_port}",
        proto.name()
    );
    let printed = qmp.human_command(&command).map_err(|e| e.to_string())?;
    match printed.trim() {
        "" => Ok(()),
        words => Err(words.to_string()),
    }
}

/// Applies the forwards again to every VM that restarted, until the
/// forwards are dropped.
fn watch(state: &Weak<Mutex<State>>) {
    loop {
        std::thread::sleep(WATCH_EVERY);
        let Some(state) = state.upgrade() else { return };
        let mut state = lock(&state);
        let State {
            run,
            options,
            services,
        } = &mut *state;
        for (name, service) in services.iter_mut() {
            if service.forwards.is_empty() {
                continue;
            }
            // No monitor yet: the VM is restarting; the next turn tries.
            let _ = connect(service, run, name, options.address);
        }
    }
}

#[cfg(test)]
mod tests;
