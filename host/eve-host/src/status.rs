//! `<state-dir>/run/status.json`: the node's live status for tools
//! (`cargo xtask qemu` shows it), rewritten atomically whenever something
//! changes, at most [`MIN_INTERVAL`] apart, and at least every
//! [`REFRESH`] so heartbeat ages move on.
//!
//! # Schema (version 2)
//!
//! ```json
//! {
//!   "schema": 2,
//!   "node": "default",              // the manifest's node name
//!   "arch": "x86_64",               // or "aarch64": what the node runs (after --arch)
//!   "host_pid": 4242,               // the eve-host process
//!   "running": true,                // false in the last write, once every service stopped
//!   "updated_unix_ms": 1700000000000,
//!   "tpm": "swtpm (/state/tpm)",    // or "/dev/tpmrm0", "none", "not needed"
//!   "services": [                   // in manifest order
//!     {
//!       "name": "zedagent",
//!       "state": "running",         // "running", "restarting", "stopping" or "stopped"
//!       "pid": 4250,                // the VMM's pid while running, else null
//!       "restart_delay_ms": null,   // while restarting: the backoff before the next start
//!       "restarts": 0,
//!       "crash_loop": false,
//!       "last_end": null,           // how the last run ended, e.g. "panicked (status 101): ..."
//!       "bus_connected": true,      // the broker has welcomed its current bus connection
//!       "last_heartbeat_age_ms": 420 // since its latest heartbeat, null before the first
//!     }
//!   ],
//!   "tables": {                     // the topics of [`status_tables`], every item
//!     "onboard-status": {           // key -> the value as JSON
//!       "zedagent": { "phase": 5, "uuid": "...", "last_info_ms": 1200, ... }
//!     },
//!     "diag-report": { "controller": { "reachable": true, "steps": [...] } },
//!     "@device-facts": { "device": { "cpu_count": 2, ... } },
//!     "content-tree-status": { "<uuid>": { "state": 19, "progress_percent": 100, ... } },
//!     "volume-status": { "<uuid>": { "state": 15, "host_volume": "<uuid>.0", ... } },
//!     "download-status": { "<digest>": { "state": 2, "staged": 1048576, ... } }
//!   },
//!   "undecodable_values": 0         // items of those topics that did not decode (left out)
//! }
//! ```
//!
//! A value is its topic's type from the `topics` crate as JSON: its field
//! names, enumerations as their numbers, absent optional fields as null;
//! readers deserialize it with the same type. `last_heartbeat_age_ms`
//! counts from the service's latest beat in any of its runs; it is null
//! until its first.
//!
//! Readers must ignore fields they do not know; a change of meaning bumps
//! `schema`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use topics::{
    ContentTreeStatus, DeviceFacts, DiagReport, DownloadStatus, OnboardStatus, Topic, VolumeStatus,
};

use crate::{
    Arch,
    supervisor::{State, Status},
};

/// The status file's schema version.
pub const SCHEMA: u32 = 2;
/// Changes closer together than this are written together.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// The file is rewritten at least this often while the node runs.
pub const REFRESH: Duration = Duration::from_secs(1);

/// A bus topic the status file carries, and how its values become JSON.
#[derive(Clone, Copy)]
pub struct StatusTable {
    pub topic: &'static str,
    /// The value as JSON, `None` if it does not decode as the topic's type.
    pub render: fn(&[u8]) -> Option<serde_json::Value>,
}

fn status_table<T: Topic>() -> StatusTable
where
    T::Value: Serialize,
{
    StatusTable {
        topic: T::NAME,
        render: |bytes| {
            topics::decode::<T>(bytes)
                .ok()
                .and_then(|value| serde_json::to_value(value).ok())
        },
    }
}

/// The topics the status file carries.
pub fn status_tables() -> [StatusTable; 6] {
    [
        status_table::<OnboardStatus>(),
        status_table::<DiagReport>(),
        status_table::<DeviceFacts>(),
        status_table::<ContentTreeStatus>(),
        status_table::<VolumeStatus>(),
        status_table::<DownloadStatus>(),
    ]
}

/// What the status file needs from the bus.
pub trait BusView: Send + Sync {
    /// Whether the service's current bus connection is welcomed.
    fn connected(&self, service: &str) -> bool;
    fn last_heartbeat(&self, service: &str) -> Option<Instant>;
    /// The current items of `topic`.
    fn table(&self, topic: &str) -> BTreeMap<String, Vec<u8>>;
}

/// Everything the file shows except the clock, to tell when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    running: bool,
    services: Vec<(Status, bool, Option<Instant>)>,
    tables: BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>,
}

#[derive(Serialize)]
struct Document<'a> {
    schema: u32,
    node: &'a str,
    arch: &'a str,
    host_pid: u32,
    running: bool,
    updated_unix_ms: u64,
    tpm: &'a str,
    services: Vec<ServiceDoc<'a>>,
    tables: BTreeMap<&'a str, BTreeMap<&'a str, serde_json::Value>>,
    undecodable_values: usize,
}

