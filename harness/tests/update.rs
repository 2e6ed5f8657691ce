//! A whole-node base OS update in the dev node (x86_64): `eve-host run`
//! as a process on a GPT dev disk (`harness::devdisk`: v1 on IMGA), with
//! zedagent, the downloader, volumemgr and baseosmgr under QEMU (TCG),
//! against our controller in this process and a plain HTTP datastore.
//!
//! The controller's config gets base OS v2 the way `evectl device update`
//! puts it there; the node downloads and verifies it, writes it to IMGB,
//! marks IMGB to be tried once and asks for a reboot: the host exits 3 and
//! is started again on the loader's choice, IMGB; on that trial boot the
//! node reaches the controller and commits IMGB, and the controller sees
//! v2 active on IMGB in `swList`.

mod common;
#[path = "common/tail.rs"]
mod tail;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::InProcessController;
use controller::identity::Identity;
use controller::server::{self, Controller};
use eve_host::manifest::Manifest;
use eve_proto::Message;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::info::{ZInfoDevSw, ZInfoMsg};
use evectl::admin::Admin;
use evectl::devops::UpdateSpec;
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
const SERVICES: [&str; 4] = ["zedagent", "downloader", "volumemgr", "baseosmgr"];
/// The base OS volume (FAT, its `eve-release`) and the IMG partitions.
const BASE_OS_BYTES: u64 = 512 * 1024;
const SLOT_MIB: u64 = 1;
const ADMIN_TOKEN: &str = "update-test-token";

