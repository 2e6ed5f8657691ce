//! The fleet simulator: N simulated EVE devices, each with its own key and
//! certificate, onboarded over real TLS and then run at EVE's cadence
//! ([`Timers::EVE`]: config every [0.3T, T], metrics every 60 s, device
//! info at boot and every 600 s plus app info on every change, a gzip log
//! batch every 120 s)
//! or flat out, spread over one or more controller replicas as a load
//! balancer would spread them. Per-endpoint rates, latency percentiles and
//! errors are printed live.
//!
//! Devices share a pool of keep-alive TLS connections per replica (a fleet
//! of separate sockets would measure the kernel, not the controller), but
//! every request is signed by its own device, with a fresh signature.

mod behave;
pub mod stats;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eve_proto::Message;
use eve_proto::config::{ConfigRequest, ConfigResponse};
use hyper::{Method, StatusCode};
use tokio::sync::Mutex;

use crate::device::{SimDevice, SoftwareSigner};
use crate::http::Client;
use crate::onboard::{API, FlowError, Onboarded, attest, onboard};
use behave::{App, Rng};
use stats::{Endpoint, Stats, accumulate};

/// A device's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Config poll interval T: each poll comes [0.3T, T] after the last.
    pub config: Duration,
    /// Metrics interval.
    pub metrics: Duration,
    /// Device info interval (app info is also sent on every change).
    pub info: Duration,
    /// Log batch interval.
    pub logs: Duration,
}

impl Timers {
    /// EVE's defaults: config and metrics 60 s, device info 600 s; a log
    /// batch every 120 s.
    pub const EVE: Self = Self {
        config: Duration::from_secs(60),
        metrics: Duration::from_secs(60),
        info: Duration::from_secs(600),
        logs: Duration::from_secs(120),
    };
}

/// How the fleet sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// On each device's timers.
    Cadence(Timers),
    /// Back to back on every connection, in EVE's mix of requests.
    Flat,
}

/// What to simulate.
pub struct Fleet {
    /// How many devices.
    pub devices: usize,
    /// Device API of each replica.
    pub controllers: Vec<SocketAddr>,
    /// The controller's root certificate (PEM).
    pub root_pem: String,
    /// The onboarding key and certificate on the controller's allow-list.
    pub onboarding: (SoftwareSigner, String),
    /// Serial prefix (serials are `PREFIX-000001`, ...).
    pub serial_prefix: String,
    /// Keep-alive connections per replica.
    pub connections: usize,
    /// How the fleet sends once onboarded.
    pub pace: Pace,
    /// How long it runs once onboarded.
    pub duration: Duration,
    /// Live report period (none: only the final one).
    pub report_every: Option<Duration>,
}

/// The outcome: onboarding time and per-endpoint totals.
pub struct Report {
    /// Devices onboarded.
    pub onboarded: usize,
    /// How long onboarding took.
    pub onboarding: Duration,
    /// How long the run took after onboarding.
    pub elapsed: Duration,
    /// Per endpoint.
    pub endpoints: BTreeMap<&'static str, Endpoint>,
}

impl Report {
    /// The table printed at the end (and, per window, live).
    pub fn table(endpoints: &BTreeMap<&'static str, Endpoint>, secs: f64) -> String {
        let mut s = format!(
            "{:<10} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
            "endpoint", "requests", "req/s", "p50 ms", "p99 ms", "errors"
        );
        let (mut all_ok, mut all_err) = (0, 0);
        for (name, e) in endpoints {
            all_ok += e.ok;
            all_err += e.errors;
            s.push_str(&format!(
                "{name:<10} {:>9} {:>9.1} {:>9.2} {:>9.2} {:>7}\n",
                e.ok,
                e.ok as f64 / secs.max(1e-9),
                e.latency.quantile_ms(0.5),
                e.latency.quantile_ms(0.99),
                e.errors
            ));
        }
        s.push_str(&format!(
            "{:<10} {:>9} {:>9.1} {:>9} {:>9} {:>7}\n",
            "all",
            all_ok,
            all_ok as f64 / secs.max(1e-9),
            "",
            "",
            all_err
        ));
        s
    }
}

/// A pool of keep-alive connections to one replica.
struct Replica {
    conns: Vec<Mutex<Client>>,
}

struct Shared {
    replicas: Vec<Replica>,
    stats: Stats,
    stop: AtomicBool,
    log_seq: AtomicU64,
}

impl Shared {
    /// Sends one request for device `i` (on its replica, over connection
    /// `slot`), recording it under `endpoint`.
    async fn send(
        &self,
        i: usize,
        slot: usize,
        endpoint: &'static str,
        path: &str,
        body: Bytes,
        want: &[StatusCode],
    ) -> Option<(StatusCode, Bytes)> {
        let replica = &self.replicas[i % self.replicas.len()];
        let mut c = replica.conns[slot % replica.conns.len()].lock().await;
        let start = Instant::now();
        let result = c.request(Method::POST, &format!("{API}{path}"), body).await;
        let ok = matches!(&result, Ok((s, _)) if want.contains(s));
        self.stats.record(endpoint, ok, start.elapsed());
        result.ok()
    }
}

