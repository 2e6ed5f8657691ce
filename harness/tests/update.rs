//! Whole-node base OS updates in the dev node: `eve-host run` as a
//! process on a GPT dev disk (`harness::devdisk`: v1 on IMGA), with
//! zedagent, the downloader, volumemgr and baseosmgr under QEMU (TCG),
//! against our controller in this process (reached through a relay the
//! test can close, `common/gate.rs`) and a plain HTTP datastore.
//!
//! The controller's config gets a base OS the way `evectl device update`
//! puts it there; the node downloads and verifies it, writes it to IMGB,
//! marks IMGB to be tried once and asks for a reboot: the host exits 3 and
//! is started again on the loader's choice, IMGB; on that trial boot the
//! node reaches the controller and commits IMGB, and the controller sees
//! the new version active on IMGB in `swList`. A second scenario has a
//! version refused (its image says another version) and a trial that dies
//! before its commit fall back, and `retry_update` bring the failed version
//! back once. A third, with nodeagent, has a v3 whose trial boot cannot
//! reach the controller fall back to v2 by itself and report `FALLBACK`,
//! then retried and committed. Each runs on both arches.

mod common;
#[path = "common/gate.rs"]
mod gate;
#[path = "common/tail.rs"]
mod tail;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::InProcessController;
use controller::identity::Identity;
use controller::server::{self, Controller};
use eve_host::manifest::Manifest;
use eve_proto::Message;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::info::{BaseOsStatus, BootReason, ZInfoDevSw, ZInfoDevice, ZInfoMsg};
use evectl::admin::Admin;
use evectl::devops::UpdateSpec;
use gate::Gate;
use gptab::ab::SlotState;
use harness::content::{FileServer, Served, sha256_hex};
use harness::devdisk::{self, DevDisk};
use harness::provision::{OnboardIdentity, config_files, write_config_partition};
use harness::{Arch, Profile, appassets, build_service, workspace_root};
use rustix::process::{Pid, Signal, kill_process};

/// A guard against a node that never gets there, not a timing target:
/// under TCG on a shared 2-core machine.
const PATIENCE: Duration = Duration::from_secs(600);
/// The services an update needs: zedagent (config, onboard status,
/// swList), the downloader and volumemgr (the image as a content tree)
/// and baseosmgr.
const SERVICES: &[&str] = &["zedagent", "downloader", "volumemgr", "baseosmgr"];
/// [`SERVICES`] and nodeagent, whose `timer.update.fallback.no.network`
/// gives up a trial boot that cannot reach the controller.
const WITH_NODEAGENT: &[&str] = &[
    "zedagent",
    "downloader",
    "volumemgr",
    "baseosmgr",
    "nodeagent",
];
/// The base OS volume (FAT, its `eve-release`) and the IMG partitions.
const BASE_OS_BYTES: u64 = 512 * 1024;
const SLOT_MIB: u64 = 1;
const ADMIN_TOKEN: &str = "update-test-token";

/// `nodes/default.toml` with only `services`: the same grants and
/// topics, fewer VMs on a shared machine; subscriptions to topics none of
/// them publishes are left out (the host refuses those).
fn update_manifest(services: &[&str]) -> String {
    let path = workspace_root().join("nodes/default.toml");
    let published: BTreeSet<String> = Manifest::load(&path)
        .expect("the default manifest")
        .services
        .iter()
        .filter(|s| services.contains(&s.name.as_str()))
        .flat_map(|s| s.bus.publish.clone())
        .collect();
    let text = std::fs::read_to_string(&path).expect("the default manifest");
    let mut blocks = text.split("\n[[service]]\n");
    let mut manifest = blocks.next().expect("the node section").to_owned();
    for block in blocks {
        let keep = services
            .iter()
            .any(|name| block.starts_with(&format!("name = \"{name}\"\n")));
        if keep {
            manifest.push_str("\n[[service]]\n");
            manifest.push_str(&published_subscriptions(block, &published));
        }
    }
    manifest
}

