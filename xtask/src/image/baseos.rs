//! A base OS: the kernel as stored, its command line, and the initramfs
//! with eve-host as init.

use std::path::Path;

use eve_host::init::layout;
use harness::Arch;

use super::report::mib;
use super::{Category, build, debian, initramfs, modules};

/// The kernel command line of a base OS on a UEFI machine.
pub fn cmdline(arch: Arch) -> &'static str {
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
pub struct Initrd {
    /// The archive, compressed.
    pub xz: Vec<u8>,
    /// The archive's size before compression.
    pub raw_bytes: u64,
    /// Bytes per category, uncompressed.
    pub parts: Vec<(Category, u64)>,
    /// Kernel modules asked for that this kernel does not have.
    pub modules_missing: Vec<String>,
}

/// Assembles and compresses the initramfs of a base OS.
pub fn initrd(
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
pub fn stored_kernel(arch: Arch, vmlinuz: Vec<u8>) -> Result<Vec<u8>, String> {
    if arch == Arch::X86_64 {
        return Ok(vmlinuz);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vmlinuz).map_err(|e| format!("gzip: {e}"))?;
    gz.finish().map_err(|e| format!("gzip: {e}"))
}
