//! The Linux VM test asset: a disk image that UEFI boots as it would a
//! cloud image. GPT with one EFI system partition holding systemd-boot
//! (as `EFI/BOOT/BOOT<ARCH>.EFI`, the path firmware boots by itself), one
//! loader entry, Debian's kernel and a busybox initramfs.
//!
//! Why systemd-boot: firmware starts the default loader with no command
//! line and no initrd, so the kernel's EFI stub alone cannot be told
//! either; systemd-boot is a single small EFI binary in a Debian package
//! that passes both from a text entry, with no root, no GRUB modules and
//! no image tools. The disk is written raw here and converted to qcow2
//! with `qemu-img`; a VM gets its own qcow2 overlay on it.
//!
//! The initramfs's init (a shell script, see [`INIT`]) loads the virtio,
//! power-button and FAT modules, takes a DHCP lease, runs the NoCloud
//! seed's `user-data` when it is a script (a minimal stand-in for
//! cloud-init, which real cloud images run), powers down on the power
//! button (busybox `acpid`, which runs `/etc/acpi/PWRF/00000080`) and serves `/www` with busybox `httpd` on port
//! 80.

use std::{
    io::{Cursor, Write},
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use fatfs::{FileSystem, FormatVolumeOptions, FsOptions};

use super::{
    AssetError, cache_dir,
    cpio::{Cpio, Node},
    debian, gpt, io_error, kmod,
};
use crate::Arch;

/// Bumped when what goes into the disk changes, so caches rebuild.
const VERSION: u32 = 3;

/// Modules the VM needs (or has built in): virtio on PCI, disks, NIC,
/// the ACPI power button and its input events, FAT for the seed.
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "button",
    "evdev",
    "vfat",
    "nls_cp437",
    "nls_ascii",
];

const INIT: &str = r##"#!/bin/busybox sh
# The test VM's init (harness::appassets::linuxvm).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do
    insmod /lib/modules/$m.ko || echo "init: insmod $m failed"
done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /etc/udhcpc.sh -q -t 20 -T 1 || echo "init: no DHCP lease"
echo "hello from the Linux VM ($(uname -m))" > /www/index.html
seed=$(findfs LABEL=CIDATA 2>/dev/null)
if [ -n "$seed" ] && mount -t vfat -o ro "$seed" /mnt; then
    echo "init: cloud-init seed on $seed"
    if [ "$(head -c 2 /mnt/user-data)" = "#!" ]; then
        cp /mnt/user-data /tmp/user-data
        chmod +x /tmp/user-data
        /tmp/user-data
        echo "init: user-data exited $?"
    fi
    umount /mnt
fi
# In the foreground of a background job: daemonized, it never ran the action.
acpid -d &
httpd -p 80 -h /www
echo "init: serving HTTP on port 80"
while true; do sleep 3600; done
"##;

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
        echo "init: $interface has $ip"
        ;;
esac
"#;

const POWER_SCRIPT: &str =
    "#!/bin/sh\necho \"init: power button, powering off\"\nsync\npoweroff -f\n";

/// The disk, raw and as qcow2.
#[derive(Debug, Clone)]
pub struct LinuxVmDisk {
    pub raw: PathBuf,
    pub qcow2: PathBuf,
}

impl LinuxVmDisk {
    /// A qcow2 overlay at `path` backed by the cached disk, for one VM to
    /// write to.
    pub fn overlay(&self, path: &Path) -> Result<PathBuf, AssetError> {
        let _ = std::fs::remove_file(path);
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            &self.qcow2.to_string_lossy(),
            &path.to_string_lossy(),
        ])?;
        Ok(path.to_path_buf())
    }
}

