//! What the domains target holds: `host/domains`' running domains and,
//! per app instance, its request, how its last boot ended and when it
//! is retried.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use domains::retry::{BootRetry, Decision};
use domains::{AdmissionError, DomainDir, DomainSpec, End, Ended, StartError};
use hostops::domains::{
    ConsoleChunk, ConsoleRequest, DomainError, DomainErrorCode, DomainInfo, DomainList,
    DomainUsage, EndReason, MAX_CONSOLE_CHUNK, MAX_STOP_SECS, RunState, StartRequest, StopAnswer,
    StopRequest,
};
use hostops::volumes::valid_uuid;

use super::DomainsOptions;
use super::request::{Resolver, domain_name};
use crate::targets::Refused;

type Answer<T> = Result<T, Refused<DomainError>>;

fn failed(code: DomainErrorCode, subject: &str, detail: &str) -> Refused<DomainError> {
    Refused::Failed(DomainError::new(code, subject, detail))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One app instance's domain.
struct Entry {
    request: StartRequest,
    spec: DomainSpec,
    state: RunState,
    end: EndReason,
    end_detail: String,
    end_unix: u64,
    boot_unix: u64,
    boot_count: u32,
    retry: BootRetry,
    retry_unix: u64,
}

/// The target's state.
pub struct State {
    domains: domains::Domains,
    volumes_dir: PathBuf,
    /// The node's run directory (the port switch's sockets).
    run_dir: PathBuf,
    options: DomainsOptions,
    entries: BTreeMap<String, Entry>,
    /// The retry clock's origin.
    origin: Instant,
}

/// `host/domains`' start error as the target's.
fn start_error(uuid: &str, e: StartError) -> DomainError {
    let detail = e.to_string();
    match e {
        // The wire error already says who, what is needed and what is
        // free: the detail adds only how the need is made up, so the
        // operator reads each fact once (not again under the host's name).
        StartError::Admission(AdmissionError::Memory {
            memory_mib,
            overhead_mib,
            needs_mib,
            free_mib,
            total_mib,
            running,
            ..
        }) => DomainError {
            needed_mib: needs_mib,
            free_mib,
            ..DomainError::new(
                DomainErrorCode::Admission,
                uuid,
                &format!(
                    "{memory_mib} MiB of RAM and {overhead_mib} MiB for its VMM; \
                     the node has {total_mib} MiB for apps, {running} running"
                ),
            )
        },
        StartError::Admission(AdmissionError::Vcpus { .. }) => {
            DomainError::new(DomainErrorCode::Admission, uuid, &detail)
        }
        StartError::Admission(AdmissionError::Duplicate(_)) => {
            DomainError::new(DomainErrorCode::Exists, uuid, &detail)
        }
        StartError::Spec(_) => DomainError::new(DomainErrorCode::BadRequest, uuid, &detail),
        StartError::Io { .. }
        | StartError::SocketPath { .. }
        | StartError::Seed(_)
        | StartError::Blobs { .. } => DomainError::new(DomainErrorCode::Host, uuid, &detail),
        StartError::Vmm { message, .. } => {
            DomainError::new(DomainErrorCode::StartFailed, uuid, &message)
        }
        _ => DomainError::new(DomainErrorCode::StartFailed, uuid, &detail),
    }
}

/// An end as the wire has it.
fn end_reason(end: &End) -> EndReason {
    match end {
        End::Stopped { graceful: true } => EndReason::Stopped,
        End::Stopped { graceful: false } => EndReason::PoweredOff,
        End::Halted => EndReason::Halted,
        End::Rebooted => EndReason::Rebooted,
        End::Crashed(_) => EndReason::Crashed,
    }
}

/// A crash's reason and the last console line, or how it ended.
fn end_detail(end: &End) -> String {
    match end {
        End::Crashed(crash) => match crash.console.last() {
            Some(line) => format!("{end}; console: {line}"),
            None => end.to_string(),
        },
        other => other.to_string(),
    }
}

impl State {
    pub fn new(
        domains: domains::Domains,
        volumes_dir: PathBuf,
        run_dir: PathBuf,
        options: DomainsOptions,
    ) -> State {
        State {
            domains,
            volumes_dir,
            run_dir,
            options,
            entries: BTreeMap::new(),
            origin: Instant::now(),
        }
    }

    fn clock(&self) -> Duration {
        self.origin.elapsed()
    }

    fn entry(&self, uuid: &str) -> Answer<&Entry> {
        self.entries
            .get(uuid)
            .ok_or_else(|| failed(DomainErrorCode::NotFound, uuid, ""))
    }

    fn info(&self, uuid: &str, e: &Entry) -> DomainInfo {
        DomainInfo {
            uuid: uuid.to_owned(),
            state: e.state as i32,
            end: e.end as i32,
            end_detail: e.end_detail.clone(),
            boot_unix: e.boot_unix,
            boot_count: e.boot_count,
            retry_unix: e.retry_unix,
            end_unix: e.end_unix,
            disks: e
                .request
                .disks
                .iter()
                .map(|d| d.host_volume.clone())
                .collect(),
        }
    }

    pub fn start(&mut self, request: StartRequest) -> Answer<DomainInfo> {
        let resolver = Resolver {
            arch: self.options.arch,
            volumes_dir: &self.volumes_dir,
            run_dir: &self.run_dir,
            shim: self.options.shim.as_ref(),
        };
        let spec = resolver.spec(&request).map_err(Refused::Failed)?;
        let uuid = request.uuid.clone();
        if self.entries.contains_key(&uuid)
            || self.entries.values().any(|e| e.spec.name == spec.name)
        {
            return Err(failed(DomainErrorCode::Exists, &uuid, ""));
        }
        self.domains
            .start(spec.clone())
            .map_err(|e| Refused::Failed(start_error(&uuid, e)))?;
        log::info!(
            "domains: started {uuid} ({}) as {}",
            request.display_name,
            spec.name
        );
        let entry = Entry {
            request,
            spec,
            state: RunState::Running,
            end: EndReason::None,
            end_detail: String::new(),
            end_unix: 0,
            boot_unix: now_unix(),
            boot_count: 1,
            retry: BootRetry::new(self.options.retry),
            retry_unix: 0,
        };
        let info = self.info(&uuid, &entry);
        self.entries.insert(uuid, entry);
        Ok(info)
    }

    pub fn stop(&mut self, request: &StopRequest) -> Answer<StopAnswer> {
        let uuid = &request.uuid;
        let entry = self.entry(uuid)?;
        let name = entry.spec.name.clone();
        let answer = if entry.state == RunState::Running {
            let timeout = Duration::from_secs(u64::from(request.timeout_secs.min(MAX_STOP_SECS)));
            match self.domains.stop(&name, timeout) {
                Ok((outcome, ended)) => StopAnswer {
                    end: end_reason(&ended.end) as i32,
                    end_detail: end_detail(&ended.end),
                    took_ms: u64::try_from(outcome.took.as_millis()).unwrap_or(u64::MAX),
                },
                // It ended by itself since the last look.
                Err(domains::StopError::NotRunning(_)) => self.ended_answer(uuid),
                Err(e) => return Err(failed(DomainErrorCode::Host, uuid, &e.to_string())),
            }
        } else {
            self.ended_answer(uuid)
        };
        log::info!("domains: stopped {uuid}: {}", answer.end_detail);
        self.entries.remove(uuid);
        Ok(answer)
    }

    /// How a domain that is not running ended (no retry is started: it
    /// is being stopped).
    fn ended_answer(&self, uuid: &str) -> StopAnswer {
        self.entries
            .get(uuid)
            .map(|e| StopAnswer {
                end: e.end as i32,
                end_detail: e.end_detail.clone(),
                took_ms: 0,
            })
            .unwrap_or_default()
    }

    pub fn status(&self, uuid: &str) -> Answer<DomainInfo> {
        Ok(self.info(uuid, self.entry(uuid)?))
    }

    pub fn list(&self) -> DomainList {
        DomainList {
            domains: self.entries.iter().map(|(u, e)| self.info(u, e)).collect(),
        }
    }

    pub fn usage(&self, uuid: &str) -> Answer<DomainUsage> {
        let entry = self.entry(uuid)?;
        let domain = self
            .domains
            .get(&entry.spec.name)
            .ok_or_else(|| failed(DomainErrorCode::NotRunning, uuid, ""))?;
        let usage = domain
            .usage()
            .map_err(|e| failed(DomainErrorCode::Host, uuid, &e.to_string()))?;
        Ok(DomainUsage {
            cpu_ns: u64::try_from(usage.cpu.as_nanos()).unwrap_or(u64::MAX),
            rss_kib: usage.rss_kib,
            pss_kib: usage.pss_kib,
            guest_ram_kib: usage.guest_ram_kib,
            memory_kib: u64::from(entry.spec.memory_mib) * 1024,
            up_secs: domain.started().elapsed().as_secs(),
        })
    }

    pub fn console(&self, request: &ConsoleRequest) -> Answer<ConsoleChunk> {
        let uuid = &request.uuid;
        if !valid_uuid(uuid) {
            return Err(Refused::BadRequest("not a lowercase UUID".into()));
        }
        let name = match self.entries.get(uuid) {
            Some(e) => e.spec.name.clone(),
            None => domain_name(uuid),
        };
        let path = DomainDir::new(self.domains.root(), &name).console();
        let host = |e: std::io::Error| failed(DomainErrorCode::Host, uuid, &e.to_string());
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(failed(DomainErrorCode::NotFound, uuid, "no console"));
            }
            Err(e) => return Err(host(e)),
        };
        let size = file.metadata().map_err(host)?.len();
        let from = request.offset.min(size);
        let max = request.max_bytes.clamp(1, MAX_CONSOLE_CHUNK);
        let mut data = Vec::new();
        file.seek(SeekFrom::Start(from)).map_err(host)?;
        file.take(u64::from(max))
            .read_to_end(&mut data)
            .map_err(host)?;
        Ok(ConsoleChunk {
            next_offset: from + data.len() as u64,
            data,
            size,
        })
    }

    /// Notices domains that ended by themselves and starts due retries.
    pub fn tick(&mut self) {
        for ended in self.domains.poll() {
            self.ended(ended);
        }
        let now = self.clock();
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.state == RunState::Retrying && e.retry.due(now))
            .map(|(u, _)| u.clone())
            .collect();
        for uuid in due {
            self.retry(&uuid, now);
        }
    }

    fn ended(&mut self, ended: Ended) {
        let now = self.clock();
        let Some((uuid, entry)) = self
            .entries
            .iter_mut()
            .find(|(_, e)| e.spec.name == ended.name)
        else {
            return;
        };
        entry.end = end_reason(&ended.end);
        entry.end_detail = end_detail(&ended.end);
        entry.end_unix = now_unix();
        log::warn!("domains: {uuid} {}", entry.end_detail);
        match ended.end {
            End::Crashed(_) | End::Rebooted => Self::schedule(entry, now, ended.up_for),
            End::Halted | End::Stopped { .. } => entry.state = RunState::Ended,
        }
    }

    fn schedule(entry: &mut Entry, now: Duration, up_for: Duration) {
        match entry.retry.failed(now, up_for) {
            Decision::RetryAt(at) => {
                entry.state = RunState::Retrying;
                entry.retry_unix = now_unix() + at.saturating_sub(now).as_secs();
            }
            Decision::GiveUp { failures } => {
                entry.state = RunState::Ended;
                entry.retry_unix = 0;
                entry.end_detail = format!("{}; gave up after {failures}", entry.end_detail);
            }
        }
    }

    fn retry(&mut self, uuid: &str, now: Duration) {
        let Some(entry) = self.entries.get_mut(uuid) else {
            return;
        };
        entry.retry.started();
        match self.domains.start(entry.spec.clone()) {
            Ok(_) => {
                entry.state = RunState::Running;
                entry.boot_count = entry.boot_count.saturating_add(1);
                entry.boot_unix = now_unix();
                entry.retry_unix = 0;
                log::info!("domains: {uuid} started again (boot {})", entry.boot_count);
            }
            Err(e) => {
                entry.end = EndReason::StartFailed;
                entry.end_detail = start_error(uuid, e).to_string();
                entry.end_unix = now_unix();
                log::warn!("domains: {uuid}: {}", entry.end_detail);
                Self::schedule(entry, now, Duration::ZERO);
            }
        }
    }

    pub fn describe(&self) -> String {
        let node = self.domains.node();
        format!(
            "{} ({} domains; {} MiB and {} CPUs for apps)",
            self.domains.root().display(),
            self.entries.len(),
            node.memory_mib,
            node.cpus
        )
    }
}

impl Drop for State {
    /// The host's stop stops its domains, the guests given the grace.
    fn drop(&mut self) {
        for result in self.domains.stop_all(self.options.grace) {
            if let Err(e) = result {
                log::warn!("domains: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_refusal_reads_each_fact_once() {
        let uuid = "114a1d60-6129-88c3-833b-4483bcd8369b";
        let refused = start_error(
            uuid,
            StartError::Admission(AdmissionError::Memory {
                name: domain_name(uuid),
                memory_mib: 1024,
                overhead_mib: 48,
                needs_mib: 1072,
                free_mib: 432,
                total_mib: 512,
                running: 1,
            }),
        );
        assert_eq!(refused.code(), DomainErrorCode::Admission);
        assert_eq!((refused.needed_mib, refused.free_mib), (1072, 432));
        assert_eq!(
            refused.to_string(),
            "114a1d60-6129-88c3-833b-4483bcd8369b does not fit: it needs 1072 MiB, \
             432 MiB are free for apps: 1024 MiB of RAM and 48 MiB for its VMM; \
             the node has 512 MiB for apps, 1 running"
        );
    }
}
