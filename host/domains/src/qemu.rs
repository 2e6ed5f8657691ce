//! The QEMU command line of a domain: a pure function of its spec and
//! its files, so it is tested without starting anything.
//!
//! Machines: a unikernel boots like our services (x86_64 `microvm` with
//! qboot and PVH, `isa-debug-exit` for its status; aarch64 `virt`); a
//! Linux kernel (a container's shim VM, a VM booted from its kernel) runs
//! on a PC (`q35` with qboot) or `virt`, since Linux on `microvm` has no
//! reference clock besides the PIT and under TCG on a loaded host its
//! calibration fails and boot stalls; a UEFI VM is a PC with OVMF or
//! `virt` with AAVMF. Virtio is on PCI on the PC and under UEFI on virt,
//! on MMIO elsewhere. Every
//! domain runs with `-no-reboot`, so a guest reset ends QEMU and the host
//! sees it (and decides), and with its console in a file and a QMP socket
//! for graceful stops.

use std::path::{Path, PathBuf};

use guest_arch::{Accel, Arch};

use crate::{
    dir::DomainDir,
    firmware::Firmware,
    spec::{DomainSpec, Kind, NetBackend, VmBoot},
};

/// The port our unikernels write their exit status to.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// The virtio-blk serials the guest finds the host's own disks by.
pub const SEED_SERIAL: &str = "cidata";
pub const BLOBS_SERIAL: &str = "oci";
/// How soon a stream NIC tries its socket again, milliseconds.
const STREAM_RECONNECT_MS: u32 = 100;

/// What QEMU needs beyond the spec: the accelerator chosen, firmware
/// files found, and the disks the host made for this start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub accel: Accel,
    /// For a UEFI Linux VM: the firmware's code and this domain's copy of
    /// its variable store.
    pub firmware: Option<(Firmware, PathBuf)>,
    /// The NoCloud seed disk, when the spec has cloud-init data.
    pub seed: Option<PathBuf>,
    /// The container's blob disk.
    pub blobs: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Machine {
    /// x86_64 microvm with qboot: our unikernels' PVH boot.
    MicrovmQboot,
    /// A PC; qboot loads a kernel, OVMF boots a disk.
    Q35,
    Virt,
}

impl Machine {
    fn for_spec(spec: &DomainSpec) -> Machine {
        match (spec.arch, &spec.kind) {
            (Arch::Aarch64, _) => Machine::Virt,
            (Arch::X86_64, Kind::Unikernel { .. }) => Machine::MicrovmQboot,
            (Arch::X86_64, Kind::Container { .. } | Kind::LinuxVm { .. }) => Machine::Q35,
        }
    }
}

/// The Linux console device on each arch.
pub fn linux_console(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "ttyS0",
        Arch::Aarch64 => "ttyAMA0",
    }
}

