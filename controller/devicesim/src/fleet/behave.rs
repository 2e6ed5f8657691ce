//! What a simulated device sends, in EVE's forms: device and app info,
//! metrics with memory and CPU that move, and gzip batches of log lines as
//! newlogd writes them. Apps follow the config: a newly activated app boots
//! and then runs; a deactivated one halts.

use std::io::Write;

use eve_proto::config::EdgeDevConfig;
use eve_proto::info::{
    ZInfoApp, ZInfoDevSw, ZInfoDevice, ZInfoMsg, ZInfoTypes, ZSwState, z_info_msg::InfoContent,
};
use eve_proto::metrics::{
    AppCpuMetric, AppMemoryMetric, AppMetric, DeviceMemoryMetric, DeviceMetric, ZMetricMsg,
    z_metric_msg::MetricContent,
};
use eve_proto::prost_types::Timestamp;

/// A small generator for jitter and moving values (xorshift, seeded from
/// the OS): cheap enough for every device.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from the OS.
    pub fn new() -> Self {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).expect("the OS random source works");
        Self(u64::from_le_bytes(b) | 1)
    }

    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One app as the device runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// UUID from the config.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// What the device reports.
    pub state: ZSwState,
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// The device's view of its apps after a new config: returns the apps
/// whose state changed (to report).
pub fn apply_config(apps: &mut Vec<App>, config: &EdgeDevConfig) -> Vec<App> {
    let mut changed = Vec::new();
    let mut next = Vec::new();
    for a in &config.apps {
        let uuid = a
            .uuidandversion
            .as_ref()
            .map_or(String::new(), |u| u.uuid.clone());
        let old = apps.iter().find(|o| o.uuid == uuid);
        let state = match (a.activate, old.map(|o| o.state)) {
            (true, Some(ZSwState::Running | ZSwState::Booting)) => {
                old.map_or(ZSwState::Booting, |o| o.state)
            }
            (true, _) => ZSwState::Booting,
            (false, _) => ZSwState::Halted,
        };
        let app = App {
            uuid,
            name: a.displayname.clone(),
            state,
        };
        if old != Some(&app) {
            changed.push(app.clone());
        }
        next.push(app);
    }
    *apps = next;
    changed
}

/// Apps that finished booting since the last tick: now running.
pub fn advance(apps: &mut [App]) -> Vec<App> {
    apps.iter_mut()
        .filter(|a| a.state == ZSwState::Booting)
        .map(|a| {
            a.state = ZSwState::Running;
            a.clone()
        })
        .collect()
}

/// The device info EVE sends at boot and every 600 s.
pub fn device_info(uuid: &str) -> ZInfoMsg {
    ZInfoMsg {
        ztype: ZInfoTypes::ZiDevice as i32,
        dev_id: uuid.to_owned(),
        at_time_stamp: Some(now()),
        info_content: Some(InfoContent::Dinfo(ZInfoDevice {
            machine_arch: "x86_64".into(),
            cpu_arch: "x86_64".into(),
            platform: "devicesim".into(),
            ncpu: 4,
            memory: 8192,
            storage: 65536,
            sw_list: vec![ZInfoDevSw {
                activated: true,
                partition_label: "IMGA".into(),
                partition_state: "active".into(),
                status: ZSwState::Installed as i32,
                short_version: "devicesim-1.0".into(),
                ..Default::default()
            }],
            ..Default::default()
        })),
    }
}

/// The info message of one app.
pub fn app_info(uuid: &str, app: &App) -> ZInfoMsg {
    ZInfoMsg {
        ztype: ZInfoTypes::ZiApp as i32,
        dev_id: uuid.to_owned(),
        at_time_stamp: Some(now()),
        info_content: Some(InfoContent::Ainfo(ZInfoApp {
            app_id: app.uuid.clone(),
            app_name: app.name.clone(),
            state: app.state as i32,
            ..Default::default()
        })),
    }
}

/// A metrics message: memory wanders, CPU time grows.
pub fn metrics(uuid: &str, apps: &[App], cpu_total_s: u64, used_mb: u32) -> ZMetricMsg {
    ZMetricMsg {
        dev_id: uuid.to_owned(),
        at_time_stamp: Some(now()),
        metric_content: Some(MetricContent::Dm(DeviceMetric {
            cpu_metric: Some(AppCpuMetric {
                total: cpu_total_s,
                ..Default::default()
            }),
            device_memory: Some(DeviceMemoryMetric {
                memory_mb: 8192,
                used_eve_mb: used_mb,
                ..Default::default()
            }),
            ..Default::default()
        })),
        am: apps
            .iter()
            .filter(|a| a.state == ZSwState::Running)
            .map(|a| AppMetric {
                app_id: a.uuid.clone(),
                app_name: a.name.clone(),
                app_memory: Some(AppMemoryMetric {
                    allocated_mb: 256,
                    used_mb: 128,
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// A gzip batch of `lines` log lines in the JSON form EVE's newlogd writes.
pub fn log_batch(seq: u64, lines: usize) -> Vec<u8> {
    let t = now();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..lines {
        let line = serde_json::json!({
            "severity": if i % 10 == 0 { "warning" } else { "info" },
            "source": "zedagent",
            "content": format!("devicesim batch {seq} line {i}: config and telemetry as usual"),
            "timestamp": { "seconds": t.seconds, "nanos": t.nanos },
        });
        let _ = writeln!(gz, "{line}");
    }
    gz.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use eve_proto::config::{AppInstanceConfig, UuiDandVersion};

    fn config(apps: &[(&str, bool)]) -> EdgeDevConfig {
        EdgeDevConfig {
            apps: apps
                .iter()
                .map(|(name, on)| AppInstanceConfig {
                    uuidandversion: Some(UuiDandVersion {
                        uuid: format!("uuid-{name}"),
                        version: "1".into(),
                    }),
                    displayname: (*name).into(),
                    activate: *on,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn apps_boot_run_and_halt_with_the_config() {
        let mut apps = Vec::new();
        let changed = apply_config(&mut apps, &config(&[("web", true)]));
        assert_eq!(changed[0].state, ZSwState::Booting);
        assert_eq!(advance(&mut apps)[0].state, ZSwState::Running);
        assert!(apply_config(&mut apps, &config(&[("web", true)])).is_empty());
        let changed = apply_config(&mut apps, &config(&[("web", false)]));
        assert_eq!(changed[0].state, ZSwState::Halted);
        assert!(advance(&mut apps).is_empty());
    }

    #[test]
    fn log_batches_are_gzip_of_json_lines() {
        use std::io::Read;
        let mut text = String::new();
        flate2::read::GzDecoder::new(log_batch(3, 4).as_slice())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text.lines().count(), 4);
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["severity"], "warning");
        assert!(first["timestamp"]["seconds"].as_i64().unwrap() > 0);
    }
}
