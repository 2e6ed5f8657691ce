//! `devicesim load`: the controller's microbenchmark (one request kind at
//! a time).
//!
//! It starts the `controller` binary as a separate process on loopback with
//! a throw-away data directory, onboards N simulated devices through the
//! real API (register, uuid, attest, first config), then drives config
//! polls on the 304 path, info posts and metrics posts, either flat out or
//! at EVE's cadence (every device once per interval for each kind), and
//! reports requests/s, p50/p99 latency and the controller's RSS. Every
//! phase is bounded in time and in request count.
//!
//! Bodies are signed before a phase starts so that the generator's own
//! signing does not compete with the controller for the CPU. Config polls
//! are measured twice: with the envelope repeated between polls (our
//! devices sign deterministically, RFC 6979) and with a fresh signature on
//! every poll, as EVE devices (randomized ECDSA) send: the fresh payload
//! repeats `configHash`, which protobuf decoders resolve to the last value.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::ValueEnum;
use devicesim::device::{DeviceError, SimDevice, random_signer, self_signed};
use devicesim::http::{Client, ClientError};
use devicesim::onboard::{FlowError, Onboarded, onboard};
use eve_proto::Message;
use eve_proto::config::ConfigRequest;
use eve_proto::info::{ZInfoDevice, ZInfoMsg, z_info_msg::InfoContent};
use eve_proto::metrics::ZMetricMsg;
use hyper::{Method, StatusCode};

const API: &str = "/api/v2/edgedevice";
/// Longest phase allowed, whatever is asked.
const MAX_PHASE_SECS: u64 = 120;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every connection sends back to back.
    Flat,
    /// Each device polls config and posts info and metrics once per interval.
    Cadence,
}

/// `devicesim load`'s options.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Flat out, or at EVE's cadence.
    #[arg(long, value_enum, default_value = "flat")]
    mode: Mode,
    /// Seconds per phase (at most 120).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent keep-alive TLS connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Most requests per phase (also the number of pre-signed bodies).
    #[arg(long, default_value_t = 60_000)]
    max_requests: usize,
    /// Cadence interval in seconds (EVE's default timer is 60).
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// The controller binary (default: next to this one).
    #[arg(long)]
    controller: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error("starting the controller: {0}")]
    Spawn(std::io::Error),
    #[error("controller output: {0}")]
    Output(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{step}: controller answered {status}")]
    Status {
        step: &'static str,
        status: StatusCode,
    },
}

struct Controller {
    child: Child,
    dev: SocketAddr,
    admin: SocketAddr,
    token: String,
    root_pem: String,
    dir: PathBuf,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Controller {
    fn start(bin: &PathBuf) -> Result<Self, LoadError> {
        let dir = std::env::temp_dir().join(format!("controller-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = Command::new(bin)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&dir)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(LoadError::Spawn)?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut next = || -> Result<String, LoadError> {
            lines
                .next()
                .ok_or_else(|| LoadError::Output("controller exited".into()))?
                .map_err(|e| LoadError::Output(e.to_string()))
        };
        let _root = next()?;
        let dev_line = next()?;
        let admin_line = next()?;
        let addr = |line: &str, scheme: &str| -> Result<SocketAddr, LoadError> {
            line.split(scheme)
                .nth(1)
                .and_then(|r| r.split('/').next())
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| LoadError::Output(line.to_owned()))
        };
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p)
                .map_err(|e| LoadError::Output(format!("{}: {e}", p.display())))
        };
        Ok(Self {
            dev: addr(&dev_line, "https://")?,
            admin: addr(&admin_line, "https://")?,
            token: read(dir.join("admin-token"))?.trim().to_owned(),
            root_pem: read(dir.join("root-certificate.pem"))?,
            dir,
            child,
        })
    }

    /// Resident and peak resident memory of the controller, in MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

struct Request {
    path: String,
    body: Bytes,
    want: StatusCode,
}

#[derive(Default)]
struct PhaseResult {
    latencies_us: Vec<u32>,
    errors: usize,
    elapsed: Duration,
}

