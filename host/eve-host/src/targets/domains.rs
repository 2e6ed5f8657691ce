//! The `domains` target: app domains run by `host/domains` under
//! `<state-dir>/domains/`, on behalf of domainmgr (see `hostops::domains`
//! for the interface).
//!
//! - Requests are checked and their disks resolved to the `volumes`
//!   target's files here ([`request`]); a service never names a path.
//! - Admission counts the memory and CPUs the node keeps for apps
//!   ([`DomainsOptions`], `eve-host run --apps-memory-mib --apps-cpus`)
//!   and each VMM's measured overhead.
//! - A watcher thread notices domains that end by themselves: one that
//!   crashed or rebooted is started again after `host/domains`' retry
//!   backoff; one that powered itself off stays off.
//! - Dropping the target (the host's stop) stops every domain; a host
//!   killed outright leaves QEMUs that the next one reaps when it opens
//!   the directory.

mod request;
mod state;

use std::error::Error;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread;
use std::time::Duration;

use domains::NodeResources;
use domains::retry::RetryPolicy;
use eve_broker::{RpcError, RpcHandler};
use guest_arch::Arch;
use hostops::domains::{Console, Domains, List, Start, Status, Stop, Usage};
use hostops::{Operation, Target, TargetSpec};

use super::content::volumes_dir_in;
use super::{HostTarget, TargetContext, serve};
use crate::volumes::StateDir;
use state::State;

/// How often the watcher looks for ended domains and due retries.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// What the host keeps for itself and the service VMs when the memory for
/// apps is not given: the rest of the machine's RAM is for apps.
const HOST_RESERVE_MIB: u64 = 1024;

/// The host's settings for app domains (`eve-host run` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainsOptions {
    /// The arch of the node's guests.
    pub arch: Arch,
    /// MiB apps may use (guest RAM and VMMs); `None`: this machine's RAM
    /// less [`HOST_RESERVE_MIB`].
    pub memory_mib: Option<u64>,
    /// CPUs apps share; `None`: this machine's.
    pub cpus: Option<u32>,
    /// The shim VM's kernel and initrd, which container apps need.
    pub shim: Option<(PathBuf, PathBuf)>,
    /// When a crashed domain is started again.
    pub retry: RetryPolicy,
    /// How long domains get to power down when the host stops.
    pub grace: Duration,
}

impl Default for DomainsOptions {
    fn default() -> Self {
        Self {
            arch: Arch::host().unwrap_or(Arch::X86_64),
            memory_mib: None,
            cpus: None,
            shim: None,
            retry: RetryPolicy::default(),
            grace: Duration::from_secs(10),
        }
    }
}

impl DomainsOptions {
    /// What admission counts on.
    fn resources(&self) -> Result<NodeResources, domains::admission::ResourcesError> {
        let this = NodeResources::of_this_host(HOST_RESERVE_MIB)?;
        Ok(NodeResources {
            memory_mib: self.memory_mib.unwrap_or(this.memory_mib),
            cpus: self.cpus.unwrap_or(this.cpus),
        })
    }
}

/// The domains target.
pub struct DomainsTarget {
    state: Arc<Mutex<State>>,
}

/// Opens the node's domains (reaping what a killed host left) and starts
/// the watcher.
pub fn open(
    context: &TargetContext<'_>,
) -> Result<Arc<dyn HostTarget>, Box<dyn Error + Send + Sync>> {
    let options = context.domains.clone();
    let root = context.state_dir.join("domains");
    let (domains, reaped) = domains::Domains::open(&root, options.resources()?)?;
    for r in reaped {
        log::warn!("domains: stopped {r:?}, left by a previous host");
    }
    let run_dir = StateDir::create(context.state_dir)?.run();
    let state = State::new(domains, volumes_dir_in(context.state_dir), run_dir, options);
    Ok(Arc::new(DomainsTarget::start(state)?))
}

impl DomainsTarget {
    fn start(state: State) -> Result<DomainsTarget, std::io::Error> {
        let state = Arc::new(Mutex::new(state));
        let weak = Arc::downgrade(&state);
        thread::Builder::new()
            .name("domains watcher".into())
            .spawn(move || watch(&weak))?;
        Ok(DomainsTarget { state })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Until the target is dropped: notices ends, starts due retries.
fn watch(state: &Weak<Mutex<State>>) {
    loop {
        thread::sleep(WATCH_EVERY);
        let Some(state) = state.upgrade() else {
            return;
        };
        state.lock().unwrap_or_else(|e| e.into_inner()).tick();
    }
}

impl RpcHandler for DomainsTarget {
    fn call(&self, caller: &str, operation: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        log::debug!("domains: {operation} for {caller}");
        match operation {
            Start::NAME => serve::<Start>(request, |r| self.state().start(r)),
            Stop::NAME => serve::<Stop>(request, |r| self.state().stop(&r)),
            Status::NAME => serve::<Status>(request, |r| self.state().status(&r.uuid)),
            List::NAME => serve::<List>(request, |_| Ok(self.state().list())),
            Usage::NAME => serve::<Usage>(request, |r| self.state().usage(&r.uuid)),
            Console::NAME => serve::<Console>(request, |r| self.state().console(&r)),
            other => Err(RpcError::BadRequest(format!(
                "domains has no operation {other}"
            ))),
        }
    }
}

impl HostTarget for DomainsTarget {
    fn spec(&self) -> &'static TargetSpec {
        &Domains::SPEC
    }

    fn describe(&self) -> String {
        self.state().describe()
    }
}

#[cfg(test)]
mod tests;
