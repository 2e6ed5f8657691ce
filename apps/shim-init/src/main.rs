//! shim-init: PID 1 of a container app's shim VM.
//!
//! It mounts the kernel's filesystems, loads the modules the initramfs
//! lists, finds the blob disk the host attached (virtio-blk serial `oci`),
//! checks and unpacks the image's layers in order onto a tmpfs, takes a
//! DHCP lease on each NIC, and runs the container's process chrooted
//! there with the image config's and EVE's settings. The process's output
//! is the VM's console. When the power button is pressed it stops the
//! process (SIGTERM, then SIGKILL after a grace period); when the process
//! ends it prints `@@ exit N` (the host reads the app's status there) and
//! powers the VM off. Its own failures print `shim-init: failed: ...` and
//! end with status 125.

mod blobs;
mod netconfig;
mod power;
mod system;

use std::{
    io::Write,
    path::Path,
    sync::mpsc::{self, RecvTimeoutError},
    time::{Duration, Instant},
};

use shim_init::{
    blobdisk::BlobIndex,
    image::{ImageConfig, Manifest},
    passwd,
    process::{Process, process},
};

/// Where the container's root filesystem is unpacked.
const ROOT: &str = "/newroot";
/// Exit status for the shim's own failures (as container runtimes use).
const SHIM_FAILED: i32 = 125;
/// How long the app gets after SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

/// Prints a line on the console; a console that fails is not worth dying for.
fn print_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

macro_rules! say {
    ($($arg:tt)*) => { $crate::print_line(format_args!($($arg)*)) };
}
pub(crate) use say;

fn main() {
    let status = match run() {
        Ok(status) => status,
        Err(why) => {
            say!("shim-init: failed: {why}");
            SHIM_FAILED
        }
    };
    say!("@@ exit {status}");
    system::power_off();
}

fn run() -> Result<i32, String> {
    system::mount_kernel_filesystems()?;
    system::load_modules(Path::new("/etc/modules"), Path::new("/lib/modules"))?;
    let disk_path = system::find_disk_by_serial("oci", Duration::from_secs(20))?;
    let mut disk =
        std::fs::File::open(&disk_path).map_err(|e| format!("{}: {e}", disk_path.display()))?;
    let size = blobs::disk_size(&mut disk)?;
    let index = BlobIndex::scan(&mut disk, size).map_err(|e| e.to_string())?;
    let config = index.config(&mut disk).map_err(|e| e.to_string())?;
    let manifest = blobs::read_json(&mut disk, &index, &config.manifest)?;
    let manifest = Manifest::parse(&manifest).map_err(|e| e.to_string())?;
    let image_config = blobs::read_json(&mut disk, &index, &manifest.config.digest)?;
    let image_config = ImageConfig::parse(&image_config).map_err(|e| e.to_string())?;
    let root = Path::new(ROOT);
    system::mount_root(root)?;
    let started = Instant::now();
    for layer in &manifest.layers {
        let stats = blobs::unpack(&mut disk, &index, layer, root)?;
        say!(
            "shim-init: layer {} unpacked: {} entries, {} whiteouts",
            layer.digest,
            stats.entries,
            stats.whiteouts
        );
    }
    say!(
        "shim-init: {} layers in {} ms",
        manifest.layers.len(),
        started.elapsed().as_millis()
    );
    let run = image_config.config.unwrap_or_default();
    let process = process(&run, &config.overrides).map_err(|e| e.to_string())?;
    let read_small = |name: &str| system::read_small(&root.join(name)).unwrap_or_default();
    let (uid, gid) = passwd::resolve(
        &process.user,
        &read_small("etc/passwd"),
        &read_small("etc/group"),
    )
    .map_err(|e| e.to_string())?;
    let leases = netconfig::bring_up_all()?;
    netconfig::write_resolver(root, &leases)?;
    system::mount_into(root)?;
    let (power_tx, power_rx) = mpsc::channel();
    power::watch(power_tx);
    say!(
        "shim-init: running {:?} as {uid}:{gid} in {} with {}",
        process.argv,
        process.working_dir,
        process.env.join(" ")
    );
    let child = system::spawn(root, &process, uid, gid)?;
    supervise(child, &process, &power_rx)
}

/// Waits for the app, reaping every orphan that lands on PID 1, and stops
/// it when the power button is pressed.
fn supervise(child: u32, process: &Process, power: &mpsc::Receiver<()>) -> Result<i32, String> {
    let mut kill_at: Option<Instant> = None;
    loop {
        if let Some(code) = system::reap(child) {
            say!("shim-init: {} exited with status {code}", process.argv[0]);
            return Ok(code);
        }
        if let Some(at) = kill_at
            && Instant::now() >= at
        {
            say!("shim-init: the app ignored SIGTERM for {GRACE:?}: SIGKILL");
            system::signal(child, nix::sys::signal::Signal::SIGKILL);
            kill_at = None;
        }
        match power.recv_timeout(Duration::from_millis(500)) {
            Ok(()) if kill_at.is_none() => {
                say!("shim-init: power button: stopping the app");
                system::signal(child, nix::sys::signal::Signal::SIGTERM);
                kill_at = Some(Instant::now() + GRACE);
            }
            Ok(()) | Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
    }
}
