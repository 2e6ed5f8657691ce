//! Supervision: starts every service's VM, notices when one ends or stops
//! sending heartbeats, reports it, and restarts it by its policy. One
//! service's death never touches the others.
//!
//! The supervisor does no waiting of its own: the caller calls
//! [`Supervisor::step`] with the current time, so tests drive it with a
//! fake clock and a fake [`Vmm`].

mod nodeclock;
mod policy;
mod preflight;

use std::{
    fmt,
    fs::OpenOptions,
    io::Write,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

pub use policy::{RestartTracker, Verdict};
pub use preflight::HostFault;

use crate::{
    console::{Capture, HostLog},
    end::End,
    heartbeat::Heartbeats,
    manifest::RestartPolicy,
    vmm::{DiskRole, Vm, VmSpec, Vmm},
    volumes::flush_volume,
};

/// How long a VM stopped for hanging gets to exit cleanly before it is
/// killed.
pub const HUNG_KILL_GRACE: Duration = Duration::from_secs(5);

/// Everything the supervisor needs about one service.
#[derive(Debug, Clone)]
pub struct ServiceSetup {
    pub spec: VmSpec,
    pub policy: RestartPolicy,
    pub heartbeat_timeout: Option<Duration>,
    /// The file its console is appended to.
    pub console_log: PathBuf,
}

impl ServiceSetup {
    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

/// Where a service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Running {
        pid: Option<u32>,
    },
    /// Ended; starts again after the delay.
    Restarting {
        after: Duration,
    },
    /// Asked to stop; waiting for the VM to exit.
    Stopping,
    /// Ended and not restarted (its policy, or the node is shutting down).
    Stopped,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Running { pid: Some(pid) } => write!(f, "running (pid {pid})"),
            State::Running { pid: None } => write!(f, "running"),
            State::Restarting { after } => {
                write!(f, "restarting in {:.1} s", after.as_secs_f64())
            }
            State::Stopping => write!(f, "stopping"),
            State::Stopped => write!(f, "stopped"),
        }
    }
}

/// One status line: printed whenever a service changes state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub service: String,
    pub state: State,
    pub restarts: u32,
    pub crash_loop: bool,
    pub last_end: Option<End>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}, restarts {}",
            self.service, self.state, self.restarts
        )?;
        if self.crash_loop {
            write!(f, ", CRASH LOOP")?;
        }
        if let Some(end) = &self.last_end {
            write!(f, ", last end: {end}")?;
        }
        Ok(())
    }
}

struct Run<M> {
    vm: M,
    capture: Capture,
    started: Instant,
}

#[derive(Debug, Clone, Copy)]
enum StopReason {
    Hung { silent_for: Duration },
    Shutdown,
}

enum Phase<M> {
    /// Start at this time.
    Due(Instant),
    Running(Run<M>),
    Stopping {
        run: Run<M>,
        why: StopReason,
        kill_at: Instant,
        killed: bool,
    },
    Done,
}

struct Slot<M> {
    setup: ServiceSetup,
    tracker: RestartTracker,
    starts: u32,
    restarts: u32,
    last_end: Option<End>,
    /// The delay before the pending restart, for status lines.
    last_delay: Duration,
    phase: Phase<M>,
}

impl<M: Vm> Slot<M> {
    fn status(&self) -> Status {
        let state = match &self.phase {
            Phase::Due(_) => State::Restarting {
                after: self.last_delay,
            },
            Phase::Running(run) => State::Running { pid: run.vm.pid() },
            Phase::Stopping { .. } => State::Stopping,
            Phase::Done => State::Stopped,
        };
        Status {
            service: self.setup.name().to_string(),
            state,
            restarts: self.restarts,
            crash_loop: self.tracker.in_crash_loop(),
            last_end: self.last_end.clone(),
        }
    }
}

/// Supervises the VMs of one node.
pub struct Supervisor<V: Vmm> {
    vmm: V,
    slots: Vec<Slot<V::Vm>>,
    heartbeats: Arc<dyn Heartbeats>,
    log: Arc<dyn HostLog>,
    shutting_down: bool,
    /// When the node started: the zero of the node's clock each service
    /// is handed as it starts (`nodeclock`).
    born: Instant,
}