fn qemu_img(args: &[&str]) -> Result<(), AssetError> {
    let what = format!("qemu-img {}", args.join(" "));
    let output = Command::new("qemu-img")
        .args(args)
        .output()
        .map_err(|e| AssetError::Tool {
            what: what.clone(),
            why: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(AssetError::Tool {
            what,
            why: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// The Linux VM disk for `arch`, built once and cached.
pub fn linux_vm_disk(arch: Arch) -> Result<LinuxVmDisk, AssetError> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = cache_dir()
        .join(arch.name())
        .join(format!("linux-vm-{VERSION}"));
    let disk = LinuxVmDisk {
        raw: dir.join("disk.img"),
        qcow2: dir.join("disk.qcow2"),
    };
    if disk.qcow2.is_file() {
        return Ok(disk);
    }
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let kernel = debian::kernel(arch)?;
    let busybox = debian::busybox(arch)?;
    let loader = debian::systemd_boot(arch)?;
    let read = |path: &Path| std::fs::read(path).map_err(io_error(path));
    let initrd = initramfs(&read(&busybox)?, &kernel.modules)?;
    let console = match arch {
        Arch::X86_64 => "ttyS0",
        Arch::Aarch64 => "ttyAMA0",
    };
    let boot_name = match arch {
        Arch::X86_64 => "BOOTX64.EFI",
        Arch::Aarch64 => "BOOTAA64.EFI",
    };
    let entry = format!(
        "title EVE app test VM\nlinux /vmlinuz\ninitrd /initrd.img\noptions console={console} panic=-1 quiet\n"
    );
    let files: Vec<(&str, Vec<u8>)> = vec![
        (boot_name, read(&loader)?),
        ("loader.conf", b"default app.conf\ntimeout 0\n".to_vec()),
        ("app.conf", entry.into_bytes()),
        ("vmlinuz", read(&kernel.image)?),
        ("initrd.img", initrd),
    ];
    let esp = esp_volume(&files)?;
    let image = gpt::disk(
        &esp,
        gpt::ESP_TYPE,
        "EFI system partition",
        u64::from(VERSION),
    );
    let partial = dir.join("disk.img.partial");
    std::fs::write(&partial, image).map_err(io_error(&partial))?;
    std::fs::rename(&partial, &disk.raw).map_err(io_error(&disk.raw))?;
    let partial = dir.join("disk.qcow2.partial");
    qemu_img(&[
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "qcow2",
        &disk.raw.to_string_lossy(),
        &partial.to_string_lossy(),
    ])?;
    std::fs::rename(&partial, &disk.qcow2).map_err(io_error(&disk.qcow2))?;
    Ok(disk)
}

/// The FAT volume of the EFI system partition: the loader where firmware
/// looks, its configuration, the kernel and the initramfs.
fn esp_volume(files: &[(&str, Vec<u8>)]) -> Result<Vec<u8>, AssetError> {
    let content: usize = files.iter().map(|(_, data)| data.len()).sum();
    let size = (content + (16 << 20)).div_ceil(1 << 20).max(64) << 20;
    let fat = |e: std::io::Error| AssetError::Disk(format!("EFI system partition: {e}"));
    let mut volume = Cursor::new(vec![0u8; size]);
    fatfs::format_volume(
        &mut volume,
        FormatVolumeOptions::new().volume_label(*b"ESP        "),
    )
    .map_err(fat)?;
    {
        let fs = FileSystem::new(&mut volume, FsOptions::new()).map_err(fat)?;
        write_tree(&fs.root_dir(), files).map_err(fat)?;
        fs.unmount().map_err(fat)?;
    }
    Ok(volume.into_inner())
}

fn write_tree<T: fatfs::ReadWriteSeek>(
    root: &fatfs::Dir<'_, T>,
    files: &[(&str, Vec<u8>)],
) -> std::io::Result<()> {
    {
        let efi_boot = root.create_dir("EFI")?.create_dir("BOOT")?;
        let loader = root.create_dir("loader")?;
        let entries = loader.create_dir("entries")?;
        for (name, data) in files {
            let dir = match *name {
                n if n.ends_with(".EFI") => &efi_boot,
                "loader.conf" => &loader,
                "app.conf" => &entries,
                _ => root,
            };
            let mut file = dir.create_file(name)?;
            file.truncate()?;
            file.write_all(data)?;
            file.flush()?;
        }
    }
    Ok(())
}

/// The initramfs: busybox, our init and scripts, and the modules.
fn initramfs(busybox: &[u8], modules_dir: &Path) -> Result<Vec<u8>, AssetError> {
    let modules = kmod::resolve(modules_dir, MODULES).map_err(AssetError::Kernel)?;
    let mut cpio = Cpio::default();
    for dir in [
        "bin",
        "dev",
        "etc",
        "etc/acpi",
        "etc/acpi/PWRF",
        "lib",
        "lib/modules",
        "mnt",
        "proc",
        "sys",
        "tmp",
        "www",
    ] {
        cpio.add(dir, Node::Dir);
    }
    cpio.add("dev/console", Node::CharDevice { major: 5, minor: 1 });
    fn exe(data: &[u8]) -> Node<'_> {
        Node::File {
            data,
            executable: true,
        }
    }
    cpio.add("bin/busybox", exe(busybox));
    cpio.add("init", exe(INIT.as_bytes()));
    cpio.add("etc/udhcpc.sh", exe(UDHCPC_SCRIPT.as_bytes()));
    // busybox acpid runs /etc/acpi/<ACTION>/<PARAMETER> for an event;
    // the power button is PWRF 00000080.
    cpio.add("etc/acpi/PWRF/00000080", exe(POWER_SCRIPT.as_bytes()));
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
    Ok(cpio.finish())
}
