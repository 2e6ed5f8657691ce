//! `cargo xtask image`: a node's disk image, as EVE lays one out, without
//! root.
//!
//! | # | name | what |
//! |---|---|---|
//! | 1 | EFI System | FAT: our UEFI loader as `EFI/BOOT/BOOTX64.EFI` / `BOOTAA64.EFI` |
//! | 2 | IMGA | FAT: the base OS (`kernel`, gzipped on arm64; `initrd`, `cmdline`, `eve-release`), active |
//! | 3 | IMGB | the same size, empty and unused until an update writes it |
//! | 4 | CONFIG | EVE's CONFIG FAT volume (`--config DIR` fills it) |
//! | 9 | P3 | PERSIST: ext4, the node's state |
//!
//! The base OS is Debian's kernel and an initramfs with eve-host as init
//! ([`initramfs`]); the same FAT volume that IMGA holds is written beside
//! the image as the update artifact a datastore serves. `--board rpi4`
//! lays out a Raspberry Pi 4 disk instead ([`rpi`]).

mod build;
mod cpio;
mod debian;
mod disk;
mod elf;
mod fat;
mod initramfs;
mod modules;
mod persist;
mod rpi;

use std::path::{Path, PathBuf};

use eve_host::init::layout;
use gptab::ab::SlotState;
use gptab::types;
use harness::{Arch, workspace_root};
use sha2::{Digest, Sha256};

pub use initramfs::Category;

const MIB: u64 = 1 << 20;
/// The EFI system partition: the loader is a few hundred KiB.
const ESP_BYTES: u64 = 2 * MIB;
/// Room an IMG partition keeps beyond the base OS it is made for, so a
/// somewhat larger update still fits.
const SLOT_HEADROOM: u64 = 4 * MIB;

/// Which machine the image boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Board {
    /// UEFI PCs, servers and arm64 machines (QEMU with OVMF / AAVMF).
    Pc,
    /// Raspberry Pi 4: its own firmware and tryboot A/B, no UEFI.
    Rpi4,
}

/// Which QEMU the node carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QemuBuild {
    /// The whole emulator: KVM where the machine has it, TCG otherwise
    /// (and inside an emulated machine, as the tests run the node).
    Full,
    /// x86_64 only: Debian's microvm-only build, KVM only (every service
    /// runs on microvm): far smaller, but no TCG fallback.
    KvmOnly,
}

/// `cargo xtask image` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// x86_64 or aarch64.
    #[arg(long)]
    pub arch: Arch,
    #[arg(long, value_enum, default_value_t = Board::Pc)]
    pub board: Board,
    /// A directory whose files make the CONFIG partition (server,
    /// root-certificate.pem, onboard.cert.pem, onboard.key.pem,
    /// soft_serial, ...); empty without it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The image file (default target/image/eve-<arch>[-rpi4].img); the
    /// update artifact goes beside it as <name>-baseos.img.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The base OS version written inside it (default: the workspace
    /// version and the git commit).
    #[arg(long)]
    pub version: Option<String>,
    /// The node manifest the image runs.
    #[arg(long, default_value_os_t = crate::node::default_manifest())]
    pub manifest: PathBuf,
    /// Size of each IMG partition in MiB (default: the base OS plus 4 MiB).
    #[arg(long)]
    pub slot_mib: Option<u64>,
    /// Size of PERSIST in MiB.
    #[arg(long, default_value_t = 16)]
    pub persist_mib: u64,
    #[arg(long, value_enum, default_value_t = QemuBuild::Full)]
    pub qemu: QemuBuild,
}

