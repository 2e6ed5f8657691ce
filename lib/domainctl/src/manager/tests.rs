use alloc::format;
use alloc::vec;

use hostops::domains::{ConsoleChunk, DomainError, DomainUsage, StopAnswer};
use topics::{DomainDisk, DomainKind};

use super::*;
use crate::{CONSOLE_CHUNK, MAX_LINE};

const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const OTHER: &str = "7ba7b810-9dad-11d1-80b4-00c04fd430c8";

/// A host that keeps domains in a map and logs every call; `free_mib`
/// is its admission, `volumes` the built volumes.
#[derive(Default)]
struct FakeHost {
    domains: BTreeMap<String, DomainInfo>,
    calls: Vec<String>,
    /// Every start request, as asked.
    started: Vec<StartRequest>,
    free_mib: u64,
    volumes: Vec<String>,
    down: bool,
    consoles: BTreeMap<String, Vec<u8>>,
}

impl FakeHost {
    fn new() -> FakeHost {
        FakeHost {
            free_mib: 1000,
            volumes: vec![String::from("v.1"), String::from("v.2")],
            ..FakeHost::default()
        }
    }

    fn answer(&self) -> Result<(), HostError> {
        match self.down {
            true => Err(HostError::Call("no answer".into())),
            false => Ok(()),
        }
    }

    /// The guest crashes; the host will retry, or has (`rebooted`).
    fn crash(&mut self, uuid: &str, rebooted: bool) {
        let d = self.domains.get_mut(uuid).unwrap();
        d.end = EndReason::Crashed as i32;
        d.end_detail = "crashed: panic".into();
        d.end_unix = 50;
        if rebooted {
            d.state = RunState::Running as i32;
            d.boot_count += 1;
        } else {
            d.state = RunState::Retrying as i32;
        }
    }
}

impl Host for FakeHost {
    fn start(&mut self, r: &StartRequest) -> Result<DomainInfo, HostError> {
        self.answer()?;
        self.calls.push(format!("start {}", r.uuid));
        self.started.push(r.clone());
        let refuse =
            |code, detail: &str| Err(HostError::Domain(DomainError::new(code, &r.uuid, detail)));
        if let Some(missing) = r
            .disks
            .iter()
            .find(|d| !self.volumes.contains(&d.host_volume))
        {
            return refuse(DomainErrorCode::VolumeNotReady, &missing.host_volume);
        }
        let used: u64 = self.domains.len() as u64 * 100;
        if r.memory_kib / 1024 + used > self.free_mib {
            return Err(HostError::Domain(DomainError {
                needed_mib: r.memory_kib / 1024,
                free_mib: self.free_mib - used,
                ..DomainError::new(DomainErrorCode::Admission, &r.uuid, "")
            }));
        }
        let info = DomainInfo {
            uuid: r.uuid.clone(),
            state: RunState::Running as i32,
            boot_unix: 10,
            boot_count: 1,
            disks: r.disks.iter().map(|d| d.host_volume.clone()).collect(),
            ..Default::default()
        };
        self.domains.insert(r.uuid.clone(), info.clone());
        Ok(info)
    }

    fn stop(&mut self, uuid: &str, _: u32) -> Result<StopAnswer, HostError> {
        self.answer()?;
        self.calls.push(format!("stop {uuid}"));
        match self.domains.remove(uuid) {
            Some(_) => Ok(StopAnswer {
                end: EndReason::Stopped as i32,
                ..Default::default()
            }),
            None => Err(HostError::Domain(DomainError::new(
                DomainErrorCode::NotFound,
                uuid,
                "",
            ))),
        }
    }

    fn list(&mut self) -> Result<Vec<DomainInfo>, HostError> {
        self.answer()?;
        Ok(self.domains.values().cloned().collect())
    }

    fn usage(&mut self, uuid: &str) -> Result<DomainUsage, HostError> {
        self.answer()?;
        self.domains
            .get(uuid)
            .map(|_| DomainUsage {
                cpu_ns: 3_500_000_000,
                rss_kib: 90 * 1024,
                pss_kib: 80 * 1024,
                guest_ram_kib: 24 * 1024,
                memory_kib: 64 * 1024,
                up_secs: 5,
            })
            .ok_or_else(|| {
                HostError::Domain(DomainError::new(DomainErrorCode::NotRunning, uuid, ""))
            })
    }

