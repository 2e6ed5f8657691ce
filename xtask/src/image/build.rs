//! Compiling what goes into a node image: the service images of the
//! manifest, eve-host for the musl target (static: it is the init), and
//! the UEFI loader. Everything builds into `target/guest`, apart from the
//! host build.

use std::path::{Path, PathBuf};
use std::process::Command;

use eve_host::manifest::Manifest;
use harness::{Arch, Profile, build_service, workspace_root};

/// The built parts.
pub struct Parts {
    pub manifest_text: String,
    /// (image name, file) for every distinct image the manifest names.
    pub services: Vec<(String, PathBuf)>,
    pub host: PathBuf,
    pub loader: PathBuf,
}

fn guest_dir() -> PathBuf {
    workspace_root().join("target/guest")
}

fn cargo_build(package: &str, target: &str) -> Result<(), String> {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(workspace_root())
        .args(["build", "--quiet", "--release", "--package", package])
        .args(["--target", target])
        .arg("--target-dir")
        .arg(guest_dir());
    crate::output::say(format_args!(
        "xtask: cargo build --release -p {package} --target {target}"
    ));
    let status = command.status().map_err(|e| format!("cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build -p {package} --target {target} failed ({status})"
        ))
    }
}

/// The musl target of `arch`.
pub fn musl_target(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-unknown-linux-musl",
        Arch::Aarch64 => "aarch64-unknown-linux-musl",
    }
}

/// The UEFI target of `arch`.
pub fn uefi_target(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-unknown-uefi",
        Arch::Aarch64 => "aarch64-unknown-uefi",
    }
}

/// The loader's file name in `EFI/BOOT`, where firmware looks on a disk
/// with no boot entries.
pub fn removable_loader_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "BOOTX64.EFI",
        Arch::Aarch64 => "BOOTAA64.EFI",
    }
}

/// Builds every part for `arch`.
pub fn build(manifest_path: &Path, arch: Arch, with_loader: bool) -> Result<Parts, String> {
    let manifest_text = std::fs::read_to_string(manifest_path)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let manifest =
        Manifest::load(manifest_path).map_err(|e| format!("{}:\n{e}", manifest_path.display()))?;
    let mut services: Vec<(String, PathBuf)> = Vec::new();
    for service in &manifest.services {
        if services.iter().any(|(image, _)| *image == service.image) {
            continue;
        }
        let file =
            build_service(&service.image, arch, Profile::Release).map_err(|e| e.to_string())?;
        services.push((service.image.clone(), file));
    }
    cargo_build("eve-host", musl_target(arch))?;
    let host = guest_dir().join(musl_target(arch)).join("release/eve-host");
    let loader = guest_dir()
        .join(uefi_target(arch))
        .join("release/eve-loader.efi");
    if with_loader {
        cargo_build("eve-loader", uefi_target(arch))?;
    }
    Ok(Parts {
        manifest_text,
        services,
        host,
        loader,
    })
}
