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
//! On the bus it publishes the accepted config ([`topics::EdgeConfig`]:
//! EVE's `EdgeDevConfig`) for the node's other services, its content as
//! tables (datastores with their credentials opened, content trees,
//! volumes, content settings, then the app instances: see `content.rs`),
//! the network instances for zedrouter (`network.rs`), and its own status
//! ([`topics::OnboardStatus`]) for the host's status display and diag; it
//! subscribes to the log stream (`@log`) and forwards every service's
//! records to the controller, and to volumemgr's reports (content trees,
//! volumes, blobs, disk use) and zedrouter's (network instances), which it
//! sends as EVE does. It publishes the config's global items that other
//! services act on ([`topics::ConfigItems`]), reports nodeagent's
//! `node-status` (maintenance mode, command counters) and the host's boot
//! record (`power.boot-reason`, `bootreason.rs`) in `ZInfoDevice`.
//!
//! Console stamps (`@@ boot-timer STAGE NS`, see `link.rs`) mark
//! `registered`, `config` (first config received) and `info` (first device
//! info accepted) for the onboarding benchmark.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod baseos;
mod bootreason;
mod content;
mod link;
mod network;
mod persist;
mod platform;
mod tpm;

use alloc::{
    boxed::Box,
    format,
    rc::Rc,
    string::{String, ToString},
};
use core::{cell::RefCell, time::Duration};

use configpart::FactoryConfig;
use eveagent::ContentInfo;
use eveagent::io::{Clock, Persist, Rng};
use eveagent::{
    Agent, AttestStatus, Bootstrap, Deps, DeviceKeySource, Event as AgentEvent, Level, LogRecord,
    Onboarding, Phase, RegisterStatus,
};
use evehttp::Target;
use evehttps::TlsSession;
use evetls::{Csprng, RootStore};
use net::Stack;
use runtime::service::{self, Change, Service};
use topics::facts::Facts;
use topics::onboard::{self, Report};
use topics::{
    AppLogs, AppMetrics, AppStatus, BaseOsStatus, BlobStatus, ConfigItems, ContentTreeStatus,
    ContentUsage, DeviceFacts, EdgeConfig, FlowLog, NetworkInstanceStatus, NetworkMetrics,
    NodeStatus, OnboardStatus, VolumeStatus,
};

use content::ContentPublisher;
use network::NetworkPublisher;

use link::ControllerLink;
use persist::StateVolume;
use platform::Machine;
use tpm::{TpmEcdh, TpmKey, TpmQuoter};

runtime::entry!("zedagent", main);

/// The longest the agent sleeps: its status is refreshed at least this
/// often.
const STATUS_EVERY: Duration = Duration::from_secs(1);
const BOOT_COUNTER: &str = "boot-counter";
const ADDRESS_WAIT: Duration = Duration::from_secs(10);

fn main() -> i32 {
    let host_facts = Rc::new(RefCell::new(None));
    match setup(&host_facts) {
        Ok((agent, link)) => serve(agent, link, &host_facts),
        Err(why) => {
            log::error!("zedagent cannot start: {why}");
            guest_abi::EXIT_FAILURE
        }
    }
}

