//! The node's initramfs: eve-host as `/init`, the service images and the
//! manifest, QEMU with its libraries and firmware, the kernel modules to
//! load, and the version; as a newc cpio archive compressed with xz (CRC32
//! check and, on x86_64, the x86 BCJ filter: what the kernel's decoder
//! takes).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use eve_host::init::layout;
use harness::Arch;
use lzma_rust2::{CheckType, FilterConfig, XzOptions, XzWriter};

use super::cpio::Entry;

/// What the bytes of the initramfs are, for the size report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Host,
    Services,
    Qemu,
    QemuLibraries,
    QemuFirmware,
    Modules,
    Other,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Host => "eve-host (init)",
            Category::Services => "service images and manifest",
            Category::Qemu => "QEMU",
            Category::QemuLibraries => "QEMU's libraries",
            Category::QemuFirmware => "QEMU's firmware",
            Category::Modules => "kernel modules",
            Category::Other => "other",
        }
    }
}

/// The tree being assembled.
#[derive(Default)]
pub struct Tree {
    entries: Vec<Entry>,
    dirs: BTreeSet<String>,
    sizes: Vec<(Category, u64)>,
}

fn relative(path: &str) -> String {
    path.trim_start_matches('/').to_string()
}

impl Tree {
    /// The directories and device node every node needs.
    pub fn new() -> Tree {
        let mut tree = Tree::default();
        for dir in ["dev", "proc", "sys", "run", "tmp", "persist"] {
            tree.dir(dir);
        }
        tree.entries.push(Entry::CharDevice {
            path: "dev/console".into(),
            mode: 0o600,
            major: 5,
            minor: 1,
        });
        tree
    }

    fn dir(&mut self, path: &str) {
        let path = relative(path);
        if path.is_empty() || self.dirs.contains(&path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.dirs.insert(path.clone());
        self.entries.push(Entry::Directory { path, mode: 0o755 });
    }

    /// Adds a file at `path` (parents made as needed).
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>, category: Category) {
        let path = relative(path);
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.sizes.push((category, data.len() as u64));
        self.entries.push(Entry::File { path, mode, data });
    }

    /// Adds a copy of `source` at `path`.
    pub fn copy(
        &mut self,
        path: &str,
        source: &Path,
        mode: u32,
        category: Category,
    ) -> Result<(), String> {
        let data = std::fs::read(source).map_err(|e| format!("{}: {e}", source.display()))?;
        self.file(path, mode, data, category);
        Ok(())
    }

    /// Bytes per category, uncompressed.
    pub fn sizes(&self) -> Vec<(Category, u64)> {
        let mut totals: Vec<(Category, u64)> = Vec::new();
        for &(category, bytes) in &self.sizes {
            match totals.iter_mut().find(|(c, _)| *c == category) {
                Some((_, total)) => *total += bytes,
                None => totals.push((category, bytes)),
            }
        }
        totals.sort();
        totals
    }

    /// The archive, uncompressed.
    pub fn cpio(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        super::cpio::write(&mut out, &self.entries).map_err(|e| format!("cpio: {e}"))?;
        Ok(out)
    }
}

/// `cpio` compressed as the kernel's xz decoder wants it.
pub fn compress(cpio: &[u8], arch: Arch) -> Result<Vec<u8>, String> {
    let mut options = XzOptions::with_preset(9);
    options.check_type = CheckType::Crc32;
    if arch == Arch::X86_64 {
        options.filters.push(FilterConfig::new_bcj_x86(0));
    }
    let fail = |e: std::io::Error| format!("xz: {e}");
    let mut writer = XzWriter::new(Vec::new(), options).map_err(fail)?;
    writer.write_all(cpio).map_err(fail)?;
    writer.finish().map_err(fail)
}

/// Where the host looks for service image `image` in a node image.
pub fn service_image_path(image: &str, arch: Arch) -> String {
    eve_host::node::image_path(Path::new(layout::IMAGES), image, arch)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_once() {
        let mut tree = Tree::new();
        tree.file(
            "/usr/lib/eve/images/diag",
            0o644,
            vec![1; 10],
            Category::Services,
        );
        tree.file("usr/bin/qemu", 0o755, vec![2; 5], Category::Qemu);
        let paths: Vec<&str> = tree.entries.iter().map(Entry::path).collect();
        let at = |p: &str| paths.iter().position(|&q| q == p).unwrap();
        assert!(
            at("usr") < at("usr/lib") && at("usr/lib/eve/images") < at("usr/lib/eve/images/diag")
        );
        assert_eq!(paths.iter().filter(|&&p| p == "usr").count(), 1);
        assert_eq!(
            tree.sizes(),
            [(Category::Services, 10), (Category::Qemu, 5)]
        );
    }

    #[test]
    fn compresses_to_xz_with_a_crc32_check() {
        let data = vec![0x5a; 100_000];
        let xz = compress(&data, Arch::X86_64).unwrap();
        assert_eq!(&xz[..6], b"\xfd7zXZ\x00");
        // Stream flags: check type CRC32.
        assert_eq!(xz[7], 0x01);
        assert!(xz.len() < 1000);
        let mut back = Vec::new();
        std::io::Read::read_to_end(
            &mut lzma_rust2::XzReader::new(xz.as_slice(), false),
            &mut back,
        )
        .unwrap();
        assert_eq!(back, data);
    }
}
