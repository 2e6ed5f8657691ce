//! Debian packages as files: `apt-get download` and `dpkg-deb -x` into the
//! cache, never installed. arm64 packages on an amd64 machine need the
//! foreign architecture added (and the lists updated) once, as root.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use super::cache_dir;
use crate::Arch;

#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    #[error("running {command}: {why}")]
    Command { command: String, why: String },
    #[error("{package}: no package depends on a {prefix}* (apt-cache depends said: {said})")]
    Unresolved {
        package: String,
        prefix: String,
        said: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Debian's name for an arch.
pub fn debian_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    }
}

fn run(program: &str, args: &[&str], dir: Option<&Path>) -> Result<String, DebianError> {
    let command = format!("{program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let output = cmd.output().map_err(|e| DebianError::Command {
        command: command.clone(),
        why: e.to_string(),
    })?;
    if !output.status.success() {
        return Err(DebianError::Command {
            command,
            why: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Lets apt see `arch`'s packages (a foreign arch needs root once).
fn ensure_arch(arch: Arch) -> Result<(), DebianError> {
    let native = run("dpkg", &["--print-architecture"], None)?;
    let wanted = debian_arch(arch);
    if native.trim() == wanted {
        return Ok(());
    }
    let foreign = run("dpkg", &["--print-foreign-architectures"], None)?;
    if foreign.lines().any(|l| l.trim() == wanted) {
        return Ok(());
    }
    run("dpkg", &["--add-architecture", wanted], None)?;
    run("apt-get", &["update", "-q"], None).map(drop)
}

/// The real package behind a metapackage: the first dependency of
/// `package` whose name starts with `prefix` (e.g. `linux-image-amd64` ->
/// `linux-image-6.1.0-57-amd64`).
pub fn resolve(package: &str, prefix: &str, arch: Arch) -> Result<String, DebianError> {
    ensure_arch(arch)?;
    let qualified = format!("{package}:{}", debian_arch(arch));
    let said = run("apt-cache", &["depends", &qualified], None)?;
    said.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|d| d.trim().split(':').next().unwrap_or("").to_string())
        .find(|d| d.starts_with(prefix))
        .ok_or_else(|| DebianError::Unresolved {
            package: qualified,
            prefix: prefix.into(),
            said: said.trim().into(),
        })
}

/// `package` for `arch`, unpacked; its directory in the cache.
pub fn unpacked(package: &str, arch: Arch) -> Result<PathBuf, DebianError> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = cache_dir()
        .join("debian")
        .join(debian_arch(arch))
        .join(package);
    if dir.is_dir() {
        return Ok(dir);
    }
    ensure_arch(arch)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DebianError::Io { path, source }
    };
    let work = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let qualified = format!("{package}:{}", debian_arch(arch));
    run("apt-get", &["download", "-q", &qualified], Some(&work))?;
    let deb = std::fs::read_dir(&work)
        .map_err(io(&work))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| DebianError::Command {
            command: format!("apt-get download {qualified}"),
            why: "no .deb appeared".into(),
        })?;
    let root = work.join("root");
    run(
        "dpkg-deb",
        &["-x", &deb.to_string_lossy(), &root.to_string_lossy()],
        None,
    )?;
    if package.starts_with("linux-image-") {
        prune_kernel_modules(&root).map_err(io(&root))?;
    }
    // Another process may have finished first: keep whichever is there.
    if std::fs::rename(&root, &dir).is_err() && !dir.is_dir() {
        return Err(DebianError::Io {
            path: dir,
            source: std::io::Error::other("could not move the unpacked package into place"),
        });
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(dir)
}

/// Module trees of Debian's kernel that neither a node image
/// (`xtask/src/image/modules.rs`: disks, NICs, TPM, watchdog, KVM) nor a
/// test app's Linux VM loads, and nothing they load depends on: sound,
/// graphics, cameras, Wi-Fi, Bluetooth, InfiniBand, ISDN, CAN, industrial
/// sensors and staging drivers. An unpacked kernel is 300 to 400 MB, most
/// of it modules; these are 130 to 175 MB of it.
const UNUSED_MODULE_TREES: &[&str] = &[
    "sound",
    "net/bluetooth",
    "drivers/gpu",
    "drivers/media",
    "drivers/net/wireless",
    "drivers/net/can",
    "drivers/bluetooth",
    "drivers/infiniband",
    "drivers/isdn",
    "drivers/iio",
    "drivers/staging",
];

/// Removes [`UNUSED_MODULE_TREES`] from every `lib/modules/<release>/kernel`
/// under an unpacked kernel package's `root`.
fn prune_kernel_modules(root: &Path) -> std::io::Result<()> {
    for release in std::fs::read_dir(root.join("lib/modules"))? {
        let kernel = release?.path().join("kernel");
        for tree in UNUSED_MODULE_TREES {
            let dir = kernel.join(tree);
            if dir.is_dir() {
                std::fs::remove_dir_all(&dir)?;
            }
        }
    }
    Ok(())
}

/// Debian's kernel for `arch`, unpacked.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The kernel image (`vmlinuz`: a bzImage on amd64, an EFI-stub
    /// arm64 Image on arm64).
    pub image: PathBuf,
    /// `lib/modules/<version>`.
    pub modules: PathBuf,
    /// The kernel's release (`6.1.0-57-amd64`).
    pub release: String,
    /// The unpacked package (device trees live under `usr/lib`).
    pub root: PathBuf,
}

/// `linux-image-<arch>`'s kernel: one unpacked copy per arch, shared by
/// the test apps' Linux VMs and `cargo xtask image` (an unpacked kernel
/// is 400 MB, most of it modules).
pub fn kernel(arch: Arch) -> Result<Kernel, DebianError> {
    let meta = format!("linux-image-{}", debian_arch(arch));
    let package = resolve(&meta, "linux-image-6", arch)?;
    let dir = unpacked(&package, arch)?;
    let version = package.trim_start_matches("linux-image-").to_string();
    Ok(Kernel {
        image: dir.join("boot").join(format!("vmlinuz-{version}")),
        modules: dir.join("lib/modules").join(&version),
        release: version,
        root: dir,
    })
}

/// busybox-static's binary for `arch`.
pub fn busybox(arch: Arch) -> Result<PathBuf, DebianError> {
    Ok(unpacked("busybox-static", arch)?.join("bin/busybox"))
}

/// systemd-boot's EFI binary for `arch`.
pub fn systemd_boot(arch: Arch) -> Result<PathBuf, DebianError> {
    let name = match arch {
        Arch::X86_64 => "systemd-bootx64.efi",
        Arch::Aarch64 => "systemd-bootaa64.efi",
    };
    Ok(unpacked("systemd-boot-efi", arch)?
        .join("usr/lib/systemd/boot/efi")
        .join(name))
}