/// One simulated device after onboarding.
struct Device {
    index: usize,
    dev: Onboarded,
    apps: Vec<App>,
    rng: Rng,
    cpu_total_s: u64,
    used_mb: u32,
}

impl Device {
    async fn post(&mut self, shared: &Shared, endpoint: &'static str, body: Vec<u8>) -> bool {
        let Ok(signed) = self.dev.sim.sign(body) else {
            return false;
        };
        let path = format!("/id/{}/{endpoint}", self.dev.uuid);
        shared
            .send(
                self.index,
                self.index,
                endpoint,
                &path,
                signed,
                &[StatusCode::CREATED],
            )
            .await
            .is_some_and(|(s, _)| s == StatusCode::CREATED)
    }

    async fn poll_config(&mut self, shared: &Shared) {
        let req = ConfigRequest {
            config_hash: self.dev.hash.clone(),
            integrity_token: self.dev.token.clone(),
        };
        let Ok(signed) = self.dev.sim.sign(req.encode_to_vec()) else {
            return;
        };
        let path = format!("/id/{}/config", self.dev.uuid);
        let want = [StatusCode::OK, StatusCode::NOT_MODIFIED];
        let Some((status, body)) = shared
            .send(self.index, self.index, "config", &path, signed, &want)
            .await
        else {
            return;
        };
        match status {
            StatusCode::OK => {
                let Some(resp) = self
                    .dev
                    .sim
                    .open(&body)
                    .ok()
                    .and_then(|p| ConfigResponse::decode(p.as_slice()).ok())
                else {
                    return;
                };
                self.dev.hash = resp.config_hash;
                self.dev.config = resp.config.unwrap_or_default();
                for app in behave::apply_config(&mut self.apps, &self.dev.config) {
                    self.post_app(shared, &app).await;
                }
            }
            // EVE attests again when the controller refuses its token.
            StatusCode::FORBIDDEN => {
                let replica = &shared.replicas[self.index % shared.replicas.len()];
                let mut c = replica.conns[self.index % replica.conns.len()].lock().await;
                if let Ok(token) = attest(&mut c, &self.dev.sim, &self.dev.uuid).await {
                    self.dev.token = token;
                }
            }
            _ => {}
        }
    }

    async fn post_app(&mut self, shared: &Shared, app: &App) {
        let msg = behave::app_info(&self.dev.uuid, app);
        self.post(shared, "info", msg.encode_to_vec()).await;
    }

    async fn post_metrics(&mut self, shared: &Shared) {
        // Booting apps are running by the next metrics tick.
        for app in behave::advance(&mut self.apps) {
            self.post_app(shared, &app).await;
        }
        self.cpu_total_s += 1 + self.rng.next() % 20;
        let step = (self.rng.next() % 41) as i64 - 20;
        self.used_mb = (i64::from(self.used_mb) + step).clamp(300, 1500) as u32;
        let msg = behave::metrics(&self.dev.uuid, &self.apps, self.cpu_total_s, self.used_mb);
        self.post(shared, "metrics", msg.encode_to_vec()).await;
    }

    async fn post_info(&mut self, shared: &Shared) {
        let msg = behave::device_info(&self.dev.uuid);
        self.post(shared, "info", msg.encode_to_vec()).await;
    }

    async fn post_logs(&mut self, shared: &Shared) {
        let seq = shared.log_seq.fetch_add(1, Ordering::Relaxed);
        self.post(shared, "newlogs", behave::log_batch(seq, 20))
            .await;
    }
}

/// One device on its timers.
async fn cadence(mut d: Device, shared: Arc<Shared>, t: Timers) {
    let start = tokio::time::Instant::now();
    // Devices booted at different times: first deadlines spread over a period.
    let mut spread = |p: Duration| start + p.mul_f64(d.rng.unit());
    let (mut next_config, mut next_metrics, mut next_info, mut next_logs) = (
        spread(t.config),
        spread(t.metrics),
        spread(t.info),
        spread(t.logs),
    );
    d.post_info(&shared).await;
    while !shared.stop.load(Ordering::Relaxed) {
        let next = next_config.min(next_metrics).min(next_info).min(next_logs);
        tokio::time::sleep_until(next).await;
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let now = tokio::time::Instant::now();
        if now >= next_config {
            d.poll_config(&shared).await;
            next_config = now + t.config.mul_f64(0.3 + 0.7 * d.rng.unit());
        }
        if now >= next_metrics {
            d.post_metrics(&shared).await;
            next_metrics += t.metrics;
        }
        if now >= next_info {
            d.post_info(&shared).await;
            next_info += t.info;
        }
        if now >= next_logs {
            d.post_logs(&shared).await;
            next_logs += t.logs;
        }
    }
}

/// Back to back: the devices of one worker in turn, in EVE's mix (per
/// 26 requests: 10 config polls, 10 metrics, 1 info, 5 log batches).
async fn flat(mut devices: Vec<Device>, shared: Arc<Shared>) {
    let mut turn = 0usize;
    while !shared.stop.load(Ordering::Relaxed) && !devices.is_empty() {
        let n = devices.len();
        let d = &mut devices[turn % n];
        match turn % 26 {
            0..10 => d.poll_config(&shared).await,
            10..20 => d.post_metrics(&shared).await,
            20 => d.post_info(&shared).await,
            _ => d.post_logs(&shared).await,
        }
        turn += 1;
    }
}

