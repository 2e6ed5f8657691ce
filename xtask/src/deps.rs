//! Installing what the unikernels need on the machine: QEMU for both
//! arches, swtpm (the host's development TPM, with its EK-certificate
//! tooling) and the bare-metal Rust targets; and what the controller's
//! tests start: a PostgreSQL server and headless Chromium with its
//! WebDriver ([`ensure_test_servers`]).
//!
//! On Debian 12 the image may already carry qemu-utils from
//! bookworm-backports, which conflicts with qemu-system from the main
//! suite; so we add `bookworm-backports` to the `Suites:` line of the
//! existing Debian source (never writing a mirror address) and install from
//! there. Without root we print the commands instead.

use std::{path::Path, process::Command};

use harness::Arch;

const SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";

/// A program we run, how to ask it whether it works, and its package.
struct Tool {
    binary: &'static str,
    probe: &'static str,
    package: &'static str,
}

const TOOLS: &[Tool] = &[
    Tool {
        binary: Arch::X86_64.qemu(),
        probe: "--version",
        package: "qemu-system-x86",
    },
    Tool {
        binary: Arch::Aarch64.qemu(),
        probe: "--version",
        package: "qemu-system-arm",
    },
    Tool {
        binary: "swtpm",
        probe: "--version",
        package: "swtpm",
    },
    // `swtpm_setup --version` exits 1; `--help` exits 0.
    Tool {
        binary: "swtpm_setup",
        probe: "--help",
        package: "swtpm-tools",
    },
    // swtpm's local CA signs EK certificates with it.
    Tool {
        binary: "certtool",
        probe: "--version",
        package: "gnutls-bin",
    },
];

fn works(tool: &Tool) -> bool {
    Command::new(tool.binary)
        .arg(tool.probe)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn missing_tools() -> Vec<&'static Tool> {
    TOOLS.iter().filter(|t| !works(t)).collect()
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    println!("xtask: running {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("{program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn is_bookworm() -> bool {
    std::fs::read_to_string("/etc/os-release")
        .is_ok_and(|s| s.lines().any(|l| l == "VERSION_CODENAME=bookworm"))
}

/// Adds bookworm-backports to the first `Suites:` line that lists
/// `bookworm`, if it is not there yet. Returns whether the file changed.
fn add_backports(text: &str) -> Option<String> {
    if text.contains("bookworm-backports") {
        return None;
    }
    let mut changed = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let is_main =
                line.starts_with("Suites:") && line.split_whitespace().any(|w| w == "bookworm");
            if is_main && !changed {
                changed = true;
                format!("{line} bookworm-backports")
            } else {
                line.to_string()
            }
        })
        .collect();
    changed.then(|| lines.join("\n") + "\n")
}

fn install(packages: &[&str]) -> Result<(), String> {
    let mut apt_args = vec!["install", "-y", "--no-install-recommends"];
    if is_bookworm() && Path::new(SOURCES).exists() {
        let text = std::fs::read_to_string(SOURCES).map_err(|e| format!("{SOURCES}: {e}"))?;
        if let Some(new) = add_backports(&text) {
            println!("xtask: adding bookworm-backports to the Suites line of {SOURCES}");
            std::fs::write(SOURCES, new).map_err(|e| format!("{SOURCES}: {e}"))?;
        }
        apt_args.extend(["-t", "bookworm-backports"]);
    }
    apt_args.extend(packages);
    run("apt-get", &["update", "-q"])?;
    run("apt-get", &apt_args)
}

/// Makes sure QEMU, swtpm and the Rust targets are present, installing
/// them when we can and saying exactly what to run when we cannot.
pub fn ensure() -> Result<(), String> {
    ensure_rust_toolchain()?;
    ensure_app_tools()?;
    let missing = missing_tools();
    if missing.is_empty() {
        return Ok(());
    }
    let binaries: Vec<&str> = missing.iter().map(|t| t.binary).collect();
    let packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    let have_apt = Command::new("apt-get")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if is_root() && have_apt {
        println!(
            "xtask: {} missing; installing {}",
            binaries.join(", "),
            packages.join(" ")
        );
        install(&packages)?;
        let still: Vec<&str> = missing_tools().iter().map(|t| t.binary).collect();
        return if still.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} still missing after apt-get install",
                still.join(", ")
            ))
        };
    }
    Err(format!(
        "{} missing. On Debian 12 run as root:\n  \
         sed -i '/^Suites:.*bookworm /s/$/ bookworm-backports/' {SOURCES}\n  \
         apt-get update && apt-get install -t bookworm-backports {}",
        binaries.join(", "),
        packages.join(" ")
    ))
}