    fn console(&mut self, uuid: &str, offset: u64, max: u32) -> Result<ConsoleChunk, HostError> {
        self.answer()?;
        let file = self.consoles.get(uuid).cloned().unwrap_or_default();
        let from = (offset.min(file.len() as u64)) as usize;
        let to = (from + max as usize).min(file.len());
        Ok(ConsoleChunk {
            data: file[from..to].to_vec(),
            next_offset: to as u64,
            size: file.len() as u64,
        })
    }
}

fn config(uuid: &str) -> Domain {
    Domain {
        uuid: uuid.into(),
        display_name: "hello".into(),
        activate: true,
        kind: DomainKind::Unikernel as i32,
        memory_kib: 64 * 1024,
        vcpus: 1,
        disks: vec![DomainDisk {
            host_volume: "v.1".into(),
            volume_uuid: "v".into(),
            readonly: false,
        }],
        ..Default::default()
    }
}

/// Reconciles; the states `progress` saw, as (uuid, ZSwState).
fn reconcile(m: &mut Manager, host: &mut FakeHost, now: u64) -> Vec<(String, i32)> {
    let mut seen = Vec::new();
    m.reconcile(host, now, &mut |u, s| seen.push((u.into(), s.state)))
        .unwrap();
    seen
}

fn state_of(m: &Manager, uuid: &str) -> ZSwState {
    ZSwState::try_from(m.states()[uuid].state).unwrap()
}

#[test]
fn an_activated_domain_boots_runs_and_halts_when_deactivated() {
    let (mut m, mut host) = (Manager::new(), FakeHost::new());
    m.set_config(APP, Some(config(APP)));
    m.synchronized();
    let seen = reconcile(&mut m, &mut host, 1);
    assert_eq!(seen, [(APP.into(), ZSwState::Booting as i32)]);
    assert!(m.ready());
    let s = &m.states()[APP];
    assert_eq!(state_of(&m, APP), ZSwState::Running);
    assert_eq!((s.boot_count, s.boot_unix), (1, 10));
    assert_eq!(s.disks, ["v.1"]);
    assert_eq!(host.calls, [format!("start {APP}")]);
    // Nothing changes: nothing is asked.
    reconcile(&mut m, &mut host, 2);
    assert_eq!(host.calls.len(), 1);

    let mut off = config(APP);
    off.activate = false;
    m.set_config(APP, Some(off));
    let seen = reconcile(&mut m, &mut host, 3);
    assert_eq!(seen, [(APP.into(), ZSwState::Halting as i32)]);
    assert_eq!(state_of(&m, APP), ZSwState::Halted);
    assert_eq!(host.calls.last().unwrap(), &format!("stop {APP}"));
    assert!(host.domains.is_empty());
}

#[test]
fn a_domain_on_ports_is_started_with_its_nics_and_no_forwards() {
    let (mut m, mut host) = (Manager::new(), FakeHost::new());
    let mut on_ports = config(APP);
    on_ports.nics = vec![
        topics::DomainNic {
            index: 0,
            mac: "02:16:3e:00:00:01".into(),
        },
        topics::DomainNic {
            index: 1,
            mac: "02:16:3e:00:00:02".into(),
        },
    ];
    m.set_config(APP, Some(on_ports));
    m.synchronized();
    reconcile(&mut m, &mut host, 1);
    let request = &host.started[0];
    assert_eq!(
        request
            .nics
            .iter()
            .map(|n| (n.index, n.mac.as_str()))
            .collect::<Vec<_>>(),
        [(0, "02:16:3e:00:00:01"), (1, "02:16:3e:00:00:02")]
    );
    assert!(request.port_maps.is_empty());
}

#[test]
fn a_bumped_restart_counter_restarts_once() {
    let (mut m, mut host) = (Manager::new(), FakeHost::new());
    m.set_config(APP, Some(config(APP)));
    m.synchronized();
    reconcile(&mut m, &mut host, 1);
    let mut again = config(APP);
    again.restart_counter = 1;
    m.set_config(APP, Some(again));
    reconcile(&mut m, &mut host, 2);
    reconcile(&mut m, &mut host, 3);
    assert_eq!(
        host.calls,
        [
            format!("start {APP}"),
            format!("stop {APP}"),
            format!("start {APP}")
        ]
    );
    let s = &m.states()[APP];
    assert_eq!((s.restart_counter, s.boot_count), (1, 2));
    assert_eq!(state_of(&m, APP), ZSwState::Running);
}

