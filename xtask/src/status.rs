//! What a running node looks like from outside: read from the host's
//! `<state-dir>/run/status.json` (schema documented in
//! `host/eve-host/src/status.rs`), or, while a host has not written it yet,
//! from its status lines on stdout; rendered as a compact block of text.
//! Bus values in the file are read with their types from the `topics`
//! crate, the ones their publishers wrote them with.
//!
//! Fields this reader does not know are ignored, as the schema asks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use topics::diag::{self, Verdict};
use topics::onboard::{self, Report};
use topics::{DiagReport, OnboardStatus, Topic};

/// The status file's schema version this reader understands.
const SCHEMA: u64 = eve_host::status::SCHEMA as u64;

/// One service as the host supervises it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceStatus {
    pub name: String,
    /// `running (pid N)`, `restarting in 0.5 s`, `stopped`, ...
    pub state: String,
    pub restarts: u64,
    pub crash_loop: bool,
    /// How the last run ended, if it did.
    pub last_end: Option<String>,
    /// `None` when the source does not say.
    pub bus_connected: Option<bool>,
    pub heartbeat_age: Option<Duration>,
}

impl ServiceStatus {
    pub fn is_running(&self) -> bool {
        self.state.starts_with("running")
    }
}

/// A node's status at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeStatus {
    pub services: Vec<ServiceStatus>,
    /// zedagent's latest onboarding report.
    pub onboard: Option<Report>,
    /// diag's latest verdict.
    pub diag: Option<Verdict>,
    /// Where the node's TPM is, when the host says.
    pub tpm: Option<String>,
}

/// The value of item `key` of topic `T` in the file's tables, if it is
/// there and reads as that topic's type.
fn table_item<T: Topic>(root: &Value, key: &str) -> Option<T::Value>
where
    T::Value: DeserializeOwned,
{
    let item = root.get("tables")?.get(T::NAME)?.get(key)?;
    serde_json::from_value(item.clone()).ok()
}