/// `nodes/default.toml` with only [`SERVICES`]: the same grants and
/// topics, fewer VMs on a shared machine; subscriptions to topics none of
/// them publishes are left out (the host refuses those).
fn update_manifest() -> String {
    let path = workspace_root().join("nodes/default.toml");
    let published: BTreeSet<String> = Manifest::load(&path)
        .expect("the default manifest")
        .services
        .iter()
        .filter(|s| SERVICES.contains(&s.name.as_str()))
        .flat_map(|s| s.bus.publish.clone())
        .collect();
    let text = std::fs::read_to_string(&path).expect("the default manifest");
    let mut blocks = text.split("\n[[service]]\n");
    let mut manifest = blocks.next().expect("the node section").to_owned();
    for block in blocks {
        let keep = SERVICES
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

    fn tail(&self) -> String {
        tail::tail(&self.0.lock().unwrap())
    }
}

/// What `eve-host run` needs besides the booted partition.
struct HostArgs {
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
    runner: Option<thread::JoinHandle<devdisk::DevRun>>,
}

impl DevNode {
    fn start(disk: &DevDisk, args: HostArgs, log: &Arc<HostLog>) -> DevNode {
        let host = Arc::new(Mutex::new(None));
        let boots = Arc::new(Mutex::new(Vec::new()));
        let (running, booted, log, disk) = (host.clone(), boots.clone(), log.clone(), disk.clone());
        let runner = thread::spawn(move || {
            devdisk::run_host_until_not_rebooted(&disk, |slot| {
                booted.lock().unwrap().push(slot.to_owned());
                log.push(format!("--- boot from {slot} ---"));
                let mut child = Command::new(&args.binary)
                    .args(["run", "--accel", "tcg", "--manifest"])
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

/// The `swList` of the newest `ZInfoDevice` the controller holds.
fn reported_sw_list(ctl: &Controller, uuid: &str) -> Vec<ZInfoDevSw> {
    let records = ctl.store().latest_info(uuid).unwrap_or_default();
    records
        .into_iter()
        .filter(|r| r.key == "device")
        .find_map(
            |r| match ZInfoMsg::decode(r.msg.as_slice()).ok()?.info_content? {
                InfoContent::Dinfo(device) => Some(device.sw_list),
                _ => None,
            },
        )
        .unwrap_or_default()
}

fn v2_active_on_imgb(sw: &[ZInfoDevSw]) -> bool {
    sw.iter()
        .any(|p| p.partition_label == "IMGB" && p.activated && p.short_version == "2.0")
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

#[test]
fn a_node_updates_its_base_os_and_commits_it() {
    let arch = Arch::X86_64;
    let work = tempfile::tempdir().expect("a work directory");
    let manifest = work.path().join("node.toml");
    std::fs::write(&manifest, update_manifest()).expect("the manifest");
    let mut images = None;
    for name in SERVICES {
        let image = build_service(name, arch, Profile::Release)
            .unwrap_or_else(|e| panic!("building {name}: {e}"));
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
    let (admin_addr, token) = serve_admin(&rt, &ctl, work.path());
    let onboard = OnboardIdentity::generate("update-").expect("an onboarding identity");
    ctl.onboard_add(&onboard.cert_pem, std::slice::from_ref(&onboard.serial))
        .expect("pre-registered");
    let config_part = work.path().join("config.img");
    write_config_partition(
        &config_part,
        &config_files(port, &ctl.identity().root_pem, &onboard),
    )
    .expect("the CONFIG partition");
    let config_image = std::fs::read(&config_part).expect("the CONFIG image");

    let v1 = devdisk::base_os("1.0", BASE_OS_BYTES).expect("base OS v1");
    let disk = DevDisk::create(&work.path().join("disk.img"), &v1, SLOT_MIB, &config_image)
        .expect("the dev disk");
    let v2 = devdisk::base_os("2.0", BASE_OS_BYTES).expect("base OS v2");
    let datastore = FileServer::start(None).expect("the HTTP datastore");
    datastore.put("/os/eve-2.0.img", Served::file(v2.clone()));

    let log = Arc::new(HostLog::default());
    let mut node = DevNode::start(
        &disk,
        HostArgs {
            binary,
            manifest,
            images,
            state: work.path().join("state"),
            config_part,
            disk: disk.path().to_path_buf(),
        },
        &log,
    );
    let uuid = until("onboarding", &node, &log, || {
        ctl.store().devices().ok()?.first().map(|d| d.uuid.clone())
    });
    // A short config interval: the trial boot reaches the controller soon.
    ctl.set_config(
        &uuid,
        "configItems:\n  - { key: timer.config.interval, value: \"5\" }\n",
    )
    .expect("the config items are accepted");
    let mut admin = Admin::new(&format!("http://{admin_addr}"), &token, false).expect("admin");
    let said = rt
        .block_on(admin.device_update(
            &uuid,
            &UpdateSpec {
                image: format!("http://10.0.2.2:{}/os/eve-2.0.img", datastore.port()),
                version: "2.0".into(),
                sha256: sha256_hex(&v2),
                activate: true,
                retry: false,
            },
        ))
        .expect("evectl device update");
    assert!(said.contains("base OS 2.0 set to activate"), "{said}");

    let sw = until(
        "v2 active on IMGB in the controller's view",
        &node,
        &log,
        || {
            let sw = reported_sw_list(&ctl, &uuid);
            v2_active_on_imgb(&sw).then_some(sw)
        },
    );
    assert_eq!(
        disk.state("IMGB").expect("the disk"),
        Some(SlotState::Active),
        "IMGB committed\n{sw:#?}\n{}",
        log.tail()
    );
    assert_eq!(
        disk.state("IMGA").expect("the disk"),
        Some(SlotState::Unused)
    );
    assert_eq!(node.boots(), ["IMGA", "IMGB"], "{}", log.tail());
    let shown = rt
        .block_on(admin.device_show(&uuid))
        .expect("evectl device show");
    assert!(
        shown.contains("partition IMGB: 2.0 active"),
        "evectl shows\n{shown}"
    );
    let run = node.stop().expect("the dev node ran");
    assert!(run.status.success(), "{:?}\n{}", run.status, log.tail());
    assert_eq!(run.boots, ["IMGA", "IMGB"]);
}