#[derive(Serialize)]
struct ServiceDoc<'a> {
    name: &'a str,
    state: &'static str,
    pid: Option<u32>,
    restart_delay_ms: Option<u64>,
    restarts: u32,
    crash_loop: bool,
    last_end: Option<String>,
    bus_connected: bool,
    last_heartbeat_age_ms: Option<u64>,
}

/// The status file of a running node.
pub struct StatusFile {
    path: PathBuf,
    node: String,
    arch: Arch,
    tpm: String,
    bus: Arc<dyn BusView>,
    last: Option<(Instant, Snapshot)>,
    /// Items that did not decode at the last write, so each is logged once.
    undecodable: BTreeSet<(&'static str, String)>,
}

impl StatusFile {
    /// The status of node `node` (`arch`, with the TPM described as
    /// `tpm`), written to `path` (`<state-dir>/run/status.json`).
    pub fn new(path: &Path, node: &str, arch: Arch, tpm: &str, bus: Arc<dyn BusView>) -> Self {
        StatusFile {
            path: path.to_path_buf(),
            node: node.to_string(),
            arch,
            tpm: tpm.to_string(),
            bus,
            last: None,
            undecodable: BTreeSet::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites the file if it is due: something changed and the last
    /// write is [`MIN_INTERVAL`] old, or it is [`REFRESH`] old. Returns
    /// whether it wrote.
    pub fn update(&mut self, now: Instant, statuses: &[Status]) -> io::Result<bool> {
        let snapshot = self.snapshot(true, statuses);
        let due = match &self.last {
            None => true,
            Some((at, last)) => {
                let age = now.saturating_duration_since(*at);
                age >= REFRESH || (age >= MIN_INTERVAL && *last != snapshot)
            }
        };
        if due {
            self.write(now, snapshot)?;
        }
        Ok(due)
    }

    /// Writes the final status, with `running` false: the host is done.
    pub fn finish(&mut self, now: Instant, statuses: &[Status]) -> io::Result<()> {
        let snapshot = self.snapshot(false, statuses);
        self.write(now, snapshot)
    }

    fn snapshot(&self, running: bool, statuses: &[Status]) -> Snapshot {
        Snapshot {
            running,
            services: statuses
                .iter()
                .map(|s| {
                    (
                        s.clone(),
                        self.bus.connected(&s.service),
                        self.bus.last_heartbeat(&s.service),
                    )
                })
                .collect(),
            tables: status_tables()
                .iter()
                .map(|t| (t.topic, self.bus.table(t.topic)))
                .collect(),
        }
    }

    fn write(&mut self, now: Instant, snapshot: Snapshot) -> io::Result<()> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let services = snapshot
            .services
            .iter()
            .map(|(status, connected, heartbeat)| {
                let (state, pid, restart_delay_ms) = match &status.state {
                    State::Running { pid } => ("running", *pid, None),
                    State::Restarting { after } => ("restarting", None, Some(millis(*after))),
                    State::Stopping => ("stopping", None, None),
                    State::Stopped => ("stopped", None, None),
                };
                ServiceDoc {
                    name: &status.service,
                    state,
                    pid,
                    restart_delay_ms,
                    restarts: status.restarts,
                    crash_loop: status.crash_loop,
                    last_end: status.last_end.as_ref().map(ToString::to_string),
                    bus_connected: *connected,
                    last_heartbeat_age_ms: heartbeat
                        .map(|t| millis(now.saturating_duration_since(t))),
                }
            })
            .collect();
        let mut undecodable = BTreeSet::new();
        let mut tables = BTreeMap::new();
        for table in status_tables() {
            let mut rendered = BTreeMap::new();
            for (key, value) in snapshot.tables.get(table.topic).into_iter().flatten() {
                match (table.render)(value) {
                    Some(json) => {
                        rendered.insert(key.as_str(), json);
                    }
                    None => {
                        undecodable.insert((table.topic, key.clone()));
                    }
                }
            }
            tables.insert(table.topic, rendered);
        }
        for (topic, key) in undecodable.difference(&self.undecodable) {
            log::warn!(
                "status: item {key} of {topic} is not a {topic} value; left out of {}",
                self.path.display()
            );
        }
        let document = Document {
            schema: SCHEMA,
            node: &self.node,
            arch: self.arch.name(),
            host_pid: std::process::id(),
            running: snapshot.running,
            updated_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(millis)
                .unwrap_or(0),
            tpm: &self.tpm,
            services,
            tables,
            undecodable_values: undecodable.len(),
        };
        let mut text = serde_json::to_vec_pretty(&document).map_err(io::Error::other)?;
        text.push(b'\n');
        write_atomically(&self.path, &text)?;
        self.last = Some((now, snapshot));
        self.undecodable = undecodable;
        Ok(())
    }
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the
/// new one, never a part: a temporary file beside it, flushed to disk,
/// renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::Value;

    use super::*;
    use crate::end::End;

    #[derive(Default)]
    struct FakeBus {
        tables: Mutex<BTreeMap<String, BTreeMap<String, Vec<u8>>>>,
        heartbeat: Mutex<Option<Instant>>,
    }

    impl BusView for FakeBus {
        fn connected(&self, service: &str) -> bool {
            service == "zedagent"
        }
        fn last_heartbeat(&self, service: &str) -> Option<Instant> {
            (service == "zedagent")
                .then(|| *self.heartbeat.lock().unwrap())
                .flatten()
        }
        fn table(&self, topic: &str) -> BTreeMap<String, Vec<u8>> {
            self.tables
                .lock()
                .unwrap()
                .get(topic)
                .cloned()
                .unwrap_or_default()
        }
    }

    fn statuses() -> Vec<Status> {
        vec![
            Status {
                service: "zedagent".into(),
                state: State::Running { pid: Some(7) },
                restarts: 0,
                crash_loop: false,
                last_end: None,
            },
            Status {
                service: "diag".into(),
                state: State::Restarting {
                    after: Duration::from_millis(500),
                },
                restarts: 3,
                crash_loop: true,
                last_end: Some(End::Exited {
                    status: 1,
                    panic: None,
                }),
            },
        ]
    }

    fn read(path: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn the_file_follows_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let bus = Arc::new(FakeBus::default());
        let t0 = Instant::now();
        *bus.heartbeat.lock().unwrap() = Some(t0);
        let report = topics::onboard::Report {
            phase: topics::onboard::Phase::Running as i32,
            uuid: "u1".into(),
            last_info_ms: Some(1200),
            ..Default::default()
        };
        bus.tables.lock().unwrap().insert(
            OnboardStatus::NAME.into(),
            BTreeMap::from([
                (
                    OnboardStatus::KEY.into(),
                    topics::encode::<OnboardStatus>(&report),
                ),
                ("garbage".into(), vec![0xff, 0, 1]),
            ]),
        );
        let mut file = StatusFile::new(&path, "default", Arch::Aarch64, "none", bus.clone());
        assert!(
            file.update(t0 + Duration::from_millis(420), &statuses())
                .unwrap()
        );
        let doc = read(&path);
        assert_eq!(doc["schema"], SCHEMA);
        assert_eq!(doc["node"], "default");
        assert_eq!(doc["arch"], "aarch64");
        assert_eq!(doc["running"], true);
        assert_eq!(doc["tpm"], "none");
        assert_eq!(doc["host_pid"], std::process::id());
        let zedagent = &doc["services"][0];
        assert_eq!(zedagent["name"], "zedagent");
        assert_eq!(zedagent["state"], "running");
        assert_eq!(zedagent["pid"], 7);
        assert_eq!(zedagent["bus_connected"], true);
        assert_eq!(zedagent["last_heartbeat_age_ms"], 420);
        assert!(zedagent["last_end"].is_null());
        let diag = &doc["services"][1];
        assert_eq!(diag["state"], "restarting");
        assert_eq!(diag["restart_delay_ms"], 500);
        assert_eq!(diag["restarts"], 3);
        assert_eq!(diag["crash_loop"], true);
        assert_eq!(diag["last_end"], "exited with failure (status 1)");
        assert_eq!(diag["bus_connected"], false);
        assert!(diag["last_heartbeat_age_ms"].is_null());
        let table = &doc["tables"][OnboardStatus::NAME];
        let read_back: topics::onboard::Report =
            serde_json::from_value(table[OnboardStatus::KEY].clone()).unwrap();
        assert_eq!(read_back, report, "the value reads back as its type");
        assert_eq!(table[OnboardStatus::KEY]["last_config_ms"], Value::Null);
        assert!(
            table.get("garbage").is_none(),
            "undecodable items are left out"
        );
        assert_eq!(doc["undecodable_values"], 1);
        assert_eq!(doc["tables"][DiagReport::NAME], serde_json::json!({}));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["status.json"], "no temporary file is left");
        file.finish(t0 + Duration::from_secs(2), &statuses())
            .unwrap();
        assert_eq!(read(&path)["running"], false);
    }

    #[test]
    fn changes_are_written_at_most_every_min_interval_and_ages_every_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let bus = Arc::new(FakeBus::default());
        let mut file = StatusFile::new(&path, "n", Arch::X86_64, "none", bus.clone());
        let t0 = Instant::now();
        let mut statuses = statuses();
        assert!(file.update(t0, &statuses).unwrap());
        let unchanged = t0 + MIN_INTERVAL;
        assert!(!file.update(unchanged, &statuses).unwrap());
        statuses[0].restarts = 1;
        let soon = t0 + MIN_INTERVAL / 2;
        assert!(!file.update(soon, &statuses).unwrap(), "too soon");
        assert!(file.update(t0 + MIN_INTERVAL, &statuses).unwrap());
        assert_eq!(read(&path)["services"][0]["restarts"], 1);
        *bus.heartbeat.lock().unwrap() = Some(t0);
        assert!(file.update(t0 + MIN_INTERVAL * 2, &statuses).unwrap());
        assert!(!file.update(t0 + MIN_INTERVAL * 3, &statuses).unwrap());
        assert!(
            file.update(t0 + MIN_INTERVAL * 2 + REFRESH, &statuses)
                .unwrap()
        );
    }
}
