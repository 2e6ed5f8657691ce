//! QEMU as the VMM: the command line for a [`VmSpec`] and the process that
//! runs it.
//!
//! x86_64 guests boot on `-M microvm` with qboot and PVH direct boot (the
//! fastest path to the first instruction), aarch64 guests on `-M virt`.
//! Everything is virtio-mmio in modern mode, networking is user-mode, so
//! no root, tap or vhost is needed. [`qemu_args`] is a pure function of
//! the spec so the test harness can build the same command lines.

use std::{
    io,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::Path,
    process::{Child, Command, Stdio},
};

use guest_abi::{DEBUG_EXIT_PORT, EXIT_SUCCESS, debug_exit_status};
use rustix::process::{Pid, Signal, kill_process};

use crate::{
    Arch,
    vmm::{LaunchError, NetSpec, Vm, VmSpec, Vmm, VmmExit},
};

/// The address guests use for host services reached through guest
/// forwards.
pub const HOST_SERVICES_ADDR: &str = "10.0.2.100";

/// QEMU option values are comma-separated; a literal comma is doubled.
fn escape_option(value: &str) -> String {
    value.replace(',', ",,")
}

fn path_option(path: &Path) -> String {
    escape_option(&path.display().to_string())
}

/// How soon QEMU tries the trunk socket again after losing it (the host's
/// switch not yet listening, or restarted).
const TRUNK_RECONNECT_MS: u32 = 100;

/// The `-netdev stream` value connecting to the port switch's trunk
/// socket: QEMU's length-prefixed frames, reconnecting.
pub fn trunk_netdev(socket: &Path) -> String {
    format!(
        "stream,id=trunk,server=off,addr.type=unix,addr.path={},reconnect-ms={TRUNK_RECONNECT_MS}",
        path_option(socket)
    )
}

/// The `-netdev stream` value connecting device port `id` to its socket,
/// reconnecting as the trunk's does (whatever listens there may come
/// later or restart).
pub fn device_port_netdev(id: &str, socket: &Path) -> String {
    format!(
        "stream,id={id},server=off,addr.type=unix,addr.path={},reconnect-ms={TRUNK_RECONNECT_MS}",
        path_option(socket)
    )
}

/// The `-netdev user` value for `net`.
pub fn user_netdev(net: &NetSpec) -> String {
    let mut netdev = String::from("user,id=net0");
    if net.restrict {
        netdev.push_str(",restrict=on");
    }
    for f in &net.guest_forward {
        netdev.push_str(&format!(
            ",guestfwd=tcp:{HOST_SERVICES_ADDR}:{}-tcp:127.0.0.1:{}",
            f.guest_port, f.host_port
        ));
    }
    for f in &net.host_forward {
        netdev.push_str(&format!(
            ",hostfwd=tcp:127.0.0.1:{}-:{}",
            f.host_port, f.guest_port
        ));
    }
    netdev
}

