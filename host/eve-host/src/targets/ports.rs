//! The `ports` target: the host's port switch (`portswitch`), which moves
//! frames between app NICs and zedrouter's trunk NIC (see `hostops::ports`
//! for the interface).
//!
//! Every socket lives under `<state-dir>/run/ports/`: the trunk,
//! `trunk.sock`, which the node gives the service whose manifest says
//! `trunk = true`, and one `<app-uuid>.<nic>.sock` per attached port, the
//! name the app's domain connects its NIC to. The switch runs on a thread
//! of its own from the time the target opens, so zedrouter's trunk and the
//! apps' NICs can connect in any order (QEMU reconnects).

use std::collections::BTreeMap;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use eve_broker::{RpcError, RpcHandler};
use hostops::ports::{
    Attach, AttachRequest, Detach, Empty, Forward, Forwards, List, PortCounters, PortError,
    PortErrorCode, PortInfo, PortList, PortName, PortRef, Ports, TAGS, TrunkCounters, Unforward,
};
use hostops::{Operation, Target, TargetSpec};
use portswitch::{AttachError, Config, DetachError, PortStats, PortSwitch, Tag};

use super::{HostTarget, Refused, TargetContext, serve};
use crate::volumes::StateDir;

mod forwards;

pub use forwards::{ForwardOptions, UplinkForwards, monitor_socket, wants_monitor};

/// The longest path a unix socket can have (`sun_path` less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Where the port sockets of the node whose run directory is `run` live.
pub fn socket_dir(run: &Path) -> PathBuf {
    run.join("ports")
}

/// The trunk socket of the node whose run directory is `run`.
pub fn trunk_socket(run: &Path) -> PathBuf {
    socket_dir(run).join("trunk.sock")
}

/// The socket of the app port named `host_name` (`<uuid>.<nic>`).
pub fn app_socket(run: &Path, host_name: &str) -> PathBuf {
    socket_dir(run).join(format!("{host_name}.sock"))
}

/// The ports target.
pub struct PortsTarget {
    run: PathBuf,
    switch: PortSwitch,
    /// Each attached tag's port.
    ports: Mutex<BTreeMap<u16, PortName>>,
    /// The services' uplink forwards.
    forwards: UplinkForwards,
}

/// Opens the node's port switch, listening on its trunk socket.
pub fn open(
    context: &TargetContext<'_>,
) -> Result<Arc<dyn HostTarget>, Box<dyn Error + Send + Sync>> {
    let state = StateDir::create(context.state_dir)?;
    Ok(Arc::new(PortsTarget::start(
        &state.run(),
        context.forwards.clone(),
    )?))
}

/// Why the switch could not start.
#[derive(Debug, thiserror::Error)]
pub enum PortsOpenError {
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "trunk socket {path} is longer than {MAX_SOCKET_PATH} bytes: use a shorter --state-dir"
    )]
    PathTooLong { path: PathBuf },
    #[error(transparent)]
    Switch(#[from] portswitch::StartError),
    #[error("starting the uplink forwards' watcher: {0}")]
    Forwards(std::io::Error),
}

type Answer<T> = Result<T, Refused<PortError>>;

fn counters(stats: Option<&PortStats>) -> PortCounters {
    let s = stats.copied().unwrap_or_default();
    PortCounters {
        connected: s.connected,
        connections: s.connections,
        to_trunk: s.to_trunk,
        from_trunk: s.from_trunk,
        dropped: s.dropped_no_trunk + s.dropped_queue_full + s.dropped_not_connected + s.bad_frames,
    }
}

fn host_error(subject: &str, detail: String) -> Refused<PortError> {
    Refused::Failed(PortError {
        detail,
        ..PortError::new(PortErrorCode::Host, subject)
    })
}

