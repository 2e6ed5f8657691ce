//! The container shim VM: Debian's kernel and an initramfs holding our
//! `shim-init` (a static musl program) as `/init`, the modules it loads
//! (listed in load order in `/etc/modules`) and a console node. The
//! image's own bytes never go here: they reach the VM on the blob disk.

use std::{collections::HashMap, path::PathBuf, sync::Mutex};

use super::{
    AssetError, build_linux_program, cache_dir,
    cpio::{Cpio, Node},
    debian, io_error, kmod,
};
use crate::{Arch, Profile};

/// The shim VM's kernel and initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimAssets {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Modules for the virtio disks and NIC and the power button: PCI and the
/// ACPI button on the PC (q35), MMIO and gpio-keys on virt (its PL061 is
/// built in).
fn modules(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &["virtio_pci", "virtio_blk", "virtio_net", "button", "evdev"],
        Arch::Aarch64 => &[
            "virtio_mmio",
            "virtio_blk",
            "virtio_net",
            "gpio_keys",
            "evdev",
        ],
    }
}

/// The shim for `arch`; the initramfs is rebuilt once per process (the
/// init is ours and may have changed), the kernel is cached.
pub fn shim(arch: Arch) -> Result<ShimAssets, AssetError> {
    static BUILT: Mutex<Option<HashMap<Arch, ShimAssets>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(assets) = built.get_or_insert_default().get(&arch) {
        return Ok(assets.clone());
    }
    let init = build_linux_program("shim-init", arch, Profile::Release)?;
    let kernel = debian::kernel(arch)?;
    let modules = kmod::resolve(&kernel.modules, modules(arch)).map_err(AssetError::Kernel)?;
    let mut cpio = Cpio::default();
    for dir in ["dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp"] {
        cpio.add(dir, Node::Dir);
    }
    cpio.add("dev/console", Node::CharDevice { major: 5, minor: 1 });
    let init_bytes = std::fs::read(&init).map_err(io_error(&init))?;
    cpio.add(
        "init",
        Node::File {
            data: &init_bytes,
            executable: true,
        },
    );
    let order: String = modules.iter().map(|m| format!("{}\n", m.name)).collect();
    cpio.add(
        "etc/modules",
        Node::File {
            data: order.as_bytes(),
            executable: false,
        },
    );
    for module in &modules {
        let data = std::fs::read(&module.path).map_err(io_error(&module.path))?;
        cpio.add(
            &format!("lib/modules/{}.ko", module.name),
            Node::File {
                data: &data,
                executable: false,
            },
        );
    }
    let dir = cache_dir().join(arch.name()).join("shim");
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    // Written aside and renamed: a VM another process started keeps the
    // initramfs QEMU already read.
    let initrd = dir.join("initrd.img");
    let partial = dir.join(format!("initrd.img.{}", std::process::id()));
    std::fs::write(&partial, cpio.finish()).map_err(io_error(&partial))?;
    std::fs::rename(&partial, &initrd).map_err(io_error(&initrd))?;
    let assets = ShimAssets {
        kernel: kernel.image,
        initrd,
    };
    built.get_or_insert_default().insert(arch, assets.clone());
    Ok(assets)
}
