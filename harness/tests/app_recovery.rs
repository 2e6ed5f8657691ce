//! Apps survive crashes, on a whole node of each arch (TCG): `eve-host run` as
//! its own process with the default node's services, against our
//! controller in this process, the hello-http unikernel app deployed as
//! `evectl app deploy` writes it and served by a plain HTTP datastore.
//!
//! Once the app runs and answers on its loopback port map:
//! 1. domainmgr's VM is SIGKILLed; the host restarts it, the new domainmgr
//!    adopts the running domain (same QEMU, same boot time in the
//!    controller's view) and the app keeps answering;
//! 2. the host itself is SIGKILLed, leaving its QEMUs behind; the next
//!    host on the same state directory stops every one of them, and the
//!    app comes back RUNNING and answering, as the config says;
//! 3. a second app larger than the node's memory for apps is ERROR with
//!    the admission refusal in the controller's view while the first keeps
//!    answering;
//! 4. a third app that panics on a request is booted again by the host (a
//!    new boot time in the controller's view, answering) and reported
//!    RUNNING with the panic as its error; the panic also reaches the
//!    controller in the node's logs, and the first keeps answering.
//!
//! The app's state and errors are read where an operator reads them: in
//! the newest `ZInfoApp` the controller holds. Each step prints how long it
//! took.

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "common/images.rs"]
mod images;
#[path = "common/tail.rs"]
mod tail;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::InProcessController;
use controller::identity::Identity;
use controller::server::{self, Controller};
use controller::store::LogQuery;
use eve_host::manifest::Manifest;
use eve_proto::Message;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::info::{ZInfoApp, ZInfoMsg, ZSwState};
use evectl::apps::{self, AppKind, AppSpec};
use harness::content::{FileServer, Served, sha256_hex};
use harness::provision::{OnboardIdentity, config_files, write_config_partition};
use harness::{Arch, appassets, workspace_root};
use http::{free_port, get};
use images::service_images;

/// A guard against a node that never gets there, not a timing target:
/// the whole node boots under TCG on a shared 2-core machine, aarch64
/// included.
const PATIENCE: Duration = Duration::from_secs(900);
/// The memory the node's host admits apps into.
const APPS_MEMORY_MIB: u64 = 512;
/// How long a restarted domainmgr is watched: three of its idle rounds.
const ADOPTION_ROUNDS: Duration = Duration::from_secs(30);

/// One `eve-host run` process; SIGTERMed (a clean stop) when dropped.
struct Host {
    child: Child,
}

