//! Static Linux programs for app VMs (`[package.metadata.app] image =
//! "linux-static"`), built for the musl targets so they need no C library
//! in the guest; into `target/guest` like the unikernels.

use std::{collections::HashMap, path::PathBuf, process::Command, sync::Mutex};

use crate::{Arch, BuildError, Profile, workspace_root};

/// The musl target for `arch`.
pub fn musl_target(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-unknown-linux-musl",
        Arch::Aarch64 => "aarch64-unknown-linux-musl",
    }
}

fn run(mut command: Command, what: String) -> Result<std::process::Output, BuildError> {
    let output = command.output().map_err(|source| BuildError::Spawn {
        what: what.clone(),
        source,
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(BuildError::Failed {
            what,
            status: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// Adds the musl target through rustup when missing (the environment
/// turns rustup's automatic installs off).
pub fn ensure_musl_target(arch: Arch) -> Result<(), BuildError> {
    let mut list = Command::new("rustup");
    list.args(["target", "list", "--installed"])
        .current_dir(workspace_root());
    let listed = run(list, "rustup target list".into())?;
    let target = musl_target(arch);
    if String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|l| l.trim() == target)
    {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", target])
        .current_dir(workspace_root());
    run(add, format!("rustup target add {target}")).map(drop)
}

/// Builds `package`'s binary of the same name for `arch`; once per process.
pub fn build_linux_program(
    package: &str,
    arch: Arch,
    profile: Profile,
) -> Result<PathBuf, BuildError> {
    type Built = HashMap<(String, Arch, Profile), PathBuf>;
    static BUILT: Mutex<Option<Built>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let key = (package.to_string(), arch, profile);
    if let Some(path) = built.get_or_insert_default().get(&key) {
        return Ok(path.clone());
    }
    ensure_musl_target(arch)?;
    let target = musl_target(arch);
    let root = workspace_root();
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--package",
            package,
            "--bin",
            package,
            "--target",
            target,
        ])
        .arg("--target-dir")
        .arg(root.join("target/guest"));
    if profile == Profile::Release {
        cargo.arg("--release");
    }
    run(cargo, format!("cargo build -p {package} --target {target}"))?;
    let dir = if profile == Profile::Release {
        "release"
    } else {
        "debug"
    };
    let path = root
        .join("target/guest")
        .join(target)
        .join(dir)
        .join(package);
    built.get_or_insert_default().insert(key, path.clone());
    Ok(path)
}