/// What was built, and where the bytes went.
#[derive(Debug, Clone)]
pub struct Report {
    pub arch: Arch,
    pub board: Board,
    pub qemu: QemuBuild,
    pub version: String,
    pub image: PathBuf,
    pub image_bytes: u64,
    /// Bytes the sparse file takes on disk.
    pub allocated_bytes: u64,
    pub partitions: Vec<disk::Placed>,
    pub artifact: PathBuf,
    pub artifact_bytes: u64,
    pub artifact_sha256: String,
    /// The kernel as stored (gzipped on arm64 UEFI images).
    pub kernel_bytes: u64,
    pub initrd_bytes: u64,
    pub initrd_raw_bytes: u64,
    pub initrd_parts: Vec<(Category, u64)>,
    pub loader_bytes: u64,
    /// Kernel modules asked for that this kernel does not have.
    pub modules_missing: Vec<String>,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

impl Report {
    /// Prints the report.
    pub fn print(&self) {
        let say = |line: std::fmt::Arguments<'_>| crate::output::say(line);
        say(format_args!(
            "{} ({} {:?}, QEMU {:?}, EVE {}): {} ({} allocated, sparse)",
            self.image.display(),
            self.arch,
            self.board,
            self.qemu,
            self.version,
            mib(self.image_bytes),
            mib(self.allocated_bytes)
        ));
        for p in &self.partitions {
            say(format_args!(
                "  {:>2} {:<10} {:>9} at {:>9}, {} used",
                p.number,
                p.name,
                mib(p.bytes),
                mib(p.offset),
                mib(p.used)
            ));
        }
        say(format_args!(
            "  base OS: kernel {} (as stored), initrd {} (xz of {}), loader {}",
            mib(self.kernel_bytes),
            mib(self.initrd_bytes),
            mib(self.initrd_raw_bytes),
            mib(self.loader_bytes)
        ));
        for (category, bytes) in &self.initrd_parts {
            say(format_args!(
                "    {:<28} {:>9}",
                category.name(),
                mib(*bytes)
            ));
        }
        if !self.modules_missing.is_empty() {
            say(format_args!(
                "  kernel modules not in this kernel: {}",
                self.modules_missing.join(", ")
            ));
        }
        say(format_args!(
            "update artifact {}: {}, sha256 {}",
            self.artifact.display(),
            mib(self.artifact_bytes),
            self.artifact_sha256
        ));
    }
}

/// The default version: the workspace's, the commit, `-dirty` if the
/// tree has changes.
fn default_version() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let mut version = env!("CARGO_PKG_VERSION").to_string();
    if let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) {
        version.push('-');
        version.push_str(&commit);
        if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) {
            version.push_str("-dirty");
        }
    }
    version
}

/// A version string EVE could show: 1 to 64 of `[A-Za-z0-9._+-]`.
fn check_version(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "version {version:?}: use 1 to 64 letters, digits and . _ + -"
        ))
    }
}

/// The files of `--config DIR` (regular files at its top).
fn config_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| format!("{}: not UTF-8", n.to_string_lossy()))?;
        let data = std::fs::read(entry.path()).map_err(|e| format!("{name}: {e}"))?;
        files.push((name, data));
    }
    files.sort();
    Ok(files)
}

/// The CONFIG partition from `--config DIR`, or an empty one.
fn config_volume(dir: Option<&Path>) -> Result<Vec<u8>, String> {
    let files = match dir {
        Some(dir) => config_files(dir)?,
        None => {
            crate::output::warn(format_args!(
                "xtask: no --config: the CONFIG partition is empty and the node has no controller"
            ));
            Vec::new()
        }
    };
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    configpart::build_config_image(
        &refs,
        configpart::ImageLayout::Bare {
            volume_bytes: harness::provision::CONFIG_VOLUME_BYTES,
        },
    )
    .map_err(|e| format!("CONFIG partition: {e}"))
}

/// The kernel command line of a base OS on a UEFI machine.
fn cmdline(arch: Arch) -> &'static str {
    match arch {
        // No ACPI table names a serial console on a PC: say it, the last
        // `console=` being /dev/console. `quiet`: printing to an emulated
        // UART is slow, and only warnings matter.
        Arch::X86_64 => "console=tty0 console=ttyS0,115200 panic=10 quiet",
        // The device tree's stdout-path (or ACPI SPCR) names it on arm64.
        Arch::Aarch64 => "panic=10 quiet",
    }
}

/// The initramfs of a base OS.
struct Initrd {
    xz: Vec<u8>,
    raw_bytes: u64,
    parts: Vec<(Category, u64)>,
    modules_missing: Vec<String>,
}

