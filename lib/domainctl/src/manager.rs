//! The decisions: what to ask the host for each domain, and what to
//! report of it.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use eve_proto::info::ZSwState;
use hostops::domains::{
    Disk, DomainErrorCode, DomainInfo, DomainKind as HostKind, EndReason, Nic, PortMap, RunState,
    StartRequest,
};
use topics::{Domain, DomainState};

use crate::console::{Tail, Tails};
use crate::{Host, HostError};

/// How long a guest gets to power down before the host powers it off.
pub const STOP_TIMEOUT_SECS: u32 = 30;
/// After a failed start, when to try again.
pub const START_RETRY_SECS: u64 = 30;

/// What a reconcile left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reconciled {
    /// Something is on its way (a retry pending, a domain booting again):
    /// reconcile again soon.
    pub busy: bool,
}

/// What domainmgr remembers of one domain.
#[derive(Debug, Clone, Default)]
struct Known {
    state: DomainState,
    /// When a failed start may be tried again (Unix seconds).
    retry_at: u64,
    /// Boots of earlier host starts (the host counts those of its start).
    boots_before: u32,
}

/// domainmgr's state.
#[derive(Debug, Default)]
pub struct Manager {
    pub(crate) configs: BTreeMap<String, Domain>,
    pub(crate) tails: Tails,
    synchronized: bool,
    known: BTreeMap<String, Known>,
    states: BTreeMap<String, DomainState>,
    ready: bool,
}

fn state(value: ZSwState) -> i32 {
    value as i32
}

/// The host's start request for `config`.
fn start_request(config: &Domain) -> StartRequest {
    StartRequest {
        uuid: config.uuid.clone(),
        display_name: config.display_name.clone(),
        kind: match config.kind() {
            topics::DomainKind::Unikernel => HostKind::Unikernel,
            topics::DomainKind::LinuxVm => HostKind::LinuxVm,
            topics::DomainKind::Container => HostKind::Container,
            topics::DomainKind::Unspecified => HostKind::Unspecified,
        } as i32,
        memory_kib: config.memory_kib,
        vcpus: config.vcpus,
        disks: config
            .disks
            .iter()
            .map(|d| Disk {
                host_volume: d.host_volume.clone(),
                readonly: d.readonly,
            })
            .collect(),
        extra_args: config.extra_args.clone(),
        user_data: config.user_data.clone(),
        port_maps: config
            .port_maps
            .iter()
            .map(|m| PortMap {
                host_port: m.host_port,
                app_port: m.app_port,
            })
            .collect(),
        nics: config
            .nics
            .iter()
            .map(|n| Nic {
                index: n.index,
                mac: n.mac.clone(),
            })
            .collect(),
    }
}

fn disks(config: &Domain) -> Vec<String> {
    config.disks.iter().map(|d| d.host_volume.clone()).collect()
}

impl Manager {
    pub fn new() -> Manager {
        Manager::default()
    }

    /// zedmanager's `domain-config` item `uuid` changed (`None`: removed).
    pub fn set_config(&mut self, uuid: &str, config: Option<Domain>) {
        match config {
            Some(mut config) => {
                config.uuid = String::from(uuid);
                self.configs.insert(String::from(uuid), config);
            }
            None => {
                self.configs.remove(uuid);
            }
        }
    }

    /// Every `domain-config` item is known.
    pub fn synchronized(&mut self) {
        self.synchronized = true;
    }

    /// The states to publish, by UUID.
    pub fn states(&self) -> &BTreeMap<String, DomainState> {
        &self.states
    }

    /// Whether a reconcile with the config synchronized has run: the
    /// states are then the whole truth.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The running domains: UUID and display name.
    pub fn running(&self) -> impl Iterator<Item = (&str, &DomainState)> {
        self.states
            .iter()
            .filter(|(_, s)| s.state == state(ZSwState::Running))
            .map(|(u, s)| (u.as_str(), s))
    }