#[test]
fn a_purge_restarts_on_the_new_disks() {
    let (mut m, mut host) = (Manager::new(), FakeHost::new());
    m.set_config(APP, Some(config(APP)));
    m.synchronized();
    reconcile(&mut m, &mut host, 1);
    let mut purged = config(APP);
    purged.purge_counter = 1;
    purged.disks[0].host_volume = "v.2".into();
    m.set_config(APP, Some(purged));
    reconcile(&mut m, &mut host, 2);
    assert_eq!(host.domains[APP].disks, ["v.2"]);
    assert_eq!(m.states()[APP].purge_counter, 1);
    assert_eq!(m.states()[APP].disks, ["v.2"]);
}

#[test]
fn a_removed_domain_is_stopped_and_forgotten() {
    let (mut m, mut host) = (Manager::new(), FakeHost::new());
    m.set_config(APP, Some(config(APP)));
    m.set_config(OTHER, Some(config(OTHER)));
    m.synchronized();
    reconcile(&mut m, &mut host, 1);
    assert_eq!(m.states().len(), 2);
    m.set_config(APP, None);
    reconcile(&mut m, &mut host, 2);
    assert!(!host.domains.contains_key(APP));
    assert!(host.domains.contains_key(OTHER));
    assert_eq!(m.states().keys().collect::<Vec<_>>(), [OTHER]);
}

#[test]
fn domains_the_host_runs_are_adopted_not_restarted_by_a_new_domainmgr() {
    let (mut first, mut host) = (Manager::new(), FakeHost::new());
    let mut bumped = config(APP);
    bumped.restart_counter = 4;
    first.set_config(APP, Some(bumped.clone()));
    first.synchronized();
    reconcile(&mut first, &mut host, 1);
    // A new domainmgr: before the config is synchronized, nothing is
    // stopped; then the running domain is adopted as it is.
    let mut m = Manager::new();
    reconcile(&mut m, &mut host, 2);
    assert!(!m.ready());
    m.set_config(APP, Some(bumped));
    m.synchronized();
    reconcile(&mut m, &mut host, 3);
    assert_eq!(host.calls, [format!("start {APP}")]);
    assert_eq!(state_of(&m, APP), ZSwState::Running);
    assert_eq!(m.states()[APP].restart_counter, 4);
}

#[test]
fn a_crash_shows_while_the_host_retries_and_boots_count() {
    let (mut m, mut host) = (Manager::new(), FakeHost::new());
    m.set_config(APP, Some(config(APP)));
    m.synchronized();
    reconcile(&mut m, &mut host, 1);
    host.crash(APP, false);
    let done = m.reconcile(&mut host, 2, &mut |_, _| {}).unwrap();
    assert!(done.busy);
    assert_eq!(state_of(&m, APP), ZSwState::Booting);
    assert_eq!(m.states()[APP].error, "crashed: panic");
    host.crash(APP, true);
    reconcile(&mut m, &mut host, 3);
    assert_eq!(state_of(&m, APP), ZSwState::Running);
    assert_eq!(m.states()[APP].boot_count, 2);
    assert_eq!(m.states()[APP].error, "crashed: panic", "the reason stays");
    assert_eq!(host.calls.len(), 1, "the host restarts it, not domainmgr");
}

#[test]
fn a_crash_retried_between_two_rounds_is_still_reported() {
    let (mut m, mut host) = (Manager::new(), FakeHost::new());
    m.set_config(APP, Some(config(APP)));
    m.synchronized();
    reconcile(&mut m, &mut host, 1);
    assert!(m.states()[APP].error.is_empty());
    host.crash(APP, false);
    host.crash(APP, true);
    reconcile(&mut m, &mut host, 12);
    assert_eq!(state_of(&m, APP), ZSwState::Running);
    assert_eq!(m.states()[APP].boot_count, 2);
    assert_eq!(m.states()[APP].error, "crashed: panic");
}

