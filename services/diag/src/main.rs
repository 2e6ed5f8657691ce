//! The diag service: what an installer looks at when a device does not come
//! online. Like EVE's diag it walks the path to the controller one step at
//! a time and prints a verdict and the time taken for each:
//!
//! 1. `link`: a virtio-net device is there and up;
//! 2. `dhcp`: an IPv4 address (or the static `ip=` from the command line);
//! 3. `dns`: the controller's name resolves (static `hosts=` entries first);
//! 4. `tcp`: the controller's port accepts a connection;
//! 5. `tls`: a TLS 1.3 handshake where the controller proves its identity
//!    with a certificate chaining to the pinned root, valid now, for its name;
//! 6. `ping`: `GET /api/v2/edgedevice/ping` answers 200.
//!
//! A step that cannot run because an earlier one failed is reported as
//! skipped, so the first FAIL is the place to look.
//!
//! The controller comes from the CONFIG partition (the virtio disk with
//! serial `config`: `server`, `root-certificate.pem`, `hosts`), as on an
//! EVE device, or from the command line: `server=HOST[:PORT]` and
//! `root=BASE64` (the root certificate, DER or PEM, base64 encoded so it
//! fits on a command line), which take precedence. `diag.interval=SECONDS`
//! repeats the walk forever, as the service does on a running node,
//! instead of exiting with the verdict.
//!
//! On a node each verdict is published as [`topics::DiagReport`], and
//! zedagent's onboarding ([`topics::OnboardStatus`]) is printed as it
//! changes, as EVE's diag shows it.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::{
    format,
    string::{String, ToString},
    vec::Vec,
};
use core::{cell::RefCell, time::Duration};

use evehttp::{Request, Target};
use evehttps::{FetchError, Fetched, TlsSession};
use evetls::RootStore;
use hal::clock::Instant;
use net::{IpEndpoint, Ipv4Address, Stack};
use runtime::service::{self, Change, Service};
use topics::diag::{Check, Outcome, Step, Verdict};
use topics::{DiagReport, OnboardStatus};

runtime::entry!("diag", main);

/// Bound on every network step, as EVE's diag bounds its probes.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
const PING_PATH: &str = "/api/v2/edgedevice/ping";

fn main() -> i32 {
    let params = runtime::cmdline();
    let interval = params
        .get("diag.interval")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut walk = Walk::default();
    let Some(controller) = walk.step(Check::Config, || {
        let controller = Controller::find(&params)?;
        let detail = format!(
            "controller {} from {}",
            controller.target.authority(),
            controller.source
        );
        Ok((controller, detail))
    }) else {
        walk.skip(&[
            Check::Link,
            Check::Dhcp,
            Check::Dns,
            Check::Tcp,
            Check::Tls,
            Check::Ping,
        ]);
        return finish(walk.report(""));
    };
    let authority = controller.target.authority();
    let Some(mut stack) = walk.step(Check::Link, || {
        let stack = Stack::from_boot(runtime::boot_info()).map_err(|e| format!("{e}"))?;
        let mac = stack.mac();
        let mac = format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
        );
        Ok((stack, format!("virtio-net {mac}")))
    }) else {
        walk.skip(&[Check::Dhcp, Check::Dns, Check::Tcp, Check::Tls, Check::Ping]);
        return finish(walk.report(&authority));
    };
    for (name, addr) in &controller.hosts {
        stack.add_host(name, *addr);
    }
    let stack = RefCell::new(stack);
    let mut session = controller.session;
    // The config and link steps hold for every later walk.
    let found = walk.steps.clone();
    let mut walks = 0;
    let mut service = Service::new();
    // The stack's own timers (retransmissions, DHCP renewals) bound the sleep.
    service.poller(|ctl| {
        let mut stack = stack.borrow_mut();
        let progress = stack.poll();
        if let Some(at) = stack.poll_at() {
            ctl.wake_by(at);
        }
        progress
    });
    // zedagent republishes its status as its other fields change (times,
    // counters): only a new phase or UUID is news worth a log line.
    let mut onboarding = None;
    service.on::<OnboardStatus>(move |_, _, change| {
        if let Change::Created(report) | Change::Modified(report) = change {
            let now = (report.phase(), report.uuid.clone());
            if onboarding.as_ref() != Some(&now) {
                log::info!("onboarding: {:?} uuid {}", now.0, now.1);
                onboarding = Some(now);
            }
        }
    });
    service.repeat(Duration::ZERO, |ctl| {
        walk.steps.clone_from(&found);
        run_walk(
            &mut walk,
            &mut stack.borrow_mut(),
            &controller.target,
            &mut session,
        );
        walks += 1;
        let mut verdict = walk.report(&authority);
        verdict.walks = walks;
        publish(&verdict);
        match interval {
            None => {
                ctl.stop(finish(verdict));
                Duration::MAX
            }
            Some(every) => {
                log::info!("diag: next check in {} s", every.as_secs());
                every
            }
        }
    });
    service.run()
}

