//! `cargo xtask bench fleet`: the controller under a simulated fleet.
//!
//! For each store (SQLite; PostgreSQL with one replica; PostgreSQL with two
//! replicas sharing the database), each fleet size and each pace (EVE's
//! cadence; flat out), it starts release controllers on loopback (and a
//! throw-away PostgreSQL server), runs `devicesim fleet` as a separate
//! process against them, and prints per-endpoint requests/s and p50/p99,
//! the database growth per device per day (at cadence), and each
//! controller's RSS. The load generator, PostgreSQL and the controllers
//! share this machine's cores: on a 2-core machine the numbers are what
//! the three manage together, not what a controller alone would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use controller::pgserver::PgServer;
use serde_json::Value;

use crate::controller::{Group, LocalController, release_binary};
use crate::procfs;

/// Which store the controllers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    /// One controller on its SQLite file.
    Sqlite,
    /// One controller on PostgreSQL.
    Pg1,
    /// Two controller replicas on one PostgreSQL database.
    Pg2,
}

/// How the fleet sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pace {
    /// EVE's timers (config and metrics 60 s, info 600 s, logs 120 s).
    Cadence,
    /// Back to back, in EVE's mix.
    Flat,
}

/// `cargo xtask bench fleet` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fleet sizes.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 50_000])]
    devices: Vec<usize>,
    /// Stores.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Store::Sqlite, Store::Pg1, Store::Pg2])]
    stores: Vec<Store>,
    /// Paces.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Pace::Cadence, Pace::Flat])]
    paces: Vec<Pace>,
    /// Seconds at cadence (one config period at least).
    #[arg(long, default_value_t = 120)]
    cadence_secs: u64,
    /// Seconds flat out.
    #[arg(long, default_value_t = 30)]
    flat_secs: u64,
    /// Keep-alive TLS connections per replica.
    #[arg(long, default_value_t = 32)]
    connections: usize,
}

/// Bytes under `path` (a file or a directory tree).
fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|d| d.flatten().map(|e| disk_bytes(&e.path())).sum())
            .unwrap_or(0)
    } else {
        meta.len()
    }
}

/// One measured configuration.
struct Setup {
    controllers: Vec<LocalController>,
    dirs: Vec<PathBuf>,
    pg: Option<PgServer>,
}

impl Setup {
    fn start(store: Store, root: &Path) -> Result<Self, String> {
        let _ = std::fs::remove_dir_all(root);
        let dir_a = root.join("a");
        let (pg, url) = match store {
            Store::Sqlite => (None, None),
            Store::Pg1 | Store::Pg2 => {
                let pg = PgServer::start(true).map_err(|e| e.to_string())?;
                let url = pg.create_database("fleet").map_err(|e| e.to_string())?;
                (Some(pg), Some(url))
            }
        };
        let extra: Vec<&str> = url.as_deref().map_or(Vec::new(), |u| vec!["--database", u]);
        let first = crate::controller::start_with(&dir_a, Group::Own, &extra)?;
        let mut controllers = vec![first];
        let mut dirs = vec![dir_a.clone()];
        if store == Store::Pg2 {
            let dir_b = root.join("b");
            std::fs::create_dir_all(&dir_b).map_err(|e| e.to_string())?;
            for entry in std::fs::read_dir(&dir_a)
                .map_err(|e| e.to_string())?
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".pem") || name == "admin-token" {
                    std::fs::copy(entry.path(), dir_b.join(&name)).map_err(|e| e.to_string())?;
                }
            }
            controllers.push(crate::controller::start_with(&dir_b, Group::Own, &extra)?);
            dirs.push(dir_b);
        }
        Ok(Self {
            controllers,
            dirs,
            pg,
        })
    }

    fn database_bytes(&self) -> u64 {
        match &self.pg {
            Some(pg) => pg.disk_bytes(),
            None => ["controller.db", "controller.db-wal"]
                .iter()
                .map(|f| disk_bytes(&self.dirs[0].join(f)))
                .sum(),
        }
    }
}

