//! Boots our unikernels in QEMU from the host: builds a service image for
//! an arch, picks the accelerator, runs the guest with a timeout while
//! timestamping its console, and reports how it ended.
//!
//! The integration tests in `tests/`, `cargo xtask qemu` and
//! `cargo xtask bench` all go through here, so they boot guests the same
//! way.
#![forbid(unsafe_code)]

pub mod appassets;
mod build;
pub mod content;
pub mod cpu;
pub mod devdisk;
mod image;
pub mod layout;
mod machine;
pub mod netns;
mod run;

pub mod nodeimage;
pub mod pki;
pub mod provision;
pub mod servers;

pub use build::{BuildError, Profile, build_service, workspace_root};
pub use guest_arch::{Accel, AccelChoice, AccelProbe, Arch};
pub use image::{ImageError, elf_to_arm64_image};
pub use machine::{Device, Guest, HOST_SERVICES_ADDR, Machine, UserNet};
pub use run::{End, Outcome, RunError, Running, Stamp};

/// The environment variable by which `cargo xtask test` names its own
/// binary to the tests it runs, so a scenario that needs xtask (the node
/// image's, the whole node's) runs that one instead of building xtask
/// again.
pub const XTASK_EXE_ENV: &str = "EVE_XTASK_EXE";

/// A command that runs xtask: the binary [`XTASK_EXE_ENV`] names under
/// `cargo xtask test`, else `cargo run --release -p xtask --` (a plain
/// `cargo test`). Whatever xtask builds goes to `target/guest`, since the
/// outer `cargo test` holds the lock on `target/`.
pub fn xtask_command() -> std::process::Command {
    let mut command = match std::env::var_os(XTASK_EXE_ENV) {
        Some(exe) => std::process::Command::new(exe),
        None => {
            let mut cargo = std::process::Command::new(
                std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
            );
            cargo.args(["run", "--quiet", "--release", "--package", "xtask", "--"]);
            cargo
        }
    };
    let root = workspace_root();
    command
        .env("CARGO_TARGET_DIR", root.join("target/guest"))
        .current_dir(root);
    command
}