impl<V: Vmm> Supervisor<V> {
    /// A supervisor that starts every service at the first [`step`].
    ///
    /// [`step`]: Supervisor::step
    pub fn new(
        vmm: V,
        services: Vec<ServiceSetup>,
        heartbeats: Arc<dyn Heartbeats>,
        log: Arc<dyn HostLog>,
        now: Instant,
    ) -> Supervisor<V> {
        let slots = services
            .into_iter()
            .map(|setup| Slot {
                tracker: RestartTracker::new(setup.policy),
                setup,
                starts: 0,
                restarts: 0,
                last_end: None,
                last_delay: Duration::ZERO,
                phase: Phase::Due(now),
            })
            .collect();
        Supervisor {
            vmm,
            slots,
            heartbeats,
            log,
            shutting_down: false,
            born: now,
        }
    }

    /// Advances every service to `now`: reaps ended VMs, stops hung ones,
    /// starts those due. Returns the status of every service that changed.
    pub fn step(&mut self, now: Instant) -> Vec<Status> {
        let mut changed = Vec::new();
        for i in 0..self.slots.len() {
            if self.step_slot(i, now) {
                changed.push(self.slots[i].status());
            }
        }
        changed
    }

    /// Starts stopping the node: pending restarts are cancelled and every
    /// VM is asked to stop cleanly, and killed if still running after
    /// `grace`. Keep calling [`step`] until [`is_stopped`].
    ///
    /// [`step`]: Supervisor::step
    /// [`is_stopped`]: Supervisor::is_stopped
    pub fn begin_shutdown(&mut self, now: Instant, grace: Duration) -> Vec<Status> {
        self.shutting_down = true;
        let mut changed = Vec::new();
        for slot in &mut self.slots {
            let phase = std::mem::replace(&mut slot.phase, Phase::Done);
            if matches!(phase, Phase::Done) {
                continue;
            }
            slot.phase = match phase {
                Phase::Due(_) | Phase::Done => Phase::Done,
                Phase::Running(mut run) => {
                    if let Err(e) = run.vm.terminate() {
                        self.log
                            .note(slot.setup.name(), &format!("asking the VM to stop: {e}"));
                    }
                    Phase::Stopping {
                        run,
                        why: StopReason::Shutdown,
                        kill_at: now + grace,
                        killed: false,
                    }
                }
                Phase::Stopping {
                    run,
                    kill_at,
                    killed,
                    ..
                } => Phase::Stopping {
                    run,
                    why: StopReason::Shutdown,
                    kill_at: kill_at.min(now + grace),
                    killed,
                },
            };
            changed.push(slot.status());
        }
        changed
    }

    /// True once every service is stopped and will not start again.
    pub fn is_stopped(&self) -> bool {
        self.slots.iter().all(|s| matches!(s.phase, Phase::Done))
    }

    /// The status of every service.
    pub fn statuses(&self) -> Vec<Status> {
        self.slots.iter().map(Slot::status).collect()
    }

    /// Steps one service; true if its state changed.
    fn step_slot(&mut self, i: usize, now: Instant) -> bool {
        let slot = &mut self.slots[i];
        let phase = std::mem::replace(&mut slot.phase, Phase::Done);
        match phase {
            Phase::Due(at) if at <= now => {
                self.launch(i, now);
                true
            }
            Phase::Running(mut run) => match run.vm.try_wait() {
                Ok(Some(exit)) => {
                    let summary = run.capture.finish();
                    let end = match End::decide(exit, &summary) {
                        // A VMM that could not start may have been missing
                        // something of the host's, taken since the check.
                        End::StartFailed { message } => {
                            match preflight::check(&self.slots[i].setup.spec) {
                                Ok(()) => End::StartFailed { message },
                                Err(fault) => End::HostFailed {
                                    reason: format!("{fault} (the VMM said: {message})"),
                                },
                            }
                        }
                        end => end,
                    };
                    self.ended(i, run.started, now, end);
                    true
                }
                Ok(None) => {
                    let slot = &mut self.slots[i];
                    let silent = slot.setup.heartbeat_timeout.and_then(|timeout| {
                        let heard = self
                            .heartbeats
                            .last_heartbeat(slot.setup.name())
                            .filter(|&t| t > run.started)
                            .unwrap_or(run.started);
                        let silent = now.saturating_duration_since(heard);
                        (silent > timeout).then_some(silent)
                    });
                    match silent {
                        Some(silent_for) => {
                            self.log.note(
                                slot.setup.name(),
                                &format!(
                                    "no heartbeat for {:.1} s: stopping it as hung",
                                    silent_for.as_secs_f64()
                                ),
                            );
                            if let Err(e) = run.vm.terminate() {
                                self.log.note(
                                    slot.setup.name(),
                                    &format!("asking the VM to stop: {e}"),
                                );
                            }
                            slot.phase = Phase::Stopping {
                                run,
                                why: StopReason::Hung { silent_for },
                                kill_at: now + HUNG_KILL_GRACE,
                                killed: false,
                            };
                            true
                        }
                        None => {
                            slot.phase = Phase::Running(run);
                            false
                        }
                    }
                }
                Err(e) => {
                    self.log
                        .note(self.slots[i].setup.name(), &format!("checking the VM: {e}"));
                    self.slots[i].phase = Phase::Running(run);
                    false
                }
            },
            Phase::Stopping {
                mut run,
                why,
                kill_at,
                killed,
            } => match run.vm.try_wait() {
                Ok(Some(_)) => {
                    run.capture.finish();
                    let end = match why {
                        StopReason::Hung { silent_for } => End::Hung { silent_for },
                        StopReason::Shutdown => End::Stopped,
                    };
                    self.ended(i, run.started, now, end);
                    true
                }
                Ok(None) | Err(_) => {
                    let killed = if !killed && now >= kill_at {
                        let name = self.slots[i].setup.name().to_string();
                        self.log
                            .note(&name, "still running after its grace time: killing it");
                        if let Err(e) = run.vm.kill() {
                            self.log.note(&name, &format!("killing the VM: {e}"));
                        }
                        true
                    } else {
                        killed
                    };
                    self.slots[i].phase = Phase::Stopping {
                        run,
                        why,
                        kill_at,
                        killed,
                    };
                    false
                }
            },
            other => {
                self.slots[i].phase = other;
                false
            }
        }
    }