    /// Brings the host towards the config at `now` (Unix seconds).
    /// `progress` is told each domain's state before a slow host call
    /// (`BOOTING`, `HALTING`), so it can be published while it lasts.
    pub fn reconcile(
        &mut self,
        host: &mut dyn Host,
        now: u64,
        progress: &mut dyn FnMut(&str, &DomainState),
    ) -> Result<Reconciled, HostError> {
        let held: BTreeMap<String, DomainInfo> = host
            .list()?
            .into_iter()
            .map(|d| (d.uuid.clone(), d))
            .collect();
        let mut done = Reconciled::default();
        if self.synchronized {
            for uuid in held.keys().filter(|u| !self.configs.contains_key(*u)) {
                match host.stop(uuid, STOP_TIMEOUT_SECS) {
                    Ok(_) | Err(HostError::Domain(_)) => {}
                    Err(call) => return Err(call),
                }
                self.known.remove(uuid);
            }
            self.known.retain(|u, _| self.configs.contains_key(u));
        }
        let configs: Vec<Domain> = self.configs.values().cloned().collect();
        for config in &configs {
            let info = held.get(&config.uuid);
            self.one(host, config, info, now, progress, &mut done)?;
        }
        self.states = self
            .known
            .iter()
            .map(|(u, k)| (u.clone(), k.state.clone()))
            .collect();
        self.ready |= self.synchronized;
        Ok(done)
    }

    fn one(
        &mut self,
        host: &mut dyn Host,
        config: &Domain,
        info: Option<&DomainInfo>,
        now: u64,
        progress: &mut dyn FnMut(&str, &DomainState),
        done: &mut Reconciled,
    ) -> Result<(), HostError> {
        let uuid = config.uuid.as_str();
        let adopted = !self.known.contains_key(uuid);
        let known = self.known.entry(String::from(uuid)).or_default();
        known.state.uuid = String::from(uuid);
        known.state.display_name = config.display_name.clone();
        let mut info = info.cloned();
        if adopted && info.is_some() {
            // Started before this domainmgr: it follows the config it has.
            known.state.restart_counter = config.restart_counter;
            known.state.purge_counter = config.purge_counter;
        }
        if let Some(held) = &info {
            let restart = config.restart_counter > known.state.restart_counter;
            let purge = config.purge_counter != known.state.purge_counter;
            let new_disks = held.disks != disks(config);
            if !config.activate || restart || purge || new_disks {
                known.state.state = state(ZSwState::Halting);
                progress(uuid, &known.state);
                match host.stop(uuid, STOP_TIMEOUT_SECS) {
                    Ok(_) | Err(HostError::Domain(_)) => {}
                    Err(call) => return Err(call),
                }
                info = None;
                known.retry_at = 0;
            }
        }
        if !config.activate {
            known.state.state = state(ZSwState::Halted);
            known.state.restart_counter = config.restart_counter;
            known.state.purge_counter = config.purge_counter;
            known.state.boot_unix = 0;
            return Ok(());
        }
        let held = match info {
            Some(held) => held,
            None if now < known.retry_at => {
                done.busy = true;
                return Ok(());
            }
            None => {
                known.state.state = state(ZSwState::Booting);
                known.state.restart_counter = config.restart_counter;
                known.state.purge_counter = config.purge_counter;
                known.state.disks = disks(config);
                progress(uuid, &known.state);
                match host.start(&start_request(config)) {
                    Ok(held) => {
                        self.tails
                            .entry(String::from(uuid))
                            .or_insert_with(Tail::from_start);
                        known.retry_at = 0;
                        known.boots_before = known.state.boot_count;
                        known.state.error.clear();
                        known.state.error_unix = 0;
                        held
                    }
                    Err(HostError::Domain(e)) => {
                        known.state.state = state(ZSwState::Error);
                        known.state.error = e.to_string();
                        known.state.error_unix = now;
                        known.retry_at = now + START_RETRY_SECS;
                        done.busy |= e.code() == DomainErrorCode::VolumeNotReady;
                        return Ok(());
                    }
                    Err(call) => return Err(call),
                }
            }
        };
        known.state.boot_count = known.boots_before.saturating_add(held.boot_count);
        known.state.disks = held.disks.clone();
        known.state.boot_unix = held.boot_unix;
        match held.state() {
            // Booted again by the host after a crash or a guest reboot,
            // often between two rounds of ours: the last end stays the
            // reason while it runs, so it is reported at all.
            RunState::Running if held.boot_count > 1 => {
                known.state.state = state(ZSwState::Running);
                known.state.error = held.end_detail.clone();
                known.state.error_unix = held.end_unix;
            }
            RunState::Running => {
                known.state.state = state(ZSwState::Running);
                known.state.error.clear();
                known.state.error_unix = 0;
            }
            RunState::Retrying => {
                known.state.state = state(ZSwState::Booting);
                known.state.error = held.end_detail.clone();
                known.state.error_unix = held.end_unix;
                done.busy = true;
            }
            RunState::Ended | RunState::Unspecified => {
                let halted = held.end() == EndReason::Halted;
                known.state.state = state(if halted {
                    ZSwState::Halted
                } else {
                    ZSwState::Error
                });
                known.state.error = held.end_detail.clone();
                known.state.error_unix = held.end_unix;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