/// Runs the agent on the service loop: the network stack polled, other
/// services' log records and the host's facts taken as they come, and the
/// agent run when it is due (at least every [`STATUS_EVERY`], when its
/// status is published if it changed).
fn serve(agent: Agent, link: ControllerLink, host_facts: &RefCell<Option<Facts>>) -> i32 {
    let agent = RefCell::new(agent);
    let link = RefCell::new(link);
    let mut published = None;
    let mut published_items = None;
    let mut content = ContentPublisher::default();
    let mut network = NetworkPublisher::default();
    let mut service = Service::new();
    // The stack's own timers (retransmissions, DHCP renewals) bound the sleep.
    service.poller(|ctl| {
        let stack = &mut link.borrow_mut().stack;
        let progress = stack.poll();
        if let Some(at) = stack.poll_at() {
            ctl.wake_by(at);
        }
        progress
    });
    service.on_log(|_, record| {
        agent.borrow_mut().log(LogRecord {
            level: log_level(record.level),
            source: record.source,
            content: record.message,
            unix_ms: record.unix_ns / 1_000_000,
            filename: record.target,
            function: String::new(),
        })
    });
    service.on::<DeviceFacts>(|_, _, change| *host_facts.borrow_mut() = change.current());
    // baseosmgr's partitions replace the host's in the device info.
    service.on::<BaseOsStatus>(|_, _, change| {
        if let Change::Created(list) | Change::Modified(list) = change {
            agent.borrow_mut().set_base_os(list.partitions);
        }
    });
    // nodeagent's maintenance mode and command counters, for the device info.
    service.on::<NodeStatus>(|_, _, change| {
        if let Change::Created(node) | Change::Modified(node) = change {
            agent.borrow_mut().set_node_status(node);
        }
    });
    // volumemgr's reports go to the controller as they change.
    service.on::<ContentTreeStatus>(|_, _, change| {
        if let Change::Created(s) | Change::Modified(s) = change {
            agent.borrow_mut().report_content(ContentInfo::Tree(s));
        }
    });
    service.on::<VolumeStatus>(|_, _, change| {
        if let Change::Created(s) | Change::Modified(s) = change {
            agent.borrow_mut().report_content(ContentInfo::Volume(s));
        }
    });
    service.on::<BlobStatus>(|_, _, change| {
        if let Change::Created(b) | Change::Modified(b) = change {
            agent.borrow_mut().report_content(ContentInfo::Blobs(b));
        }
    });
    // zedrouter's reports go to the controller as they change.
    service.on::<NetworkInstanceStatus>(|_, _, change| {
        if let Change::Created(info) | Change::Modified(info) = change {
            agent.borrow_mut().report_network_instance(info);
        }
    });
    service.on::<ContentUsage>(|_, _, change| {
        if let Change::Created(u) | Change::Modified(u) = change {
            agent.borrow_mut().set_content_usage(u);
        }
    });
    // zedmanager's app reports go to the controller as they change; a
    // deleted one tells the controller the app is gone.
    service.on::<AppStatus>(|_, app, change| match change {
        Change::Created(s) | Change::Modified(s) => agent.borrow_mut().report_app(app, Some(s)),
        Change::Deleted(_) => agent.borrow_mut().report_app(app, None),
    });
    // domainmgr's per-app metrics ride in the next device metrics.
    service.on::<AppMetrics>(|_, app, change| match change {
        Change::Created(m) | Change::Modified(m) => {
            agent.borrow_mut().set_app_metrics(app, Some(m))
        }
        Change::Deleted(_) => agent.borrow_mut().set_app_metrics(app, None),
    });
    // zedrouter's counters of instances and app interfaces, likewise.
    service.on::<NetworkMetrics>(|_, key, change| match change {
        Change::Created(c) | Change::Modified(c) => {
            agent.borrow_mut().set_network_metrics(key, Some(c))
        }
        Change::Deleted(_) => agent.borrow_mut().set_network_metrics(key, None),
    });
    // domainmgr's app console lines go to each app's newlogs, zedrouter's
    // flow messages to flowlog; both tables are windows whose new items
    // are taken as they come.
    service.on::<AppLogs>(|_, _, change| {
        if let Change::Created(item) = change {
            agent.borrow_mut().app_logs(&item);
        }
    });
    service.on::<FlowLog>(|_, _, change| {
        if let Change::Created(msg) = change {
            agent.borrow_mut().flow_message(&msg);
        }
    });
    service.repeat(Duration::ZERO, |_| {
        let mut agent = agent.borrow_mut();
        let wake = agent.poll(&mut *link.borrow_mut());
        for event in agent.take_events() {
            handle_agent_event(&agent, event, &mut content, &mut network);
        }
        let report = onboard_report(&agent);
        if published.as_ref() != Some(&report) && runtime::bus::present() {
            match service::publish::<OnboardStatus>(OnboardStatus::KEY, &report) {
                Ok(()) => published = Some(report),
                Err(e) => log::warn!("publishing status: {e}"),
            }
        }
        if published_items.as_ref() != Some(agent.config_items()) && runtime::bus::present() {
            let items = agent.config_items().clone();
            match service::publish::<ConfigItems>(ConfigItems::KEY, &items) {
                Ok(()) => published_items = Some(items),
                Err(e) => log::warn!("publishing config items: {e}"),
            }
        }
        let until_wake = wake.saturating_sub(MonotonicClock.now_ms());
        Duration::from_millis(until_wake).min(STATUS_EVERY)
    });
    service.run()
}