/// What the app tests and `bench apps` need on the machine: UEFI firmware
/// for Linux VM apps (OVMF, AAVMF), `qemu-img` for their qcow2 disks, and
/// the musl targets the container shim's init is built for. Kernels,
/// busybox and systemd-boot are only downloaded and unpacked, by the
/// harness (`harness::appassets`), never installed.
fn ensure_app_tools() -> Result<(), String> {
    const FILES: [(&str, &str); 3] = [
        ("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
        ("/usr/share/AAVMF/AAVMF_CODE.fd", "qemu-efi-aarch64"),
        ("/usr/bin/qemu-img", "qemu-utils"),
    ];
    let missing: Vec<&str> = FILES
        .iter()
        .filter(|(file, _)| !Path::new(file).exists())
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        if !is_root() {
            return Err(format!(
                "{} missing. As root run: apt-get install {}",
                missing.join(", "),
                missing.join(" ")
            ));
        }
        println!("xtask: installing {} for app VMs", missing.join(" "));
        install(&missing)?;
    }
    for arch in Arch::ALL {
        harness::appassets::ensure_musl_target(arch).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Whether a package's program is installed.
type Probe = fn() -> bool;

/// What the controller's tests start, from Debian's main suite: a
/// PostgreSQL server (its binaries live under `/usr/lib/postgresql/`, off
/// the PATH) and Chromium driven through chromedriver.
const TEST_SERVERS: &[(&str, Probe)] = &[
    ("postgresql", postgres_installed),
    ("chromium", || probe("chromium", "--version")),
    ("chromium-driver", || probe("chromedriver", "--version")),
];

fn probe(binary: &str, arg: &str) -> bool {
    Command::new(binary)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
        versions
            .flatten()
            .any(|v| v.path().join("bin/postgres").exists())
    })
}

/// Makes sure PostgreSQL and Chromium are installed, installing them
/// through apt when we are root, saying what to run when we are not.
pub fn ensure_test_servers() -> Result<(), String> {
    let missing: Vec<&str> = TEST_SERVERS
        .iter()
        .filter(|(_, present)| !present())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "{} missing: as root run apt-get install {}",
            missing.join(", "),
            missing.join(" ")
        ));
    }
    println!("xtask: installing {}", missing.join(" "));
    run("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    run("apt-get", &args)?;
    let still: Vec<&str> = TEST_SERVERS
        .iter()
        .filter(|(_, present)| !present())
        .map(|(package, _)| *package)
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} still missing after apt-get install",
            still.join(", ")
        ))
    }
}