/// A service's stanza with only the subscriptions to `published` topics
/// and the host's own (`@...`).
fn published_subscriptions(block: &str, published: &BTreeSet<String>) -> String {
    const LIST: &str = "subscribe = [";
    let Some(start) = block.find(LIST) else {
        return block.to_owned();
    };
    let open = start + LIST.len();
    let close = open + block[open..].find(']').expect("a subscribe list ends");
    let topics: Vec<String> = block[open..close]
        .split(',')
        .map(|t| t.trim().trim_matches('"'))
        .filter(|t| t.starts_with('@') || published.contains(*t))
        .map(|t| format!("\"{t}\""))
        .collect();
    format!("{}{}{}", &block[..open], topics.join(", "), &block[close..])
}

/// The host's log across boots, for a failure's report.
#[derive(Default)]
struct HostLog(Mutex<Vec<String>>);

impl HostLog {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn tail(&self) -> String {
        tail::tail(&self.0.lock().unwrap())
    }

    /// Whether a line so far says `what`.
    fn has(&self, what: impl Fn(&str) -> bool) -> bool {
        self.0.lock().unwrap().iter().any(|l| what(l))
    }

    /// The first line from line `from` on that `read` reads, with its
    /// place.
    fn find_from<T>(&self, from: usize, read: impl Fn(&str) -> Option<T>) -> Option<(usize, T)> {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .enumerate()
            .skip(from)
            .find_map(|(i, l)| read(l).map(|v| (i, v)))
    }
}

/// The node's clock in a line where nodeagent says it started.
fn nodeagent_started_at(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once("nodeagent: started at ")?;
    rest.strip_suffix(" s on the node's clock")?.parse().ok()
}

/// What `eve-host run` needs besides the booted partition.
struct HostArgs {
    /// The node's arch (the manifest's is x86_64).
    arch: Arch,
    binary: PathBuf,
    manifest: PathBuf,
    images: PathBuf,
    state: PathBuf,
    config_part: PathBuf,
    disk: PathBuf,
}

/// The dev node: a host per boot on a thread, until one ends other than
/// by a reboot request.
struct DevNode {
    /// The running host's process id.
    host: Arc<Mutex<Option<u32>>>,
    boots: Arc<Mutex<Vec<String>>>,
    /// Set: the next trial boot (a partition the loader just moved from
    /// `updating` to `inprogress`) loses its power before its host starts,
    /// and the machine is powered on again.
    cut_next_trial: Arc<AtomicBool>,
    /// Set: the controller stops answering (the gate closes) as the next
    /// trial boot starts, and answers again as the node next boots a
    /// committed partition.
    isolate_next_trial: Arc<AtomicBool>,
    runner: Option<thread::JoinHandle<devdisk::DevRun>>,
}

