//! `devicesim`: simulated EVE devices against a controller.
//!
//! * `devicesim fleet`: N devices onboarded over real TLS and run at EVE's
//!   cadence or flat out against one or more replicas, with live
//!   per-endpoint rates, latency percentiles and errors.
//! * `devicesim load`: the controller microbenchmark (one request kind at
//!   a time, against a controller it starts itself).

mod load;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use devicesim::device::{random_signer, self_signed};
use devicesim::fleet::{self, Fleet, Pace, Report};
use devicesim::http::Client;
use hyper::{Method, StatusCode};

#[derive(Parser)]
#[command(version, about = "Simulated EVE devices against an EVE controller")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Onboard N simulated devices and run them at EVE's cadence or flat out.
    Fleet(FleetArgs),
    /// One request kind at a time against a controller started here.
    Load(load::LoadArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FleetMode {
    /// EVE's timers.
    Cadence,
    /// Back to back, in EVE's mix of requests.
    Flat,
}

#[derive(clap::Args)]
struct FleetArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Device API of a replica (repeat for several; devices are spread).
    #[arg(long = "controller", default_value = "https://127.0.0.1:8443")]
    controllers: Vec<String>,
    /// Admin API, where the fleet's onboarding certificate is allowed.
    #[arg(long, default_value = "https://127.0.0.1:8444")]
    admin: String,
    /// The controller's data directory (root certificate and admin token).
    #[arg(long, env = "EVE_CONTROLLER_DATA", default_value = "controller-data")]
    data_dir: PathBuf,
    /// Cadence or flat out.
    #[arg(long, value_enum, default_value = "cadence")]
    mode: FleetMode,
    /// Config poll interval in seconds (EVE's default is 60).
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// Seconds to run once onboarded.
    #[arg(long, default_value_t = 120)]
    duration: u64,
    /// Keep-alive TLS connections per replica.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds between live reports (0: only the final one).
    #[arg(long, default_value_t = 10)]
    report_every: u64,
    /// Serial number prefix.
    #[arg(long, default_value = "SIM")]
    serial_prefix: String,
}

#[derive(Debug, thiserror::Error)]
enum SimError {
    #[error("{0}: expected https://IP:PORT")]
    Url(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] devicesim::http::ClientError),
    #[error(transparent)]
    Device(#[from] devicesim::device::DeviceError),
    #[error(transparent)]
    Flow(#[from] devicesim::onboard::FlowError),
    #[error("adding the onboarding certificate: the admin API answered {0}")]
    Onboard(StatusCode),
    #[error(transparent)]
    Load(#[from] load::LoadError),
}

fn addr(url: &str) -> Result<SocketAddr, SimError> {
    url.strip_prefix("https://")
        .unwrap_or(url)
        .trim_end_matches('/')
        .split('/')
        .next()
        .map(|a| a.replacen("localhost:", "127.0.0.1:", 1))
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| SimError::Url(url.to_owned()))
}

fn read(path: PathBuf) -> Result<String, SimError> {
    std::fs::read_to_string(&path).map_err(|source| SimError::Io { path, source })
}

async fn run_fleet(args: FleetArgs) -> Result<(), SimError> {
    let root_pem = read(args.data_dir.join("root-certificate.pem"))?;
    let token = read(args.data_dir.join("admin-token"))?;
    let controllers = args
        .controllers
        .iter()
        .map(|c| addr(c))
        .collect::<Result<Vec<_>, _>>()?;
    // The fleet's own onboarding certificate, allowed for any serial.
    let key = random_signer();
    let (cert_pem, _) = self_signed(&key, &format!("{} onboarding", args.serial_prefix))?;
    let mut admin = Client::admin_tls(addr(&args.admin)?, &root_pem, token.trim())?;
    let body = serde_json::json!({ "cert_pem": cert_pem }).to_string();
    let (status, _) = admin
        .request(Method::POST, "/api/v1/onboard", Bytes::from(body))
        .await?;
    if status != StatusCode::CREATED {
        return Err(SimError::Onboard(status));
    }
    let pace = match args.mode {
        FleetMode::Cadence => Pace::Cadence(fleet::Timers {
            config: Duration::from_secs(args.interval.max(1)),
            ..fleet::Timers::EVE
        }),
        FleetMode::Flat => Pace::Flat,
    };
    println!(
        "devicesim: onboarding {} devices over {} replica(s), {} connections each",
        args.devices,
        controllers.len(),
        args.connections
    );
    let fleet = Fleet {
        devices: args.devices,
        controllers,
        root_pem,
        onboarding: (key, cert_pem),
        serial_prefix: args.serial_prefix,
        connections: args.connections,
        pace,
        duration: Duration::from_secs(args.duration),
        report_every: (args.report_every > 0).then(|| Duration::from_secs(args.report_every)),
    };
    let onboarded = fleet::onboard_all(&fleet).await?;
    // Said at once: a benchmark measures the steady state from here.
    println!(
        "onboarded: {} devices in {:.1} s",
        onboarded.devices(),
        onboarded.took.as_secs_f64()
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let report = fleet::drive(&fleet, onboarded).await;
    let secs = report.elapsed.as_secs_f64();
    println!(
        "onboarded {} devices in {:.1} s; ran {secs:.0} s\n{}",
        report.onboarded,
        report.onboarding.as_secs_f64(),
        Report::table(&report.endpoints, secs)
    );
    let endpoints: serde_json::Map<String, serde_json::Value> = report
        .endpoints
        .iter()
        .map(|(name, e)| {
            (
                (*name).to_owned(),
                serde_json::json!({
                    "ok": e.ok,
                    "errors": e.errors,
                    "per_s": e.ok as f64 / secs.max(1e-9),
                    "p50_ms": e.latency.quantile_ms(0.5),
                    "p99_ms": e.latency.quantile_ms(0.99),
                }),
            )
        })
        .collect();
    println!(
        "summary: {}",
        serde_json::json!({
            "devices": report.onboarded,
            "onboarding_s": report.onboarding.as_secs_f64(),
            "seconds": secs,
            "endpoints": endpoints,
        })
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let result = rt.block_on(async {
        match cli.command {
            Command::Fleet(args) => run_fleet(args).await,
            Command::Load(args) => Ok(load::run(args).await?),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devicesim: {e}");
            ExitCode::FAILURE
        }
    }
}