impl NodeStatus {
    /// Reads `status.json`.
    pub fn from_json(text: &str) -> Result<NodeStatus, String> {
        let root: Value =
            serde_json::from_str(text).map_err(|e| format!("status.json is not JSON: {e}"))?;
        let schema = root.get("schema").and_then(Value::as_u64);
        if schema != Some(SCHEMA) {
            return Err(format!(
                "status.json has schema {schema:?}; this xtask reads {SCHEMA}"
            ));
        }
        let services = root
            .get("services")
            .and_then(Value::as_array)
            .ok_or("status.json has no services")?
            .iter()
            .map(service_from_json)
            .collect::<Result<_, _>>()?;
        Ok(NodeStatus {
            services,
            onboard: table_item::<OnboardStatus>(&root, OnboardStatus::KEY),
            diag: table_item::<DiagReport>(&root, DiagReport::KEY),
            tpm: root.get("tpm").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// From the host's last status line of each service (`eve-host run`
    /// prints `name: state, restarts N[, CRASH LOOP][, last end: E]`).
    pub fn from_host_lines(lines: &BTreeMap<String, String>) -> NodeStatus {
        NodeStatus {
            services: lines.values().filter_map(|l| parse_host_line(l)).collect(),
            ..NodeStatus::default()
        }
    }

    /// Whether zedagent says it is onboarded: it is in the phase after
    /// onboarding (the config, info and metrics loops).
    pub fn onboarded(&self) -> bool {
        self.onboard
            .as_ref()
            .is_some_and(|r| r.phase() == onboard::Phase::Running)
    }

    /// Whether every service of `names` is running.
    pub fn all_running<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> bool {
        names.all(|n| self.services.iter().any(|s| s.name == n && s.is_running()))
    }

    /// Whether every service of `names` is connected to the bus; `None`
    /// when the source does not report bus connections.
    pub fn all_on_bus<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> Option<bool> {
        if self.services.iter().all(|s| s.bus_connected.is_none()) {
            return None;
        }
        Some(names.all(|n| {
            self.services
                .iter()
                .any(|s| s.name == n && s.bus_connected == Some(true))
        }))
    }
}

fn service_from_json(fields: &Value) -> Result<ServiceStatus, String> {
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .ok_or("status.json: a service without a name")?;
    let mut state = fields
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    if let Some(pid) = fields.get("pid").and_then(Value::as_u64) {
        state.push_str(&format!(" (pid {pid})"));
    }
    if let Some(ms) = fields.get("restart_delay_ms").and_then(Value::as_u64) {
        state.push_str(&format!(" in {:.1} s", ms as f64 / 1000.0));
    }
    Ok(ServiceStatus {
        name: name.to_owned(),
        state,
        restarts: fields.get("restarts").and_then(Value::as_u64).unwrap_or(0),
        crash_loop: fields
            .get("crash_loop")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        last_end: fields
            .get("last_end")
            .and_then(Value::as_str)
            .map(str::to_owned),
        bus_connected: fields.get("bus_connected").and_then(Value::as_bool),
        heartbeat_age: fields
            .get("last_heartbeat_age_ms")
            .and_then(Value::as_u64)
            .map(Duration::from_millis),
    })
}

/// Parses one `eve-host run` status line.
pub fn parse_host_line(line: &str) -> Option<ServiceStatus> {
    let (name, rest) = line.split_once(": ")?;
    let (state, rest) = rest.split_once(", restarts ")?;
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let restarts = rest[..digits_end].parse().ok()?;
    let rest = &rest[digits_end..];
    Some(ServiceStatus {
        name: name.to_owned(),
        state: state.to_owned(),
        restarts,
        crash_loop: rest.contains(", CRASH LOOP"),
        last_end: rest
            .split_once(", last end: ")
            .map(|(_, end)| end.to_owned()),
        bus_connected: None,
        heartbeat_age: None,
    })
}

/// Renders the status block. `live` (a terminal, redrawn every second)
/// gives an aligned table with the heartbeat ages; otherwise (a log) one
/// line per service without what changes by itself, so that a line
/// changes only when the node does.
pub fn render(status: &NodeStatus, live: bool) -> Vec<String> {
    let described: Vec<(&ServiceStatus, String, &str)> = status
        .services
        .iter()
        .map(|s| {
            let mut state = s.state.clone();
            if s.crash_loop {
                state.push_str(", CRASH LOOP");
            }
            if let Some(end) = &s.last_end {
                state.push_str(&format!(" (last end: {end})"));
            }
            let bus = match s.bus_connected {
                Some(true) => "up",
                Some(false) => "down",
                None => "-",
            };
            (s, state, bus)
        })
        .collect();
    let mut lines = if live {
        table(
            std::iter::once(
                ["service", "state", "restarts", "bus", "heartbeat"].map(str::to_owned),
            )
            .chain(described.iter().map(|(s, state, bus)| {
                [
                    s.name.clone(),
                    state.clone(),
                    s.restarts.to_string(),
                    (*bus).to_owned(),
                    s.heartbeat_age.map_or("-".to_owned(), |age| {
                        format!("{:.1} s ago", age.as_secs_f64())
                    }),
                ]
            }))
            .collect(),
        )
    } else {
        described
            .iter()
            .map(|(s, state, bus)| {
                format!("{}: {state}, restarts {}, bus {bus}", s.name, s.restarts)
            })
            .collect()
    };
    lines.extend(render_onboarding(status));
    lines.extend(render_diag(status));
    if let Some(tpm) = status.tpm.as_deref().filter(|_| live) {
        lines.push(format!("tpm: {tpm}"));
    }
    lines
}

/// Rows as columns padded to their widest cell.
fn table<const N: usize>(rows: Vec<[String; N]>) -> Vec<String> {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect()
}

fn render_onboarding(status: &NodeStatus) -> Vec<String> {
    let Some(report) = &status.onboard else {
        return vec!["onboarding: no report from zedagent yet".to_owned()];
    };
    let ms = |t: Option<u64>| t.map_or("never".to_owned(), |t| format!("{t} ms"));
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    vec![
        format!(
            "onboarding: {:?}  uuid {}",
            report.phase(),
            or_dash(&report.uuid)
        ),
        format!(
            "config {}  last config {}  last info {}  last metrics {}",
            or_dash(&report.config_hash),
            ms(report.last_config_ms),
            ms(report.last_info_ms),
            ms(report.last_metrics_ms)
        ),
        format!(
            "register {:?}  attest {:?}  log batches queued {}  heap peak {} bytes",
            report.register(),
            report.attest(),
            report.log_batches_queued,
            report.heap_peak_bytes
        ),
    ]
}

/// diag's verdict: reachable, or the first step that failed.
fn render_diag(status: &NodeStatus) -> Option<String> {
    let verdict = status.diag.as_ref()?;
    if verdict.reachable {
        return Some(format!("diag: {} reachable", verdict.controller));
    }
    let failed = verdict
        .steps
        .iter()
        .find(|s| s.outcome() == diag::Outcome::Fail);
    Some(match failed {
        Some(step) => format!(
            "diag: {} NOT reachable: {:?} failed: {}",
            verdict.controller,
            step.check(),
            step.detail
        ),
        None => format!("diag: {} NOT reachable", verdict.controller),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `eve-host` writes it (host/eve-host/src/status.rs), with a field
    /// this reader does not know.
    const SAMPLE: &str = r#"{
      "schema": 2, "node": "default", "arch": "x86_64", "host_pid": 4200,
      "running": true, "updated_unix_ms": 1700000000000, "tpm": "swtpm (/s/tpm)",
      "future_field": [1, 2],
      "services": [
        {"name": "zedagent", "state": "running", "pid": 4242, "restart_delay_ms": null,
         "restarts": 1, "crash_loop": false, "last_end": "exited with status 1",
         "bus_connected": true, "last_heartbeat_age_ms": 1500},
        {"name": "diag", "state": "restarting", "pid": null, "restart_delay_ms": 2000,
         "restarts": 6, "crash_loop": true, "last_end": null, "bus_connected": false,
         "last_heartbeat_age_ms": null}
      ],
      "tables": {
        "onboard-status": {"zedagent": {
          "phase": 5, "uuid": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "config_hash": "q1w2e3",
          "register": 2, "attest": 2, "last_config_ms": 900, "last_info_ms": 1200,
          "last_metrics_ms": null, "log_batches_queued": 0, "log_lines_dropped": 0,
          "heap_peak_bytes": 4096, "undecodable_values": 0, "from_a_newer_zedagent": true
        }},
        "diag-report": {"controller": {
          "reachable": false, "controller": "10.0.2.2:8443", "walks": 3,
          "steps": [
            {"check": 3, "outcome": 1, "detail": "10.0.2.15", "micros": 5000},
            {"check": 5, "outcome": 2, "detail": "connection refused", "micros": 80},
            {"check": 6, "outcome": 3, "detail": "", "micros": 0}
          ]
        }}
      },
      "undecodable_values": 0
    }"#;

    #[test]
    fn a_sample_status_file_is_read() {
        let status = NodeStatus::from_json(SAMPLE).unwrap();
        assert_eq!(status.services.len(), 2);
        let agent = &status.services[0];
        assert_eq!(agent.name, "zedagent");
        assert_eq!(agent.state, "running (pid 4242)");
        assert!(agent.is_running());
        assert_eq!(agent.restarts, 1);
        assert_eq!(agent.last_end.as_deref(), Some("exited with status 1"));
        assert_eq!(agent.heartbeat_age, Some(Duration::from_millis(1500)));
        let diag = &status.services[1];
        assert_eq!(diag.state, "restarting in 2.0 s");
        assert!(diag.crash_loop && !diag.is_running());
        assert_eq!(diag.last_end, None);
        assert!(status.onboarded());
        let report = status.onboard.as_ref().unwrap();
        assert_eq!(report.config_hash, "q1w2e3");
        assert_eq!(report.register(), onboard::Registration::Onboarded);
        assert_eq!(status.tpm.as_deref(), Some("swtpm (/s/tpm)"));
        assert!(!status.all_running(["zedagent", "diag"].into_iter()));
        assert!(status.all_running(["zedagent"].into_iter()));
        assert_eq!(
            status.all_on_bus(["zedagent", "diag"].into_iter()),
            Some(false)
        );
    }

    #[test]
    fn other_schemas_and_shapes_are_refused() {
        assert!(NodeStatus::from_json(&SAMPLE.replace("\"schema\": 2", "\"schema\": 1")).is_err());
        assert!(NodeStatus::from_json(r#"{"schema": 2}"#).is_err());
        assert!(NodeStatus::from_json(r#"{"schema": 2, "services": [{}]}"#).is_err());
        assert!(NodeStatus::from_json("not json").is_err());
        let quiet = NodeStatus::from_json(
            r#"{"schema": 2, "services": [], "tables": {"onboard-status": {}}}"#,
        )
        .unwrap();
        assert!(quiet.onboard.is_none() && !quiet.onboarded());
        // A value that is not its topic's type is no report, not an error.
        let odd = NodeStatus::from_json(
            r#"{"schema": 2, "services": [], "tables": {"onboard-status": {"zedagent": "phase=5"}}}"#,
        )
        .unwrap();
        assert!(odd.onboard.is_none());
    }

    #[test]
    fn the_sample_renders_as_a_compact_block() {
        let status = NodeStatus::from_json(SAMPLE).unwrap();
        assert_eq!(
            render(&status, true),
            [
                "service   state                                                restarts  bus   heartbeat",
                "zedagent  running (pid 4242) (last end: exited with status 1)  1         up    1.5 s ago",
                "diag      restarting in 2.0 s, CRASH LOOP                      6         down  -",
                "onboarding: Running  uuid 6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                "config q1w2e3  last config 900 ms  last info 1200 ms  last metrics never",
                "register Onboarded  attest Attested  log batches queued 0  heap peak 4096 bytes",
                "diag: 10.0.2.2:8443 NOT reachable: Tcp failed: connection refused",
                "tpm: swtpm (/s/tpm)",
            ]
        );
        assert_eq!(
            render(&status, false)[..2],
            [
                "zedagent: running (pid 4242) (last end: exited with status 1), restarts 1, bus up",
                "diag: restarting in 2.0 s, CRASH LOOP, restarts 6, bus down",
            ]
        );
    }

    #[test]
    fn zedagents_report_is_shown() {
        let mut status = NodeStatus {
            onboard: Some(Report {
                phase: onboard::Phase::Register as i32,
                register: onboard::Registration::Conflict as i32,
                ..Report::default()
            }),
            ..NodeStatus::default()
        };
        assert!(!status.onboarded());
        assert_eq!(
            render_onboarding(&status),
            [
                "onboarding: Register  uuid -",
                "config -  last config never  last info never  last metrics never",
                "register Conflict  attest Unspecified  log batches queued 0  heap peak 0 bytes",
            ]
        );
        status.diag = Some(Verdict {
            reachable: true,
            controller: "c:1".into(),
            ..Verdict::default()
        });
        assert_eq!(render_diag(&status).as_deref(), Some("diag: c:1 reachable"));
    }

    #[test]
    fn host_status_lines_are_the_fallback() {
        let mut lines = BTreeMap::new();
        lines.insert(
            "diag".to_owned(),
            "diag: restarting in 0.5 s, restarts 3, CRASH LOOP, last end: exited with status 1"
                .to_owned(),
        );
        lines.insert(
            "zedagent".to_owned(),
            "zedagent: running (pid 77), restarts 0".to_owned(),
        );
        let status = NodeStatus::from_host_lines(&lines);
        assert_eq!(
            status.services[0],
            ServiceStatus {
                name: "diag".into(),
                state: "restarting in 0.5 s".into(),
                restarts: 3,
                crash_loop: true,
                last_end: Some("exited with status 1".into()),
                bus_connected: None,
                heartbeat_age: None,
            }
        );
        assert_eq!(status.all_on_bus(["diag"].into_iter()), None);
        assert!(status.services[1].is_running());
        assert_eq!(parse_host_line("eve-host: node default"), None);
        assert_eq!(
            render(&status, false).last().unwrap(),
            "onboarding: no report from zedagent yet"
        );
    }
}
