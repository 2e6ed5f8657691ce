//! Our controller in the test's process for a node image booted as a
//! whole machine (`harness::nodeimage`): its TLS certificate reissued for
//! the node's uplink, an onboarding certificate registered, the image's
//! CONFIG files written, and its admin API served for `evectl`'s library.
//! Kept apart from `tests/image.rs` so the image scenarios can share it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::InProcessController;
use controller::identity::Identity;
use controller::server::{self, Controller};
use evectl::admin::Admin;
use harness::Arch;
use harness::nodeimage::{self, NodeConsole};
use harness::provision::OnboardIdentity;

const ADMIN_TOKEN: &str = "image-test-token";

/// Our controller in this process, its device API on a loopback port.
pub struct LocalController {
    /// Runs the device and admin APIs; dropped with the controller.
    pub rt: tokio::runtime::Runtime,
    pub ctl: Arc<Controller>,
    pub port: u16,
}

impl LocalController {
    /// The controller whose data directory is `dir`, serving devices.
    pub fn start(dir: &Path) -> LocalController {
        Identity::load_or_create(dir).expect("controller identity");
        nodeimage::reissue_controller_tls(dir).expect("TLS certificate for the node's uplink");
        let identity = Identity::load_or_create(dir).expect("controller identity");
        let InProcessController {
            rt,
            ctl,
            tls,
            device_listener,
            port,
        } = InProcessController::new(identity, &dir.join("controller.db"));
        rt.spawn(server::serve_devices(ctl.clone(), device_listener, tls));
        rt.spawn(server::housekeeping(ctl.clone()));
        LocalController { rt, ctl, port }
    }

    /// Registers a new onboarding certificate (serials starting with
    /// `prefix`) and writes the node image's CONFIG files for it into
    /// `config`.
    pub fn provision(&self, prefix: &str, config: &Path) -> OnboardIdentity {
        let identity = OnboardIdentity::generate(prefix).expect("onboarding identity");
        self.ctl
            .onboard_add(&identity.cert_pem, std::slice::from_ref(&identity.serial))
            .expect("onboarding certificate registered");
        let root_pem = self.ctl.identity().root_pem.clone();
        std::fs::create_dir_all(config).expect("the CONFIG directory");
        for (name, data) in nodeimage::config_files(self.port, &root_pem, &identity) {
            std::fs::write(config.join(name), data).expect("CONFIG file");
        }
        identity
    }

    /// The UUID of the device that registered with `serial`, once it has
    /// also sent its device info.
    pub fn onboarded(&self, serial: &str) -> Option<String> {
        let store = self.ctl.store();
        let device = store
            .devices()
            .ok()?
            .into_iter()
            .find(|d| d.serial == serial)?;
        let info = store.latest_info(&device.uuid).ok()?;
        (!info.is_empty()).then_some(device.uuid)
    }

    /// Waits, reading `console`, until the node with `serial` has
    /// onboarded; its UUID. Fails with the console's transcript when the
    /// machine stops or `patience` runs out first.
    pub fn until_onboarded(
        &self,
        serial: &str,
        console: &mut NodeConsole,
        patience: Duration,
    ) -> String {
        let until = Instant::now() + patience;
        loop {
            if let Some(uuid) = self.onboarded(serial) {
                return uuid;
            }
            assert!(
                Instant::now() < until && !console.exited(),
                "the node did not onboard within {patience:?}:\n{}",
                console.transcript()
            );
            console.pump(Duration::from_secs(2));
        }
    }

    /// Serves the admin API on loopback, its token in `dir`, and answers
    /// `evectl`'s client for it.
    pub fn admin(&self, dir: &Path) -> Admin {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("admin listener");
        let addr = listener.local_addr().expect("admin address");
        let token = dir.join("admin-token");
        std::fs::write(&token, ADMIN_TOKEN).expect("the admin token");
        let serving = self.ctl.clone();
        self.rt.spawn(async move {
            let _ = controller::admin::serve_admin(
                serving,
                listener,
                Arc::new(String::from(ADMIN_TOKEN)),
            )
            .await;
        });
        Admin::new(&format!("http://{addr}"), &token, false).expect("admin")
    }
}

/// A fresh scratch directory `<prefix>-<arch>-<pid>` under the temporary
/// directory, emptied of an earlier run's.
pub fn scratch(prefix: &str, arch: Arch) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{arch}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// `cargo xtask image` for `arch`, base OS `version`, with `config` as its
/// CONFIG files and `extra` options; answers the update artifact written
/// beside `out` (`<stem>-baseos.img`).
pub fn build_image(
    arch: Arch,
    version: &str,
    config: &Path,
    out: &Path,
    extra: &[&str],
) -> PathBuf {
    let started = Instant::now();
    let status = harness::xtask_command()
        .args(["image", "--arch", arch.name(), "--version", version])
        .args(extra)
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .status()
        .expect("cargo xtask image runs");
    assert!(status.success(), "cargo xtask image failed ({status})");
    println!(
        "cargo xtask image --arch {} --version {version}: {:.1} s",
        arch.name(),
        started.elapsed().as_secs_f64()
    );
    let stem = out.file_stem().expect("an image file name");
    out.with_file_name(format!("{}-baseos.img", stem.to_string_lossy()))
}
