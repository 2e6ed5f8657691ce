//! The node image, as a user gets it: `cargo xtask image` with a CONFIG
//! partition for our controller, booted under QEMU with UEFI firmware
//! (OVMF on x86_64, AAVMF on aarch64) through our loader into eve-host as
//! the node's init, which must onboard to the controller on this host's
//! loopback. The node's services run in QEMU inside the emulated machine
//! (TCG inside TCG), so each arch gets one scenario and a generous time.
//!
//! The controller runs in this process; its TLS certificate also names
//! the node's way to this host ([`harness::nodeimage::UPLINK_HOST`]).
//! xtask builds into `target/guest`: the outer `cargo test` holds the lock
//! on `target/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use controller::identity::Identity;
use controller::server::{self, Controller, Limits};
use controller::store::sqlite::SqliteStore;
use harness::nodeimage::{self, NodeMachine};
use harness::provision::OnboardIdentity;
use harness::{Arch, workspace_root};

/// Building the image from scratch, then the boot and onboarding with
/// the services' VMs emulated inside an emulated machine.
const BUILD: Duration = Duration::from_secs(3600);
const ONBOARD: Duration = Duration::from_secs(2400);

/// One emulated node at a time: each keeps the machine's cores busy.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Our controller in this process, its device API on a loopback port.
struct LocalController {
    /// Runs the device API; dropped with the controller.
    _rt: tokio::runtime::Runtime,
    ctl: Arc<Controller>,
    port: u16,
}

impl LocalController {
    fn start(dir: &Path) -> LocalController {
        Identity::load_or_create(dir).expect("controller identity");
        nodeimage::reissue_controller_tls(dir).expect("TLS certificate for the node's uplink");
        let identity = Identity::load_or_create(dir).expect("controller identity");
        let tls = server::tls_config(&identity).expect("TLS config");
        let store = Arc::new(SqliteStore::open(&dir.join("controller.db")).expect("store"));
        let ctl =
            Arc::new(Controller::new(store, identity, Limits::default()).expect("controller"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("device API listener");
        let port = listener.local_addr().expect("device API address").port();
        rt.spawn(server::serve_devices(ctl.clone(), listener, tls));
        rt.spawn(server::housekeeping(ctl.clone()));
        LocalController { _rt: rt, ctl, port }
    }

    /// The UUID of the device that registered with `serial`, once it has
    /// also sent its device info.
    fn onboarded(&self, serial: &str) -> Option<String> {
        let store = self.ctl.store();
        let device = store
            .devices()
            .ok()?
            .into_iter()
            .find(|d| d.serial == serial)?;
        let info = store.latest_info(&device.uuid).ok()?;
        (!info.is_empty()).then_some(device.uuid)
    }
}

/// `cargo xtask image` for `arch` with `config` as its CONFIG files.
fn build_image(arch: Arch, config: &Path, out: &Path) {
    let root = workspace_root();
    let started = Instant::now();
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
        .args(["image", "--arch", arch.name(), "--version", "image-test"])
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .env("CARGO_TARGET_DIR", root.join("target/guest"))
        .current_dir(&root)
        .status()
        .expect("cargo xtask image runs");
    assert!(status.success(), "cargo xtask image failed ({status})");
    assert!(
        started.elapsed() < BUILD,
        "the image took {:?}",
        started.elapsed()
    );
}

fn scratch(arch: Arch) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("image-test-{arch}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("config")).expect("scratch directory");
    dir
}

fn image_boots_and_onboards(arch: Arch) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch(arch);
    let controller = LocalController::start(&dir.join("controller"));
    let identity = OnboardIdentity::generate("image-test-").expect("onboarding identity");
    controller
        .ctl
        .onboard_add(&identity.cert_pem, std::slice::from_ref(&identity.serial))
        .expect("onboarding certificate registered");
    let root_pem = controller.ctl.identity().root_pem.clone();
    for (name, data) in nodeimage::config_files(controller.port, &root_pem, &identity) {
        std::fs::write(dir.join("config").join(name), data).expect("CONFIG file");
    }
    let image = dir.join("eve.img");
    build_image(arch, &dir.join("config"), &image);

    let machine = NodeMachine::new(arch, &image, &dir.join("vars.fd")).expect("machine");
    let mut console = machine.power_on().expect("QEMU starts");
    let loader = console
        .wait_for("eve-loader: booting IMGA", Duration::from_secs(600))
        .unwrap_or_else(|| panic!("the loader did not boot IMGA:\n{}", console.transcript()));
    let init = console
        .wait_for(
            "eve-init: EVE image-test booted from IMGA",
            Duration::from_secs(900),
        )
        .unwrap_or_else(|| {
            panic!(
                "the kernel did not start eve-host:\n{}",
                console.transcript()
            )
        });
    console
        .wait_for(
            "eve-init: PERSIST mounted on /persist",
            Duration::from_secs(300),
        )
        .unwrap_or_else(|| panic!("no PERSIST:\n{}", console.transcript()));

    let until = Instant::now() + ONBOARD;
    let uuid = loop {
        if let Some(uuid) = controller.onboarded(&identity.serial) {
            break uuid;
        }
        assert!(
            Instant::now() < until && !console.exited(),
            "the node did not onboard within {ONBOARD:?}:\n{}",
            console.transcript()
        );
        console.pump(Duration::from_secs(2));
    };
    println!(
        "{arch}: loader at {:.1} s, init at {:.1} s, onboarded as {uuid} at {:.1} s",
        loader.0.as_secs_f64(),
        init.0.as_secs_f64(),
        console.elapsed().as_secs_f64()
    );
    drop(console);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn x86_64_image_boots_with_ovmf_and_onboards() {
    image_boots_and_onboards(Arch::X86_64);
}

#[test]
fn aarch64_image_boots_with_aavmf_and_onboards() {
    image_boots_and_onboards(Arch::Aarch64);
}