/// Sends requests from `pool` (cycled) over `conns` connections until the
/// deadline or `max` requests; at `rate` requests/s in total, or flat out.
async fn run_phase(
    ctl_addr: SocketAddr,
    root: &str,
    pool: Arc<Vec<Request>>,
    conns: usize,
    rate: Option<f64>,
    duration: Duration,
    max: usize,
) -> Result<PhaseResult, LoadError> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for w in 0..conns {
        let mut client = Client::tls(ctl_addr, root, &[])?;
        let pool = pool.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let period = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
            let mut due = Instant::now()
                + period.map_or(Duration::ZERO, |p| p.mul_f64(w as f64 / conns as f64));
            loop {
                if let Some(p) = period {
                    tokio::time::sleep_until(due.into()).await;
                    due += p;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max || Instant::now() >= deadline {
                    break;
                }
                let req = &pool[i % pool.len()];
                let t = Instant::now();
                match client
                    .request(Method::POST, &req.path, req.body.clone())
                    .await
                {
                    Ok((s, _)) if s == req.want => {
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32)
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut result = PhaseResult::default();
    for t in tasks {
        let (lat, errors) = t.await.unwrap_or_default();
        result.latencies_us.extend(lat);
        result.errors += errors;
    }
    result.elapsed = start.elapsed();
    Ok(result)
}

fn report(name: &str, r: &mut PhaseResult, rss: (f64, f64)) {
    r.latencies_us.sort_unstable();
    let pct = |p: f64| {
        if r.latencies_us.is_empty() {
            0.0
        } else {
            let idx = ((r.latencies_us.len() as f64 * p).ceil() as usize)
                .clamp(1, r.latencies_us.len())
                - 1;
            f64::from(r.latencies_us[idx]) / 1000.0
        }
    };
    println!(
        "{name:<34} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>8.1} {:>8.1}",
        r.latencies_us.len(),
        r.latencies_us.len() as f64 / r.elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        r.errors,
        rss.0,
        rss.1
    );
}

fn config_pool(devs: &[Onboarded], fresh: bool, n: usize) -> Result<Vec<Request>, LoadError> {
    let count = if fresh { n.max(devs.len()) } else { devs.len() };
    (0..count)
        .map(|j| {
            let d = &devs[j % devs.len()];
            let real = ConfigRequest {
                config_hash: d.hash.clone(),
                integrity_token: d.token.clone(),
            }
            .encode_to_vec();
            let payload = if fresh {
                let mut p = ConfigRequest {
                    config_hash: format!("poll-{j}"),
                    integrity_token: Vec::new(),
                }
                .encode_to_vec();
                p.extend_from_slice(&real);
                p
            } else {
                real
            };
            Ok(Request {
                path: format!("{API}/id/{}/config", d.uuid),
                body: d.sim.sign(payload)?,
                want: StatusCode::NOT_MODIFIED,
            })
        })
        .collect()
}

fn info_pool(devs: &[Onboarded], n: usize) -> Result<Vec<Request>, LoadError> {
    (0..n.max(devs.len()))
        .map(|j| {
            let d = &devs[j % devs.len()];
            let msg = ZInfoMsg {
                ztype: 1,
                dev_id: d.uuid.clone(),
                info_content: Some(InfoContent::Dinfo(ZInfoDevice {
                    machine_arch: "x86_64".into(),
                    ncpu: 4,
                    memory: 8192 + j as u64,
                    ..Default::default()
                })),
                at_time_stamp: Some(eve_proto::prost_types::Timestamp {
                    seconds: j as i64,
                    nanos: 0,
                }),
            };
            Ok(Request {
                path: format!("{API}/id/{}/info", d.uuid),
                body: d.sim.sign(msg.encode_to_vec())?,
                want: StatusCode::CREATED,
            })
        })
        .collect()
}

fn metrics_pool(devs: &[Onboarded], n: usize) -> Result<Vec<Request>, LoadError> {
    (0..n.max(devs.len()))
        .map(|j| {
            let d = &devs[j % devs.len()];
            let msg = ZMetricMsg {
                dev_id: d.uuid.clone(),
                at_time_stamp: Some(eve_proto::prost_types::Timestamp {
                    seconds: j as i64,
                    nanos: 0,
                }),
                ..Default::default()
            };
            Ok(Request {
                path: format!("{API}/id/{}/metrics", d.uuid),
                body: d.sim.sign(msg.encode_to_vec())?,
                want: StatusCode::CREATED,
            })
        })
        .collect()
}

/// Runs the microbenchmark against a controller it starts.
pub async fn run(args: LoadArgs) -> Result<(), LoadError> {
    let bin = args.controller.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("controller")))
            .unwrap_or_else(|| PathBuf::from("controller"))
    });
    let ctl = Controller::start(&bin)?;
    let duration = Duration::from_secs(args.duration.clamp(1, MAX_PHASE_SECS));
    let conns = args.connections.max(1);

    // Onboarding: one onboarding certificate for any serial.
    let onboard_key = random_signer();
    let (onboard_pem, _) = self_signed(&onboard_key, "load-onboarding")?;
    let mut admin = Client::admin_tls(ctl.admin, &ctl.root_pem, &ctl.token)?;
    let body = serde_json::json!({ "cert_pem": onboard_pem }).to_string();
    let (status, _) = admin
        .request(Method::POST, "/api/v1/onboard", Bytes::from(body))
        .await?;
    if status != StatusCode::CREATED {
        return Err(LoadError::Status {
            step: "onboard add",
            status,
        });
    }
    let setup = Instant::now();
    let mut c = Client::tls(ctl.dev, &ctl.root_pem, &[])?;
    let (_, certs) = c
        .request(Method::GET, &format!("{API}/certs"), Bytes::new())
        .await?;
    let certs = Arc::new(certs);
    let per = args.devices.div_ceil(conns);
    let mut tasks = Vec::new();
    for w in 0..conns {
        let range = (w * per)..((w + 1) * per).min(args.devices);
        let mut client = Client::tls(ctl.dev, &ctl.root_pem, &[])?;
        let (certs, root, onboard_id) = (
            certs.clone(),
            ctl.root_pem.clone(),
            (onboard_key.clone(), onboard_pem.clone()),
        );
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in range {
                let sim = SimDevice::new(&format!("LOAD-{i:06}"), onboard_id.clone())?;
                out.push(onboard(&mut client, sim, &certs, &root).await?);
            }
            Ok::<_, LoadError>(out)
        }));
    }
    let mut devs = Vec::with_capacity(args.devices);
    for t in tasks {
        devs.extend(t.await.map_err(|e| LoadError::Output(e.to_string()))??);
    }
    println!(
        "onboarded {} devices in {:.1} s (register, uuid, attest, config each); {} connections, {} s per phase",
        devs.len(),
        setup.elapsed().as_secs_f64(),
        conns,
        duration.as_secs()
    );
    println!(
        "{:<34} {:>9} {:>10} {:>9} {:>9} {:>7} {:>8} {:>8}",
        "phase", "requests", "req/s", "p50 ms", "p99 ms", "errors", "RSS MiB", "peak MiB"
    );
    let max = args.max_requests.max(1);
    let root = ctl.root_pem.clone();
    match args.mode {
        Mode::Flat => {
            let phases: [(&str, Vec<Request>); 4] = [
                (
                    "config 304 (repeated envelope)",
                    config_pool(&devs, false, max)?,
                ),
                (
                    "config 304 (fresh signature)",
                    config_pool(&devs, true, max)?,
                ),
                ("info post", info_pool(&devs, max)?),
                ("metrics post", metrics_pool(&devs, max)?),
            ];
            for (name, pool) in phases {
                let mut r =
                    run_phase(ctl.dev, &root, Arc::new(pool), conns, None, duration, max).await?;
                report(name, &mut r, ctl.rss_mib());
            }
        }
        Mode::Cadence => {
            let rate = devs.len() as f64 / args.interval.max(1) as f64;
            let per_kind = conns.div_ceil(3);
            let cap = ((rate * duration.as_secs_f64()) as usize + 1).min(max);
            let (cfg, info, met) = tokio::join!(
                run_phase(
                    ctl.dev,
                    &root,
                    Arc::new(config_pool(&devs, true, cap)?),
                    per_kind,
                    Some(rate),
                    duration,
                    max
                ),
                run_phase(
                    ctl.dev,
                    &root,
                    Arc::new(info_pool(&devs, cap)?),
                    per_kind,
                    Some(rate),
                    duration,
                    max
                ),
                run_phase(
                    ctl.dev,
                    &root,
                    Arc::new(metrics_pool(&devs, cap)?),
                    per_kind,
                    Some(rate),
                    duration,
                    max
                ),
            );
            let rss = ctl.rss_mib();
            report(
                &format!("config 304 @{rate:.0}/s (fresh sig)"),
                &mut cfg?,
                rss,
            );
            report(&format!("info post @{rate:.0}/s"), &mut info?, rss);
            report(&format!("metrics post @{rate:.0}/s"), &mut met?, rss);
        }
    }
    Ok(())
}
