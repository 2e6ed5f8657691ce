//! zedrouter: the only path between app interfaces and the world, as EVE's
//! zedrouter.
//!
//! It runs the `appnet` engine (DHCP, DNS, NAT, EVE's ACLs, the metadata
//! server, flow records) between two NICs: the uplink, the node's
//! user-mode network, with the address the command line gives
//! (`ip=A.B.C.D/N gw=A.B.C.D dns=A.B.C.D`), and the trunk to the host's
//! port switch (MAC `guest_abi::TRUNK_MAC`), where every app interface's
//! frames arrive under the tag zedrouter gave its port. It follows
//! `network-instance-config` (zedagent) and `app-network-config`
//! (zedmanager), and the device's names in `edge-config` for the metadata
//! server, attaches and detaches app ports through the host's
//! `ports` target, and publishes each instance's `ZInfoNetworkInstance` in
//! `network-instance-status`, each app's interfaces in
//! `app-network-status` (`appstatus.rs`), and its flow records in
//! `flow-log` (`flowlog.rs`). The engine's state is saved on its state
//! volume when it changed (checked after every change and every 5 s) and
//! restored at start, once the instances are known and before any
//! interface attaches (`saved.rs`). What apps sent that was dropped for
//! reasons other than their ACLs (spoofing, malformed frames, floods) is
//! logged per interface (`drops.rs`).
//!
//! Frames move on every turn of the service loop; the loop sleeps until a
//! NIC interrupts, the engine's next timer, or the bus.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod appstatus;
mod drops;
mod flowlog;
mod nics;
mod router;
mod saved;
mod status;

use core::cell::{Cell, RefCell};
use core::time::Duration;

use appnet::{Engine, EngineConfig, EthernetAddress, NodeInfo, UplinkConfig};
use eve_proto::config::EdgeDevConfig;
use hostops::ports::{Detach, Empty, List, PortRef};
use net::Addressing;
use runtime::service::{Change, Service, call};
use topics::{AppNetworkConfig, EdgeConfig, NetworkInstanceConfig};

use appstatus::AppPublished;
use drops::DropReport;
use flowlog::FlowPublisher;
use nics::{NicCounters, Nics, UPLINK};
use router::Router;
use saved::Saved;
use status::Published;

runtime::entry!("zedrouter", main);

/// How often the instances' status and flow records are published and the
/// engine's state saved, when they changed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

fn value<V>(change: Change<V>) -> Option<V> {
    match change {
        Change::Created(v) | Change::Modified(v) => Some(v),
        Change::Deleted(_) => None,
    }
}

/// The engine's clock: time since boot.
fn engine_now() -> appnet::Instant {
    let micros = hal::clock::Instant::now().as_nanos() / 1000;
    appnet::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
}

/// The uplink's settings from the command line.
fn uplink(mac: [u8; 6]) -> Result<UplinkConfig, &'static str> {
    let params = runtime::cmdline();
    let config = match Addressing::from_cmdline(&params) {
        Ok(Addressing::Static(config)) => config,
        Ok(Addressing::Dhcp) => return Err("the uplink needs ip= (and gw=, dns=)"),
        Err(_) => return Err("ip=, gw= or dns= is not an address"),
    };
    Ok(UplinkConfig {
        port: UPLINK,
        label: "uplink".into(),
        mac: EthernetAddress(mac),
        address: config.address,
        gateway: config.gateway,
        dns_servers: config.dns.into_iter().collect(),
        mtu: 1500,
    })
}

/// Ports a previous run left attached at the host: this run starts with
/// none (the engine starts without interfaces), so each is attached again
/// under the tag this run picks.
fn detach_leftovers() {
    match call::<List>(&Empty {}) {
        Ok(list) => {
            for port in list.ports {
                if let Err(e) = call::<Detach>(&PortRef { tag: port.tag }) {
                    log::warn!("detaching tag {} a previous run left: {e}", port.tag);
                }
            }
        }
        Err(e) => log::warn!("listing the host's ports: {e}"),
    }
}