/// The QEMU arguments (without the binary) that run `spec`.
pub fn qemu_args(spec: &VmSpec) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    match spec.arch {
        Arch::X86_64 => {
            // microvm has no PCI unless asked; passthrough needs it.
            let pcie = if spec.passthrough.is_empty() {
                ""
            } else {
                ",pcie=on"
            };
            push(&["-M", &format!("microvm,x-option-roms=off,rtc=on{pcie}")]);
            // qboot: 2-3x faster to the first instruction than SeaBIOS.
            push(&["-bios", "qboot.rom"]);
            push(&[
                "-device",
                &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"),
            ]);
        }
        Arch::Aarch64 => push(&["-M", "virt"]),
    }
    let cpu = guest_arch::qemu_cpu(spec.arch, spec.accel);
    push(&["-cpu", cpu, "-accel", spec.accel.name()]);
    push(&["-name", &escape_option(&spec.name)]);
    if let Some(pid_file) = &spec.pid_file {
        push(&["-pidfile", &pid_file.to_string_lossy()]);
    }
    push(guest_arch::QEMU_HEADLESS_ARGS);
    push(&[
        "-m",
        &format!("{}M", spec.ram_mib),
        "-smp",
        &spec.vcpus.to_string(),
    ]);
    push(&["-device", "virtio-rng-device"]);
    if let Some(net) = &spec.net {
        push(&["-netdev", &user_netdev(net)]);
        push(&["-device", "virtio-net-device,netdev=net0"]);
    }
    if let Some(trunk) = &spec.trunk {
        push(&["-netdev", &trunk_netdev(trunk)]);
        let [a, b, c, d, e, f] = guest_abi::TRUNK_MAC;
        push(&[
            "-device",
            &format!(
                "virtio-net-device,netdev=trunk,mac={a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}"
            ),
        ]);
    }
    for (index, socket) in spec.device_ports.iter().enumerate() {
        let id = format!("devport{index}");
        push(&["-netdev", &device_port_netdev(&id, socket)]);
        let [a, b, c, d, e, f] = guest_abi::device_port_mac(index as u8);
        push(&[
            "-device",
            &format!(
                "virtio-net-device,netdev={id},mac={a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}"
            ),
        ]);
    }
    if let Some(monitor) = &spec.monitor {
        push(&[
            "-chardev",
            &format!(
                "socket,id=monitor,path={},server=on,wait=off",
                path_option(monitor)
            ),
        ]);
        push(&["-mon", "chardev=monitor,mode=control"]);
    }
    for disk in &spec.disks {
        let id = format!("disk-{}", disk.role.serial());
        let read_only = if disk.role.read_only() {
            ",readonly=on"
        } else {
            ""
        };
        push(&[
            "-drive",
            &format!(
                "file={},if=none,id={id},format=raw{read_only}",
                path_option(&disk.path)
            ),
        ]);
        push(&[
            "-device",
            &format!("virtio-blk-device,drive={id},serial={}", disk.role.serial()),
        ]);
    }
    if let Some(socket) = &spec.bus_socket {
        push(&[
            "-chardev",
            &format!("socket,id=bus,path={}", path_option(socket)),
        ]);
        push(&["-device", "virtio-serial-device"]);
        push(&["-device", "virtconsole,chardev=bus"]);
    }
    for device in &spec.passthrough {
        let [flag, value] = device.qemu_args();
        push(&[&flag, &value]);
    }
    args.push("-kernel".into());
    args.push(spec.kernel.display().to_string());
    if !spec.cmdline.is_empty() {
        args.push("-append".into());
        args.push(spec.cmdline.clone());
    }
    args
}

/// QEMU's exit code for its own errors.
const QEMU_ERROR_EXIT: i32 = 1;

/// Turns QEMU's process status into how the VM ended. On x86_64 the guest
/// powers off through `isa-debug-exit`, so only odd codes are a power-off
/// with a status (a `-no-reboot` reset exits 0), and 1, status 0, is also
/// QEMU's own error exit; on aarch64 PSCI `SYSTEM_OFF` exits 0 and carries
/// no status.
pub fn vmm_exit(arch: Arch, code: Option<i32>, signal: Option<i32>) -> VmmExit {
    match (arch, code) {
        // `isa-debug-exit` status 0 exits (0 << 1) | 1.
        (Arch::X86_64, Some(QEMU_ERROR_EXIT)) => VmmExit::PoweredOffOrFailed {
            status: EXIT_SUCCESS,
            code: QEMU_ERROR_EXIT,
        },
        (Arch::X86_64, Some(code)) if debug_exit_status(code).is_some() => VmmExit::PoweredOff {
            status: debug_exit_status(code),
        },
        (Arch::Aarch64, Some(0)) => VmmExit::PoweredOff { status: None },
        _ => VmmExit::Failed { code, signal },
    }
}

/// Starts VMs with the system's QEMU.
#[derive(Debug, Clone, Default)]
pub struct QemuVmm;

