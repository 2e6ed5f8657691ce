//! A whole node in this process, as `eve-host run` starts one
//! (`noderun`), over a state directory of its own, and our controller on
//! loopback onboarding it. Included with `#[path]` by the scenarios that
//! deploy apps through the node (with `common`, `hostlog`, `images`,
//! `noderun` and `tail`).

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use controller::server::{self, Controller};
use eve_host::manifest::Manifest;
use eve_host::targets::{ContentOptions, DomainsOptions};
use eve_proto::Message;
use eve_proto::info::ZInfoApp;
use eve_proto::info::ZInfoMsg;
use eve_proto::info::z_info_msg::InfoContent;
use harness::provision::{OnboardIdentity, config_files, write_config_partition};
use harness::{Arch, workspace_root};

use crate::common::InProcessController;
use crate::hostlog::Lines;
use crate::images::service_images;
use crate::noderun::NodeRun;
use crate::tail::tail;

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

    /// The newest report the controller holds from `device` about the
    /// object `key` (`app/<uuid>`, `volume/<uuid>`, as zedagent keys them).
    pub fn reported(&self, device: &str, key: &str) -> Option<InfoContent> {
        let records = self.ctl.store().latest_info(device).ok()?;
        let record = records.into_iter().find(|r| r.key == key)?;
        ZInfoMsg::decode(record.msg.as_slice()).ok()?.info_content
    }

    /// The newest `ZInfoApp` the controller holds from `device` about app
    /// `app`.
    pub fn reported_app(&self, device: &str, app: &str) -> Option<ZInfoApp> {
        match self.reported(device, &format!("app/{app}"))? {
            InfoContent::Ainfo(app) => Some(app),
            _ => None,
        }
    }
}

/// A running node onboarded to a [`LocalController`].
pub struct RunningNode {
    /// Declared first: the node stops before its state directory goes.
    pub run: NodeRun,
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
        let images = service_images(&manifest);
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
        let run = NodeRun::start(
            &manifest,
            &images,
            state.path(),
            &config_part,
            ContentOptions::default(),
            &domains,
            &lines,
        );
        let mut node = RunningNode {
            run,
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
                tail(&node.lines.snapshot())
            );
            thread::sleep(Duration::from_millis(250));
        };
        node
    }
}