fn initrd(
    arch: Arch,
    parts: &build::Parts,
    kernel: &debian::Kernel,
    qemu: &debian::Qemu,
    version: &str,
) -> Result<Initrd, String> {
    let mut tree = initramfs::Tree::new();
    tree.copy("/init", &parts.host, 0o755, Category::Host)?;
    tree.file(
        layout::MANIFEST,
        0o644,
        parts.manifest_text.clone().into_bytes(),
        Category::Services,
    );
    for (image, file) in &parts.services {
        tree.copy(
            &initramfs::service_image_path(image, arch),
            file,
            0o644,
            Category::Services,
        )?;
    }
    tree.file(
        layout::RELEASE,
        0o644,
        format!("{version}\n").into_bytes(),
        Category::Other,
    );
    tree.copy(
        &format!("/usr/bin/{}", arch.qemu()),
        &qemu.binary,
        0o755,
        Category::Qemu,
    )?;
    for (path, file) in &qemu.libraries {
        tree.copy(
            &path.display().to_string(),
            file,
            0o755,
            Category::QemuLibraries,
        )?;
    }
    if arch == Arch::X86_64 {
        // eve-host boots microvm guests with qboot.
        tree.copy(
            "/usr/share/qemu/qboot.rom",
            &qemu.data.join("qboot.rom"),
            0o644,
            Category::QemuFirmware,
        )?;
    }
    let (modules, missing) = modules::select(&kernel.modules, arch)?;
    let mut list = String::new();
    for module in &modules {
        let in_image = Path::new("/lib/modules").join(&kernel.release).join(module);
        tree.copy(
            &in_image.display().to_string(),
            &kernel.modules.join(module),
            0o644,
            Category::Modules,
        )?;
        list.push_str(&in_image.display().to_string());
        list.push('\n');
    }
    tree.file(
        layout::MODULE_LIST,
        0o644,
        list.into_bytes(),
        Category::Modules,
    );
    let cpio = tree.cpio()?;
    crate::output::say(format_args!(
        "xtask: compressing the initramfs ({})",
        mib(cpio.len() as u64)
    ));
    Ok(Initrd {
        xz: initramfs::compress(&cpio, arch)?,
        raw_bytes: cpio.len() as u64,
        parts: tree.sizes(),
        modules_missing: missing,
    })
}

/// The kernel as the IMG partition stores it: x86_64's bzImage
/// decompresses itself; an arm64 Image does not, so it is gzipped and
/// the loader inflates it.
fn stored_kernel(arch: Arch, vmlinuz: Vec<u8>) -> Result<Vec<u8>, String> {
    if arch == Arch::X86_64 {
        return Ok(vmlinuz);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vmlinuz).map_err(|e| format!("gzip: {e}"))?;
    gz.finish().map_err(|e| format!("gzip: {e}"))
}

fn round_up(bytes: u64, to: u64) -> u64 {
    bytes.div_ceil(to) * to
}