/// The Python packages the controller's independent-client test uses.
/// Missing packages are installed with pip; if that fails the test says
/// so (and fails under CI).
pub fn ensure_python_packages() {
    const PACKAGES: [&str; 3] = ["protobuf", "grpcio-tools", "cryptography"];
    let importable = || {
        Command::new("python3")
            .args(["-c", "import google.protobuf, grpc_tools, cryptography"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if importable() {
        return;
    }
    let mut args = vec!["-m", "pip", "install", "--quiet"];
    args.extend(PACKAGES);
    if let Err(e) = run("python3", &args) {
        println!("xtask: could not install {}: {e}", PACKAGES.join(" "));
    }
}

/// What content needs beside QEMU: Debian's `docker-registry` (the
/// distribution server eden runs as registry:2), which the content tests
/// and `bench content` start on loopback; `qemu-img` (the host checks
/// qcow2 images with it) under `prlimit`; `curl` (`bench content`'s
/// reference). From the main suite, so no backports.
const CONTENT_TOOLS: &[Tool] = &[
    Tool {
        binary: "docker-registry",
        probe: "--version",
        package: "docker-registry",
    },
    Tool {
        binary: "qemu-img",
        probe: "--version",
        package: "qemu-utils",
    },
    Tool {
        binary: "prlimit",
        probe: "--version",
        package: "util-linux",
    },
    Tool {
        binary: "curl",
        probe: "--version",
        package: "curl",
    },
];

pub fn ensure_content_servers() -> Result<(), String> {
    let missing: Vec<&str> = CONTENT_TOOLS
        .iter()
        .filter(|t| !works(t))
        .map(|t| t.package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "missing for content: {}. As root run:\n  apt-get update && apt-get install -y --no-install-recommends {}",
            missing.join(" "),
            missing.join(" ")
        ));
    }
    println!("xtask: installing for content: {}", missing.join(" "));
    run("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    run("apt-get", &args)?;
    match CONTENT_TOOLS.iter().find(|t| !works(t)) {
        None => Ok(()),
        Some(t) => Err(format!("{} still missing after apt-get install", t.binary)),
    }
}

/// The bare-metal targets and the components `rust-toolchain.toml` lists:
/// with `RUSTUP_AUTO_INSTALL=0` rustup will not add them by itself.
fn ensure_rust_toolchain() -> Result<(), String> {
    let installed = |what: &str| -> Result<String, String> {
        let listed = Command::new("rustup")
            .args([what, "list", "--installed"])
            .output()
            .map_err(|e| format!("rustup: {e}"))?;
        Ok(String::from_utf8_lossy(&listed.stdout).into_owned())
    };
    let targets = installed("target")?;
    for arch in Arch::ALL {
        if !targets.lines().any(|l| l.trim() == arch.target()) {
            run("rustup", &["target", "add", arch.target()])?;
        }
    }
    let components = installed("component")?;
    for component in ["rustfmt", "clippy"] {
        if !components
            .lines()
            .any(|l| l.trim().starts_with(&format!("{component}-")))
        {
            run("rustup", &["component", "add", component])?;
        }
    }
    Ok(())
}

/// Adds `component` to the first `Components:` line that lacks it.
/// Returns the new text, or `None` if some line has it already.
fn add_component(text: &str, component: &str) -> Option<String> {
    let has = |line: &str| line.split_whitespace().any(|w| w == component);
    if text.lines().any(|l| l.starts_with("Components:") && has(l)) {
        return None;
    }
    let mut changed = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("Components:") && !changed {
                changed = true;
                format!("{line} {component}")
            } else {
                line.to_string()
            }
        })
        .collect();
    changed.then(|| lines.join("\n") + "\n")
}

/// Whether apt knows a candidate version of `package` (`name:arch`).
fn apt_has(package: &str) -> bool {
    Command::new("apt-cache")
        .args(["policy", package])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim().starts_with("Candidate:") && !l.contains("(none)"))
        })
}

/// Runs `fix` as root (then `apt-get update`) when `ready` is false, or
/// says what to run.
fn ensure_apt_state(
    ready: impl Fn() -> bool,
    what: &str,
    fix: impl FnOnce() -> Result<(), String>,
    by_hand: &str,
) -> Result<(), String> {
    if ready() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!("{what}. As root run:\n  {by_hand}"));
    }
    println!("xtask: {what}; fixing");
    fix()?;
    run("apt-get", &["update", "-q"])?;
    if ready() {
        Ok(())
    } else {
        Err(format!("{what}, still after {by_hand}"))
    }
}

