//! zedrouter: the only path between app interfaces and the world, as EVE's
//! zedrouter.
//!
//! It runs the `appnet` engine (DHCP, DNS, NAT, EVE's ACLs, the metadata
//! server, flow records) between its NICs: the uplink, the node's
//! user-mode network, with the address the command line gives
//! (`ip=A.B.C.D/N gw=A.B.C.D dns=A.B.C.D`) or, without `ip=`, the one its
//! DHCP client leases (`appnet::uplink_dhcp`: local instances are NATed
//! once the first lease comes), and the trunk to the host's
//! port switch (MAC `guest_abi::TRUNK_MAC`), where every app interface's
//! frames arrive under the tag zedrouter gave its port, and the device
//! ports the manifest gives it, switch instances' outside ends
//! (`deviceports.rs`). It follows
//! `network-instance-config` (zedagent) and `app-network-config`
//! (zedmanager), and the device's names in `edge-config` for the metadata
//! server, attaches and detaches app ports through the host's
//! `ports` target, and publishes each instance's `ZInfoNetworkInstance` in
//! `network-instance-status`, each app's interfaces in
//! `app-network-status` (`appstatus.rs`), its flow records in `flow-log`
//! (`flowlog.rs`), and its traffic counters every 10 s, when they
//! changed, in `network-metrics` (`metrics.rs`). The engine's state is
//! saved on its state volume when it changed (checked after every change
//! and every 5 s) and restored at start, once the instances are known and
//! before any interface attaches (`saved.rs`). What apps sent that was
//! dropped for reasons other than their ACLs (spoofing, malformed frames,
//! floods) is logged per interface (`drops.rs`). Each port map's uplink
//! port is forwarded from the same host port by the host (`forwards.rs`).
//!
//! Frames move on every turn of the service loop; the loop sleeps until a
//! NIC interrupts, the engine's next timer, or the bus.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod appstatus;
mod deviceports;
mod drops;
mod flowlog;
mod forwards;
mod liveacl;
mod metrics;
mod nics;
mod router;
mod saved;
mod status;

use core::cell::{Cell, RefCell};
use core::time::Duration;

use appnet::uplink_dhcp::{LeaseEvent, UplinkDhcp, UplinkLease};
use appnet::{Engine, EngineConfig, EthernetAddress, NodeInfo, UplinkConfig};
use eve_proto::config::EdgeDevConfig;
use hostops::ports::{Detach, Empty, List, PortRef};
use net::Addressing;
use runtime::service::{Service, call};
use topics::{AppNetworkConfig, EdgeConfig, NetworkInstanceConfig};

use appstatus::AppPublished;
use deviceports::DevicePorts;
use drops::DropReport;
use flowlog::FlowPublisher;
use forwards::HostForwards;
use metrics::{METRICS_EVERY, MetricsPublished};
use nics::{NicCounters, Nics, UPLINK};
use router::Router;
use saved::Saved;
use status::Published;

runtime::entry!("zedrouter", main);

/// How often the instances' status and flow records are published and the
/// engine's state saved, when they changed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The engine's clock: time since boot.
fn engine_now() -> appnet::Instant {
    let micros = hal::clock::Instant::now().as_nanos() / 1000;
    appnet::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
}

/// The uplink's settings from the command line: `None` when it gives no
/// `ip=`, for DHCP.
fn uplink(mac: [u8; 6]) -> Result<Option<UplinkConfig>, &'static str> {
    let params = runtime::cmdline();
    let config = match Addressing::from_cmdline(&params) {
        Ok(Addressing::Static(config)) => config,
        Ok(Addressing::Dhcp) => return Ok(None),
        Err(_) => return Err("ip=, gw= or dns= is not an address"),
    };
    Ok(Some(uplink_config(
        mac,
        UplinkLease {
            address: config.address,
            router: config.gateway,
            dns_servers: config.dns.into_iter().collect(),
        },
    )))
}

fn uplink_config(mac: [u8; 6], lease: UplinkLease) -> UplinkConfig {
    UplinkConfig {
        port: UPLINK,
        label: "uplink".into(),
        mac: EthernetAddress(mac),
        address: lease.address,
        gateway: lease.router,
        dns_servers: lease.dns_servers,
        mtu: 1500,
    }
}

