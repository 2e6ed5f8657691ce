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

mod baseos;
mod build;
mod config;
mod cpio;
mod debian;
mod disk;
mod elf;
mod fat;
mod initramfs;
mod modules;
mod persist;
mod report;
mod rpi;

use std::path::PathBuf;

use gptab::ab::SlotState;
use gptab::types;
use harness::{Arch, workspace_root};
use sha2::{Digest, Sha256};

pub use initramfs::Category;
pub use report::Report;

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
    /// The logical block size of the disk the image is for, 512 or 4096
    /// (4Kn disks): the GPT's blocks, and PERSIST's ext4 blocks no smaller.
    #[arg(long, default_value_t = gptab::DEFAULT_BLOCK_SIZE, value_parser = parse_sector_size)]
    pub sector_size: usize,
}

/// 512 or 4096: the logical block sizes disks have and `gptab` lays out.
fn parse_sector_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(size @ (512 | 4096)) => Ok(size),
        _ => Err(format!(
            "{text}: a disk's logical blocks are 512 or 4096 bytes"
        )),
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

fn round_up(bytes: u64, to: u64) -> u64 {
    bytes.div_ceil(to) * to
}

/// Builds the image `args` describe.
pub fn run(args: &Args) -> Result<Report, String> {
    if args.board == Board::Rpi4 && args.arch != Arch::Aarch64 {
        return Err("--board rpi4 is an aarch64 board: add --arch aarch64".into());
    }
    if args.persist_mib < 8 {
        return Err(format!(
            "--persist-mib {}: PERSIST needs at least 8 MiB (an ext4 journal and the node's state)",
            args.persist_mib
        ));
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
    let initrd = baseos::initrd(args.arch, &parts, &kernel, &qemu, &version)?;
    let vmlinuz =
        std::fs::read(&kernel.image).map_err(|e| format!("{}: {e}", kernel.image.display()))?;
    let release = format!("{version}\n");

    let (base_os, layout_parts, loader_bytes, kernel_bytes) = match args.board {
        Board::Pc => {
            let loader = std::fs::read(&parts.loader)
                .map_err(|e| format!("{}: {e}", parts.loader.display()))?;
            let kernel = baseos::stored_kernel(args.arch, vmlinuz)?;
            let files: [(&str, &[u8]); 4] = [
                ("kernel", &kernel),
                ("initrd", &initrd.xz),
                ("cmdline", baseos::cmdline(args.arch).as_bytes()),
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
    let persist_bytes = args.persist_mib * MIB;
    let mut all = layout_parts;
    all.push(part(
        4,
        "CONFIG",
        types::EVE_CONFIG,
        0,
        MIB,
        config::volume(args.config.as_deref())?,
    )?);
    all.push(part(
        9,
        "P3",
        types::EVE_PERSIST,
        0,
        persist_bytes,
        persist::ext4(persist_bytes, &out_dir)?,
    )?);
    let placed = disk::write(&image, args.sector_size, disk::random_guid()?, &all)?;
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
    fn sector_sizes_are_those_of_disks() {
        assert_eq!(parse_sector_size("512"), Ok(512));
        assert_eq!(parse_sector_size("4096"), Ok(4096));
        for bad in ["1024", "0", "4k", ""] {
            assert!(parse_sector_size(bad).is_err(), "{bad:?}");
        }
    }

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