impl PortsTarget {
    /// Starts the switch with its sockets under the run directory `run`,
    /// and the services' uplink forwards with `options`.
    pub fn start(run: &Path, options: ForwardOptions) -> Result<PortsTarget, PortsOpenError> {
        let dir = socket_dir(run);
        fs::create_dir_all(&dir).map_err(|source| PortsOpenError::Dir {
            path: dir.clone(),
            source,
        })?;
        let trunk = trunk_socket(run);
        if trunk.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(PortsOpenError::PathTooLong { path: trunk });
        }
        let switch = PortSwitch::start(Config::new(trunk))?;
        Ok(PortsTarget {
            run: run.to_path_buf(),
            switch,
            ports: Mutex::new(BTreeMap::new()),
            forwards: UplinkForwards::start(run, options).map_err(PortsOpenError::Forwards)?,
        })
    }

    fn ports(&self) -> MutexGuard<'_, BTreeMap<u16, PortName>> {
        // A panic while holding it left the map whole: every change is one
        // insert or remove.
        self.ports.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self, tag: u16, name: &PortName, stats: Option<&portswitch::Stats>) -> PortInfo {
        let port = Tag::new(tag).and_then(|t| stats.and_then(|s| s.ports.get(&t)));
        PortInfo {
            tag: u32::from(tag),
            name: Some(name.clone()),
            counters: Some(counters(port)),
        }
    }

    fn attach(&self, request: AttachRequest) -> Answer<PortInfo> {
        let tag = u16::try_from(request.tag)
            .ok()
            .filter(|_| TAGS.contains(&request.tag))
            .and_then(Tag::new)
            .ok_or_else(|| Refused::BadRequest(format!("tag {} is not 1-4094", request.tag)))?;
        let name = request.name.unwrap_or_default();
        let host_name = name.host_name().ok_or_else(|| {
            Refused::BadRequest(String::from(
                "a port is a lowercase app UUID and a NIC index under 64",
            ))
        })?;
        let mut ports = self.ports();
        if let Some(attached) = ports.get(&tag.vid()) {
            return if *attached == name {
                Ok(self.info(tag.vid(), &name, self.switch.stats().as_ref()))
            } else {
                Err(Refused::Failed(PortError::new(
                    PortErrorCode::TagInUse,
                    &tag.vid().to_string(),
                )))
            };
        }
        if ports.values().any(|n| *n == name) {
            return Err(Refused::Failed(PortError::new(
                PortErrorCode::NameInUse,
                &host_name,
            )));
        }
        let path = app_socket(&self.run, &host_name);
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(host_error(
                &host_name,
                format!("socket path {} is too long", path.display()),
            ));
        }
        match self.switch.attach(tag, &path) {
            Ok(()) => {}
            Err(AttachError::TagInUse(_)) => {
                return Err(Refused::Failed(PortError::new(
                    PortErrorCode::TagInUse,
                    &tag.vid().to_string(),
                )));
            }
            Err(e) => return Err(host_error(&host_name, e.to_string())),
        }
        log::info!("ports: {host_name} attached under tag {}", tag.vid());
        ports.insert(tag.vid(), name.clone());
        Ok(self.info(tag.vid(), &name, None))
    }

    fn detach(&self, request: PortRef) -> Answer<Empty> {
        let not_found = || {
            Refused::Failed(PortError::new(
                PortErrorCode::NotFound,
                &request.tag.to_string(),
            ))
        };
        let tag = u16::try_from(request.tag)
            .ok()
            .and_then(Tag::new)
            .ok_or_else(not_found)?;
        let mut ports = self.ports();
        if !ports.contains_key(&tag.vid()) {
            return Err(not_found());
        }
        match self.switch.detach(tag) {
            Ok(()) | Err(DetachError::UnknownTag(_)) => {}
            Err(e @ DetachError::Stopped) => {
                return Err(host_error(&tag.vid().to_string(), e.to_string()));
            }
        }
        ports.remove(&tag.vid());
        log::info!("ports: tag {} detached", tag.vid());
        Ok(Empty {})
    }

    fn list(&self) -> Answer<PortList> {
        let stats = self.switch.stats();
        let ports = self.ports();
        let trunk = stats.as_ref().map(|s| TrunkCounters {
            connected: s.trunk.connected,
            connections: s.trunk.connections,
            frames_in: s.trunk.frames_in,
            frames_out: s.trunk.frames_out,
            misdirected: s.trunk.untagged + s.trunk.unknown_tag,
        });
        Ok(PortList {
            ports: ports
                .iter()
                .map(|(tag, name)| self.info(*tag, name, stats.as_ref()))
                .collect(),
            trunk,
        })
    }
}

impl RpcHandler for PortsTarget {
    fn call(&self, caller: &str, operation: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        log::debug!("ports: {operation} for {caller}");
        match operation {
            Attach::NAME => serve::<Attach>(request, |r| self.attach(r)),
            Detach::NAME => serve::<Detach>(request, |r| self.detach(r)),
            List::NAME => serve::<List>(request, |_| self.list()),
            Forward::NAME => serve::<Forward>(request, |r| self.forwards.forward(caller, r)),
            Unforward::NAME => serve::<Unforward>(request, |r| self.forwards.unforward(caller, r)),
            Forwards::NAME => serve::<Forwards>(request, |_| self.forwards.list(caller)),
            other => Err(RpcError::BadRequest(format!(
                "ports has no operation {other}"
            ))),
        }
    }
}

impl HostTarget for PortsTarget {
    fn spec(&self) -> &'static TargetSpec {
        &Ports::SPEC
    }

    fn describe(&self) -> String {
        format!(
            "port switch, trunk {} ({} ports); uplink forwards on {} ({})",
            trunk_socket(&self.run).display(),
            self.ports().len(),
            self.forwards.address(),
            self.forwards.count()
        )
    }
}

#[cfg(test)]
mod tests;
