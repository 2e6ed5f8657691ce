//! A whole node in this process, as `eve-host run` starts one: the host's
//! bus and targets (`NodeBus::start`) over a state directory, the
//! services' VMs on a thread, and our controller on loopback onboarding
//! it. Included with `#[path]` by the scenarios that deploy apps through
//! the node (with `common` and `hostlog`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use controller::server::{self, Controller};
use eve_host::manifest::Manifest;
use eve_host::node::{Node, NodePaths, Seams};
use eve_host::nodebus::{NodeBus, TpmChoice};
use eve_host::qemu::QemuVmm;
use eve_host::servicelog::ServiceLogs;
use eve_host::targets::{ContentOptions, DomainsOptions};
use eve_host::vfio::VfioRoots;
use eve_host::volumes::StateDir;
use eve_proto::Message;
use eve_proto::info::ZInfoApp;
use eve_proto::info::ZInfoMsg;
use eve_proto::info::z_info_msg::InfoContent;
use harness::provision::{OnboardIdentity, config_files, write_config_partition};
use harness::{Arch, Profile, build_service, workspace_root};
use topics::Topic;

use crate::common::InProcessController;
use crate::hostlog::Lines;

/// Our controller on loopback (device API only) and the device it
/// onboarded.
pub struct LocalController {
    /// Serves the device API for as long as it lives.
    _rt: tokio::runtime::Runtime,
    pub ctl: Arc<Controller>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl LocalController {
    pub fn start() -> LocalController {
        let dir = tempfile::tempdir().expect("controller directory");
        let identity = controller::identity::Identity::load_or_create(dir.path())
            .expect("controller identity");
        let InProcessController {
            rt,
            ctl,
            tls,
            device_listener,
            port,
        } = InProcessController::new(identity, &dir.path().join("c.db"));
        rt.spawn(server::serve_devices(ctl.clone(), device_listener, tls));
        LocalController {
            _rt: rt,
            ctl,
            dir,
            port,
        }
    }

    /// The newest `ZInfoApp` the controller holds from `device` about app
    /// `app`.
    pub fn reported_app(&self, device: &str, app: &str) -> Option<ZInfoApp> {
        let key = format!("app/{app}");
        let records = self.ctl.store().latest_info(device).ok()?;
        let record = records.into_iter().find(|r| r.key == key)?;
        match ZInfoMsg::decode(record.msg.as_slice()).ok()?.info_content? {
            InfoContent::Ainfo(app) => Some(app),
            _ => None,
        }
    }
}

/// The host's last 200 lines, for a failure's report.
pub fn tail(lines: &Lines) -> String {
    let lines = lines.snapshot();
    lines[lines.len().saturating_sub(200)..].join("\n")
}

/// A running node: the host's bus and targets, and its VMs on a thread.
pub struct RunningNode {
    bus: Option<NodeBus>,
    stop: Arc<AtomicBool>,
    runner: Option<thread::JoinHandle<()>>,
    states: Arc<Mutex<Vec<String>>>,
    pub lines: Arc<Lines>,
    /// The node's state directory, removed when the node is dropped.
    _state: tempfile::TempDir,
    /// The device's UUID once onboarded.
    pub uuid: String,
}

impl RunningNode {
    /// Builds the services of `nodes/default.toml` for `arch`, starts the
    /// node with a software TPM and `domains` for its apps, and waits
    /// (bounded by `patience`) until `ctl` onboarded it.
    pub fn onboard(
        arch: Arch,
        ctl: &LocalController,
        domains: DomainsOptions,
        patience: Duration,
    ) -> RunningNode {
        let mut manifest =
            Manifest::load(&workspace_root().join("nodes/default.toml")).expect("the manifest");
        manifest.node.arch = arch;
        let images = images(&manifest);
        let identity = OnboardIdentity::generate("apps-").expect("an onboarding identity");
        ctl.ctl
            .onboard_add(&identity.cert_pem, std::slice::from_ref(&identity.serial))
            .expect("pre-registered");
        let config_part = ctl.dir.path().join("config.img");
        write_config_partition(
            &config_part,
            &config_files(ctl.port, &ctl.ctl.identity().root_pem, &identity),
        )
        .expect("the CONFIG partition");
        let state = tempfile::tempdir().expect("state directory");
        let lines = Arc::new(Lines::default());
        let dir = StateDir::create(state.path()).expect("state directory");
        let bus = NodeBus::start(
            &manifest,
            state.path(),
            &TpmChoice::Swtpm,
            ContentOptions::default(),
            &domains,
            None,
            ServiceLogs::new(&dir.logs(), lines.clone()),
        )
        .expect("the node's bus");
        let accel = guest_arch::choose_accel(arch, None).expect("an accelerator");
        let paths = NodePaths {
            images,
            state_dir: state.path().to_path_buf(),
            config_part: Some(config_part),
        };
        let node = Node::prepare(&manifest, &paths, &accel, &VfioRoots::default()).expect("node");
        let broker = bus.broker().clone();
        let seams = Seams {
            bus: Arc::new(broker.clone()),
            heartbeats: Arc::new(broker),
            log: lines.clone(),
            status: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let states = Arc::new(Mutex::new(Vec::new()));
        let (stopping, seen) = (stop.clone(), states.clone());
        let runner = thread::spawn(move || {
            node.run(QemuVmm, seams, &stopping, Duration::from_secs(10), |s| {
                seen.lock().unwrap().push(s.to_string());
            });
        });
        let mut node = RunningNode {
            bus: Some(bus),
            stop,
            runner: Some(runner),
            states,
            lines,
            _state: state,
            uuid: String::new(),
        };
        let deadline = Instant::now() + patience;
        node.uuid = loop {
            if let Some(d) = ctl.ctl.store().devices().unwrap().first() {
                break d.uuid.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{arch}: never onboarded\n{}",
                tail(&node.lines)
            );
            thread::sleep(Duration::from_millis(250));
        };
        node
    }

    /// Stops every VM, then the host's targets.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(runner) = self.runner.take() {
            let _ = runner.join();
        }
        self.bus.take();
    }

    /// A topic's table on the node's bus, decoded.
    pub fn table<T: Topic>(&self) -> BTreeMap<String, T::Value> {
        self.bus
            .as_ref()
            .map(|bus| bus.broker().table(T::NAME))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| topics::decode::<T>(&v).ok().map(|v| (k, v)))
            .collect()
    }

    /// Service states that say something panicked or crash-looped.
    pub fn troubles(&self) -> Vec<String> {
        self.states
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.contains("panic") || s.contains("CRASH"))
            .cloned()
            .collect()
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds the image of every service of `manifest`; the directory they
/// are in.
fn images(manifest: &Manifest) -> PathBuf {
    let mut dir = None;
    for service in &manifest.services {
        let image = build_service(&service.image, manifest.node.arch, Profile::Release)
            .unwrap_or_else(|e| panic!("building {}: {e}", service.image));
        dir = image.parent().map(Path::to_path_buf);
    }
    dir.expect("an image directory")
}
