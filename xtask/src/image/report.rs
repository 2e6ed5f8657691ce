//! What `cargo xtask image` built, and where the bytes went.

use std::path::PathBuf;

use super::disk::Placed;
use super::{Board, Category, MIB, QemuBuild};
use harness::Arch;

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
    pub partitions: Vec<Placed>,
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

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

impl QemuBuild {
    fn describe(self) -> &'static str {
        match self {
            QemuBuild::Full => "the whole QEMU",
            QemuBuild::KvmOnly => "KVM-only QEMU",
        }
    }
}

impl Report {
    /// Prints the report.
    pub fn print(&self) {
        let say = |line: std::fmt::Arguments<'_>| crate::output::say(line);
        say(format_args!(
            "{} ({} {:?}, {}, EVE {}): {} ({} allocated, sparse)",
            self.image.display(),
            self.arch,
            self.board,
            self.qemu.describe(),
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
