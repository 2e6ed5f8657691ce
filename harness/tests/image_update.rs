//! A node image (`cargo xtask image`) updated from the controller, the
//! whole way a user's node goes: v1 booted under QEMU with UEFI firmware
//! through our loader into eve-host as init, onboarded to our controller
//! in this process; `evectl device update` (the library, through the admin
//! API) gives it v2, the update artifact `cargo xtask image` writes
//! beside an image, served by a plain HTTP datastore on this host's
//! loopback. The node downloads and verifies it, writes it to IMGB on its
//! real disk, marks IMGB to be tried once and reboots (the emulated
//! machine resets: firmware, loader, IMGB), reaches the controller on the
//! trial boot and commits IMGB after the test window; the controller sees
//! v2 active on IMGB and, powered off, the image's GPT has IMGB active.
//! The node's services run in QEMU inside the emulated machine (TCG inside
//! TCG): the waits are generous.

mod common;
#[path = "common/localctl.rs"]
mod localctl;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use controller::server::Controller;
use eve_proto::Message;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::info::{ZInfoDevSw, ZInfoMsg};
use evectl::devops::UpdateSpec;
use gptab::ab::SlotState;
use gptab::{DEFAULT_BLOCK_SIZE, FileDisk, Gpt};
use harness::Arch;
use harness::content::{FileServer, Served, sha256_hex};
use harness::nodeimage::{self, NodeConsole, NodeMachine};
use localctl::{LocalController, build_image, scratch};

/// Power-on to onboarded, with the services' VMs emulated inside an
/// emulated machine.
const ONBOARD: Duration = Duration::from_secs(2400);
/// Each step of the update (download and write, reboot, trial, commit):
/// a guard against a node that never gets there, not a timing target.
const STEP: Duration = Duration::from_secs(1800);

/// The node's disk: room on PERSIST for the download (a sparse file).
const DISK_BYTES: u64 = 512 << 20;

/// One emulated node at a time: each keeps the machine's cores busy.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

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

fn active_on(sw: &[ZInfoDevSw], label: &str, version: &str) -> bool {
    sw.iter()
        .any(|p| p.partition_label == label && p.activated && p.short_version == version)
}

/// The node's console and what the controller hears from it, watched
/// together: every wait fails at once, with the console transcript, if
/// the machine stops or the controller hears that the update fell back.
struct Watch<'a> {
    console: NodeConsole,
    ctl: &'a Controller,
    uuid: String,
    /// The transcript so far, rewritten as the wait goes: a run that
    /// hangs can be read while it runs.
    transcript: PathBuf,
}

impl Watch<'_> {
    /// Waits until `done` answers something; fails with `what`.
    fn until<T>(
        &mut self,
        what: &str,
        patience: Duration,
        mut done: impl FnMut(&mut Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + patience;
        let mut saved = Instant::now();
        loop {
            if let Some(v) = done(self) {
                return v;
            }
            let sw = reported_sw_list(self.ctl, &self.uuid);
            let fell_back = sw.iter().find(|p| {
                p.sw_err
                    .as_ref()
                    .is_some_and(|e| e.description.contains("fell back"))
            });
            assert!(
                fell_back.is_none() && Instant::now() < deadline && !self.console.exited(),
                "{what} never happened within {patience:?} (the controller's swList: {sw:#?}):\n{}",
                self.console.transcript()
            );
            self.console.pump(Duration::from_secs(2));
            if saved.elapsed() > Duration::from_secs(10) {
                let _ = std::fs::write(&self.transcript, self.console.transcript());
                saved = Instant::now();
            }
        }
    }

    /// Waits for a console line holding `needle`; answers the seconds
    /// since power-on it came at.
    fn line(&mut self, needle: &str, what: &str) -> f64 {
        let (at, _) = self.until(what, STEP, |w| w.console.wait_for(needle, Duration::ZERO));
        at.as_secs_f64()
    }
}

/// The disk v1 is flashed onto: [`DISK_BYTES`], so PERSIST grows on the
/// first boot and holds the downloaded base OS (the image's own PERSIST is
/// smaller than one).
fn flash_onto_a_larger_disk(image: &Path) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .expect("the image");
    assert!(file.metadata().expect("the image").len() < DISK_BYTES);
    file.set_len(DISK_BYTES).expect("the larger disk");
}

fn state(image: &Path, name: &str) -> SlotState {
    let file = std::fs::File::open(image).expect("the image");
    let mut disk = FileDisk::new(file, DEFAULT_BLOCK_SIZE).expect("the image's length");
    let gpt = Gpt::read(&mut disk).expect("a GPT");
    SlotState::of(gpt.partition_named(name).expect(name).attributes)
}