/// Publishes the walk's verdict on the bus (a node without one skips it).
fn publish(verdict: &Verdict) {
    if runtime::bus::present()
        && let Err(e) = service::publish::<DiagReport>(DiagReport::KEY, verdict)
    {
        log::warn!("publishing the report: {e}");
    }
}

/// What diag talks to.
struct Controller {
    target: Target,
    session: TlsSession,
    /// Static name overrides (the CONFIG partition's `hosts`).
    hosts: Vec<(String, Ipv4Address)>,
    source: &'static str,
}

impl Controller {
    /// From the command line if it names a server, else from the CONFIG
    /// partition.
    fn find(params: &runtime::Cmdline<'_>) -> Result<Controller, String> {
        if let Some(server) = params.get("server") {
            let root = params
                .get("root")
                .ok_or("server= without root= (the controller's root certificate)")?;
            let roots = evehttps::roots_from_base64(root).map_err(|e| format!("root=: {e}"))?;
            return Controller::new(server, roots, Vec::new(), "the command line");
        }
        let disk = hal::block::open("config").map_err(|e| {
            format!("no server= on the command line and no CONFIG partition ({e:?})")
        })?;
        let factory = configpart::read_factory_config(disk)
            .map_err(|e| format!("CONFIG partition: {e:?}"))?;
        let roots = RootStore::from_pem(factory.root_certificate_pem.as_bytes())
            .map_err(|e| format!("root-certificate.pem: {e:?}"))?;
        let hosts = factory
            .hosts
            .iter()
            .filter_map(|(name, addr)| match addr {
                core::net::IpAddr::V4(v4) => Some((name.clone(), *v4)),
                core::net::IpAddr::V6(_) => None,
            })
            .collect();
        Controller::new(&factory.server, roots, hosts, "the CONFIG partition")
    }

    fn new(
        server: &str,
        roots: RootStore,
        hosts: Vec<(String, Ipv4Address)>,
        source: &'static str,
    ) -> Result<Controller, String> {
        let target = Target::parse_server(server).map_err(|e| format!("server {server:?}: {e}"))?;
        let session =
            TlsSession::for_target(roots, &target).map_err(|e| format!("{}: {e}", target.host))?;
        Ok(Controller {
            target,
            session,
            hosts,
            source,
        })
    }
}

/// One pass over DHCP, DNS, TCP, TLS and ping.
fn run_walk(walk: &mut Walk, stack: &mut Stack, target: &Target, session: &mut TlsSession) {
    let Some(()) = walk.step(Check::Dhcp, || {
        let config = stack
            .wait_for_address(STEP_TIMEOUT)
            .map_err(|e| format!("{e}"))?;
        Ok((
            (),
            format!(
                "{} gateway {:?} dns {:?}",
                config.address, config.gateway, config.dns
            ),
        ))
    }) else {
        return walk.skip(&[Check::Dns, Check::Tcp, Check::Tls, Check::Ping]);
    };
    let Some(peer) = walk.step(Check::Dns, || {
        let peer = evehttps::resolve(stack, target, STEP_TIMEOUT)
            .map_err(|e| format!("{}: {e}", target.host))?;
        Ok((peer, format!("{} is {}", target.host, peer.addr)))
    }) else {
        return walk.skip(&[Check::Tcp, Check::Tls, Check::Ping]);
    };
    let Some(()) = walk.step(Check::Tcp, || tcp_reach(stack, peer)) else {
        return walk.skip(&[Check::Tls, Check::Ping]);
    };
    let request = Request::get(PING_PATH);
    let started = Instant::now();
    let fetched = evehttps::fetch(
        stack,
        target,
        Some(session),
        &request,
        STEP_TIMEOUT,
        &mut |_| {},
    );
    tls_and_ping(walk, target, fetched, started);
}