/// An onboarded fleet, ready to run.
pub struct Onboard {
    shared: Arc<Shared>,
    devices: Vec<Device>,
    workers: usize,
    /// How long onboarding took.
    pub took: Duration,
}

impl Onboard {
    /// How many devices onboarded.
    pub fn devices(&self) -> usize {
        self.devices.len()
    }
}

/// Onboards the fleet, runs it, and returns what happened.
pub async fn run(fleet: Fleet) -> Result<Report, FlowError> {
    let onboarded = onboard_all(&fleet).await?;
    Ok(drive(&fleet, onboarded).await)
}

/// Onboards every device of `fleet`.
pub async fn onboard_all(fleet: &Fleet) -> Result<Onboard, FlowError> {
    let conns = fleet.connections.max(1);
    let mut replicas = Vec::new();
    for addr in &fleet.controllers {
        let mut pool = Vec::new();
        for _ in 0..conns {
            pool.push(Mutex::new(Client::tls(*addr, &fleet.root_pem, &[])?));
        }
        replicas.push(Replica { conns: pool });
    }
    let shared = Arc::new(Shared {
        replicas,
        stats: Stats::default(),
        stop: AtomicBool::new(false),
        log_seq: AtomicU64::new(0),
    });
    let mut c = Client::tls(fleet.controllers[0], &fleet.root_pem, &[])?;
    let (_, certs) = c
        .request(Method::GET, &format!("{API}/certs"), Bytes::new())
        .await?;
    let certs = Arc::new(certs);

    // Onboarding: one worker per connection, each with its share.
    let onboarding = Instant::now();
    let workers = conns * fleet.controllers.len();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (shared, certs) = (shared.clone(), certs.clone());
        let (root, onboard_id, prefix) = (
            fleet.root_pem.clone(),
            fleet.onboarding.clone(),
            fleet.serial_prefix.clone(),
        );
        let total = fleet.devices;
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (w..total).step_by(workers) {
                let sim = SimDevice::new(&format!("{prefix}-{i:06}"), onboard_id.clone())?;
                let replica = &shared.replicas[i % shared.replicas.len()];
                let mut c = replica.conns[i % replica.conns.len()].lock().await;
                let dev = onboard(&mut c, sim, &certs, &root).await?;
                let mut rng = Rng::new();
                let used_mb = 400 + (rng.next() % 400) as u32;
                let mut d = Device {
                    index: i,
                    dev,
                    apps: Vec::new(),
                    rng,
                    cpu_total_s: 0,
                    used_mb,
                };
                behave::apply_config(&mut d.apps, &d.dev.config);
                out.push(d);
            }
            Ok::<_, FlowError>(out)
        }));
    }
    let mut devices = Vec::with_capacity(fleet.devices);
    for t in tasks {
        match t.await {
            Ok(done) => devices.extend(done?),
            Err(e) => {
                return Err(FlowError::Decode(if e.is_panic() {
                    "onboarding panicked"
                } else {
                    "onboarding stopped"
                }));
            }
        }
    }
    shared.stats.take();
    Ok(Onboard {
        shared,
        devices,
        workers,
        took: onboarding.elapsed(),
    })
}

/// Runs an onboarded fleet for `fleet.duration`.
pub async fn drive(fleet: &Fleet, onboarded: Onboard) -> Report {
    let Onboard {
        shared,
        devices,
        workers,
        took,
    } = onboarded;
    let count = devices.len();
    let start = Instant::now();
    let mut running = Vec::new();
    match fleet.pace {
        Pace::Cadence(timers) => {
            for d in devices {
                running.push(tokio::spawn(cadence(d, shared.clone(), timers)));
            }
        }
        Pace::Flat => {
            let mut groups: Vec<Vec<Device>> = (0..workers).map(|_| Vec::new()).collect();
            for d in devices {
                let w = d.index % workers;
                groups[w].push(d);
            }
            for g in groups {
                running.push(tokio::spawn(flat(g, shared.clone())));
            }
        }
    }
    let mut totals = BTreeMap::new();
    let deadline = start + fleet.duration;
    let mut last = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = fleet
            .report_every
            .map_or(deadline - now, |p| p.min(deadline - now));
        tokio::time::sleep(wait).await;
        if fleet.report_every.is_some() {
            let window = shared.stats.take();
            let secs = last.elapsed().as_secs_f64();
            last = Instant::now();
            println!(
                "-- {:.0} s: last {secs:.1} s\n{}",
                start.elapsed().as_secs_f64(),
                Report::table(&window, secs)
            );
            accumulate(&mut totals, &window);
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    for t in running {
        t.abort();
    }
    accumulate(&mut totals, &shared.stats.take());
    Report {
        onboarded: count,
        onboarding: took,
        elapsed,
        endpoints: totals,
    }
}
