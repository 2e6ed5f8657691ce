//! Test assets for the three kinds of app, built on this machine without
//! root from Debian packages and our own crates, cached under
//! `target/app-assets/`:
//!
//! - [`app_unikernel`]: the example app unikernel (`apps/hello-http`).
//! - [`linux_vm_disk`]: a UEFI-bootable disk (GPT, an EFI system partition
//!   with systemd-boot, Debian's kernel and a busybox initramfs whose init
//!   serves HTTP and runs a NoCloud `cidata` user-data script).
//! - [`shim`]: the container shim VM's kernel and initramfs (our
//!   `shim-init` as `/init`).
//! - [`oci::busybox_httpd_image`]: an OCI image of busybox httpd, made
//!   here, as the verified blobs a container app is given.
//!
//! Everything a guest needs comes from the package registries through
//! `apt-get download` and `dpkg-deb -x` (never installed), so tests fetch
//! nothing from the internet at run time.

pub mod apps;
mod cpio;
pub mod debian;
mod gpt;
mod kmod;
mod linuxvm;
mod musl;
pub mod oci;
mod shim;

use std::path::PathBuf;

pub use debian::DebianError;
pub use linuxvm::{LinuxVmDisk, linux_vm_disk};
pub use musl::{build_linux_program, ensure_musl_target, musl_target};
pub use shim::{ShimAssets, shim};

use crate::{Arch, BuildError, Profile, build_service, workspace_root};

/// Why an asset could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error(transparent)]
    Debian(#[from] DebianError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Kernel(String),
    #[error("building the disk image: {0}")]
    Disk(String),
    #[error("running {what}: {why}")]
    Tool { what: String, why: String },
}

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AssetError {
    let path = path.into();
    move |source| AssetError::Io { path, source }
}

/// Where assets are cached.
pub fn cache_dir() -> PathBuf {
    workspace_root().join("target/app-assets")
}

/// The environment variable by which `cargo xtask test` names the
/// directory where it built the host programs the tests run ([`HOST_PROGRAMS`]),
/// beside the tests themselves and sharing their dependencies.
pub const HOST_BIN_DIR_ENV: &str = "EVE_HOST_BIN_DIR";

/// The host programs (package, binary) that tests run as separate
/// processes, themselves or through xtask (the whole-node scenario's
/// `xtask qemu` runs eve-host and the controller).
pub const HOST_PROGRAMS: &[(&str, &str)] = &[
    ("domains", "domains"),
    ("eve-host", "eve-host"),
    ("controller", "controller"),
];

/// The host program `bin` that `cargo xtask test` built in the directory
/// [`HOST_BIN_DIR_ENV`] names, if it did.
pub fn prebuilt_host_program(bin: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(HOST_BIN_DIR_ENV)?).join(bin);
    path.is_file().then_some(path)
}

/// A host program of the workspace (`package`'s binary `bin`): the one in
/// [`HOST_BIN_DIR_ENV`]'s directory when `cargo xtask test` built it there,
/// else built into `target/guest`, apart from the outer cargo's target
/// directory, whose lock a running `cargo test` holds (a second debug
/// build of its dependencies, 330 MB); once per process.
pub fn host_program(package: &str, bin: &str) -> Result<PathBuf, BuildError> {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(b, _)| b == bin) {
        return Ok(path.clone());
    }
    if let Some(path) = prebuilt_host_program(bin) {
        built.push((bin.to_string(), path.clone()));
        return Ok(path);
    }
    let root = workspace_root();
    let what = format!("cargo build -p {package} --bin {bin}");
    let status =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&root)
            .args([
                "build",
                "--quiet",
                "--package",
                package,
                "--bin",
                bin,
                "--target-dir",
            ])
            .arg(root.join("target/guest"))
            .status()
            .map_err(|source| BuildError::Spawn {
                what: what.clone(),
                source,
            })?;
    if !status.success() {
        return Err(BuildError::Failed {
            what,
            status: status.to_string(),
        });
    }
    let path = root.join("target/guest/debug").join(bin);
    built.push((bin.to_string(), path.clone()));
    Ok(path)
}

/// The example app unikernel for `arch` (release: debug network builds
/// are too slow under TCG to answer promptly).
pub fn app_unikernel(arch: Arch) -> Result<PathBuf, AssetError> {
    Ok(build_service("hello-http", arch, Profile::Release)?)
}
