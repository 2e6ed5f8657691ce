//! `cargo xtask bench image`: node images built with `cargo xtask image`,
//! their sizes beside EVE's, and power-on to onboarded for each under QEMU
//! with UEFI firmware (TCG: the node's services run emulated inside the
//! emulated machine) against our controller on this host's loopback.
//!
//! Times are taken on the host as console lines arrive (the loader's, the
//! init's, the host's) and from the controller's admin API (polled): the
//! device listed is "registered", its device info received is
//! "onboarded".
//!
//! Then the update flow's time in the dev node, config to committed
//! (`crate::updatebench`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::nodeimage::{self, NodeConsole, NodeMachine};
use harness::provision::OnboardIdentity;
use harness::{Arch, workspace_root};

use crate::admin::{AdminClient, parse_response, request_bytes};
use crate::controller::{self, Group, LocalController};
use crate::image::{self, Board, QemuBuild, Report};

/// EVE's sizes, from lf-edge/eve: the root filesystem budget, and what
/// `make-raw` gives each partition.
const EVE_ROOTFS: &str = "290 MB (budget)";
const EVE_IMG_PARTITION: &str = "10 GiB (make-raw minimum)";
const EVE_EFI: &str = "2 GiB";
const EVE_CONFIG: &str = "5 MiB";
/// How often the controller is asked about the device.
const ADMIN_POLL: Duration = Duration::from_secs(1);

const MIB: f64 = (1 << 20) as f64;

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / MIB)
}

/// One image to measure.
struct Variant {
    arch: Arch,
    qemu: QemuBuild,
    /// Booted and timed (the KVM-only build cannot run under TCG).
    boot: bool,
}

impl Variant {
    fn name(&self) -> String {
        match self.qemu {
            QemuBuild::Full => format!("{}", self.arch),
            QemuBuild::KvmOnly => format!("{} --qemu kvm-only", self.arch),
        }
    }
}

/// What one boot saw, from power-on.
#[derive(Default)]
struct BootRun {
    loader: Option<Duration>,
    init: Option<Duration>,
    uplink: Option<Duration>,
    registered: Option<Duration>,
    onboarded: Option<Duration>,
    /// The device the controller made of it.
    uuid: Option<String>,
}

/// Seconds: median (min-max) of the runs that got there, and how many
/// did not.
fn seconds(all: &[BootRun], pick: fn(&BootRun) -> Option<Duration>) -> String {
    let mut samples: Vec<f64> = all
        .iter()
        .filter_map(pick)
        .map(|d| d.as_secs_f64())
        .collect();
    samples.sort_by(f64::total_cmp);
    let missed = all.len() - samples.len();
    let text = match (samples.first(), samples.last()) {
        (Some(min), Some(max)) => {
            format!("{:.1} ({min:.1}-{max:.1})", samples[samples.len() / 2])
        }
        _ => String::from("-"),
    };
    if missed > 0 {
        format!("{text} ({missed} missed)")
    } else {
        text
    }
}

/// Our controller, with a TLS certificate the node's services accept at
/// the uplink's host address: started once to make its identity, then
/// again with the certificate reissued.
fn start_controller(dir: &Path) -> Result<(LocalController, AdminClient), String> {
    let _ = std::fs::remove_dir_all(dir);
    drop(controller::start(dir, Group::Own)?);
    nodeimage::reissue_controller_tls(dir)?;
    let ctl = controller::start(dir, Group::Own)?;
    let admin = ctl.admin_client();
    Ok((ctl, admin))
}

/// The device's UUID once the controller lists `serial`.
fn registered(admin: &AdminClient, serial: &str) -> Result<Option<String>, String> {
    let devices = admin.get("/api/v1/devices")?;
    Ok(devices.as_array().and_then(|all| {
        all.iter()
            .find(|d| d["serial"].as_str() == Some(serial))
            .and_then(|d| d["uuid"].as_str().map(String::from))
    }))
}

