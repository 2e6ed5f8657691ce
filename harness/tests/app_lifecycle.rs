//! An app's lifecycle through the controller on a whole node, on both
//! arches: the hello-http unikernel (it boots in milliseconds, so the
//! scenario measures the node, not a guest's boot) deployed as
//! `evectl app deploy` writes it, each later step an `evectl app` command
//! applied to the device's config at our controller, every outcome read
//! where an operator reads it (the controller's newest `ZInfoApp` and
//! `ZInfoVolume`) and on the node's bus where EVE's rule is about the node.
//!
//! - restart (the restart counter bumped): one restart, no more: a new
//!   boot time in the controller's view, the domain's boot count one
//!   higher, and it stays so;
//! - purge (the purge counter and the volume's generation bumped):
//!   make-before-break: the new generation is built while the app runs on
//!   the old one, the app then runs on the new one and answers, the old one
//!   is released; the controller sees the new generation;
//! - stop (`activate` false): HALTED, no answer; start: RUNNING, a new boot,
//!   answering;
//! - hostile configs beside the running app: a negative memory is refused
//!   by the controller itself; what a negative 32-bit memory is on the wire
//!   (4 TiB), a reference to a volume the config does not have and a
//!   virtualization mode eve-api does not define each make that app ERROR
//!   with the reason in the controller's view, while the good app answers
//!   and zedmanager keeps running (its one bus connection in the host's log);
//! - delete: nothing of the apps is left on the node, and the controller's
//!   view says so.

mod common;
#[path = "common/hostlog.rs"]
mod hostlog;
#[path = "common/http.rs"]
mod http;
#[path = "common/images.rs"]
mod images;
#[path = "common/noderun.rs"]
mod noderun;
#[path = "common/tail.rs"]
mod tail;
#[path = "common/wholenode.rs"]
mod wholenode;

use std::thread;
use std::time::{Duration, Instant};

use eve_host::targets::DomainsOptions;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::info::{ZInfoApp, ZInfoVolume, ZSwState};
use evectl::apps::{self, AppKind, AppSpec};
use harness::Arch;
use harness::appassets;
use harness::content::{FileServer, Served, sha256_hex};
use http::{free_port, get};
use serde_json::{Value, json};
use tail::tail;
use topics::content::VolumeState;
use topics::{AppStatus, DomainState, DomainStatus, VolumeStatus};
use wholenode::{LocalController, RunningNode};

/// A guard against a node or an app that never gets there, not a timing
/// target: TCG on a shared 2-core machine.
const PATIENCE: Duration = Duration::from_secs(600);
/// The memory the node's host admits apps into.
const APPS_MEMORY_MIB: u64 = 512;
/// The config interval the scenario sets (seconds): zedagent fetches the
/// config this often.
const CONFIG_INTERVAL: u64 = 5;
/// How long a restarted app is watched for a second restart: three config
/// fetches.
const SETTLE: Duration = Duration::from_secs(3 * CONFIG_INTERVAL);
/// The good app.
const APP: &str = "hello";

/// The scenario's node, controller and the device's config as evectl
/// leaves it.
struct World {
    arch: Arch,
    ctl: LocalController,
    node: RunningNode,
    config: Value,
    started: Instant,
}

