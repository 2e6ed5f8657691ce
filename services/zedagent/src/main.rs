//! zedagent: brings the device under its controller's management.
//!
//! At boot it reads the CONFIG partition (the controller's address and
//! root certificate, the onboarding certificate), opens its state volume,
//! gets the device key (in the host's TPM through the bus when the node has
//! one, else a software key on the state volume, as EVE does without a
//! TPM), brings the network up and hands everything to the portable
//! `eveagent` state machine, which onboards and then runs the config, info,
//! metrics and logs loops.
//!
//! On the bus it publishes the accepted config (`edge-config`, key
//! `device`: the `EdgeDevConfig` protobuf) for the node's other services,
//! and its own status (`onboard-status`, key `zedagent`: `key=value` lines)
//! for the host's status display; it subscribes to the log stream (`@log`)
//! and forwards every service's records to the controller.
//!
//! Console stamps (`@@ boot-timer STAGE NS`, see `link.rs`) mark
//! `registered`, `config` (first config received) and `info` (first device
//! info accepted) for the onboarding benchmark.
#![no_std]
#![no_main]

extern crate alloc;

mod link;
mod persist;
mod platform;
mod tpm;

use alloc::{
    boxed::Box,
    format,
    string::{String, ToString},
};
use core::time::Duration;

use configpart::FactoryConfig;
use eve_proto::Message;
use eveagent::io::{Clock, Persist, Rng};
use eveagent::{
    Agent, Bootstrap, Deps, DeviceKeySource, Event as AgentEvent, Level, LogRecord, Onboarding,
};
use evebus::Event as BusEvent;
use evehttp::Target;
use evehttps::TlsSession;
use evetls::{Csprng, RootStore};
use hal::clock::Instant;
use net::Stack;

use link::ControllerLink;
use persist::StateVolume;
use platform::Machine;
use tpm::TpmKey;

runtime::entry!("zedagent", main);

const TOPIC_CONFIG: &str = "edge-config";
const TOPIC_STATUS: &str = "onboard-status";
/// How often the status is refreshed and the bus serviced while idle.
const STATUS_EVERY: Duration = Duration::from_secs(1);
const BOOT_COUNTER: &str = "boot-counter";
const ADDRESS_WAIT: Duration = Duration::from_secs(10);

fn main() -> i32 {
    match run() {
        Ok(never) => match never {},
        Err(why) => {
            log::error!("zedagent cannot start: {why}");
            guest_abi::EXIT_FAILURE
        }
    }
}

enum Never {}

fn run() -> Result<Never, String> {
    let factory = read_config_partition()?;
    let state = hal::block::open("state").map_err(|e| format!("state volume: {e:?}"))?;
    let storage_mb =
        (blockdev::BlockDevice::block_count(&state) * blockdev::BLOCK_SIZE as u64) >> 20;
    let mut persist =
        StateVolume::open(state).map_err(|e| format!("state volume unusable: {e:?}"))?;
    let (used, capacity) = persist.usage();
    log::info!("state volume: {used} of {capacity} bytes in use");
    let restart_counter = count_boot(&mut persist)?;
    let key_source = device_key_source();
    let target = Target::parse_server(&factory.server).map_err(|e| format!("server file: {e}"))?;
    let roots = RootStore::from_pem(factory.root_certificate_pem.as_bytes())
        .map_err(|e| format!("root-certificate.pem: {e:?}"))?;
    let tls =
        TlsSession::for_target(roots, &target).map_err(|e| format!("{}: {e}", target.host))?;
    let mut stack = Stack::from_boot(runtime::boot_info()).map_err(|e| format!("network: {e}"))?;
    // The first exchange would fail (and back off a second) without an
    // address; a device without one keeps trying in the agent's backoff.
    if let Err(e) = stack.wait_for_address(ADDRESS_WAIT) {
        log::warn!(
            "no address after {} s ({e}); retrying in the background",
            ADDRESS_WAIT.as_secs()
        );
    }
    for (name, addr) in &factory.hosts {
        if let core::net::IpAddr::V4(v4) = addr {
            stack.add_host(name, *v4);
        }
    }
    let onboarding = match (&factory.onboard_cert_pem, &factory.onboard_key_pem) {
        (Some(cert), Some(key)) => Some(
            Onboarding::from_pem(cert.as_bytes(), key.as_bytes())
                .map_err(|e| format!("onboarding certificate: {e:?}"))?,
        ),
        _ => None,
    };
    let machine = Machine {
        serial: runtime::cmdline().get("serial").unwrap_or("").to_string(),
        restart_counter,
        storage_mb,
    };
    let bootstrap = Bootstrap {
        root_cert_pem: factory.root_certificate_pem.clone().into_bytes(),
        onboarding,
        soft_serial: factory.soft_serial.clone().unwrap_or_default(),
    };
    let deps = Deps {
        clock: Box::new(MonotonicClock),
        rng: Box::new(seeded_rng()?),
        persist: Box::new(persist),
        platform: Box::new(machine),
    };
    let mut agent =
        Agent::new(bootstrap, key_source, deps).map_err(|e| format!("device identity: {e:?}"))?;
    if runtime::bus::present()
        && let Err(e) = runtime::bus::subscribe(evebus::LOG_TOPIC)
    {
        log::warn!("log stream: {e}");
    }
    let mut link = ControllerLink::new(stack, target, tls);
    let mut published_status = String::new();
    loop {
        let wake = agent.poll(&mut link);
        for event in agent.take_events() {
            handle_agent_event(&agent, event);
        }
        let status = status_text(&agent);
        if status != published_status && runtime::bus::present() {
            match runtime::bus::publish(TOPIC_STATUS, "zedagent", status.as_bytes()) {
                Ok(()) => published_status = status,
                Err(e) => log::warn!("publishing status: {e}"),
            }
        }
        wait_until(&mut agent, &mut link.stack, wake);
    }
}