impl Vmm for QemuVmm {
    type Vm = QemuVm;

    fn launch(&self, spec: &VmSpec) -> Result<QemuVm, LaunchError> {
        let binary = spec.arch.qemu();
        let mut command = Command::new(binary);
        command
            .args(qemu_args(spec))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal reaches the
            // host, which then stops every VM cleanly, not QEMU directly.
            .process_group(0);
        let child = command.spawn().map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => LaunchError::VmmMissing {
                binary: binary.to_string(),
            },
            _ => LaunchError::Spawn {
                binary: binary.to_string(),
                source,
            },
        })?;
        Ok(QemuVm {
            child,
            arch: spec.arch,
        })
    }
}

/// A running QEMU process.
#[derive(Debug)]
pub struct QemuVm {
    child: Child,
    arch: Arch,
}

impl Vm for QemuVm {
    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }

    fn take_console(&mut self) -> Option<Box<dyn io::Read + Send>> {
        self.child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn io::Read + Send>)
    }

    fn take_diagnostics(&mut self) -> Option<Box<dyn io::Read + Send>> {
        self.child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn io::Read + Send>)
    }

    fn try_wait(&mut self) -> io::Result<Option<VmmExit>> {
        Ok(self
            .child
            .try_wait()?
            .map(|status| vmm_exit(self.arch, status.code(), status.signal())))
    }

    /// SIGTERM: QEMU closes its block devices, flushing them, and exits.
    fn terminate(&mut self) -> io::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::other("QEMU pid out of range"))?;
        kill_process(pid, Signal::TERM).map_err(io::Error::from)
    }

    fn kill(&mut self) -> io::Result<()> {
        self.child.kill()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::{
        Accel,
        manifest::PortForward,
        vfio::{Bdf, Passthrough},
        vmm::{Disk, DiskRole},
    };

    fn spec(arch: Arch, accel: Accel) -> VmSpec {
        let mut spec = VmSpec::new("zedagent", arch, accel, PathBuf::from("/img/zedagent"));
        spec.cmdline = "log=debug a=1".into();
        spec.ram_mib = 48;
        spec
    }

    fn line(spec: &VmSpec) -> String {
        qemu_args(spec).join(" ")
    }

    fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
        args.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    #[test]
    fn x86_64_boots_microvm_with_qboot() {
        let args = qemu_args(&spec(Arch::X86_64, Accel::Tcg));
        assert!(has_pair(&args, "-M", "microvm,x-option-roms=off,rtc=on"));
        assert!(has_pair(&args, "-bios", "qboot.rom"));
        assert!(has_pair(
            &args,
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04"
        ));
        assert!(has_pair(&args, "-cpu", "max"));
        assert!(has_pair(&args, "-accel", "tcg"));
        assert!(has_pair(&args, "-m", "48M"));
        assert!(has_pair(&args, "-smp", "1"));
        assert!(has_pair(&args, "-serial", "stdio"));
        assert!(has_pair(&args, "-global", "virtio-mmio.force-legacy=false"));
        assert!(has_pair(&args, "-device", "virtio-rng-device"));
        for flag in ["-nodefaults", "-no-user-config", "-no-reboot"] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }
        assert!(
            line(&spec(Arch::X86_64, Accel::Tcg))
                .ends_with("-kernel /img/zedagent -append log=debug a=1")
        );
        let kvm = qemu_args(&spec(Arch::X86_64, Accel::Kvm));
        assert!(has_pair(&kvm, "-cpu", "host") && has_pair(&kvm, "-accel", "kvm"));
    }

    #[test]
    fn aarch64_boots_virt_without_x86_devices() {
        let tcg = qemu_args(&spec(Arch::Aarch64, Accel::Tcg));
        assert!(has_pair(&tcg, "-M", "virt"));
        assert!(has_pair(&tcg, "-cpu", "cortex-a72"));
        let text = tcg.join(" ");
        assert!(!text.contains("qboot") && !text.contains("isa-debug-exit"));
        let kvm = qemu_args(&spec(Arch::Aarch64, Accel::Kvm));
        assert!(has_pair(&kvm, "-cpu", "host"));
    }

    #[test]
    fn disks_are_told_apart_by_serial_and_config_is_read_only() {
        let mut s = spec(Arch::X86_64, Accel::Tcg);
        s.disks = vec![
            Disk {
                path: PathBuf::from("/state/config.img"),
                role: DiskRole::Config,
            },
            Disk {
                path: PathBuf::from("/state/volumes/a,b.img"),
                role: DiskRole::State,
            },
        ];
        let args = qemu_args(&s);
        assert!(has_pair(
            &args,
            "-drive",
            "file=/state/config.img,if=none,id=disk-config,format=raw,readonly=on"
        ));
        assert!(has_pair(
            &args,
            "-device",
            "virtio-blk-device,drive=disk-config,serial=config"
        ));
        assert!(has_pair(
            &args,
            "-drive",
            "file=/state/volumes/a,,b.img,if=none,id=disk-state,format=raw"
        ));
        assert!(has_pair(
            &args,
            "-device",
            "virtio-blk-device,drive=disk-state,serial=state"
        ));
    }

    #[test]
    fn user_net_carries_the_forwards() {
        let mut s = spec(Arch::X86_64, Accel::Tcg);
        s.net = Some(NetSpec {
            host_forward: vec![PortForward {
                host_port: 4001,
                guest_port: 80,
            }],
            guest_forward: vec![PortForward {
                host_port: 4000,
                guest_port: 7,
            }],
            restrict: true,
        });
        let args = qemu_args(&s);
        assert!(has_pair(
            &args,
            "-netdev",
            "user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:7-tcp:127.0.0.1:4000,hostfwd=tcp:127.0.0.1:4001-:80"
        ));
        assert!(has_pair(&args, "-device", "virtio-net-device,netdev=net0"));
        s.net = Some(NetSpec::default());
        assert!(has_pair(&qemu_args(&s), "-netdev", "user,id=net0"));
    }

    #[test]
    fn the_pid_file_is_passed_when_set() {
        let mut s = spec(Arch::X86_64, Accel::Tcg);
        assert!(!qemu_args(&s).contains(&"-pidfile".to_string()));
        s.pid_file = Some(PathBuf::from("/run/node/zedagent.pid"));
        assert!(has_pair(
            &qemu_args(&s),
            "-pidfile",
            "/run/node/zedagent.pid"
        ));
    }

    #[test]
    fn each_device_port_is_a_nic_with_its_indexed_mac_on_its_socket() {
        let mut s = spec(Arch::X86_64, Accel::Tcg);
        s.device_ports = vec![
            PathBuf::from("/run/ports/device-eth1.sock"),
            PathBuf::from("/run/ports/device-eth2.sock"),
        ];
        let args = qemu_args(&s);
        for (n, label) in ["eth1", "eth2"].iter().enumerate() {
            assert!(has_pair(
                &args,
                "-netdev",
                &format!(
                    "stream,id=devport{n},server=off,addr.type=unix,addr.path=/run/ports/device-{label}.sock,reconnect-ms=100"
                )
            ));
            assert!(has_pair(
                &args,
                "-device",
                &format!("virtio-net-device,netdev=devport{n},mac=02:00:7e:00:01:0{n}")
            ));
        }
    }

    #[test]
    fn the_trunk_is_a_second_nic_with_its_mac_on_the_switch_socket() {
        let mut s = spec(Arch::X86_64, Accel::Tcg);
        s.net = Some(NetSpec::default());
        assert!(!qemu_args(&s).iter().any(|a| a.contains("trunk")));
        s.trunk = Some(PathBuf::from("/run/node/ports/trunk,1.sock"));
        let args = qemu_args(&s);
        assert!(has_pair(
            &args,
            "-netdev",
            "stream,id=trunk,server=off,addr.type=unix,addr.path=/run/node/ports/trunk,,1.sock,reconnect-ms=100"
        ));
        assert!(has_pair(
            &args,
            "-device",
            "virtio-net-device,netdev=trunk,mac=02:00:7e:00:00:01"
        ));
        let uplink = args
            .iter()
            .position(|a| a == "virtio-net-device,netdev=net0");
        let trunk = args
            .iter()
            .position(|a| a.starts_with("virtio-net-device,netdev=trunk"));
        assert!(uplink < trunk, "the uplink stays the first NIC");
    }

    #[test]
    fn a_monitor_is_a_qmp_server_on_its_socket() {
        let mut s = spec(Arch::Aarch64, Accel::Tcg);
        assert!(!qemu_args(&s).iter().any(|a| a == "-mon"));
        s.monitor = Some(PathBuf::from("/run/node/ports/zedrouter.qmp"));
        let args = qemu_args(&s);
        assert!(has_pair(
            &args,
            "-chardev",
            "socket,id=monitor,path=/run/node/ports/zedrouter.qmp,server=on,wait=off"
        ));
        assert!(has_pair(&args, "-mon", "chardev=monitor,mode=control"));
    }

    #[test]
    fn the_bus_is_a_virtio_console_on_the_hosts_socket() {
        let mut s = spec(Arch::Aarch64, Accel::Tcg);
        s.bus_socket = Some(PathBuf::from("/run/node/zedagent.bus"));
        let args = qemu_args(&s);
        assert!(has_pair(
            &args,
            "-chardev",
            "socket,id=bus,path=/run/node/zedagent.bus"
        ));
        assert!(has_pair(&args, "-device", "virtio-serial-device"));
        assert!(has_pair(&args, "-device", "virtconsole,chardev=bus"));
    }

    #[test]
    fn passthrough_adds_vfio_devices_and_pcie_on_microvm() {
        let mut s = spec(Arch::X86_64, Accel::Kvm);
        let bdf: Bdf = "0000:01:00.0".parse().unwrap();
        s.passthrough = vec![Passthrough {
            bdf,
            iommu_group: 3,
        }];
        let args = qemu_args(&s);
        assert!(has_pair(
            &args,
            "-M",
            "microvm,x-option-roms=off,rtc=on,pcie=on"
        ));
        assert!(has_pair(&args, "-device", "vfio-pci,host=0000:01:00.0"));
        s.arch = Arch::Aarch64;
        let args = qemu_args(&s);
        assert!(has_pair(&args, "-M", "virt"));
        assert!(has_pair(&args, "-device", "vfio-pci,host=0000:01:00.0"));
    }

    #[test]
    fn exits_are_read_per_arch() {
        assert_eq!(
            vmm_exit(Arch::X86_64, Some(203), None),
            VmmExit::PoweredOff { status: Some(101) }
        );
        assert_eq!(
            vmm_exit(Arch::X86_64, Some(3), None),
            VmmExit::PoweredOff { status: Some(1) }
        );
        assert_eq!(
            vmm_exit(Arch::X86_64, Some(1), None),
            VmmExit::PoweredOffOrFailed { status: 0, code: 1 },
            "status 0 and QEMU's own errors share exit code 1"
        );
        assert_eq!(
            vmm_exit(Arch::X86_64, Some(0), None),
            VmmExit::Failed {
                code: Some(0),
                signal: None
            }
        );
        assert_eq!(
            vmm_exit(Arch::Aarch64, Some(0), None),
            VmmExit::PoweredOff { status: None }
        );
        assert_eq!(
            vmm_exit(Arch::Aarch64, Some(1), None),
            VmmExit::Failed {
                code: Some(1),
                signal: None
            }
        );
        assert_eq!(
            vmm_exit(Arch::X86_64, None, Some(9)),
            VmmExit::Failed {
                code: None,
                signal: Some(9)
            }
        );
    }
}