#[test]
fn a_refused_start_is_an_error_with_the_numbers_and_is_tried_again_later() {
    let (mut m, mut host) = (Manager::new(), FakeHost::new());
    let mut big = config(APP);
    big.memory_kib = 2000 * 1024;
    m.set_config(APP, Some(big));
    m.synchronized();
    reconcile(&mut m, &mut host, 100);
    assert_eq!(state_of(&m, APP), ZSwState::Error);
    let s = &m.states()[APP];
    assert!(
        s.error.contains("needs 2000 MiB, 1000 MiB are free"),
        "{}",
        s.error
    );
    assert_eq!(s.error_unix, 100);
    reconcile(&mut m, &mut host, 100 + START_RETRY_SECS - 1);
    assert_eq!(host.calls.len(), 1);
    host.free_mib = 4000;
    reconcile(&mut m, &mut host, 100 + START_RETRY_SECS);
    assert_eq!(state_of(&m, APP), ZSwState::Running);
    assert!(m.states()[APP].error.is_empty());
}

#[test]
fn a_domain_halted_by_its_guest_stays_halted() {
    let (mut m, mut host) = (Manager::new(), FakeHost::new());
    m.set_config(APP, Some(config(APP)));
    m.synchronized();
    reconcile(&mut m, &mut host, 1);
    let d = host.domains.get_mut(APP).unwrap();
    d.state = RunState::Ended as i32;
    d.end = EndReason::Halted as i32;
    reconcile(&mut m, &mut host, 2);
    assert_eq!(state_of(&m, APP), ZSwState::Halted);
    assert_eq!(host.calls.len(), 1);
}

#[test]
fn a_host_that_does_not_answer_is_an_error_and_metrics_measure_running_domains() {
    let (mut m, mut host) = (Manager::new(), FakeHost::new());
    m.set_config(APP, Some(config(APP)));
    m.synchronized();
    reconcile(&mut m, &mut host, 1);
    let metrics = m.metrics(&mut host).unwrap();
    assert_eq!(metrics.len(), 1);
    let metric = &metrics[0];
    assert_eq!(
        (metric.app_id.as_str(), metric.app_name.as_str()),
        (APP, "hello")
    );
    let cpu = metric.cpu.unwrap();
    assert_eq!((cpu.total, cpu.total_ns), (3, 3_500_000_000));
    assert_eq!(cpu.up_time.unwrap().seconds, 10);
    let memory = metric.memory.unwrap();
    assert_eq!((memory.used_mem, memory.avail_mem), (24, 40));
    assert_eq!(metric.app_memory.unwrap().allocated_mb, 64);
    host.down = true;
    assert!(m.reconcile(&mut host, 2, &mut |_, _| {}).is_err());
    assert!(m.metrics(&mut host).is_err());
}

#[test]
fn console_lines_are_forwarded_whole_once_and_an_adopted_domain_from_its_end() {
    let (mut m, mut host) = (Manager::new(), FakeHost::new());
    m.set_config(APP, Some(config(APP)));
    m.synchronized();
    host.consoles
        .insert(APP.into(), b"booting\r\nlisten".to_vec());
    reconcile(&mut m, &mut host, 1);
    let lines = m.console_lines(&mut host).unwrap();
    let texts: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(texts, ["booting"]);
    assert_eq!(lines[0].display_name, "hello");
    // The rest of the line, a long one (cut), and more than a pass reads.
    let mut more = b"ing on 80\n".to_vec();
    more.extend(core::iter::repeat_n(b'x', 3 * MAX_LINE));
    more.push(b'\n');
    more.extend(core::iter::repeat_n(b'y', 5 * CONSOLE_CHUNK as usize));
    more.extend(b"\nlast\n");
    host.consoles.get_mut(APP).unwrap().extend(&more);
    let lines = m.console_lines(&mut host).unwrap();
    assert_eq!(lines[0].line, "listening on 80");
    assert_eq!(lines[1].line.len(), MAX_LINE);
    assert!(lines[1].truncated && !lines[0].truncated);
    assert_eq!(lines.len(), 2, "a pass reads a bounded amount");
    assert!(m.console_behind(), "the rest is read soon");
    let lines = m.console_lines(&mut host).unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1].line, "last");
    assert!(lines[0].truncated, "the long line of y");
    assert!(!m.console_behind());
    assert!(m.console_lines(&mut host).unwrap().is_empty());
    assert!(!m.console_behind());

    // A new domainmgr adopts the domain: only what comes after.
    let mut adopted = Manager::new();
    adopted.set_config(APP, Some(config(APP)));
    adopted.synchronized();
    reconcile(&mut adopted, &mut host, 2);
    assert!(adopted.console_lines(&mut host).unwrap().is_empty());
    host.consoles.get_mut(APP).unwrap().extend(b"new\n");
    let lines = adopted.console_lines(&mut host).unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].line, "new");
}