    fn launch(&mut self, i: usize, now: Instant) {
        let since_start = now.saturating_duration_since(self.born);
        let slot = &mut self.slots[i];
        if slot.starts > 0 {
            slot.restarts += 1;
        }
        slot.starts += 1;
        let name = slot.setup.name().to_string();
        let log_path = &slot.setup.console_log;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .and_then(|mut f| {
                writeln!(f, "----- {name}: start {} -----", slot.starts)?;
                Ok(f)
            });
        // Everything that can fail here is the host's, not the guest's.
        let spec = nodeclock::spec_at(&slot.setup.spec, since_start);
        let launched = file
            .map_err(|e| format!("opening {}: {e}", log_path.display()))
            .and_then(|file| {
                preflight::check(&spec).map_err(|fault| fault.to_string())?;
                self.vmm
                    .launch(&spec)
                    .map(|vm| (vm, file))
                    .map_err(|e| e.to_string())
            });
        match launched {
            Ok((mut vm, file)) => {
                let capture = Capture::start(
                    &name,
                    vm.take_console(),
                    vm.take_diagnostics(),
                    file,
                    self.log.clone(),
                );
                slot.phase = Phase::Running(Run {
                    vm,
                    capture,
                    started: now,
                });
            }
            Err(reason) => self.ended(i, now, now, End::HostFailed { reason }),
        }
    }

    /// Records the end of a run and decides what comes next.
    fn ended(&mut self, i: usize, started: Instant, now: Instant, end: End) {
        let slot = &mut self.slots[i];
        let name = slot.setup.name().to_string();
        for disk in &slot.setup.spec.disks {
            if disk.role == DiskRole::State
                && let Err(e) = flush_volume(&disk.path)
            {
                self.log.note(&name, &e.to_string());
            }
        }
        let was_looping = slot.tracker.in_crash_loop();
        let verdict = if self.shutting_down {
            Verdict::Stay
        } else {
            slot.tracker.ended(started, now, &end)
        };
        if slot.tracker.in_crash_loop() && !was_looping {
            self.log.note(
                &name,
                &format!(
                    "crash loop: {} ends within {} s; restarting every {} s",
                    slot.setup.policy.crash_loop_count,
                    slot.setup.policy.crash_loop_window.as_secs(),
                    slot.setup.policy.max_backoff.as_secs()
                ),
            );
        }
        if end.is_host_failure() && !self.shutting_down {
            self.log.note(
                &name,
                &format!("{end}; not restarted until the host is fixed and the node restarted"),
            );
        }
        slot.last_end = Some(end);
        slot.phase = match verdict {
            Verdict::Restart { after } => {
                slot.last_delay = after;
                Phase::Due(now + after)
            }
            Verdict::Stay => Phase::Done,
        };
    }
}

#[cfg(test)]
mod tests;