/// QEMU option values are comma-separated; a literal comma is doubled.
fn path_option(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// The QEMU arguments (without the binary) that run `spec`.
pub fn qemu_args(spec: &DomainSpec, dir: &DomainDir, launch: &Launch) -> Vec<String> {
    let machine = Machine::for_spec(spec);
    // PCI on the PC; on virt for firmware-booted VMs, which is what
    // AAVMF and cloud images expect; virtio-mmio elsewhere.
    let uefi = launch.firmware.is_some();
    let pci = machine == Machine::Q35 || (machine == Machine::Virt && uefi);
    let bus = |device: &str| {
        if pci {
            format!("{device}-pci")
        } else {
            format!("{device}-device")
        }
    };
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    push(&["-name", &spec.name.replace(',', ",,")]);
    push(&["-pidfile", &dir.pid_file().to_string_lossy()]);
    match machine {
        Machine::MicrovmQboot => {
            push(&[
                "-M",
                "microvm,x-option-roms=off,rtc=on",
                "-bios",
                "qboot.rom",
            ]);
            push(&[
                "-device",
                &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"),
            ]);
        }
        Machine::Q35 if uefi => push(&["-M", "q35"]),
        // qboot: loads the kernel 2x faster than SeaBIOS.
        Machine::Q35 => push(&["-M", "q35", "-bios", "qboot.rom"]),
        Machine::Virt => push(&["-M", "virt"]),
    }
    let cpu = guest_arch::qemu_cpu(spec.arch, launch.accel);
    push(&["-cpu", cpu, "-accel", launch.accel.name()]);
    push(&[
        "-m",
        &format!("{}M", spec.memory_mib),
        "-smp",
        &spec.vcpus.to_string(),
    ]);
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
    ]);
    if !pci {
        push(&["-global", "virtio-mmio.force-legacy=false"]);
    }
    push(&[
        "-chardev",
        &format!(
            "file,id=console,path={},append=on",
            path_option(&dir.console())
        ),
        "-serial",
        "chardev:console",
    ]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=qmp,path={},server=on,wait=off",
            path_option(&dir.qmp_socket())
        ),
        "-mon",
        "chardev=qmp,mode=control",
    ]);
    push(&["-device", &bus("virtio-rng")]);
    if let Some((firmware, vars)) = &launch.firmware {
        push(&[
            "-drive",
            &format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                path_option(&firmware.code)
            ),
            "-drive",
            &format!("if=pflash,format=raw,unit=1,file={}", path_option(vars)),
        ]);
    }
    let disk = |args: &mut Vec<String>, path: &Path, format: &str, ro: bool, extra: &str| {
        let id = format!("disk{}", args.iter().filter(|a| *a == "-drive").count());
        let ro = if ro { ",readonly=on" } else { "" };
        args.extend([
            "-drive".to_string(),
            format!(
                "file={},if=none,id={id},format={format}{ro}",
                path_option(path)
            ),
            "-device".to_string(),
            format!("{},drive={id}{extra}", bus("virtio-blk")),
        ]);
    };
    for (i, d) in spec.disks.iter().enumerate() {
        let extra = if uefi && i == 0 { ",bootindex=0" } else { "" };
        disk(&mut args, &d.path, d.format.name(), d.read_only, extra);
    }
    if let Some(seed) = &launch.seed {
        disk(
            &mut args,
            seed,
            "raw",
            true,
            &format!(",serial={SEED_SERIAL}"),
        );
    }
    if let Some(blobs) = &launch.blobs {
        disk(
            &mut args,
            blobs,
            "raw",
            true,
            &format!(",serial={BLOBS_SERIAL}"),
        );
    }
    for (i, nic) in spec.nics.iter().enumerate() {
        let id = format!("net{i}");
        let netdev = match &nic.backend {
            NetBackend::User { forwards } => {
                let mut netdev = format!("user,id={id}");
                for f in forwards {
                    netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest));
                }
                netdev
            }
            // The serving end (the host's port switch) may start after
            // the VM or restart under it: QEMU connects again.
            NetBackend::Stream { path } => format!(
                "stream,id={id},server=off,addr.type=unix,addr.path={},reconnect-ms={STREAM_RECONNECT_MS}",
                path_option(path)
            ),
            NetBackend::Dgram { local, remote } => format!(
                "dgram,id={id},local.type=unix,local.path={},remote.type=unix,remote.path={}",
                path_option(local),
                path_option(remote)
            ),
        };
        // An empty romfile keeps firmware from loading iPXE for the NIC.
        let rom = if pci { ",romfile=" } else { "" };
        args.extend([
            "-netdev".to_string(),
            netdev,
            "-device".to_string(),
            format!("{},netdev={id},mac={}{rom}", bus("virtio-net"), spec.mac(i)),
        ]);
    }
    let console = linux_console(spec.arch);
    let (kernel, initrd, cmdline) = match &spec.kind {
        Kind::Unikernel { image, cmdline } => (Some(image), None, cmdline.clone()),
        Kind::LinuxVm { boot: VmBoot::Uefi } => (None, None, String::new()),
        Kind::LinuxVm {
            boot:
                VmBoot::Kernel {
                    kernel,
                    initrd,
                    cmdline,
                },
        } => (Some(kernel), initrd.as_ref(), cmdline.clone()),
        Kind::Container { shim, .. } => (
            Some(&shim.kernel),
            Some(&shim.initrd),
            // panic=-1: a panicking shim resets at once, which -no-reboot
            // turns into an end the host sees.
            format!("console={console} panic=-1 quiet {}", shim.cmdline)
                .trim_end()
                .to_string(),
        ),
    };
    if let Some(kernel) = kernel {
        args.push("-kernel".into());
        args.push(kernel.display().to_string());
    }
    if let Some(initrd) = initrd {
        args.push("-initrd".into());
        args.push(initrd.display().to_string());
    }
    if !cmdline.is_empty() {
        args.push("-append".into());
        args.push(cmdline);
    }
    args
}

