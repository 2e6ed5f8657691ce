//! Building service images for a target arch.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
};

use crate::{Arch, ImageError, elf_to_arm64_image};

/// Debug or release build of a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// Why a service image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("could not run {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed ({status})")]
    Failed { what: String, status: String },
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("turning {path} into an arm64 Image: {source}")]
    Image { path: PathBuf, source: ImageError },
}

/// The workspace root (this crate lives in `harness/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

fn run(mut command: Command, what: &str) -> Result<(), BuildError> {
    let status = command.status().map_err(|source| BuildError::Spawn {
        what: what.to_string(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Failed {
            what: what.to_string(),
            status: status.to_string(),
        })
    }
}

/// Adds the rustup target for `arch` if it is missing: the environment
/// turns rustup's automatic installs off.
fn ensure_target(arch: Arch) -> Result<(), BuildError> {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workspace_root())
        .output()
        .map_err(|source| BuildError::Spawn {
            what: "rustup target list".into(),
            source,
        })?;
    if String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|l| l.trim() == arch.target())
    {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", arch.target()])
        .current_dir(workspace_root());
    run(add, &format!("rustup target add {}", arch.target()))
}

/// Builds `service` for `arch` and returns the file QEMU boots: the ELF on
/// x86_64 (PVH), a flat arm64 Image on aarch64. Builds go to
/// `target/guest`, apart from the host build, so a build started from
/// inside `cargo test` never waits on the outer cargo's lock. Each image is
/// built once per process.
pub fn build_service(service: &str, arch: Arch, profile: Profile) -> Result<PathBuf, BuildError> {
    type Built = HashMap<(String, Arch, Profile), PathBuf>;
    static BUILT: OnceLock<Mutex<Built>> = OnceLock::new();
    let built = BUILT.get_or_init(Mutex::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let key = (service.to_string(), arch, profile);
    if let Some(path) = built.get(&key) {
        return Ok(path.clone());
    }
    ensure_target(arch)?;
    let root = workspace_root();
    let target_dir = root.join("target/guest");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--package",
            service,
            "--target",
            arch.target(),
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    if profile == Profile::Release {
        cargo.arg("--release");
    }
    run(
        cargo,
        &format!("cargo build -p {service} --target {}", arch.target()),
    )?;
    let elf = target_dir
        .join(arch.target())
        .join(profile.dir())
        .join(service);
    let image = match arch {
        Arch::X86_64 => elf,
        Arch::Aarch64 => {
            let bytes = std::fs::read(&elf).map_err(|source| BuildError::Io {
                path: elf.clone(),
                source,
            })?;
            let flat = elf_to_arm64_image(&bytes).map_err(|source| BuildError::Image {
                path: elf.clone(),
                source,
            })?;
            // Written aside and renamed: another test process (`cargo
            // xtask test` runs two lanes) may be starting QEMU on it.
            let out = elf.with_extension("img");
            let partial = elf.with_extension(format!("img.{}.partial", std::process::id()));
            std::fs::write(&partial, flat).map_err(|source| BuildError::Io {
                path: partial.clone(),
                source,
            })?;
            std::fs::rename(&partial, &out).map_err(|source| BuildError::Io {
                path: out.clone(),
                source,
            })?;
            out
        }
    };
    built.insert(key, image.clone());
    Ok(image)
}
