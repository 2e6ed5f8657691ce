//! `cargo xtask bench fleet`: the controller under a simulated fleet.
//!
//! For each store (SQLite; PostgreSQL with one replica; PostgreSQL with two
//! replicas sharing the database), each fleet size and each pace (EVE's
//! cadence; flat out), it starts release controllers on loopback (and a
//! throw-away PostgreSQL server), runs `devicesim fleet` as a separate
//! process against them, and prints per-endpoint requests/s and p50/p99,
//! the database growth per device per day (at cadence: measured from the end
//! of onboarding, through the admin API's `database_bytes`), and each
//! controller's RSS. The load generator, PostgreSQL and the controllers
//! share this machine's cores: on a 2-core machine the numbers are what
//! the three manage together, not what a controller alone would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

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

/// One measured configuration.
struct Setup {
    controllers: Vec<LocalController>,
    dirs: Vec<PathBuf>,
    /// Held so the server outlives the controllers (fields drop in order).
    _pg: Option<PgServer>,
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
            _pg: pg,
        })
    }
}

/// What one simulation measured.
struct Measured {
    /// `devicesim`'s summary.
    summary: Value,
    /// Database bytes written per device per second after onboarding.
    growth_per_device_s: f64,
}

/// The database's size as the controller reports it.
fn database_bytes(setup: &Setup) -> Result<u64, String> {
    setup.controllers[0].admin_client().get("/api/v1/stats")?["database_bytes"]
        .as_u64()
        .ok_or_else(|| "no database_bytes in /api/v1/stats".into())
}

/// Runs `devicesim fleet` against `setup`, measuring the database from the
/// end of onboarding to the end of the run.
fn simulate(
    setup: &Setup,
    devices: usize,
    pace: Pace,
    secs: u64,
    connections: usize,
) -> Result<Measured, String> {
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
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", sim.display()))?;
    let stdout = child.stdout.take().ok_or("devicesim stdout")?;
    let mut steady_from = None;
    let mut summary = None;
    let mut output = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("devicesim output: {e}"))?;
        if line.starts_with("onboarded: ") {
            steady_from = Some((database_bytes(setup)?, Instant::now()));
        }
        if let Some(json) = line.strip_prefix("summary: ") {
            summary = Some(
                serde_json::from_str::<Value>(json)
                    .map_err(|e| format!("devicesim summary: {e}"))?,
            );
        }
        output.push_str(&line);
        output.push('\n');
    }
    let status = child.wait().map_err(|e| format!("devicesim: {e}"))?;
    let (Some(summary), Some((bytes_then, then)), true) = (summary, steady_from, status.success())
    else {
        return Err(format!("devicesim failed ({status}):\n{output}"));
    };
    let grown = database_bytes(setup)?.saturating_sub(bytes_then) as f64;
    let growth_per_device_s = grown / devices as f64 / then.elapsed().as_secs_f64().max(1.0);
    Ok(Measured {
        summary,
        growth_per_device_s,
    })
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
    // One package per build, as `controller::start` builds the controller:
    // together, cargo would unify their features and build it twice.
    for package in ["controller", "devicesim"] {
        crate::cargo(&[
            "build",
            "--quiet",
            "--release",
            "--package",
            package,
            "--bin",
            package,
        ])?;
    }
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
                let secs = if pace == Pace::Cadence {
                    args.cadence_secs
                } else {
                    args.flat_secs
                };
                let measured = simulate(&setup, devices, pace, secs, args.connections)?;
                let summary = measured.summary;
                // At cadence, the steady state's growth scaled to a day.
                let per_day = if pace == Pace::Cadence {
                    format!("{:.0}", measured.growth_per_device_s * 86_400.0)
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