/// Forgets device `uuid`, so the next run's fresh disk registers anew
/// with the same onboarding certificate and serial.
fn delete_device(admin: &AdminClient, uuid: &str) -> Result<(), String> {
    let path = format!("/api/v1/devices/{uuid}");
    let request = request_bytes("DELETE", &admin.addr.to_string(), &path, &admin.token, None)?;
    let fail = |e: std::io::Error| format!("DELETE {path}: {e}");
    let mut stream = TcpStream::connect(admin.addr).map_err(fail)?;
    stream.write_all(&request).map_err(fail)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(fail)?;
    match parse_response(&raw)?.status {
        204 => Ok(()),
        status => Err(format!("DELETE {path}: HTTP {status}")),
    }
}

/// Whether the controller has device info from `uuid`.
fn has_info(admin: &AdminClient, uuid: &str) -> Result<bool, String> {
    let info = admin.get(&format!("/api/v1/devices/{uuid}/info"))?;
    Ok(match &info {
        serde_json::Value::Array(items) => !items.is_empty(),
        serde_json::Value::Object(fields) => !fields.is_empty(),
        _ => false,
    })
}

fn note(console: &mut NodeConsole, slot: &mut Option<Duration>, needle: &str) {
    if slot.is_none() {
        *slot = console.wait_for(needle, Duration::ZERO).map(|(at, _)| at);
    }
}

fn boot_once(
    report: &Report,
    admin: &AdminClient,
    serial: &str,
    scratch: &Path,
    timeout: Duration,
) -> Result<BootRun, String> {
    // A fresh disk every run: the first boot of a flashed image.
    let disk = scratch.join("disk.img");
    std::fs::copy(&report.image, &disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    let machine = NodeMachine::new(report.arch, &disk, &scratch.join("vars.fd"))?;
    let mut console = machine.power_on()?;
    let mut run = BootRun::default();
    let mut next_poll = Instant::now();
    while run.onboarded.is_none() {
        console.pump(Duration::from_millis(200));
        note(&mut console, &mut run.loader, "eve-loader: booting");
        note(&mut console, &mut run.init, "eve-init: EVE");
        note(&mut console, &mut run.uplink, "eve-init: uplink");
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + ADMIN_POLL;
            if run.uuid.is_none() {
                run.uuid = registered(admin, serial)?;
                if run.uuid.is_some() {
                    run.registered = Some(console.elapsed());
                }
            }
            if let Some(uuid) = &run.uuid
                && has_info(admin, uuid)?
            {
                run.onboarded = Some(console.elapsed());
            }
        }
        if console.elapsed() > timeout || console.exited() {
            crate::output::warn(format_args!(
                "xtask: {} did not onboard within {} s; its console:\n{}",
                report.image.display(),
                timeout.as_secs(),
                console.transcript()
            ));
            break;
        }
    }
    Ok(run)
}

fn print_sizes(reports: &[(String, Report)]) {
    println!("Node images (`cargo xtask image`), sizes in MiB; EVE for comparison");
    println!();
    println!(
        "| image | file | written (sparse) | EFI | IMGA = IMGB | base OS (update artifact) | kernel | initrd (xz) | CONFIG | PERSIST |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in reports {
        let part = |n: u32| {
            r.partitions
                .iter()
                .find(|p| p.number == n)
                .map_or(String::from("-"), |p| mib(p.bytes))
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            mib(r.image_bytes),
            mib(r.allocated_bytes),
            part(1),
            part(2),
            mib(r.artifact_bytes),
            mib(r.kernel_bytes),
            mib(r.initrd_bytes),
            part(4),
            part(9)
        );
    }
    println!(
        "| EVE | - | - | {EVE_EFI} | {EVE_IMG_PARTITION} | rootfs {EVE_ROOTFS} | - | - | {EVE_CONFIG} | rest of the disk |"
    );
    println!();
    println!("Where the initramfs bytes go, uncompressed, MiB");
    println!();
    let mut header = String::from("| image |");
    let mut rule = String::from("|---|");
    let categories: Vec<image::Category> = reports
        .first()
        .map(|(_, r)| r.initrd_parts.iter().map(|(c, _)| *c).collect())
        .unwrap_or_default();
    for c in &categories {
        header.push_str(&format!(" {} |", c.name()));
        rule.push_str("---|");
    }
    header.push_str(" total | xz |");
    rule.push_str("---|---|");
    println!("{header}");
    println!("{rule}");
    for (name, r) in reports {
        let mut row = format!("| {name} |");
        for c in &categories {
            let bytes = r
                .initrd_parts
                .iter()
                .find(|(k, _)| k == c)
                .map_or(0, |(_, b)| *b);
            row.push_str(&format!(" {} |", mib(bytes)));
        }
        row.push_str(&format!(
            " {} | {} |",
            mib(r.initrd_raw_bytes),
            mib(r.initrd_bytes)
        ));
        println!("{row}");
    }
    println!();
}