impl World {
    /// The config to the controller, as `evectl` stores it (JSON is the
    /// description format's YAML), with a short config interval.
    fn try_apply(&self, config: &Value) -> Result<(), String> {
        let mut config = config.clone();
        config["configItems"] = json!([{
            "key": "timer.config.interval",
            "value": CONFIG_INTERVAL.to_string(),
        }]);
        self.ctl
            .ctl
            .set_config(&self.node.uuid, &config.to_string())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn apply(&self) {
        self.try_apply(&self.config)
            .expect("the config is accepted");
    }

    /// Waits until `done` gives something; fails with the node's tables and
    /// the host's log.
    fn until<T>(&self, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(t) = done() {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {what} never happened\napps: {:#?}\ndomains: {:#?}\nvolumes: {:#?}\n{}",
                self.arch,
                self.node.run.table::<AppStatus>(),
                self.node.run.table::<DomainStatus>(),
                self.node.run.table::<VolumeStatus>(),
                tail(&self.node.lines.snapshot())
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// The controller's newest report of app `uuid`.
    fn app(&self, uuid: &str) -> Option<ZInfoApp> {
        self.ctl.reported_app(&self.node.uuid, uuid)
    }

    /// The controller's newest report of volume `uuid`.
    fn volume(&self, uuid: &str) -> Option<ZInfoVolume> {
        match self
            .ctl
            .reported(&self.node.uuid, &format!("volume/{uuid}"))?
        {
            InfoContent::Vinfo(v) => Some(v),
            _ => None,
        }
    }

    /// Waits until the controller's newest report of app `uuid` satisfies
    /// `done`.
    fn until_app(
        &self,
        uuid: &str,
        what: &str,
        mut done: impl FnMut(&ZInfoApp) -> bool,
    ) -> ZInfoApp {
        self.until(what, || self.app(uuid).filter(|a| done(a)))
    }

    /// The domain of app `uuid` on the node's bus.
    fn domain(&self, uuid: &str) -> Option<DomainState> {
        self.node.run.table::<DomainStatus>().remove(uuid)
    }

    /// Volume `uuid` on the node's bus.
    fn node_volume(&self, uuid: &str) -> Option<VolumeState> {
        self.node.run.table::<VolumeStatus>().remove(uuid)
    }

    fn step(&self, what: &str, since: Instant) {
        eprintln!(
            "{}: {what} in {:?} ({:?} into the scenario)",
            self.arch,
            since.elapsed(),
            self.started.elapsed()
        );
    }
}

fn running(app: &ZInfoApp) -> bool {
    app.state == ZSwState::Running as i32
}

fn unikernel(name: &str, image: &str, sha256: &str, port: u16) -> AppSpec {
    AppSpec {
        name: name.into(),
        image: image.into(),
        kind: Some(AppKind::Unikernel),
        memory_mib: 32,
        vcpus: 1,
        ports: vec![(port, 80)],
        user_data: None,
        network: None,
        sha256: Some(sha256.into()),
        acls: Vec::new(),
    }
}

/// The app of that name in `config`, to make it hostile.
fn app_mut<'a>(config: &'a mut Value, name: &str) -> &'a mut Value {
    config["apps"]
        .as_array_mut()
        .and_then(|apps| apps.iter_mut().find(|a| a["displayname"] == name))
        .expect("the deployed app")
}

fn lifecycle_on_a_node(arch: Arch) {
    let hello = appassets::app_unikernel(arch).expect("building hello-http");
    let http = FileServer::start(None).expect("HTTP datastore");
    let bytes = std::fs::read(&hello).expect("the hello-http image");
    let sha256 = sha256_hex(&bytes);
    http.put("/images/hello-http.img", Served::file(bytes));
    let image = format!("http://10.0.2.2:{}/images/hello-http.img", http.port());

    let started = Instant::now();
    let ctl = LocalController::start();
    let domains = DomainsOptions {
        arch,
        memory_mib: Some(APPS_MEMORY_MIB),
        ..DomainsOptions::default()
    };
    let node = RunningNode::onboard(arch, &ctl, domains, PATIENCE);
    let port = free_port();
    let config =
        apps::deploy(json!({}), &unikernel(APP, &image, &sha256, port)).expect("evectl app deploy");
    let mut world = World {
        arch,
        ctl,
        node,
        config,
        started,
    };
    world.step("onboarded", started);
    let app = apps::app_uuid(&world.config, APP).expect("the app's UUID");
    let volume = world.config["volumes"][0]["uuid"]
        .as_str()
        .expect("the app's volume")
        .to_owned();

    let step = Instant::now();
    world.apply();
    world.until("the app answering", || get(port, "/"));
    let first = world.until_app(&app, "the app RUNNING", running);
    world.step("deployed: RUNNING and answering", step);

    // Restart: one new boot, and only one.
    let step = Instant::now();
    let boots = world.domain(&app).expect("the app's domain").boot_count;
    world.config = apps::restart(world.config.clone(), APP).expect("evectl app restart");
    world.apply();
    let mut restarting_seen = false;
    let restarted = world.until_app(&app, "the app booted again", |a| {
        restarting_seen |= a.state == ZSwState::Restarting as i32;
        running(a) && a.boot_time != first.boot_time
    });
    world.until("the restarted app answering", || get(port, "/"));
    thread::sleep(SETTLE);
    let settled = world.app(&app).expect("the app's report");
    assert_eq!(
        settled.boot_time, restarted.boot_time,
        "{arch}: restarted more than once"
    );
    assert_eq!(
        world.domain(&app).map(|d| d.boot_count),
        Some(boots + 1),
        "{arch}: one restart is one more boot"
    );
    world.step(
        &format!("restarted once (RESTARTING seen by the controller: {restarting_seen})"),
        step,
    );

    // Purge: the next generation is built before the old one goes.
    let step = Instant::now();
    let before = world.node_volume(&volume).expect("the app's volume");
    let old = before.host_volume.clone();
    world.config = apps::purge(world.config.clone(), APP).expect("evectl app purge");
    let generation = world.config["volumes"][0]["generationCount"]
        .as_str()
        .and_then(|g| g.parse::<i64>().ok())
        .expect("the purged generation");
    world.apply();
    let purged = world.until("the app running on the new generation", || {
        // Whatever the domain runs on exists on the host at every moment.
        let domain = world.domain(&app)?;
        let on_host = world.node_volume(&volume)?;
        for disk in &domain.disks {
            assert!(
                on_host.host_generations.contains(disk),
                "{arch}: the domain runs on {disk}, which is gone: {on_host:?}"
            );
        }
        (domain.state == ZSwState::Running as i32
            && !domain.disks.contains(&old)
            && !domain.disks.is_empty())
        .then_some(domain)
    });
    let new = world.node_volume(&volume).expect("the app's volume");
    assert_eq!(new.generation_count, generation, "{arch}: {new:?}");
    assert!(
        purged.disks.contains(&new.host_volume),
        "{purged:?} {new:?}"
    );
    world.until("the old generation released", || {
        let now = world.node_volume(&volume)?;
        (now.host_generations == [new.host_volume.clone()]).then_some(())
    });
    world.until("the purged app answering", || get(port, "/"));
    let after_purge = world.until_app(&app, "the purged app RUNNING, booted again", |a| {
        running(a) && a.boot_time != restarted.boot_time
    });
    world.until("the new generation in the controller's view", || {
        world
            .volume(&volume)
            .filter(|v| v.generation_count == generation)
    });
    world.step(&format!("purged: {old} -> {}", new.host_volume), step);

    // Stop, then start.
    let step = Instant::now();
    world.config = apps::set_active(world.config.clone(), APP, false).expect("evectl app stop");
    world.apply();
    world.until_app(&app, "the app HALTED", |a| {
        a.state == ZSwState::Halted as i32
    });
    assert_eq!(get(port, "/"), None, "{arch}: a halted app answers");
    world.config = apps::set_active(world.config.clone(), APP, true).expect("evectl app start");
    world.apply();
    world.until("the started app answering", || get(port, "/"));
    let started_again = world.until_app(&app, "the app RUNNING again", running);
    assert_ne!(
        started_again.boot_time, after_purge.boot_time,
        "{arch}: a start boots the app anew"
    );
    world.step("stopped and started", step);

    hostile_configs(&mut world, &image, &sha256, port);

    // Delete: nothing is left.
    let step = Instant::now();
    world.config = apps::delete(world.config.clone(), APP).expect("evectl app delete");
    world.apply();
    world.until("the app, its domain and volume gone from the node", || {
        (world.node.run.table::<AppStatus>().is_empty()
            && world.node.run.table::<DomainStatus>().is_empty()
            && world.node.run.table::<VolumeStatus>().is_empty())
        .then_some(())
    });
    world.until("the app gone from the controller's view", || {
        world
            .app(&app)
            .filter(|a| a.state == 0 && a.app_name.is_empty())
    });
    assert_eq!(get(port, "/"), None, "{arch}: a deleted app answers");
    world.step("deleted", step);

    let troubles = world.node.run.troubles();
    assert!(
        troubles.is_empty(),
        "{troubles:?}\n{}",
        tail(&world.node.lines.snapshot())
    );
    drop(http);
}

/// Three hostile apps beside the running one, each refused on its own.
fn hostile_configs(world: &mut World, image: &str, sha256: &str, port: u16) {
    let arch = world.arch;
    let step = Instant::now();
    let mut config = world.config.clone();
    for name in ["huge", "novolume", "oddkind"] {
        config = apps::deploy(config, &unikernel(name, image, sha256, free_port()))
            .expect("evectl app deploy");
    }

    // A negative memory is not a number EVE's config can carry: the
    // controller refuses the description and keeps the config it has.
    let mut negative = config.clone();
    app_mut(&mut negative, "huge")["fixedresources"]["memory"] = json!(-1024);
    let refused = world
        .try_apply(&negative)
        .expect_err("a negative memory is refused");
    assert!(
        refused.contains("out of range") && refused.contains(r#""memory":-1024`"#),
        "{refused}"
    );

    // What -1024 written into the 32-bit field is: 4 TiB.
    app_mut(&mut config, "huge")["fixedresources"]["memory"] = json!(u32::MAX - 1023);
    // A volume the config does not have.
    let missing = "4a1c0c9e-3b0e-4d55-9a3e-1f7f2a6b0c01";
    app_mut(&mut config, "novolume")["volumeRefList"] = json!([{ "uuid": missing }]);
    if let Some(volumes) = config["volumes"].as_array_mut() {
        volumes.retain(|v| v["displayName"] != "novolume");
    }
    // A kind of app eve-api does not define.
    app_mut(&mut config, "oddkind")["fixedresources"]["virtualizationMode"] = json!(99);
    world.config = config;
    world.apply();

    let expected = [
        ("huge", "KiB is outside"),
        ("novolume", missing),
        ("oddkind", "virtualization mode 99"),
    ];
    for (name, reason) in expected {
        let uuid = apps::app_uuid(&world.config, name).expect("the app's UUID");
        let refused = world.until_app(&uuid, &format!("{name} ERROR"), |a| {
            a.state == ZSwState::Error as i32
        });
        let errors: Vec<_> = refused.app_err.iter().map(|e| &e.description).collect();
        assert!(
            errors.iter().any(|e| e.contains(reason)),
            "{arch}: {name}: {errors:?}"
        );
        eprintln!("{arch}: {name} refused: {errors:?}");
    }
    assert!(get(port, "/").is_some(), "{arch}: the good app stopped");
    let app = apps::app_uuid(&world.config, APP).expect("the app's UUID");
    assert!(world.app(&app).is_some_and(|a| running(&a)));
    let lines = world.node.lines.snapshot();
    let connected = lines
        .iter()
        .filter(|l| *l == "[zedmanager host] bus connected")
        .count();
    assert_eq!(
        connected,
        1,
        "{arch}: zedmanager started again\n{}",
        tail(&lines)
    );

    for name in ["huge", "novolume", "oddkind"] {
        world.config = apps::delete(world.config.clone(), name).expect("evectl app delete");
    }
    world.apply();
    world.until("the hostile apps gone from the node", || {
        (world.node.run.table::<AppStatus>().len() == 1).then_some(())
    });
    world.step("hostile configs refused per app", step);
}

#[test]
fn an_apps_lifecycle_through_an_x86_64_node() {
    lifecycle_on_a_node(Arch::X86_64);
}

#[test]
fn an_apps_lifecycle_through_an_aarch64_node() {
    lifecycle_on_a_node(Arch::Aarch64);
}