/// Runs `devicesim fleet` against `setup`; returns its summary.
fn simulate(
    setup: &Setup,
    devices: usize,
    pace: Pace,
    secs: u64,
    connections: usize,
) -> Result<Value, String> {
    let sim = release_binary("devicesim");
    let mut cmd = Command::new(&sim);
    cmd.arg("fleet")
        .args(["--devices", &devices.to_string()])
        .args(["--duration", &secs.to_string()])
        .args(["--connections", &connections.to_string()])
        .args(["--report-every", "0"])
        .args([
            "--mode",
            if pace == Pace::Cadence {
                "cadence"
            } else {
                "flat"
            },
        ])
        .arg("--data-dir")
        .arg(&setup.dirs[0])
        .args([
            "--admin",
            &format!("https://{}", setup.controllers[0].admin_api),
        ]);
    for c in &setup.controllers {
        cmd.args(["--controller", &format!("https://{}", c.device_api)]);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", sim.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("devicesim failed ({}):\n{stdout}", out.status));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .ok_or_else(|| format!("no summary from devicesim:\n{stdout}"))?;
    serde_json::from_str(line).map_err(|e| format!("devicesim summary: {e}"))
}

fn cell(v: &Value, endpoint: &str) -> String {
    let e = &v["endpoints"][endpoint];
    if e.is_null() {
        return "-".into();
    }
    format!(
        "{:.0} / {:.1} / {:.1}{}",
        e["per_s"].as_f64().unwrap_or(0.0),
        e["p50_ms"].as_f64().unwrap_or(0.0),
        e["p99_ms"].as_f64().unwrap_or(0.0),
        match e["errors"].as_u64().unwrap_or(0) {
            0 => String::new(),
            n => format!(" ({n} err)"),
        }
    )
}

/// Runs every asked configuration and prints a Markdown table.
pub fn run(args: Args) -> Result<(), String> {
    crate::deps::ensure_test_servers()?;
    crate::cargo(&[
        "build",
        "--quiet",
        "--release",
        "--package",
        "controller",
        "--package",
        "devicesim",
        "--bins",
    ])?;
    let root = harness::workspace_root().join("target/fleetbench");
    println!(
        "fleet benchmark on this machine ({} cores, shared by the load generator, PostgreSQL and the controllers)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "| devices | store | pace | onboarding s | all req/s | config req/s / p50 / p99 ms | metrics | info | newlogs | DB bytes/device/day | controller RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &devices in &args.devices {
        for &store in &args.stores {
            for &pace in &args.paces {
                let setup = Setup::start(store, &root)?;
                let before = setup.database_bytes();
                let secs = if pace == Pace::Cadence {
                    args.cadence_secs
                } else {
                    args.flat_secs
                };
                let summary = simulate(&setup, devices, pace, secs, args.connections)?;
                let ran = summary["seconds"].as_f64().unwrap_or(secs as f64).max(1.0);
                let grown = setup.database_bytes().saturating_sub(before);
                let per_day = if pace == Pace::Cadence {
                    // The run's growth (onboarding included) scaled to a day.
                    format!("{:.0}", grown as f64 / devices as f64 * 86_400.0 / ran)
                } else {
                    "-".into()
                };
                let total: f64 = summary["endpoints"].as_object().map_or(0.0, |m| {
                    m.values().filter_map(|e| e["per_s"].as_f64()).sum()
                });
                let rss: Vec<String> = setup
                    .controllers
                    .iter()
                    .map(|c| {
                        let m = procfs::memory(c.pid()).map_or((0, 0), |m| (m.rss_kib, m.hwm_kib));
                        format!(
                            "{:.0} (peak {:.0})",
                            m.0 as f64 / 1024.0,
                            m.1 as f64 / 1024.0
                        )
                    })
                    .collect();
                println!(
                    "| {devices} | {store:?} | {pace:?} | {:.1} | {total:.0} | {} | {} | {} | {} | {per_day} | {} |",
                    summary["onboarding_s"].as_f64().unwrap_or(0.0),
                    cell(&summary, "config"),
                    cell(&summary, "metrics"),
                    cell(&summary, "info"),
                    cell(&summary, "newlogs"),
                    rss.join(", "),
                );
                drop(setup);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