/// Everything the agent needs, from the CONFIG partition, the state
/// volume, the TPM and the network.
fn setup(host_facts: &Rc<RefCell<Option<Facts>>>) -> Result<(Agent, ControllerLink), String> {
    let factory = read_config_partition()?;
    let state = hal::block::open("state").map_err(|e| format!("state volume: {e:?}"))?;
    let storage_mb =
        (blockdev::BlockDevice::block_count(&state) * blockdev::BLOCK_SIZE as u64) >> 20;
    let mut persist =
        StateVolume::open(state).map_err(|e| format!("state volume unusable: {e:?}"))?;
    let (used, capacity) = persist.usage();
    log::info!("state volume: {used} of {capacity} bytes in use");
    let restart_counter = count_boot(&mut persist)?;
    let (key_source, TpmKeys { ecdh, attestation }) = device_key_source();
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
        host: host_facts.clone(),
        boot: bootreason::read(),
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
    if let Some(public) = ecdh {
        agent.use_ecdh_key(Box::new(TpmEcdh), &public);
    }
    if let Some(public) = attestation {
        agent.use_attestation_key(Box::new(TpmQuoter), &public);
    }
    Ok((agent, ControllerLink::new(stack, target, tls)))
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

/// The TPM's other keys' public halves, when the TPM has them.
#[derive(Default)]
struct TpmKeys {
    /// The ECDH key, for the secrets the controller seals (a software
    /// device key opens them itself).
    ecdh: Option<eve_proto::p256::PublicKey>,
    /// The attestation key: with it the device attests with quotes;
    /// without it, with the no-TPM request.
    attestation: Option<eve_proto::p256::PublicKey>,
}

/// The TPM through the host when the node grants one, else a software key;
/// with the TPM, its ECDH and attestation keys.
fn device_key_source() -> (DeviceKeySource, TpmKeys) {
    if !runtime::bus::present() {
        log::info!("no node bus: device key in software on the state volume");
        return (DeviceKeySource::Software, TpmKeys::default());
    }
    match TpmKey::create() {
        Ok(key) => {
            log::info!("device key held by the host's TPM");
            let ecdh = TpmEcdh::create()
                .inspect_err(|e| {
                    log::warn!(
                        "no TPM ECDH key ({e}): sealed datastore credentials cannot be opened"
                    )
                })
                .ok();
            let attestation = TpmQuoter::create_key()
                .inspect_err(|e| {
                    log::warn!("no TPM attestation key ({e}): attesting without a quote")
                })
                .ok();
            (
                DeviceKeySource::External(Box::new(key)),
                TpmKeys { ecdh, attestation },
            )
        }
        Err(e) => {
            log::warn!("no TPM device key ({e}): device key in software on the state volume");
            (DeviceKeySource::Software, TpmKeys::default())
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
    /// The node's clock, so the times zedagent publishes (the last config
    /// answer in `onboard-status`) mean the same to nodeagent and
    /// baseosmgr after any of them restarts.
    fn now_ms(&self) -> u64 {
        runtime::node_clock::now_ms()
    }

    fn unix_ms(&self) -> u64 {
        hal::clock::unix_nanos().map_or_else(|| self.now_ms(), |ns| ns / 1_000_000)
    }
}

fn handle_agent_event(
    agent: &Agent,
    event: AgentEvent,
    content: &mut ContentPublisher,
    network: &mut NetworkPublisher,
) {
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
            if runtime::bus::present() {
                if let Err(e) = service::publish::<EdgeConfig>(EdgeConfig::KEY, config) {
                    log::warn!("publishing the config: {e}");
                }
                content.publish(agent);
                network.publish(config);
            }
        }
        AgentEvent::SettingsChanged(settings) => {
            log::info!("settings now {settings:?}");
        }
        AgentEvent::Onboarded(uuid) => log::info!("onboarded as {uuid}"),
    }
}

/// The status other tools show.
fn onboard_report(agent: &Agent) -> Report {
    let s = agent.status();
    let phase = match s.phase {
        Phase::FetchCerts => onboard::Phase::FetchCerts,
        Phase::Register => onboard::Phase::Register,
        Phase::FetchUuid => onboard::Phase::FetchUuid,
        Phase::Attest => onboard::Phase::Attest,
        Phase::Running => onboard::Phase::Running,
    };
    let register = match s.register {
        RegisterStatus::NotTried => onboard::Registration::NotTried,
        // Recognized by /uuid after a refused register: onboarded all the same.
        RegisterStatus::Onboarded | RegisterStatus::Recognized => onboard::Registration::Onboarded,
        RegisterStatus::Conflict => onboard::Registration::Conflict,
        RegisterStatus::NotPreRegistered => onboard::Registration::NotPreRegistered,
        RegisterStatus::Failed => onboard::Registration::Failed,
    };
    let attest = match s.attest {
        AttestStatus::None => onboard::Attestation::None,
        AttestStatus::Attested => onboard::Attestation::Attested,
        AttestStatus::Refused => onboard::Attestation::Refused,
    };
    Report {
        phase: phase as i32,
        uuid: s.uuid.unwrap_or_default().to_string(),
        config_hash: s.config_hash.to_string(),
        register: register as i32,
        attest: attest as i32,
        last_config_ms: s.last_config_ms,
        last_info_ms: s.last_info_ms,
        last_metrics_ms: s.last_metrics_ms,
        log_batches_queued: u32::try_from(s.log_batches_queued).unwrap_or(u32::MAX),
        log_lines_dropped: s.log_lines_dropped,
        heap_peak_bytes: runtime::heap_stats().peak as u64,
        undecodable_values: service::undecodable_values(),
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