impl DevNode {
    fn start(disk: &DevDisk, args: HostArgs, gate: &Arc<Gate>, log: &Arc<HostLog>) -> DevNode {
        let host = Arc::new(Mutex::new(None));
        let boots = Arc::new(Mutex::new(Vec::new()));
        let cut_next_trial = Arc::new(AtomicBool::new(false));
        let isolate_next_trial = Arc::new(AtomicBool::new(false));
        let (running, booted, log, disk) = (host.clone(), boots.clone(), log.clone(), disk.clone());
        let (cut, isolate, gate) = (
            cut_next_trial.clone(),
            isolate_next_trial.clone(),
            gate.clone(),
        );
        let runner = thread::spawn(move || {
            devdisk::run_host_until_not_rebooted(&disk, |slot| {
                booted.lock().unwrap().push(slot.to_owned());
                log.push(format!("--- boot from {slot} ---"));
                let trial = disk.state(slot).ok().flatten() == Some(SlotState::InProgress);
                if trial && cut.swap(false, Ordering::SeqCst) {
                    log.push(format!("--- the power is cut as {slot} boots ---"));
                    // Powered on again: the loader chooses anew, as after
                    // a reboot.
                    return Ok(ExitStatus::from_raw(devdisk::EXIT_REBOOT << 8));
                }
                if trial && isolate.swap(false, Ordering::SeqCst) {
                    gate.close();
                    log.push(format!(
                        "--- the controller stops answering as {slot} boots ---"
                    ));
                } else if !trial && gate.is_closed() {
                    gate.open();
                    log.push(format!(
                        "--- the controller answers again as {slot} boots ---"
                    ));
                }
                let mut child = Command::new(&args.binary)
                    .args(["run", "--accel", "tcg", "--arch", args.arch.name()])
                    .arg("--manifest")
                    .arg(&args.manifest)
                    .arg("--images")
                    .arg(&args.images)
                    .arg("--state-dir")
                    .arg(&args.state)
                    .arg("--config-part")
                    .arg(&args.config_part)
                    .arg("--disk")
                    .arg(&args.disk)
                    .args(["--booted-slot", slot])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()?;
                *running.lock().unwrap() = Some(child.id());
                let stderr = child.stderr.take().expect("stderr is piped");
                let lines = log.clone();
                let reader = thread::spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        lines.push(line);
                    }
                });
                let status = child.wait();
                *running.lock().unwrap() = None;
                let _ = reader.join();
                log.push(format!("--- the host ended: {status:?} ---"));
                status
            })
            .expect("the dev node boots")
        });
        DevNode {
            host,
            boots,
            cut_next_trial,
            isolate_next_trial,
            runner: Some(runner),
        }
    }

    /// Whether the node stopped booting (a host ended other than by a
    /// reboot request, or could not start).
    fn ended(&self) -> bool {
        self.runner.as_ref().is_none_or(|r| r.is_finished())
    }

    fn boots(&self) -> Vec<String> {
        self.boots.lock().unwrap().clone()
    }

    /// Stops the running host as Ctrl-C does (its VMs first) and answers
    /// how the run of boots ended.
    fn stop(&mut self) -> Option<devdisk::DevRun> {
        let runner = self.runner.take()?;
        while !runner.is_finished() {
            if let Some(pid) = *self.host.lock().unwrap() {
                let pid = Pid::from_raw(pid as i32).expect("a process id");
                let _ = kill_process(pid, Signal::TERM);
            }
            thread::sleep(Duration::from_millis(500));
        }
        runner.join().ok()
    }
}

impl Drop for DevNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest `ZInfoDevice` the controller holds.
fn reported_device(ctl: &Controller, uuid: &str) -> Option<ZInfoDevice> {
    let records = ctl.store().latest_info(uuid).unwrap_or_default();
    records
        .into_iter()
        .filter(|r| r.key == "device")
        .find_map(
            |r| match ZInfoMsg::decode(r.msg.as_slice()).ok()?.info_content? {
                InfoContent::Dinfo(device) => Some(device),
                _ => None,
            },
        )
}

/// The `swList` of the newest `ZInfoDevice` the controller holds.
fn reported_sw_list(ctl: &Controller, uuid: &str) -> Vec<ZInfoDevSw> {
    reported_device(ctl, uuid)
        .map(|d| d.sw_list)
        .unwrap_or_default()
}

/// `label`'s entry in `sw`.
fn partition<'a>(sw: &'a [ZInfoDevSw], label: &str) -> Option<&'a ZInfoDevSw> {
    sw.iter().find(|p| p.partition_label == label)
}

fn active_on(sw: &[ZInfoDevSw], label: &str, version: &str) -> bool {
    partition(sw, label).is_some_and(|p| p.activated && p.short_version == version)
}

/// Serves the admin API on loopback for `evectl`'s library.
fn serve_admin(
    rt: &tokio::runtime::Runtime,
    ctl: &Arc<Controller>,
    dir: &Path,
) -> (SocketAddr, PathBuf) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("admin listener");
    let addr = listener.local_addr().expect("admin address");
    let token = dir.join("admin-token");
    std::fs::write(&token, ADMIN_TOKEN).expect("the admin token");
    let serving = ctl.clone();
    rt.spawn(async move {
        let _ =
            controller::admin::serve_admin(serving, listener, Arc::new(String::from(ADMIN_TOKEN)))
                .await;
    });
    (addr, token)
}