fn read_config_partition() -> Result<FactoryConfig, String> {
    let disk = hal::block::open("config").map_err(|e| format!("CONFIG partition: {e:?}"))?;
    configpart::read_factory_config(disk).map_err(|e| format!("CONFIG partition: {e:?}"))
}

/// Counts this boot on the state volume (EVE's restart counter).
fn count_boot(persist: &mut StateVolume<hal::block::VirtioBlock>) -> Result<u32, String> {
    let previous = persist
        .read(BOOT_COUNTER)
        .map_err(|e| format!("state volume: {e:?}"))?
        .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
        .map_or(0, u32::from_le_bytes);
    let this = previous.wrapping_add(1);
    persist
        .write(BOOT_COUNTER, &this.to_le_bytes())
        .map_err(|e| format!("state volume: {e:?}"))?;
    Ok(this)
}

/// The TPM through the host when the node grants one, else a software key.
fn device_key_source() -> DeviceKeySource {
    if !runtime::bus::present() {
        log::info!("no node bus: device key in software on the state volume");
        return DeviceKeySource::Software;
    }
    match TpmKey::create() {
        Ok(key) => {
            log::info!("device key held by the host's TPM");
            DeviceKeySource::External(Box::new(key))
        }
        Err(e) => {
            log::warn!("no TPM device key ({e}): device key in software on the state volume");
            DeviceKeySource::Software
        }
    }
}

fn seeded_rng() -> Result<CsprngRng, String> {
    let mut seed = [0u8; 32];
    hal::entropy::fill(&mut seed, false).map_err(|e| format!("entropy: {e:?}"))?;
    Ok(CsprngRng(Csprng::from_entropy(seed)))
}

struct CsprngRng(Csprng);

impl Rng for CsprngRng {
    fn fill(&mut self, buf: &mut [u8]) {
        rand_core::RngCore::fill_bytes(&mut self.0, buf);
    }
}

struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        Instant::now().as_nanos() / 1_000_000
    }

    fn unix_ms(&self) -> u64 {
        hal::clock::unix_nanos().map_or_else(|| self.now_ms(), |ns| ns / 1_000_000)
    }
}

fn handle_agent_event(agent: &Agent, event: AgentEvent) {
    match event {
        AgentEvent::ConfigAccepted { from_checkpoint } => {
            let Some(config) = agent.config() else { return };
            log::info!(
                "config {} accepted{}",
                agent.status().config_hash,
                if from_checkpoint {
                    " from the checkpoint"
                } else {
                    ""
                }
            );
            if runtime::bus::present()
                && let Err(e) =
                    runtime::bus::publish(TOPIC_CONFIG, "device", &config.encode_to_vec())
            {
                log::warn!("publishing the config: {e}");
            }
        }
        AgentEvent::SettingsChanged(settings) => {
            log::info!("settings now {settings:?}");
        }
        AgentEvent::Onboarded(uuid) => log::info!("onboarded as {uuid}"),
    }
}

/// The status other tools show, as `key=value` lines.
fn status_text(agent: &Agent) -> String {
    let s = agent.status();
    let ms = |t: Option<u64>| t.map_or(String::from("never"), |t| format!("{t}"));
    format!(
        "state={:?}\nuuid={}\nconfig_hash={}\nregister={:?}\nattest={:?}\nlast_config_ms={}\nlast_info_ms={}\nlast_metrics_ms={}\nlog_batches_queued={}\nheap_peak={}\n",
        s.phase,
        s.uuid.unwrap_or(""),
        s.config_hash,
        s.register,
        s.attest,
        ms(s.last_config_ms),
        ms(s.last_info_ms),
        ms(s.last_metrics_ms),
        s.log_batches_queued,
        runtime::heap_stats().peak,
    )
}

/// Services the network and the bus until `wake` (monotonic ms), passing
/// other services' log records to the agent as they come.
fn wait_until(agent: &mut Agent, stack: &mut Stack, wake: u64) {
    let started = Instant::now();
    loop {
        let now_ms = Instant::now().as_nanos() / 1_000_000;
        if now_ms >= wake || started.elapsed() >= STATUS_EVERY {
            return;
        }
        stack.poll();
        runtime::bus::pump();
        while let Some(event) = runtime::bus::next_event() {
            if let BusEvent::LogRecord {
                source,
                level,
                unix_ns,
                target,
                message,
            } = event
            {
                agent.log(LogRecord {
                    level: log_level(level),
                    source,
                    content: message,
                    unix_ms: unix_ns / 1_000_000,
                    filename: target,
                    function: String::new(),
                });
            }
        }
        hal::relax();
    }
}

fn log_level(level: evebus::Level) -> Level {
    match level {
        evebus::Level::Error => Level::Error,
        evebus::Level::Warn => Level::Warning,
        evebus::Level::Info => Level::Info,
        evebus::Level::Debug => Level::Debug,
        evebus::Level::Trace => Level::Trace,
    }
}