fn image_updates_from_the_controller(arch: Arch) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("image-update", arch);
    let controller = LocalController::start(&dir.join("controller"));
    let identity = controller.provision("image-update-", &dir.join("config"));
    let image = dir.join("v1/eve.img");
    std::fs::create_dir_all(dir.join("v1")).expect("v1 directory");
    build_image(arch, "1.0", &dir.join("config"), &image, &[]);
    flash_onto_a_larger_disk(&image);
    std::fs::create_dir_all(dir.join("v2")).expect("v2 directory");
    let artifact = build_image(
        arch,
        "2.0",
        &dir.join("config"),
        &dir.join("v2/eve.img"),
        &[],
    );
    let base_os = std::fs::read(&artifact).expect("the v2 update artifact");
    let datastore = FileServer::start(None).expect("the HTTP datastore");
    datastore.put("/os/eve-2.0.img", Served::file(base_os.clone()));
    let mut admin = controller.admin(&dir.join("controller"));

    let machine = NodeMachine::new(arch, &image, &dir.join("vars.fd")).expect("machine");
    let mut console = machine.power_on().expect("QEMU starts");
    let transcript = dir.join("console.log");
    console
        .wait_for("booted from IMGA (active)", ONBOARD)
        .unwrap_or_else(|| panic!("v1 did not start from IMGA:\n{}", console.transcript()));
    console
        .wait_for("PERSIST's ext4 grown", STEP)
        .unwrap_or_else(|| {
            panic!(
                "PERSIST did not grow to the disk:\n{}",
                console.transcript()
            )
        });
    let uuid = controller.until_onboarded(&identity.serial, &mut console, ONBOARD);
    println!(
        "{arch}: power-on to onboarded {:.1} s",
        console.elapsed().as_secs_f64()
    );
    let mut watch = Watch {
        console,
        ctl: &controller.ctl,
        uuid: uuid.clone(),
        transcript,
    };

    // A short config interval: the trial boot reaches the controller soon;
    // EVE's shortest test window (30 s) before the trial is committed.
    controller
        .ctl
        .set_config(
            &uuid,
            "configItems:\n  - { key: timer.config.interval, value: \"5\" }\n  \
             - { key: timer.test.baseimage.update, value: \"30\" }\n",
        )
        .expect("the config items are accepted");
    let said = controller
        .rt
        .block_on(admin.device_update(
            &uuid,
            &UpdateSpec {
                image: format!(
                    "http://{}:{}/os/eve-2.0.img",
                    nodeimage::UPLINK_HOST,
                    datastore.port()
                ),
                version: "2.0".into(),
                sha256: sha256_hex(&base_os),
                activate: true,
                retry: false,
            },
        ))
        .expect("evectl device update");
    assert!(said.contains("base OS 2.0 set to activate"), "{said}");
    let asked = watch.console.elapsed().as_secs_f64();

    let written = watch.line("base OS 2.0 written into IMGB", "v2 written into IMGB");
    let reboot = watch.line("eve-loader: booting IMGB", "the loader trying IMGB");
    let trial = watch.line("booted from IMGB (inprogress)", "IMGB started on trial");
    watch.until("v2 active on IMGB in the controller's view", STEP, |w| {
        active_on(&reported_sw_list(w.ctl, &w.uuid), "IMGB", "2.0").then_some(())
    });
    let committed = watch.console.elapsed().as_secs_f64();
    println!(
        "{arch}: config to IMGB written {:.1} s, to the loader booting IMGB {:.1} s, \
         to the trial boot {:.1} s, to committed {:.1} s",
        written - asked,
        reboot - asked,
        trial - asked,
        committed - asked
    );
    drop(watch);

    assert_eq!(state(&image, "IMGB"), SlotState::Active, "IMGB committed");
    assert_eq!(state(&image, "IMGA"), SlotState::Unused, "IMGA given up");
    drop(datastore);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "TCG inside TCG, about 8 minutes: cargo test -p harness --test image_update -- --ignored"]
fn x86_64_image_updates_from_the_controller() {
    image_updates_from_the_controller(Arch::X86_64);
}

#[test]
#[ignore = "TCG inside TCG, about 7 minutes: cargo test -p harness --test image_update -- --ignored"]
fn aarch64_image_updates_from_the_controller() {
    image_updates_from_the_controller(Arch::Aarch64);
}