/// Builds the images, prints their sizes, then boots each bootable one
/// `runs` times, then runs the dev node's update flow `runs` times per
/// arch.
pub fn image(runs: usize, arch: Option<Arch>, timeout: Duration) -> Result<(), String> {
    let arches = arch.map_or(Arch::ALL.to_vec(), |a| vec![a]);
    let mut variants = Vec::new();
    for &arch in &arches {
        variants.push(Variant {
            arch,
            qemu: QemuBuild::Full,
            boot: true,
        });
        if arch == Arch::X86_64 {
            variants.push(Variant {
                arch,
                qemu: QemuBuild::KvmOnly,
                boot: false,
            });
        }
    }
    let dir = workspace_root().join("target/bench-image");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (ctl, admin) = start_controller(&dir.join("controller"))?;
    let mut reports = Vec::new();
    let mut serials = Vec::new();
    for variant in &variants {
        let identity = OnboardIdentity::generate("bench-image-")?;
        admin.onboard(&identity.cert_pem, std::slice::from_ref(&identity.serial))?;
        let config = dir.join(format!("config-{}", reports.len()));
        let _ = std::fs::remove_dir_all(&config);
        std::fs::create_dir_all(&config).map_err(|e| format!("{}: {e}", config.display()))?;
        for (name, data) in nodeimage::config_files(ctl.device_api.port(), &ctl.root_pem, &identity)
        {
            std::fs::write(config.join(name), data).map_err(|e| format!("{name}: {e}"))?;
        }
        let suffix = if variant.qemu == QemuBuild::KvmOnly {
            "-kvm"
        } else {
            ""
        };
        let report = image::run(&image::Args {
            arch: variant.arch,
            board: Board::Pc,
            config: Some(config),
            out: Some(dir.join(format!("eve-{}{suffix}.img", variant.arch))),
            version: None,
            manifest: crate::node::default_manifest(),
            slot_mib: None,
            persist_mib: 16,
            qemu: variant.qemu,
            sector_size: gptab::DEFAULT_BLOCK_SIZE,
        })?;
        serials.push(identity.serial);
        reports.push((variant.name(), report));
    }
    print_sizes(&reports);

    println!(
        "Power-on to onboarded under QEMU TCG with UEFI firmware, {runs} run(s) each, seconds: median (min-max)"
    );
    println!();
    println!(
        "| image | machine | to loader | to init (kernel started) | to uplink (DHCP) | to registered | to onboarded (info) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((variant, (name, report)), serial) in variants.iter().zip(&reports).zip(&serials) {
        if !variant.boot {
            continue;
        }
        let scratch = dir.join(format!("boot-{}", variant.arch));
        std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        let mut all = Vec::new();
        for _ in 0..runs {
            let run = boot_once(report, &admin, serial, &scratch, timeout)?;
            if let Some(uuid) = &run.uuid {
                delete_device(&admin, uuid)?;
            }
            all.push(run);
        }
        let column = |pick| seconds(&all, pick);
        let machine = match variant.arch {
            Arch::X86_64 => "q35 + OVMF, 2 vCPU, 1.5 GiB",
            Arch::Aarch64 => "virt + AAVMF, 2 vCPU, 1.5 GiB",
        };
        println!(
            "| {name} | {machine} | {} | {} | {} | {} | {} |",
            column(|r| r.loader),
            column(|r| r.init),
            column(|r| r.uplink),
            column(|r| r.registered),
            column(|r| r.onboarded)
        );
        let _ = std::fs::remove_dir_all(&scratch);
    }
    drop(ctl);
    crate::updatebench::update_flow(&arches, runs)
}
