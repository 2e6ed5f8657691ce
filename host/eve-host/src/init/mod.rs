//! `eve-host` as the node's PID 1, when a node image boots it from its
//! initramfs: the kernel's file systems, the kernel modules the image
//! carries, the node's disk (CONFIG and PERSIST by their GPT names), the
//! uplink by DHCP, then `eve-host run` as a supervised child, restarted if
//! it ends, with every orphan reaped.
//!
//! Where things are in the image is [`layout`], shared with the image
//! builder (`cargo xtask image`).

mod cmdline;
mod dhcp;
mod disks;
mod grow;
mod modules;
mod mounts;
mod netlink;
mod supervise;
mod uplink;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

pub use cmdline::BootSlot;

use crate::stdio::err_line;

/// Paths inside a node image.
pub mod layout {
    /// The node manifest.
    pub const MANIFEST: &str = "/etc/eve/node.toml";
    /// The service images (`<image>` on x86_64, `<image>.img` on aarch64).
    pub const IMAGES: &str = "/usr/lib/eve/images";
    /// The base OS version, one line (EVE's file name).
    pub const RELEASE: &str = "/etc/eve-release";
    /// The kernel modules to load, in order, relative to `/`.
    pub const MODULE_LIST: &str = "/lib/modules/eve-modules.list";
    /// Where PERSIST is mounted.
    pub const PERSIST: &str = "/persist";
    /// The host's state directory, on PERSIST.
    pub const STATE_DIR: &str = "/persist/node";
    /// The CONFIG partition, copied out as the file the host attaches.
    pub const CONFIG_COPY: &str = "/run/eve/config.img";
    /// The first hardware watchdog's device.
    pub const WATCHDOG: &str = "/dev/watchdog";
    /// Name servers from DHCP.
    pub const RESOLV_CONF: &str = "/etc/resolv.conf";
}

/// How long to wait for the node's disk to appear after the modules load.
const DISK_WAIT: Duration = Duration::from_secs(60);

/// One line of the init's own log, on the console.
pub(crate) fn say(line: fmt::Arguments<'_>) {
    err_line(format_args!("eve-init: {line}"));
}

/// The TPM the host should own: the machine's, if it has one.
fn tpm_choice() -> &'static str {
    if Path::new("/dev/tpmrm0").exists() {
        "device"
    } else {
        "none"
    }
}

/// Waits for the node's disk: drivers probe disks after their module
/// loads, so the first look may come too early.
fn wait_for_disk(slot: &BootSlot) -> Option<disks::NodeDisk> {
    let until = Instant::now() + DISK_WAIT;
    loop {
        if let Some(found) = disks::find(Path::new("/sys/block"), Path::new("/dev"), slot.guid) {
            return Some(found);
        }
        if Instant::now() >= until {
            return None;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// The largest CONFIG partition copied (EVE's is 5 MiB).
const CONFIG_MAX: u64 = 64 << 20;

/// Copies CONFIG out to the file the host attaches to services (the host
/// attaches files; the partition is a block device).
fn copy_config(device: Option<&Path>) -> Option<PathBuf> {
    let device = device?;
    let copy = PathBuf::from(layout::CONFIG_COPY);
    let copied = copy
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            let source = std::fs::File::open(device)?;
            let mut target = std::fs::File::create(&copy)?;
            std::io::copy(&mut std::io::Read::take(source, CONFIG_MAX), &mut target)?;
            target.sync_all()
        });
    match copied {
        Ok(_) => Some(copy),
        Err(e) => {
            say(format_args!("CONFIG {}: {e}", device.display()));
            None
        }
    }
}

/// PID 1: sets the node up and runs the host; never returns.
pub fn main() -> ! {
    for problem in mounts::early() {
        say(format_args!("mount {problem}"));
    }
    let version = std::fs::read_to_string(layout::RELEASE).unwrap_or_default();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut slot = BootSlot::parse(&cmdline);
    if slot.name.is_none()
        && let Some(pi) =
            BootSlot::from_raspberry_pi(Path::new("/proc/device-tree/chosen/bootloader"))
    {
        slot = pi;
    }
    say(format_args!(
        "EVE {} booted from {} ({})",
        version.trim(),
        slot.name.as_deref().unwrap_or("an unnamed partition"),
        slot.state.as_deref().unwrap_or("state not given")
    ));
    let modules = modules::load_all(Path::new(layout::MODULE_LIST), Path::new("/"));
    say(format_args!(
        "modules: {} loaded, {} not for this machine, {} failed",
        modules.loaded + modules.already,
        modules.not_here,
        modules.failed
    ));
    if let Err(e) = uplink::loopback_up() {
        say(format_args!("loopback: {e}"));
    }
    uplink::spawn(
        PathBuf::from("/sys/class/net"),
        PathBuf::from(layout::RESOLV_CONF),
    );
    let disk = wait_for_disk(&slot);
    match &disk {
        Some(d) => say(format_args!("node disk {}", d.disk)),
        None => say(format_args!(
            "no disk with the node's partitions after {} s",
            DISK_WAIT.as_secs()
        )),
    }
    if let Some(d) = &disk {
        grow::table(&Path::new("/dev").join(&d.disk));
    }
    let persist_device = disk.as_ref().and_then(|d| d.persist.as_deref());
    match mounts::persist(persist_device, Path::new(layout::PERSIST)) {
        mounts::Persist::Partition => {
            say(format_args!("PERSIST mounted on {}", layout::PERSIST));
            if let Some(device) = persist_device {
                grow::ext4(device, Path::new(layout::PERSIST));
            }
        }
        mounts::Persist::Memory(why) => say(format_args!(
            "PERSIST unusable ({why}): state is kept in memory and lost at reboot"
        )),
    }
    let config = copy_config(disk.as_ref().and_then(|d| d.config.as_deref()));
    let mut args: Vec<OsString> = vec![
        "run".into(),
        "--manifest".into(),
        layout::MANIFEST.into(),
        "--images".into(),
        layout::IMAGES.into(),
        "--state-dir".into(),
        layout::STATE_DIR.into(),
        "--arch".into(),
        std::env::consts::ARCH.into(),
        "--tpm".into(),
        tpm_choice().into(),
    ];
    if let Some(config) = config {
        args.extend(["--config-part".into(), config.into_os_string()]);
    }
    // The partitions target writes base OS updates on the disk the loader
    // booted from, and needs to know which of its partitions that was.
    if let (Some(d), Some(name)) = (&disk, &slot.name) {
        args.extend([
            "--disk".into(),
            format!("/dev/{}", d.disk).into(),
            "--booted-slot".into(),
            name.into(),
        ]);
    }
    // A hardware watchdog (the i6300esb module, for machines with that
    // chip or QEMU's model of it): the host pets it while the node is
    // healthy.
    if Path::new(layout::WATCHDOG).exists() {
        args.extend(["--watchdog".into(), layout::WATCHDOG.into()]);
    }
    let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/init"));
    supervise::run(&supervise::HostCommand { program, args })
}