/// Waits until `done` answers something; fails with `what` and the host's
/// log, at once if the node stopped booting.
fn until<T>(what: &str, node: &DevNode, log: &HostLog, mut done: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = done() {
            return v;
        }
        assert!(
            Instant::now() < deadline && !node.ended(),
            "{what} never happened (boots {:?}, node ended: {})\n{}",
            node.boots(),
            node.ended(),
            log.tail()
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// One scenario at a time: each runs a node of four VMs under TCG.
fn one_node_at_a_time() -> MutexGuard<'static, ()> {
    static NODE: Mutex<()> = Mutex::new(());
    NODE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A dev node booted from v1 on IMGA and onboarded, its controller (reached
/// through a gate the test can close), admin API and datastore.
struct Scenario {
    arch: Arch,
    work: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    ctl: Arc<Controller>,
    admin: Admin,
    datastore: FileServer,
    disk: DevDisk,
    log: Arc<HostLog>,
    node: DevNode,
    uuid: String,
}

impl Scenario {
    /// The node runs `services` (`nodes/default.toml`'s stanzas).
    fn start(arch: Arch, services: &[&str]) -> Scenario {
        let work = tempfile::tempdir().expect("a work directory");
        let manifest = work.path().join("node.toml");
        std::fs::write(&manifest, update_manifest(services)).expect("the manifest");
        let mut images = None;
        for &name in services {
            let image = build_service(name, arch, Profile::Release)
                .unwrap_or_else(|e| panic!("building {name} for {arch}: {e}"));
            images = image.parent().map(Path::to_path_buf);
        }
        let images = images.expect("an image directory");
        let binary = appassets::host_program("eve-host", "eve-host").expect("building eve-host");

        let identity = Identity::load_or_create(work.path()).expect("controller identity");
        let InProcessController {
            rt,
            ctl,
            tls,
            device_listener,
            port,
        } = InProcessController::new(identity, &work.path().join("c.db"));
        rt.spawn(server::serve_devices(ctl.clone(), device_listener, tls));
        let gate = Arc::new(Gate::start(port).expect("the gate to the controller"));
        let (admin_addr, token) = serve_admin(&rt, &ctl, work.path());
        let onboard = OnboardIdentity::generate("update-").expect("an onboarding identity");
        ctl.onboard_add(&onboard.cert_pem, std::slice::from_ref(&onboard.serial))
            .expect("pre-registered");
        let config_part = work.path().join("config.img");
        write_config_partition(
            &config_part,
            &config_files(gate.port(), &ctl.identity().root_pem, &onboard),
        )
        .expect("the CONFIG partition");
        let config_image = std::fs::read(&config_part).expect("the CONFIG image");

        let v1 = devdisk::base_os("1.0", BASE_OS_BYTES).expect("base OS v1");
        let disk = DevDisk::create(&work.path().join("disk.img"), &v1, SLOT_MIB, &config_image)
            .expect("the dev disk");
        let datastore = FileServer::start(None).expect("the HTTP datastore");
        let log = Arc::new(HostLog::default());
        let node = DevNode::start(
            &disk,
            HostArgs {
                arch,
                binary,
                manifest,
                images,
                state: work.path().join("state"),
                config_part,
                disk: disk.path().to_path_buf(),
            },
            &gate,
            &log,
        );
        let uuid = until("onboarding", &node, &log, || {
            ctl.store().devices().ok()?.first().map(|d| d.uuid.clone())
        });
        // A short config interval: a trial boot reaches the controller soon;
        // EVE's shortest test window (30 s): a trial is committed once the
        // window has passed since that first answer.
        ctl.set_config(
            &uuid,
            "configItems:\n  - { key: timer.config.interval, value: \"5\" }\n  \
             - { key: timer.test.baseimage.update, value: \"30\" }\n",
        )
        .expect("the config items are accepted");
        let admin = Admin::new(&format!("http://{admin_addr}"), &token, false).expect("admin");
        Scenario {
            arch,
            work,
            rt,
            ctl,
            admin,
            datastore,
            disk,
            log,
            node,
            uuid,
        }
    }

    /// Serves a base OS volume saying `inside` and has `evectl device
    /// update` ask for `version` from it (`retry`: bumping
    /// `retry_update`).
    fn update(&mut self, version: &str, inside: &str, retry: bool) {
        let image = devdisk::base_os(inside, BASE_OS_BYTES).expect("a base OS volume");
        let path = format!("/os/eve-{version}-{inside}.img");
        self.datastore.put(&path, Served::file(image.clone()));
        let said = self
            .rt
            .block_on(self.admin.device_update(
                &self.uuid,
                &UpdateSpec {
                    image: format!("http://10.0.2.2:{}{path}", self.datastore.port()),
                    version: version.into(),
                    sha256: sha256_hex(&image),
                    activate: true,
                    retry,
                },
            ))
            .expect("evectl device update");
        assert!(
            said.contains(&format!("base OS {version} set to activate")),
            "{said}"
        );
    }

    /// Waits until the controller's `swList` satisfies `done`.
    /// Sets one config item through evectl's `device config-item set`.
    fn config_item(&mut self, name: &str, value: &str) {
        let said = self
            .rt
            .block_on(self.admin.device_config_item_set(&self.uuid, name, value))
            .expect("evectl device config-item set");
        assert!(said.contains(name), "{said}");
    }

    fn until_reported(&self, what: &str, done: impl Fn(&[ZInfoDevSw]) -> bool) -> Vec<ZInfoDevSw> {
        until(what, &self.node, &self.log, || {
            let sw = reported_sw_list(&self.ctl, &self.uuid);
            done(&sw).then_some(sw)
        })
    }

    fn state(&self, label: &str) -> Option<SlotState> {
        self.disk.state(label).expect("the disk")
    }

    fn assert_boots(&self, boots: &[&str]) {
        assert_eq!(self.node.boots(), boots, "{}", self.log.tail());
    }

    /// Stops the node, which must end cleanly after `boots`.
    fn stop(mut self, boots: &[&str]) {
        let run = self.node.stop().expect("the dev node ran");
        assert!(
            run.status.success(),
            "{:?}\n{}",
            run.status,
            self.log.tail()
        );
        assert_eq!(run.boots, boots);
        drop(self.work);
    }
}

fn updates_its_base_os_and_commits_it(arch: Arch) {
    let _one = one_node_at_a_time();
    let mut s = Scenario::start(arch, SERVICES);
    let asked = Instant::now();
    s.update("2.0", "2.0", false);
    let sw = s.until_reported("v2 active on IMGB in the controller's view", |sw| {
        active_on(sw, "IMGB", "2.0")
    });
    eprintln!(
        "update flow, {}: config to committed in {:.1} s",
        s.arch,
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(
        s.state("IMGB"),
        Some(SlotState::Active),
        "IMGB committed\n{sw:#?}\n{}",
        s.log.tail()
    );
    assert_eq!(s.state("IMGA"), Some(SlotState::Unused));
    s.assert_boots(&["IMGA", "IMGB"]);
    let shown =
        s.rt.block_on(s.admin.device_show(&s.uuid))
            .expect("evectl device show");
    assert!(
        shown.contains("partition IMGB: 2.0 active"),
        "evectl shows\n{shown}"
    );
    s.stop(&["IMGA", "IMGB"]);
}

// `cargo xtask bench image` runs these by name and reads the line
// "update flow, ARCH: config to committed in S s".
#[test]
fn a_node_updates_its_base_os_and_commits_it_x86_64() {
    updates_its_base_os_and_commits_it(Arch::X86_64);
}

#[test]
fn a_node_updates_its_base_os_and_commits_it_aarch64() {
    updates_its_base_os_and_commits_it(Arch::Aarch64);
}

fn user_status(sw: &[ZInfoDevSw], label: &str) -> Option<BaseOsStatus> {
    partition(sw, label).and_then(|p| BaseOsStatus::try_from(p.user_status).ok())
}

fn error_of(sw: &[ZInfoDevSw], label: &str) -> String {
    partition(sw, label)
        .and_then(|p| p.sw_err.as_ref())
        .map(|e| e.description.clone())
        .unwrap_or_default()
}

/// How long a failed version is watched not being tried again: several
/// of baseosmgr's periods (5 s) and config fetches (5 s).
const NOT_RETRIED_FOR: Duration = Duration::from_secs(20);

fn refused_or_fallen_back_version_waits_for_retry_update(arch: Arch) {
    let _one = one_node_at_a_time();
    let mut s = Scenario::start(arch, SERVICES);

    // v4: the config says 4.0, the image says 4.1: refused before a byte
    // is written, and the node keeps running v1.
    s.update("4.0", "4.1", false);
    let sw = s.until_reported("v4 refused in the controller's view", |sw| {
        user_status(sw, "IMGB") == Some(BaseOsStatus::Failed)
    });
    let error = error_of(&sw, "IMGB");
    assert!(error.contains("eve-release is \"4.1\""), "{sw:#?}");
    assert!(active_on(&sw, "IMGA", "1.0"), "{sw:#?}");
    assert_eq!(
        partition(&sw, "IMGB").map(|p| p.short_version.as_str()),
        Some(""),
        "nothing written: {sw:#?}"
    );
    assert_eq!(s.state("IMGB"), Some(SlotState::Unused), "not bootable");
    assert_eq!(s.state("IMGA"), Some(SlotState::Active));
    s.assert_boots(&["IMGA"]);

    // v3: written and tried once, but the trial boot loses its power
    // before it reaches the controller; the loader falls back to IMGA,
    // whose baseosmgr reports v3 FALLBACK.
    s.node.cut_next_trial.store(true, Ordering::SeqCst);
    s.update("3.0", "3.0", false);
    let sw = s.until_reported("v3 fallen back in the controller's view", |sw| {
        user_status(sw, "IMGB") == Some(BaseOsStatus::Fallback)
    });
    assert!(
        error_of(&sw, "IMGB").contains("fell back to IMGA"),
        "{sw:#?}"
    );
    assert!(active_on(&sw, "IMGA", "1.0"), "{sw:#?}");
    s.assert_boots(&["IMGA", "IMGB", "IMGA"]);
    // Not tried again by itself.
    thread::sleep(NOT_RETRIED_FOR);
    s.assert_boots(&["IMGA", "IMGB", "IMGA"]);
    assert_eq!(s.state("IMGB"), Some(SlotState::InProgress));
    let sw = reported_sw_list(&s.ctl, &s.uuid);
    assert_eq!(
        user_status(&sw, "IMGB"),
        Some(BaseOsStatus::Fallback),
        "{sw:#?}"
    );

    // `evectl device update --retry`: v3 once more, committed this time.
    let asked = Instant::now();
    s.update("3.0", "3.0", true);
    s.until_reported("v3 active on IMGB after the retry", |sw| {
        active_on(sw, "IMGB", "3.0")
    });
    eprintln!(
        "update flow, {} (retry): config to committed in {:.1} s",
        s.arch,
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(s.state("IMGB"), Some(SlotState::Active));
    assert_eq!(s.state("IMGA"), Some(SlotState::Unused));
    s.stop(&["IMGA", "IMGB", "IMGA", "IMGB"]);
}

#[test]
fn a_refused_or_fallen_back_version_waits_for_retry_update_x86_64() {
    refused_or_fallen_back_version_waits_for_retry_update(Arch::X86_64);
}

#[test]
fn a_refused_or_fallen_back_version_waits_for_retry_update_aarch64() {
    refused_or_fallen_back_version_waits_for_retry_update(Arch::Aarch64);
}

fn boot_reason(s: &Scenario) -> Option<BootReason> {
    reported_device(&s.ctl, &s.uuid).and_then(|d| BootReason::try_from(d.last_boot_reason).ok())
}

/// v2 committed; v3's trial boot cannot reach the controller (the gate is
/// closed for that boot), so nodeagent's `timer.update.fallback.no.network`
/// (60 s, EVE's least; the test window is raised to 600 s for it) reboots the node,
/// the loader falls back to v2, and once the controller answers again it
/// sees v3 `FALLBACK` and the boot reason `FALLBACK`. During that trial
/// nodeagent's VM is killed; the host starts it again, and it starts on the
/// node's clock, not at 0, so a nodeagent that crashes cannot put its
/// fallback off. `retry_update` then tries v3 once more, reachable, and it
/// commits.
fn cannot_reach_the_controller_falls_back_by_itself(arch: Arch) {
    let _one = one_node_at_a_time();
    let mut s = Scenario::start(arch, WITH_NODEAGENT);
    let asked = Instant::now();
    s.update("2.0", "2.0", false);
    s.until_reported("v2 active on IMGB", |sw| active_on(sw, "IMGB", "2.0"));
    eprintln!(
        "update flow, {}: v2 config to committed in {:.1} s",
        s.arch,
        asked.elapsed().as_secs_f64()
    );
    s.config_item("timer.update.fallback.no.network", "60");
    // baseosmgr gives up a trial that never reaches the controller after
    // the test window too: a longer window leaves it to nodeagent's timer.
    s.config_item("timer.test.baseimage.update", "600");

    s.node.isolate_next_trial.store(true, Ordering::SeqCst);
    let asked = Instant::now();
    let before = s.log.len();
    s.update("3.0", "3.0", false);
    kill_nodeagent_on_the_trial(&s, before);
    let sw = s.until_reported("v3 fallen back in the controller's view", |sw| {
        user_status(sw, "IMGA") == Some(BaseOsStatus::Fallback) && active_on(sw, "IMGB", "2.0")
    });
    eprintln!(
        "fallback, {}: v3 config to FALLBACK reported in {:.1} s",
        s.arch,
        asked.elapsed().as_secs_f64()
    );
    assert!(
        error_of(&sw, "IMGA").contains("fell back to IMGB"),
        "{sw:#?}"
    );
    assert_eq!(
        partition(&sw, "IMGA").map(|p| p.short_version.as_str()),
        Some("3.0"),
        "{sw:#?}"
    );
    assert_eq!(
        boot_reason(&s),
        Some(BootReason::Fallback),
        "{}",
        s.log.tail()
    );
    assert!(
        s.log
            .has(|l| l.contains("nodeagent") && l.contains("rebooting the node (Fallback)")),
        "nodeagent's timer gave the trial up\n{}",
        s.log.tail()
    );
    s.assert_boots(&["IMGA", "IMGB", "IMGA", "IMGB"]);
    assert_eq!(s.state("IMGB"), Some(SlotState::Active));
    assert_eq!(s.state("IMGA"), Some(SlotState::InProgress));

    s.config_item("timer.test.baseimage.update", "30");
    let asked = Instant::now();
    s.update("3.0", "3.0", true);
    s.until_reported("v3 active on IMGA after the retry", |sw| {
        active_on(sw, "IMGA", "3.0")
    });
    eprintln!(
        "update flow, {} (retry after fallback): config to committed in {:.1} s",
        s.arch,
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(s.state("IMGA"), Some(SlotState::Active));
    assert_eq!(s.state("IMGB"), Some(SlotState::Unused));
    s.stop(&["IMGA", "IMGB", "IMGA", "IMGB", "IMGA"]);
}

/// Once nodeagent runs on the isolated trial boot (the first after log
/// line `from`), kills its VM a while later and waits for the host to
/// start it again: the new run's clock must have gone on from the first's.
fn kill_nodeagent_on_the_trial(s: &Scenario, from: usize) {
    let (trial, ()) = until("v3's trial boot, isolated", &s.node, &s.log, || {
        s.log.find_from(from, |l| {
            l.contains("the controller stops answering").then_some(())
        })
    });
    let (seen, first) = until("nodeagent on the trial boot", &s.node, &s.log, || {
        s.log.find_from(trial, nodeagent_started_at)
    });
    // Well inside the 60 s the trial has.
    const RUN: Duration = Duration::from_secs(10);
    thread::sleep(RUN);
    let pid_file = s.work.path().join("state/run/nodeagent.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .and_then(Pid::from_raw)
        .unwrap_or_else(|| panic!("no pid in {}", pid_file.display()));
    kill_process(pid, Signal::KILL).expect("nodeagent's QEMU killed");
    let (_, again) = until(
        "nodeagent started again by the host",
        &s.node,
        &s.log,
        || s.log.find_from(seen + 1, nodeagent_started_at),
    );
    assert!(
        again >= first + RUN.as_secs(),
        "nodeagent started at {first} s, was killed {RUN:?} later and started again at {again} s on the node's clock\n{}",
        s.log.tail()
    );
}

#[test]
fn a_version_that_cannot_reach_the_controller_falls_back_by_itself_x86_64() {
    cannot_reach_the_controller_falls_back_by_itself(Arch::X86_64);
}

#[test]
fn a_version_that_cannot_reach_the_controller_falls_back_by_itself_aarch64() {
    cannot_reach_the_controller_falls_back_by_itself(Arch::Aarch64);
}