/// What `cargo xtask image` needs besides QEMU: the UEFI and musl Rust
/// targets, Debian's tools to fetch and unpack packages (never to install
/// them), the foreign arch for an arm64 image, `mke2fs`, the UEFI
/// firmware that boots the image in QEMU, and, for a Raspberry Pi image,
/// the `non-free-firmware` component holding its boot firmware.
pub fn ensure_image_tools(arch: Arch, raspberry_pi: bool) -> Result<(), String> {
    ensure()?;
    let targets = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup: {e}"))?;
    let targets = String::from_utf8_lossy(&targets.stdout).into_owned();
    let (uefi, musl) = match arch {
        Arch::X86_64 => ("x86_64-unknown-uefi", "x86_64-unknown-linux-musl"),
        Arch::Aarch64 => ("aarch64-unknown-uefi", "aarch64-unknown-linux-musl"),
    };
    for target in [uefi, musl] {
        if !targets.lines().any(|l| l.trim() == target) {
            run("rustup", &["target", "add", target])?;
        }
    }
    for (tool, package) in [
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("mke2fs", "e2fsprogs"),
    ] {
        if !Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
        {
            return Err(format!("{tool} missing: install {package}"));
        }
    }
    if arch == Arch::Aarch64 {
        ensure_apt_state(
            || apt_has("linux-image-arm64:arm64"),
            "apt has no arm64 packages",
            || run("dpkg", &["--add-architecture", "arm64"]),
            "dpkg --add-architecture arm64 && apt-get update",
        )?;
    }
    if raspberry_pi {
        ensure_apt_state(
            || apt_has("raspi-firmware"),
            "apt has no raspi-firmware (Debian's non-free-firmware component)",
            || {
                let text =
                    std::fs::read_to_string(SOURCES).map_err(|e| format!("{SOURCES}: {e}"))?;
                match add_component(&text, "non-free-firmware") {
                    Some(new) => {
                        std::fs::write(SOURCES, new).map_err(|e| format!("{SOURCES}: {e}"))
                    }
                    None => Ok(()),
                }
            },
            &format!(
                "sed -i '0,/^Components:/s/^Components:.*/& non-free-firmware/' {SOURCES} && apt-get update"
            ),
        )?;
    }
    ensure_uefi_firmware()
}

/// OVMF and AAVMF, which boot node images in QEMU (x86_64 and aarch64).
pub fn ensure_uefi_firmware() -> Result<(), String> {
    let missing: Vec<&str> = [
        ("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
        ("/usr/share/AAVMF/AAVMF_CODE.fd", "qemu-efi-aarch64"),
    ]
    .into_iter()
    .filter(|(file, _)| !Path::new(file).exists())
    .map(|(_, package)| package)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "UEFI firmware missing. As root run:\n  apt-get install {}",
            missing.join(" ")
        ));
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    run("apt-get", &["update", "-q"])?;
    run("apt-get", &args)
}

#[cfg(test)]
mod tests {
    use super::{add_backports, add_component};

    #[test]
    fn a_component_joins_the_first_components_line_once() {
        let text = "Types: deb\nComponents: main\n\nTypes: deb\nComponents: main\n";
        let new = add_component(text, "non-free-firmware").expect("changed");
        assert_eq!(
            new,
            "Types: deb\nComponents: main non-free-firmware\n\nTypes: deb\nComponents: main\n"
        );
        assert_eq!(add_component(&new, "non-free-firmware"), None);
    }

    #[test]
    fn backports_join_the_main_suites_line_once() {
        let text = "Types: deb\nSuites: bookworm bookworm-updates\n\nTypes: deb\nSuites: bookworm-security\n";
        let new = add_backports(text).expect("changed");
        assert!(new.contains("Suites: bookworm bookworm-updates bookworm-backports\n"));
        assert!(new.contains("Suites: bookworm-security\n"));
        assert_eq!(add_backports(&new), None);
    }
}