/// Whether the guest reports its exit status through QEMU's exit code
/// (`isa-debug-exit`): only our unikernels on x86_64.
pub fn has_debug_exit(spec: &DomainSpec) -> bool {
    Machine::for_spec(spec) == Machine::MicrovmQboot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{
        Blob, ContainerImage, ContainerOverrides, DiskFormat, DiskSpec, Nic, PortForward,
        ShimKernel,
    };

    fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
        args.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    fn dir() -> DomainDir {
        DomainDir::new(Path::new("/var/apps"), "web")
    }

    fn launch() -> Launch {
        Launch {
            accel: Accel::Tcg,
            firmware: None,
            seed: None,
            blobs: None,
        }
    }

    fn unikernel(arch: Arch) -> DomainSpec {
        let mut spec = DomainSpec::new(
            "web",
            arch,
            32,
            Kind::Unikernel {
                image: PathBuf::from("/img/hello-http"),
                cmdline: "port=80".into(),
            },
        );
        spec.nics = vec![Nic {
            mac: None,
            backend: NetBackend::User {
                forwards: vec![PortForward {
                    host: 8080,
                    guest: 80,
                }],
            },
        }];
        spec
    }

    #[test]
    fn a_unikernel_boots_like_a_service_with_its_console_in_a_file() {
        let args = qemu_args(&unikernel(Arch::X86_64), &dir(), &launch());
        assert!(has_pair(&args, "-M", "microvm,x-option-roms=off,rtc=on"));
        assert!(has_pair(&args, "-bios", "qboot.rom"));
        assert!(has_pair(
            &args,
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04"
        ));
        assert!(has_pair(&args, "-pidfile", "/var/apps/web/qemu.pid"));
        assert!(has_pair(
            &args,
            "-chardev",
            "file,id=console,path=/var/apps/web/console.log,append=on"
        ));
        assert!(has_pair(&args, "-serial", "chardev:console"));
        assert!(has_pair(
            &args,
            "-chardev",
            "socket,id=qmp,path=/var/apps/web/qmp.sock,server=on,wait=off"
        ));
        assert!(has_pair(
            &args,
            "-netdev",
            "user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80"
        ));
        let nic = args
            .iter()
            .find(|a| a.starts_with("virtio-net-device,"))
            .unwrap();
        assert!(nic.starts_with("virtio-net-device,netdev=net0,mac=52:54:00:"));
        assert!(args.ends_with(&[
            "-kernel".to_string(),
            "/img/hello-http".into(),
            "-append".into(),
            "port=80".into()
        ]));
        assert!(!args.iter().any(|a| a == "stdio"));
        assert!(has_debug_exit(&unikernel(Arch::X86_64)));
        assert!(!has_debug_exit(&unikernel(Arch::Aarch64)));
        let arm = qemu_args(&unikernel(Arch::Aarch64), &dir(), &launch());
        assert!(has_pair(&arm, "-M", "virt") && has_pair(&arm, "-cpu", "cortex-a72"));
        assert!(!arm.join(" ").contains("debug-exit"));
    }

    #[test]
    fn a_uefi_vm_gets_firmware_pci_and_boots_its_first_disk() {
        let mut spec = DomainSpec::new(
            "vm",
            Arch::X86_64,
            512,
            Kind::LinuxVm { boot: VmBoot::Uefi },
        );
        spec.vcpus = 2;
        spec.disks = vec![
            DiskSpec {
                path: PathBuf::from("/v/root.qcow2"),
                format: DiskFormat::Qcow2,
                read_only: false,
            },
            DiskSpec {
                path: PathBuf::from("/v/data,1.img"),
                format: DiskFormat::Raw,
                read_only: true,
            },
        ];
        spec.nics = vec![Nic {
            mac: Some("02:00:00:00:00:07".into()),
            backend: NetBackend::Stream {
                path: PathBuf::from("/run/zedrouter/vm.sock"),
            },
        }];
        let mut l = launch();
        l.firmware = Some((
            Firmware {
                code: PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd"),
                vars_template: PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.fd"),
            },
            PathBuf::from("/var/apps/vm/vars.fd"),
        ));
        l.seed = Some(PathBuf::from("/var/apps/vm/seed.img"));
        let args = qemu_args(&spec, &DomainDir::new(Path::new("/var/apps"), "vm"), &l);
        assert!(has_pair(&args, "-M", "q35") && !args.iter().any(|a| a == "-bios"));
        assert!(has_pair(&args, "-smp", "2") && has_pair(&args, "-m", "512M"));
        assert!(has_pair(
            &args,
            "-drive",
            "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
        ));
        assert!(has_pair(
            &args,
            "-drive",
            "if=pflash,format=raw,unit=1,file=/var/apps/vm/vars.fd"
        ));
        assert!(has_pair(
            &args,
            "-drive",
            "file=/v/root.qcow2,if=none,id=disk2,format=qcow2"
        ));
        assert!(has_pair(
            &args,
            "-device",
            "virtio-blk-pci,drive=disk2,bootindex=0"
        ));
        assert!(has_pair(
            &args,
            "-drive",
            "file=/v/data,,1.img,if=none,id=disk3,format=raw,readonly=on"
        ));
        assert!(has_pair(
            &args,
            "-device",
            "virtio-blk-pci,drive=disk4,serial=cidata"
        ));
        assert!(has_pair(
            &args,
            "-netdev",
            "stream,id=net0,server=off,addr.type=unix,addr.path=/run/zedrouter/vm.sock,reconnect-ms=100"
        ));
        assert!(has_pair(
            &args,
            "-device",
            "virtio-net-pci,netdev=net0,mac=02:00:00:00:00:07,romfile="
        ));
        assert!(!args.iter().any(|a| a == "-kernel"));
        assert!(!args.iter().any(|a| a.contains("force-legacy")));
    }

    #[test]
    fn a_container_runs_the_shim_with_its_blob_disk() {
        let spec = DomainSpec::new(
            "box",
            Arch::Aarch64,
            256,
            Kind::Container {
                shim: ShimKernel {
                    kernel: PathBuf::from("/shim/vmlinuz"),
                    initrd: PathBuf::from("/shim/initrd"),
                    cmdline: "loglevel=4".into(),
                },
                image: ContainerImage {
                    manifest: format!("sha256:{}", "a".repeat(64)),
                    blobs: vec![Blob {
                        digest: format!("sha256:{}", "a".repeat(64)),
                        path: PathBuf::from("/blobs/a"),
                    }],
                },
                overrides: ContainerOverrides::default(),
            },
        );
        let mut l = launch();
        l.blobs = Some(PathBuf::from("/var/apps/box/blobs.tar"));
        let args = qemu_args(&spec, &DomainDir::new(Path::new("/var/apps"), "box"), &l);
        assert!(has_pair(&args, "-M", "virt"));
        assert!(has_pair(
            &args,
            "-device",
            "virtio-blk-device,drive=disk0,serial=oci"
        ));
        assert!(has_pair(&args, "-initrd", "/shim/initrd"));
        assert!(has_pair(
            &args,
            "-append",
            "console=ttyAMA0 panic=-1 quiet loglevel=4"
        ));
        let mut x86 = spec.clone();
        x86.arch = Arch::X86_64;
        let args = qemu_args(&x86, &DomainDir::new(Path::new("/var/apps"), "box"), &l);
        assert!(has_pair(&args, "-M", "q35") && has_pair(&args, "-bios", "qboot.rom"));
        assert!(has_pair(
            &args,
            "-device",
            "virtio-blk-pci,drive=disk0,serial=oci"
        ));
    }

    #[test]
    fn dgram_nics_name_both_sockets() {
        let mut spec = unikernel(Arch::X86_64);
        spec.nics[0].backend = NetBackend::Dgram {
            local: PathBuf::from("/run/a.sock"),
            remote: PathBuf::from("/run/b.sock"),
        };
        let args = qemu_args(&spec, &dir(), &launch());
        assert!(has_pair(
            &args,
            "-netdev",
            "dgram,id=net0,local.type=unix,local.path=/run/a.sock,remote.type=unix,remote.path=/run/b.sock"
        ));
    }
}
