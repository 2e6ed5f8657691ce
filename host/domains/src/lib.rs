//! App domains as the host runs them: EVE's three kinds of app
//! (unikernel, Linux VM, container in a shim VM), each in its own QEMU.
//!
//! [`Domains`] is what a host (the `domains` program today, eve-host's
//! `domains` operation target next) holds: it admits a [`DomainSpec`]
//! against the node's memory and CPUs with each VMM's measured overhead
//! ([`admission`]), starts it ([`Domain::launch`]), stops it gracefully
//! with a deadline, reports how each one ended and why ([`end`]), and
//! reads its CPU and memory from `/proc` ([`usage`]). When to start a
//! crashed domain again is [`retry`]'s decision, a pure function of time.
//! A host killed outright leaves its QEMUs running; the next
//! [`Domains::open`] on the same directory stops them by their pid files.
#![forbid(unsafe_code)]

pub mod admission;
mod atomic;
mod dir;
mod domain;
pub mod end;
pub mod firmware;
pub mod qemu;
pub mod retry;
pub mod seed;
pub mod spec;
pub mod usage;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub use admission::{AdmissionError, Footprint, NodeResources, VmmOverhead};
pub use dir::DomainDir;
pub use domain::{Domain, Ended, StartError, StopError, StopOutcome};
pub use end::{Crash, End};
pub use orphans::{ReapError, Reaped};
pub use spec::{DomainSpec, Kind, KindClass};
pub use usage::{Usage, UsageError};

/// Why the domains directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stopping a domain left by a previous host: {0}")]
    Reap(#[from] ReapError),
}

/// The app domains of one node.
#[derive(Debug)]
pub struct Domains {
    root: PathBuf,
    node: NodeResources,
    overhead: VmmOverhead,
    running: BTreeMap<String, Domain>,
}

impl Domains {
    /// Opens `root` (one directory per domain) and stops every QEMU a
    /// previous host left there, before anything new starts.
    pub fn open(root: &Path, node: NodeResources) -> Result<(Domains, Vec<Reaped>), OpenError> {
        let io = |source| OpenError::Io {
            path: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io)?;
        let mut reaped = Vec::new();
        for entry in std::fs::read_dir(root).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry.path().is_dir() {
                let dir = DomainDir::new(root, &entry.file_name().to_string_lossy());
                reaped.extend(orphans::reap(&dir.pid_file())?);
            }
        }
        let domains = Domains {
            root: root.to_path_buf(),
            node,
            overhead: VmmOverhead::measured(),
            running: BTreeMap::new(),
        };
        Ok((domains, reaped))
    }

    /// Charges `overhead` instead of the measured table.
    pub fn with_overhead(mut self, overhead: VmmOverhead) -> Domains {
        self.overhead = overhead;
        self
    }

    pub fn node(&self) -> NodeResources {
        self.node
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Admits and starts `spec`; returns once QEMU runs it.
    pub fn start(&mut self, spec: DomainSpec) -> Result<&Domain, StartError> {
        spec.check()?;
        let running: Vec<Footprint> = self.running.values().map(|d| footprint(d.spec())).collect();
        admission::admit(&self.node, &self.overhead, &running, &footprint(&spec))?;
        let name = spec.name.clone();
        let domain = Domain::launch(&self.root, spec)?;
        Ok(self.running.entry(name).or_insert(domain))
    }

    pub fn get(&self, name: &str) -> Option<&Domain> {
        self.running.get(name)
    }

    /// The running domains' names.
    pub fn names(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }

    /// Stops `name` gracefully within `timeout`, else powers it off.
    pub fn stop(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> Result<(StopOutcome, Ended), StopError> {
        let domain = self
            .running
            .get_mut(name)
            .ok_or_else(|| StopError::NotRunning(name.to_string()))?;
        let outcome = domain.stop(timeout)?;
        let ended = domain.try_end().ok_or_else(|| StopError::Wait {
            name: name.to_string(),
            source: std::io::Error::other("QEMU still running after the stop"),
        })?;
        self.running.remove(name);
        Ok((outcome, ended))
    }

    /// Presses every domain's power button at once, waits up to `timeout`
    /// for all, and powers off the ones still running.
    pub fn stop_all(&mut self, timeout: Duration) -> Vec<Result<Ended, StopError>> {
        for domain in self.running.values_mut() {
            domain.press_power_button();
        }
        let deadline = Instant::now() + timeout;
        let mut results = Vec::new();
        for name in self.names() {
            let left = deadline.saturating_duration_since(Instant::now());
            results.push(self.stop(&name, left).map(|(_, ended)| ended));
        }
        results
    }

    /// The domains that ended since the last call, with why.
    pub fn poll(&mut self) -> Vec<Ended> {
        let ended: Vec<Ended> = self
            .running
            .values_mut()
            .filter_map(Domain::try_end)
            .collect();
        for e in &ended {
            self.running.remove(&e.name);
        }
        ended
    }

    pub fn usage(&self, name: &str) -> Result<Usage, UsageError> {
        match self.running.get(name) {
            Some(domain) => domain.usage(),
            None => Err(UsageError::NotRunning(name.to_string())),
        }
    }
}

fn footprint(spec: &DomainSpec) -> Footprint {
    Footprint {
        name: spec.name.clone(),
        arch: spec.arch,
        kind: spec.kind.class(),
        memory_mib: u64::from(spec.memory_mib),
        vcpus: spec.vcpus,
    }
}