impl Host {
    fn start(program: &Path, node: &NodeFiles, log: &Path) -> Host {
        let arch = node.arch.to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the host's log");
        let child = Command::new(program)
            .arg("run")
            .arg("--manifest")
            .arg(workspace_root().join("nodes/default.toml"))
            .arg("--images")
            .arg(&node.images)
            .arg("--state-dir")
            .arg(&node.state)
            .arg("--config-part")
            .arg(&node.config_part)
            .args(["--arch", &arch, "--accel", "tcg", "--tpm", "swtpm"])
            .args(["--apps-memory-mib", &APPS_MEMORY_MIB.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the host's log"))
            .stderr(log)
            .spawn()
            .expect("eve-host starts");
        Host { child }
    }

    /// SIGKILL: the host gets no chance to stop its VMs.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("the killed host is reaped");
        std::mem::forget(self);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What each host of the scenario runs from.
struct NodeFiles {
    arch: Arch,
    images: PathBuf,
    state: PathBuf,
    config_part: PathBuf,
}

/// Everything the scenario holds.
struct World {
    rt: tokio::runtime::Runtime,
    ctl: Arc<Controller>,
    http: FileServer,
    uuid: String,
    log: PathBuf,
    /// What `evectl app deploy` wrote.
    deployed: serde_json::Value,
    _dir: tempfile::TempDir,
}

impl World {
    /// The config description: what evectl deployed (JSON is YAML).
    fn apply(&self) {
        let mut text = String::new();
        for section in ["datastores", "contentInfo", "volumes", "apps"] {
            let items: Vec<_> = self.deployed[section]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            if !items.is_empty() {
                text.push_str(&format!("{section}:\n"));
                for item in items {
                    text.push_str(&format!("  - {item}\n"));
                }
            }
        }
        text.push_str("configItems:\n  - { key: timer.config.interval, value: \"5\" }\n");
        self.ctl
            .set_config(&self.uuid, &text)
            .expect("the config is accepted");
    }

    /// The newest `ZInfoApp` the controller holds for app `uuid`, and
    /// when it arrived (Unix ms).
    fn reported(&self, uuid: &str) -> Option<(ZInfoApp, i64)> {
        let key = format!("app/{uuid}");
        let records = self.ctl.store().latest_info(&self.uuid).ok()?;
        let record = records.into_iter().find(|r| r.key == key)?;
        match ZInfoMsg::decode(record.msg.as_slice()).ok()?.info_content? {
            InfoContent::Ainfo(app) => Some((app, record.received_ms)),
            _ => None,
        }
    }

    /// Waits until the controller's newest report of app `uuid` satisfies
    /// `done`; returns it.
    fn until_reported_with(
        &self,
        uuid: &str,
        what: &str,
        done: impl Fn(&ZInfoApp) -> bool,
    ) -> ZInfoApp {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen = self.reported(uuid);
            if let Some((app, _)) = &seen
                && done(app)
            {
                return app.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{what} never happened: {seen:?}\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until `done` holds; fails with the host's log's tail.
    fn until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} never happened\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        tail::tail(&text.lines().collect::<Vec<_>>())
    }

    /// Waits until the controller holds a report of app `uuid` in `state`
    /// received after `since_ms`; returns it.
    fn until_reported(&self, uuid: &str, state: ZSwState, since_ms: i64) -> ZInfoApp {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen = self.reported(uuid);
            if let Some((app, received)) = &seen
                && app.state == state as i32
                && *received > since_ms
            {
                return app.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{uuid} never reported {state:?}: {seen:?}\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// The pid a pid file names.
fn pid_in(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Running and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// Every live process whose command line names `state` (the node's QEMUs
/// and swtpm carry their pid files under it).
fn processes_naming(state: &Path) -> Vec<u32> {
    let wanted = state.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(wanted.len()).any(|window| window == wanted))
                && alive(*pid)
        })
        .collect()
}

/// Whether the host's status shows domainmgr running again, in another
/// VM than `killed`, and connected to the bus.
fn domainmgr_back(state: &Path, killed: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(state.join("run/status.json")) else {
        return false;
    };
    let Ok(status) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    status["services"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            s["name"] == "domainmgr"
                && s["state"] == "running"
                && s["pid"]
                    .as_u64()
                    .is_some_and(|pid| pid != u64::from(killed))
                && s["bus_connected"] == true
        })
}

/// The app domain's QEMU pid file, as the `domains` target names it.
fn domain_pid_file(state: &Path, app_uuid: &str) -> PathBuf {
    let hex: String = app_uuid.chars().filter(|c| *c != '-').take(31).collect();
    state
        .join("domains")
        .join(format!("a{hex}"))
        .join("qemu.pid")
}

fn spec(name: &str, image: String, sha256: String, memory_mib: u32, port: u16) -> AppSpec {
    AppSpec {
        name: name.into(),
        image,
        kind: Some(AppKind::Unikernel),
        memory_mib,
        vcpus: 1,
        ports: vec![(port, 80)],
        user_data: None,
        network: None,
        sha256: Some(sha256),
        acls: Vec::new(),
    }
}

fn apps_survive_crashes(arch: Arch) {
    let mut manifest =
        Manifest::load(&workspace_root().join("nodes/default.toml")).expect("the manifest");
    manifest.node.arch = arch;
    let images = service_images(&manifest);
    let program = appassets::host_program("eve-host", "eve-host").expect("building eve-host");
    let hello = appassets::app_unikernel(arch).expect("building hello-http");

    let dir = tempfile::tempdir().expect("scratch");
    let identity = Identity::load_or_create(dir.path()).expect("controller identity");
    let InProcessController {
        rt,
        ctl,
        tls,
        device_listener,
        port,
    } = InProcessController::new(identity, &dir.path().join("c.db"));
    rt.spawn(server::serve_devices(ctl.clone(), device_listener, tls));
    let onboarding = OnboardIdentity::generate("recovery-").expect("an onboarding identity");
    ctl.onboard_add(
        &onboarding.cert_pem,
        std::slice::from_ref(&onboarding.serial),
    )
    .expect("pre-registered");
    let node = NodeFiles {
        arch,
        images,
        state: dir.path().join("state"),
        config_part: dir.path().join("config.img"),
    };
    write_config_partition(
        &node.config_part,
        &config_files(port, &ctl.identity().root_pem, &onboarding),
    )
    .expect("the CONFIG partition");
    let http = FileServer::start(None).expect("the HTTP datastore");
    let bytes = std::fs::read(&hello).expect("the hello-http image");
    let sha256 = sha256_hex(&bytes);
    http.put("/images/hello-http.img", Served::file(bytes));
    let image = format!("http://10.0.2.2:{}/images/hello-http.img", http.port());

    let log = dir.path().join("eve-host.log");
    let started = Instant::now();
    let host = Host::start(&program, &node, &log);
    let mut world = World {
        rt,
        ctl,
        http,
        uuid: String::new(),
        log,
        deployed: serde_json::json!({}),
        _dir: dir,
    };
    let deadline = Instant::now() + PATIENCE;
    world.uuid = loop {
        if let Some(d) = world.ctl.store().devices().unwrap().first() {
            break d.uuid.clone();
        }
        assert!(
            Instant::now() < deadline,
            "never onboarded\n{}",
            world.log_tail()
        );
        thread::sleep(Duration::from_millis(250));
    };

    let app_port = free_port();
    world.deployed = apps::deploy(
        serde_json::json!({}),
        &spec("hello", image.clone(), sha256.clone(), 32, app_port),
    )
    .expect("evectl app deploy");
    world.apply();
    let app = apps::app_uuid(&world.deployed, "hello").expect("the app's UUID");
    world.until_reported(&app, ZSwState::Running, 0);
    world.until("an HTTP answer from the app", || {
        get(app_port, "/").is_some()
    });
    let domain_pid_file = domain_pid_file(&node.state, &app);
    let app_qemu = pid_in(&domain_pid_file).expect("the app's QEMU pid");
    let (running, _) = world.reported(&app).expect("the app's report");
    eprintln!(
        "{arch}: app RUNNING and answering after {:?}",
        started.elapsed()
    );

    // 1. domainmgr's VM is killed; the host restarts it.
    let step = Instant::now();
    let domainmgr_pid_file = node.state.join("run/domainmgr.pid");
    let domainmgr = pid_in(&domainmgr_pid_file).expect("domainmgr's QEMU pid");
    Command::new("kill")
        .args(["-KILL", &domainmgr.to_string()])
        .status()
        .expect("kill");
    world.until(
        "domainmgr's VM restarted by the host and on the bus",
        || domainmgr_back(&node.state, domainmgr),
    );
    // The new domainmgr adopts the running domain: it reconciles at once
    // and then every ten seconds, so three of its rounds pass while the
    // app must keep its QEMU (it is never started again) and answer.
    let watch = Instant::now();
    let mut missed = 0;
    while watch.elapsed() < ADOPTION_ROUNDS {
        assert_eq!(
            pid_in(&domain_pid_file),
            Some(app_qemu),
            "the app's domain was started again\n{}",
            world.log_tail()
        );
        if get(app_port, "/").is_none() {
            missed += 1;
        }
        thread::sleep(Duration::from_millis(250));
    }
    assert!(alive(app_qemu));
    world.until("the app answering beside the new domainmgr", || {
        get(app_port, "/").is_some()
    });
    let adopted = world.until_reported(&app, ZSwState::Running, 0);
    assert_eq!(
        adopted.boot_time, running.boot_time,
        "the controller saw the domain booted again"
    );
    eprintln!(
        "{arch}: domainmgr killed: back and adopting after {:?} ({missed} requests missed)",
        step.elapsed()
    );

    // 2. The host is killed: its QEMUs and swtpm are left running.
    let step = Instant::now();
    let left: Vec<u32> = processes_naming(&node.state);
    assert!(left.contains(&app_qemu), "{left:?}");
    host.kill();
    assert!(
        left.iter().any(|pid| alive(*pid)),
        "a SIGKILLed host cannot stop its VMs"
    );
    let restarted_ms = now_ms();
    let host = Host::start(&program, &node, &world.log);
    world.until("every process the killed host left stopped", || {
        left.iter().all(|pid| !alive(*pid))
    });
    let back = world.until_reported(&app, ZSwState::Running, restarted_ms);
    world.until("the app answering under the new host", || {
        get(app_port, "/").is_some()
    });
    let new_qemu = pid_in(&domain_pid_file).expect("the app's new QEMU pid");
    assert!(new_qemu != app_qemu && alive(new_qemu));
    assert!(back.boot_time != running.boot_time, "{back:?}");
    eprintln!("{arch}: host killed: app back in {:?}", step.elapsed());

    // 3. An app that does not fit is refused; the first keeps answering.
    let step = Instant::now();
    world.deployed = apps::deploy(
        world.deployed.clone(),
        &spec("big", image.clone(), sha256.clone(), 1024, free_port()),
    )
    .expect("evectl app deploy");
    let since = now_ms();
    world.apply();
    let big = apps::app_uuid(&world.deployed, "big").expect("the big app's UUID");
    let refused = world.until_reported(&big, ZSwState::Error, since);
    let errors: Vec<_> = refused.app_err.iter().map(|e| &e.description).collect();
    assert!(
        errors.iter().any(|e| e.starts_with(&format!("{big} does not fit"))
            && e.contains("1024 MiB of RAM")),
        "{errors:?}"
    );
    assert!(
        get(app_port, "/").is_some(),
        "the first app stopped answering"
    );
    assert_eq!(pid_in(&domain_pid_file), Some(new_qemu));
    eprintln!(
        "{arch}: big app refused in {:?}: {errors:?}",
        step.elapsed()
    );

    // 4. An app that crashes is reported with its reason and retried.
    let step = Instant::now();
    let crashy_port = free_port();
    world.deployed = apps::deploy(
        world.deployed.clone(),
        &spec("crashy", image, sha256, 32, crashy_port),
    )
    .expect("evectl app deploy");
    for app in world.deployed["apps"].as_array_mut().into_iter().flatten() {
        if app["displayname"] == "crashy" {
            app["fixedresources"]["extraargs"] = serde_json::json!("crash-path=/crash");
        }
    }
    let since = now_ms();
    world.apply();
    let crashy = apps::app_uuid(&world.deployed, "crashy").expect("the crashy app's UUID");
    let first = world.until_reported(&crashy, ZSwState::Running, since);
    world.until("an HTTP answer from the crashy app", || {
        get(crashy_port, "/").is_some()
    });
    assert_eq!(get(crashy_port, "/crash"), None);
    // The host boots it again by itself: RUNNING under a new boot time,
    // with the crash's reason as its error.
    let again = world.until_reported_with(&crashy, "the crashed app running again", |app| {
        app.state == ZSwState::Running as i32 && app.boot_time != first.boot_time
    });
    assert!(
        again
            .app_err
            .iter()
            .any(|e| e.description.contains("crash requested with GET /crash")),
        "the crash's reason is not the app's error: {again:?}"
    );
    // Its panic reaches the controller in the node's logs.
    world.until("the crash's reason in the controller's logs", || {
        world
            .ctl
            .store()
            .query_logs(&LogQuery {
                device: world.uuid.clone(),
                app: None,
                since_ms: None,
                until_ms: None,
                severity: None,
                contains: Some("crash requested with GET /crash".into()),
                after_id: None,
                limit: 10,
            })
            .is_ok_and(|logs| !logs.is_empty())
    });
    world.until("the retried app answering", || {
        get(crashy_port, "/").is_some()
    });
    assert!(
        get(app_port, "/").is_some(),
        "the first app stopped answering"
    );
    eprintln!(
        "{arch}: crashed app back and its panic logged after {:?}: {again:?}",
        step.elapsed()
    );

    drop(host);
    assert_eq!(
        processes_naming(&node.state),
        Vec::<u32>::new(),
        "a clean stop leaves nothing"
    );
    drop(world.http);
    drop(world.rt);
}

#[test]
fn apps_survive_a_killed_domainmgr_and_a_killed_host_on_x86_64() {
    apps_survive_crashes(Arch::X86_64);
}

#[test]
fn apps_survive_a_killed_domainmgr_and_a_killed_host_on_aarch64() {
    apps_survive_crashes(Arch::Aarch64);
}