/// Builds the image `args` describe.
pub fn run(args: &Args) -> Result<Report, String> {
    if args.board == Board::Rpi4 && args.arch != Arch::Aarch64 {
        return Err("--board rpi4 is an aarch64 board: add --arch aarch64".into());
    }
    crate::deps::ensure_image_tools(args.arch, args.board == Board::Rpi4)?;
    let version = args.version.clone().unwrap_or_else(default_version);
    check_version(&version)?;
    let out_dir = workspace_root().join("target/image");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let suffix = if args.board == Board::Rpi4 {
        "-rpi4"
    } else {
        ""
    };
    let image = args
        .out
        .clone()
        .unwrap_or_else(|| out_dir.join(format!("eve-{}{suffix}.img", args.arch)));
    let artifact = image.with_file_name(format!(
        "{}-baseos.img",
        image
            .file_stem()
            .map_or(String::from("eve"), |s| s.to_string_lossy().into_owned())
    ));

    let parts = build::build(&args.manifest, args.arch, args.board == Board::Pc)?;
    let deb = debian::Debian::new(&out_dir.join("debian"), args.arch)?;
    let kernel = deb.kernel()?;
    let qemu = deb.qemu(args.qemu == QemuBuild::KvmOnly)?;
    let initrd = initrd(args.arch, &parts, &kernel, &qemu, &version)?;
    let vmlinuz =
        std::fs::read(&kernel.vmlinuz).map_err(|e| format!("{}: {e}", kernel.vmlinuz.display()))?;
    let release = format!("{version}\n");

    let (base_os, layout_parts, loader_bytes, kernel_bytes) = match args.board {
        Board::Pc => {
            let loader = std::fs::read(&parts.loader)
                .map_err(|e| format!("{}: {e}", parts.loader.display()))?;
            let kernel = stored_kernel(args.arch, vmlinuz)?;
            let files: [(&str, &[u8]); 4] = [
                ("kernel", &kernel),
                ("initrd", &initrd.xz),
                ("cmdline", cmdline(args.arch).as_bytes()),
                ("eve-release", release.as_bytes()),
            ];
            let base_os = fat::volume(
                round_up(fat::bytes_needed(&files), MIB),
                "EVE",
                fat::Kind::Auto,
                &files,
            )?;
            let loader_path = format!("EFI/BOOT/{}", build::removable_loader_name(args.arch));
            let esp = fat::volume(
                ESP_BYTES,
                "EFI",
                fat::Kind::Auto,
                &[(loader_path.as_str(), &loader)],
            )?;
            let slot = match args.slot_mib {
                Some(slot) => slot * MIB,
                None => round_up(base_os.len() as u64 + SLOT_HEADROOM, MIB),
            };
            let parts = vec![
                part(1, "EFI System", types::EFI_SYSTEM, 0, ESP_BYTES, esp)?,
                part(
                    2,
                    "IMGA",
                    types::EVE_IMAGE,
                    SlotState::Active.apply(0),
                    slot,
                    base_os.clone(),
                )?,
                part(
                    3,
                    "IMGB",
                    types::EVE_IMAGE,
                    SlotState::Unused.apply(0),
                    slot,
                    Vec::new(),
                )?,
            ];
            (base_os, parts, loader.len() as u64, kernel.len() as u64)
        }
        Board::Rpi4 => {
            let firmware = deb.raspi_firmware()?;
            let base_os = rpi::base_os(&firmware, &kernel, &vmlinuz, &initrd.xz, &release)?;
            let slot = match args.slot_mib {
                Some(slot) => slot * MIB,
                None => round_up(base_os.len() as u64 + SLOT_HEADROOM, MIB),
            };
            let kernel_bytes = vmlinuz.len() as u64;
            (
                base_os.clone(),
                rpi::boot_partitions(base_os, slot)?,
                0,
                kernel_bytes,
            )
        }
    };
    let persist_bytes = args.persist_mib.max(8) * MIB;
    let mut all = layout_parts;
    all.push(part(
        4,
        "CONFIG",
        types::EVE_CONFIG,
        0,
        MIB,
        config_volume(args.config.as_deref())?,
    )?);
    all.push(part(
        9,
        "P3",
        types::EVE_PERSIST,
        0,
        persist_bytes,
        persist::ext4(persist_bytes, &out_dir)?,
    )?);
    let placed = disk::write(&image, disk::random_guid()?, &all)?;
    harness::provision::write_atomically(&artifact, &base_os)?;

    let report = Report {
        arch: args.arch,
        board: args.board,
        qemu: args.qemu,
        version,
        image_bytes: std::fs::metadata(&image).map_or(0, |m| m.len()),
        allocated_bytes: disk::allocated(&image),
        image,
        partitions: placed,
        artifact_bytes: base_os.len() as u64,
        artifact_sha256: hex(&Sha256::digest(&base_os)),
        artifact,
        kernel_bytes,
        initrd_bytes: initrd.xz.len() as u64,
        initrd_raw_bytes: initrd.raw_bytes,
        initrd_parts: initrd.parts,
        loader_bytes,
        modules_missing: initrd.modules_missing,
    };
    Ok(report)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A partition of the layout with a fresh unique GUID.
fn part(
    number: u32,
    name: &'static str,
    type_guid: gptab::Guid,
    attributes: u64,
    bytes: u64,
    content: Vec<u8>,
) -> Result<disk::Part, String> {
    Ok(disk::Part {
        number,
        name,
        type_guid,
        unique_guid: disk::random_guid()?,
        attributes,
        bytes,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_plain_words() {
        assert!(check_version("0.1.0-6c42917bd2a1-dirty").is_ok());
        assert!(check_version("2.0+rc1").is_ok());
        for bad in ["", "1.0 beta", "../x", &"9".repeat(65)] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
        assert!(check_version(&default_version()).is_ok());
    }
}