/// Gives the engine the uplink a lease brought; whether it took it.
fn set_uplink(engine: &mut Engine, config: UplinkConfig) -> bool {
    log::info!("uplink {} via {:?}", config.address, config.gateway);
    match engine.set_uplink(config) {
        Ok(()) => true,
        Err(e) => {
            log::error!("uplink: {e}; local instances are air-gapped");
            false
        }
    }
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
    router.device_ports = DevicePorts::from_cmdline(runtime::cmdline().get("device_ports"));
    router
        .device_ports
        .configure(&mut engine.borrow_mut(), &nics.device_ports());
    let uplink_mac = nics.uplink_mac();
    let mut dhcp = None;
    match uplink(uplink_mac) {
        Ok(Some(config)) => router.uplink = set_uplink(&mut engine.borrow_mut(), config),
        Ok(None) => {
            log::info!("uplink: DHCP");
            dhcp = Some(UplinkDhcp::new(uplink_mac, seed(), engine_now()));
        }
        Err(e) => log::error!("{e}; local instances are air-gapped"),
    }
    let dhcp = RefCell::new(dhcp);
    if let Some(ms) = hal::clock::unix_nanos().map(|ns| ns / 1_000_000) {
        engine.borrow_mut().set_clock(engine_now(), ms);
    }
    detach_leftovers();
    let (saved, previous) = Saved::open();
    if let Some(state) = previous {
        router.restore_later(state);
    }
    let saved = RefCell::new(saved);
    let host_forwards = RefCell::new(HostForwards::start());

    let router = RefCell::new(router);
    let changed = Cell::new(false);
    let published = RefCell::new(Published::default());
    let app_published = RefCell::new(AppPublished::default());
    let metrics_published = RefCell::new(MetricsPublished::default());
    let nics = RefCell::new(nics);
    let reported = Cell::new(NicCounters::default());
    let flows = RefCell::new(FlowPublisher::new(seed() as u32));
    let drops = RefCell::new(DropReport::default());
    let mut service = Service::new();
    service.on::<NetworkInstanceConfig>(|_, uuid, change| {
        router.borrow_mut().set_instance(uuid, change.current());
        changed.set(true);
    });
    service.on_synchronized::<NetworkInstanceConfig>(|_| {
        router.borrow_mut().instances_complete();
        changed.set(true);
    });
    service.on::<EdgeConfig>(|_, _, change| {
        if let Some(config) = change.current() {
            engine.borrow_mut().set_node(node_info(&config));
        }
    });
    service.on::<AppNetworkConfig>(|_, uuid, change| {
        router.borrow_mut().set_app(uuid, change.current());
        changed.set(true);
    });
    service.poller(|ctl| {
        let now = engine_now();
        let mut engine = engine.borrow_mut();
        let mut dhcp = dhcp.borrow_mut();
        let (moved, lease) = nics.borrow_mut().pump(&mut engine, dhcp.as_mut(), now);
        match lease {
            Some(LeaseEvent::Leased(lease)) => {
                let took = set_uplink(&mut engine, uplink_config(uplink_mac, lease));
                router.borrow_mut().uplink = took;
                changed.set(true);
            }
            // The engine keeps the last address until a new lease: with
            // none its flows could not leave anyway.
            Some(LeaseEvent::Lost) => log::warn!("uplink: DHCP lease lost"),
            None => {}
        }
        let next = engine
            .poll_at(now)
            .into_iter()
            .chain(dhcp.as_mut().and_then(|client| client.poll_at(now)))
            .min();
        if let Some(at) = next {
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
        host_forwards.borrow_mut().sync(&engine);
        published.borrow_mut().publish(&engine, &router);
        app_published.borrow_mut().publish(&engine, &router);
        flows.borrow_mut().publish(&mut engine);
        saved.borrow_mut().save(|| engine.export_state(now));
        true
    });
    service.every(STATUS_EVERY, |_| {
        let mut engine = engine.borrow_mut();
        published.borrow_mut().publish(&engine, &router.borrow());
        app_published
            .borrow_mut()
            .publish(&engine, &router.borrow());
        flows.borrow_mut().publish(&mut engine);
        saved
            .borrow_mut()
            .save_spaced(|| engine.export_state(engine_now()));
        drops.borrow_mut().report(&engine, &router.borrow());
        host_forwards.borrow_mut().sync(&engine);
        let counters = nics.borrow().counters;
        if counters != reported.replace(counters) {
            log::warn!("frames dropped at the NICs: {counters:?}");
        }
    });
    service.every(METRICS_EVERY, |_| {
        metrics_published
            .borrow_mut()
            .publish(&engine.borrow(), &router.borrow());
    });
    service.run()
}