/// Records the TLS and ping steps of one HTTPS request.
fn tls_and_ping(
    walk: &mut Walk,
    target: &Target,
    fetched: Result<Fetched, FetchError>,
    started: Instant,
) {
    match fetched {
        Err(FetchError::Tls(e)) => {
            walk.record(Check::Tls, Err(format!("{}: {e}", target.host)), started);
            walk.skip(&[Check::Ping]);
        }
        Err(e @ (FetchError::Resolve(_) | FetchError::Connect(_) | FetchError::NoTlsConfig)) => {
            walk.record(Check::Tls, Err(format!("{e}")), started);
            walk.skip(&[Check::Ping]);
        }
        Err(FetchError::Http(e)) => {
            walk.record(
                Check::Tls,
                Ok(format!("{} proved its identity", target.host)),
                started,
            );
            walk.record(Check::Ping, Err(format!("{PING_PATH}: {e}")), started);
        }
        Ok(fetched) => {
            let handshake = fetched.timings.handshake.unwrap_or_default();
            walk.push(
                Check::Tls,
                Ok(format!("{} proved its identity, TLS 1.3", target.host)),
                handshake,
            );
            let took = fetched.timings.response_head + fetched.timings.body;
            let detail = format!("{PING_PATH} answered {}", fetched.status);
            let result = if fetched.status == 200 {
                Ok(detail)
            } else {
                Err(format!("{detail}, expected 200"))
            };
            walk.push(Check::Ping, result, took);
        }
    }
}

/// Connects and closes: the port is reachable.
fn tcp_reach(stack: &mut Stack, peer: IpEndpoint) -> Result<((), String), String> {
    let handle = stack
        .tcp_connect(peer, STEP_TIMEOUT)
        .map_err(|e| format!("{peer}: {e}"))?;
    stack.tcp_close(handle, Duration::from_millis(500));
    Ok(((), format!("{peer} accepts connections")))
}

/// The steps of a walk as they are decided: each printed at once
/// (`PASS name: detail (N us)`, `FAIL ...`, `SKIP ...`), and kept for the
/// verdict.
#[derive(Default)]
struct Walk {
    steps: Vec<Step>,
}

impl Walk {
    /// Runs one step and records its verdict with the time it took.
    fn step<T>(
        &mut self,
        check: Check,
        f: impl FnOnce() -> Result<(T, String), String>,
    ) -> Option<T> {
        let started = Instant::now();
        match f() {
            Ok((value, detail)) => {
                self.record(check, Ok(detail), started);
                Some(value)
            }
            Err(why) => {
                self.record(check, Err(why), started);
                None
            }
        }
    }

    fn record(&mut self, check: Check, result: Result<String, String>, started: Instant) {
        self.push(check, result, started.elapsed());
    }

    fn push(&mut self, check: Check, result: Result<String, String>, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let name = name(check);
        let (outcome, detail) = match result {
            Ok(detail) => {
                log::info!("PASS {name}: {detail} ({micros} us)");
                (Outcome::Pass, detail)
            }
            Err(why) => {
                log::error!("FAIL {name}: {why} ({micros} us)");
                (Outcome::Fail, why)
            }
        };
        self.steps.push(Step {
            check: check as i32,
            outcome: outcome as i32,
            detail,
            micros,
        });
    }

    /// Records the steps that could not run.
    fn skip(&mut self, checks: &[Check]) {
        for &check in checks {
            log::warn!("SKIP {}: an earlier step failed", name(check));
            self.steps.push(Step {
                check: check as i32,
                outcome: Outcome::Skip as i32,
                detail: String::from("an earlier step failed"),
                micros: 0,
            });
        }
    }

    fn report(&self, controller: &str) -> Verdict {
        Verdict {
            reachable: self.steps.iter().all(|s| s.outcome() == Outcome::Pass),
            controller: controller.to_string(),
            steps: self.steps.clone(),
            walks: 1,
            undecodable_values: service::undecodable_values(),
        }
    }
}

/// The step's name in the console lines.
fn name(check: Check) -> &'static str {
    match check {
        Check::Unspecified => "unspecified",
        Check::Config => "config",
        Check::Link => "link",
        Check::Dhcp => "dhcp",
        Check::Dns => "dns",
        Check::Tcp => "tcp",
        Check::Tls => "tls",
        Check::Ping => "ping",
    }
}

/// Prints the overall verdict and returns the exit status.
fn finish(verdict: Verdict) -> i32 {
    if verdict.reachable {
        log::info!("diag: the controller is reachable");
    } else {
        log::error!("diag: the controller is NOT reachable; see the first FAIL above");
    }
    runtime::status(verdict.reachable)
}
