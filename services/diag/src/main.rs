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
#![no_std]
#![no_main]

extern crate alloc;

use alloc::{
    format,
    string::{String, ToString},
    vec::Vec,
};
use core::time::Duration;

use evehttp::{Request, Target};
use evehttps::{FetchError, Fetched, TlsSession};
use evetls::RootStore;
use hal::clock::Instant;
use net::{IpEndpoint, Ipv4Address, Stack};

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
    let Some(controller) = step("config", || {
        let controller = Controller::find(&params)?;
        let detail = format!(
            "controller {} from {}",
            controller.target.authority(),
            controller.source
        );
        Ok((controller, detail))
    }) else {
        finish_walk(&["link", "dhcp", "dns", "tcp", "tls", "ping"]);
        return finish(false);
    };
    let Some(mut stack) = step("link", || {
        let stack = Stack::from_boot(runtime::boot_info()).map_err(|e| format!("{e}"))?;
        let mac = stack.mac();
        let mac = format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
        );
        Ok((stack, format!("virtio-net {mac}")))
    }) else {
        finish_walk(&["dhcp", "dns", "tcp", "tls", "ping"]);
        return finish(false);
    };
    for (name, addr) in &controller.hosts {
        stack.add_host(name, *addr);
    }
    let mut session = controller.session;
    if runtime::bus::present()
        && let Err(e) = runtime::bus::subscribe(ONBOARD_TOPIC)
    {
        log::warn!("onboarding status: {e}");
    }
    loop {
        let ok = walk(&mut stack, &controller.target, &mut session);
        report(ok);
        match interval {
            None => return finish(ok),
            Some(every) => {
                log::info!("diag: next check in {} s", every.as_secs());
                let until = Instant::now().saturating_add(every);
                while Instant::now() < until {
                    stack.poll();
                    show_onboarding();
                    hal::idle();
                }
            }
        }
    }
}

/// zedagent's status, shown as it changes, as EVE's diag shows onboarding.
const ONBOARD_TOPIC: &str = "onboard-status";
/// Where the verdict goes for the rest of the node.
const REPORT_TOPIC: &str = "diag-report";

/// Publishes the walk's verdict on the bus (a node without one skips it).
fn report(ok: bool) {
    if !runtime::bus::present() {
        return;
    }
    let verdict: &[u8] = if ok {
        b"reachable=true\n"
    } else {
        b"reachable=false\n"
    };
    if let Err(e) = runtime::bus::publish(REPORT_TOPIC, "controller", verdict) {
        log::warn!("publishing the report: {e}");
    }
}

/// Prints zedagent's state and UUID when they change.
fn show_onboarding() {
    while let Some(event) = runtime::bus::next_event() {
        if let evebus::Event::Created { topic, value, .. }
        | evebus::Event::Modified { topic, value, .. } = event
            && topic == ONBOARD_TOPIC
        {
            let text = String::from_utf8_lossy(&value);
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or("?")
                    .to_string()
            };
            log::info!("onboarding: {} uuid {}", field("state"), field("uuid"));
        }
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

/// One pass over DHCP, DNS, TCP, TLS and ping; true if all passed.
fn walk(stack: &mut Stack, target: &Target, session: &mut TlsSession) -> bool {
    let Some(()) = step("dhcp", || {
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
        return finish_walk(&["dns", "tcp", "tls", "ping"]);
    };
    let Some(peer) = step("dns", || {
        let peer = evehttps::resolve(stack, target, STEP_TIMEOUT)
            .map_err(|e| format!("{}: {e}", target.host))?;
        Ok((peer, format!("{} is {}", target.host, peer.addr)))
    }) else {
        return finish_walk(&["tcp", "tls", "ping"]);
    };
    let Some(()) = step("tcp", || tcp_reach(stack, peer)) else {
        return finish_walk(&["tls", "ping"]);
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
    report_tls_and_ping(target, fetched, started)
}

/// Reports the TLS and ping steps of one HTTPS request.
fn report_tls_and_ping(
    target: &Target,
    fetched: Result<Fetched, FetchError>,
    started: Instant,
) -> bool {
    match fetched {
        Err(FetchError::Tls(e)) => {
            verdict("tls", Err(format!("{}: {e}", target.host)), started);
            finish_walk(&["ping"])
        }
        Err(e @ (FetchError::Resolve(_) | FetchError::Connect(_) | FetchError::NoTlsConfig)) => {
            verdict("tls", Err(format!("{e}")), started);
            finish_walk(&["ping"])
        }
        Err(FetchError::Http(e)) => {
            verdict("ping", Err(format!("{PING_PATH}: {e}")), started);
            false
        }
        Ok(fetched) => {
            let handshake = fetched.timings.handshake.unwrap_or_default();
            log::info!(
                "PASS tls: {} proved its identity, TLS 1.3 ({} us)",
                target.host,
                handshake.as_micros()
            );
            let took = fetched.timings.response_head + fetched.timings.body;
            let detail = format!("{PING_PATH} answered {}", fetched.status);
            if fetched.status == 200 {
                log::info!("PASS ping: {detail} ({} us)", took.as_micros());
                true
            } else {
                log::error!(
                    "FAIL ping: {detail}, expected 200 ({} us)",
                    took.as_micros()
                );
                false
            }
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

/// Runs one step and prints its verdict with the time it took.
fn step<T>(name: &str, f: impl FnOnce() -> Result<(T, String), String>) -> Option<T> {
    let started = Instant::now();
    match f() {
        Ok((value, detail)) => {
            verdict(name, Ok(detail), started);
            Some(value)
        }
        Err(why) => {
            verdict(name, Err(why), started);
            None
        }
    }
}

fn verdict(name: &str, result: Result<String, String>, started: Instant) {
    let us = started.elapsed().as_micros();
    match result {
        Ok(detail) => log::info!("PASS {name}: {detail} ({us} us)"),
        Err(why) => log::error!("FAIL {name}: {why} ({us} us)"),
    }
}

/// Reports the steps that could not run; the walk failed.
fn finish_walk(skipped: &[&str]) -> bool {
    for name in skipped {
        log::warn!("SKIP {name}: an earlier step failed");
    }
    false
}

/// Prints the overall verdict and returns the exit status.
fn finish(ok: bool) -> i32 {
    if ok {
        log::info!("diag: the controller is reachable");
    } else {
        log::error!("diag: the controller is NOT reachable; see the first FAIL above");
    }
    runtime::status(ok)
}