/// The device as the metadata server describes it to apps, from the
/// accepted config.
fn node_info(config: &EdgeDevConfig) -> NodeInfo {
    NodeInfo {
        device_uuid: config
            .id
            .as_ref()
            .map(|id| id.uuid.clone())
            .unwrap_or_default(),
        device_name: config.device_name.clone(),
        project_name: config.project_name.clone(),
        project_uuid: config.project_id.clone(),
        enterprise_name: config.enterprise_name.clone(),
        enterprise_id: config.enterprise_id.clone(),
    }
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if hal::entropy::fill(&mut bytes, false).is_err() {
        log::warn!("no entropy source: NAT ports and DNS IDs are predictable");
    }
    u64::from_le_bytes(bytes)
}

fn main() -> i32 {
    hal::virtio::discover(runtime::boot_info());
    if hal::entropy::ensure_source().is_err() {
        log::warn!("no entropy source");
    }
    let nics = match Nics::take() {
        Ok(nics) => nics,
        Err(e) => {
            log::error!("{e}");
            return guest_abi::EXIT_FAILURE;
        }
    };
    let engine = RefCell::new(Engine::new(EngineConfig {
        seed: seed(),
        ..Default::default()
    }));
    let mut router = Router::default();
    match uplink(nics.uplink_mac()) {
        Ok(config) => {
            log::info!("uplink {} via {:?}", config.address, config.gateway);
            match engine.borrow_mut().set_uplink(config) {
                Ok(()) => router.uplink = true,
                Err(e) => log::error!("uplink: {e}; local instances are air-gapped"),
            }
        }
        Err(e) => log::error!("{e}; local instances are air-gapped"),
    }
    if let Some(ms) = hal::clock::unix_nanos().map(|ns| ns / 1_000_000) {
        engine.borrow_mut().set_clock(engine_now(), ms);
    }
    detach_leftovers();
    let (saved, previous) = Saved::open();
    if let Some(state) = previous {
        router.restore_later(state);
    }
    let saved = RefCell::new(saved);

    let router = RefCell::new(router);
    let changed = Cell::new(false);
    let published = RefCell::new(Published::default());
    let app_published = RefCell::new(AppPublished::default());
    let nics = RefCell::new(nics);
    let reported = Cell::new(NicCounters::default());
    let flows = RefCell::new(FlowPublisher::new(seed() as u32));
    let drops = RefCell::new(DropReport::default());
    let mut service = Service::new();
    service.on::<NetworkInstanceConfig>(|_, uuid, change| {
        router.borrow_mut().set_instance(uuid, value(change));
        changed.set(true);
    });
    service.on_synchronized::<NetworkInstanceConfig>(|_| {
        router.borrow_mut().instances_complete();
        changed.set(true);
    });
    service.on::<EdgeConfig>(|_, _, change| {
        if let Some(config) = value(change) {
            engine.borrow_mut().set_node(node_info(&config));
        }
    });
    service.on::<AppNetworkConfig>(|_, uuid, change| {
        router.borrow_mut().set_app(uuid, value(change));
        changed.set(true);
    });
    service.poller(|ctl| {
        let now = engine_now();
        let mut engine = engine.borrow_mut();
        let moved = nics.borrow_mut().pump(&mut engine, now);
        if let Some(at) = engine.poll_at(now) {
            let wait = if at > now {
                Duration::from_micros((at - now).total_micros())
            } else {
                Duration::ZERO
            };
            ctl.wake_by(ctl.now().saturating_add(wait));
        }
        moved
    });
    // Pollers run after every bus message: a change is applied on the
    // turn it arrives.
    service.poller(|_| {
        if !changed.replace(false) {
            return false;
        }
        let mut engine = engine.borrow_mut();
        let mut router = router.borrow_mut();
        let now = engine_now();
        router.reconcile(&mut engine, now);
        published.borrow_mut().publish(&engine, &router);
        app_published.borrow_mut().publish(&engine, &router);
        flows.borrow_mut().publish(&mut engine);
        saved.borrow_mut().save(engine.export_state(now));
        true
    });
    service.every(STATUS_EVERY, |_| {
        let mut engine = engine.borrow_mut();
        published.borrow_mut().publish(&engine, &router.borrow());
        app_published
            .borrow_mut()
            .publish(&engine, &router.borrow());
        flows.borrow_mut().publish(&mut engine);
        saved.borrow_mut().save(engine.export_state(engine_now()));
        drops.borrow_mut().report(&engine, &router.borrow());
        let counters = nics.borrow().counters;
        if counters != reported.replace(counters) {
            log::warn!("frames dropped at the NICs: {counters:?}");
        }
    });
    service.run()
}
