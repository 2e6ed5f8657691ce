//! What to boot and on which QEMU machine: turned into a QEMU command line.

use std::{fmt, path::Path, path::PathBuf, process::Command, str::FromStr, time::Duration};

use crate::{Accel, Arch};

/// A QEMU machine type we boot on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Machine {
    /// x86_64 `-M microvm` with qboot: the fast path, virtio-mmio.
    Microvm,
    /// x86_64 `-M q35` with qboot: a PC with PCI.
    Q35,
    /// aarch64 `-M virt`, virtio-mmio.
    Virt,
}

impl Machine {
    pub const ALL: [Machine; 3] = [Machine::Microvm, Machine::Q35, Machine::Virt];

    pub fn arch(self) -> Arch {
        match self {
            Machine::Microvm | Machine::Q35 => Arch::X86_64,
            Machine::Virt => Arch::Aarch64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
            Machine::Virt => "virt",
        }
    }

    /// The machine `cargo xtask qemu` uses for an arch.
    pub fn default_for(arch: Arch) -> Machine {
        match arch {
            Arch::X86_64 => Machine::Microvm,
            Arch::Aarch64 => Machine::Virt,
        }
    }

    fn uses_pci(self) -> bool {
        self == Machine::Q35
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Machine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Machine::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown machine {s:?} (microvm, q35 or virt)"))
    }
}

/// A device to plug into the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// virtio-rng fed from the host's /dev/urandom.
    VirtioRng,
    /// virtio-net on QEMU user-mode networking with `restrict=on`: the guest
    /// reaches nothing but QEMU's DHCP server and the forwards listed, so
    /// tests only ever touch the host's loopback.
    UserNet(UserNet),
    /// A raw disk image on virtio-blk; the guest finds it by `serial`
    /// (`config` for the CONFIG partition, `state` for a state volume).
    Disk {
        path: PathBuf,
        serial: String,
        read_only: bool,
    },
}

impl Device {
    /// A [`Device::Disk`] from borrowed parts, as scenarios name their
    /// CONFIG and state images.
    pub fn disk(path: &Path, serial: &str, read_only: bool) -> Device {
        Device::Disk {
            path: path.to_owned(),
            serial: serial.into(),
            read_only,
        }
    }
}

/// Forwards of a [`Device::UserNet`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserNet {
    /// Guest connections to `10.0.2.100:<guest port>` reach
    /// `127.0.0.1:<host port>`.
    pub guest_to_host: Vec<(u16, u16)>,
    /// Connections to `127.0.0.1:<host port>` reach the guest's
    /// `<guest port>`.
    pub host_to_guest: Vec<(u16, u16)>,
    /// Lift `restrict=on` so the guest reaches the host's loopback at
    /// 10.0.2.2 over UDP as well (guestfwd is TCP only). The guest could then
    /// reach further through QEMU's NAT; tests address only 10.0.2.2.
    pub open: bool,
}

/// The address guests use for services the host forwards to them.
pub const HOST_SERVICES_ADDR: &str = "10.0.2.100";

impl UserNet {
    fn netdev(&self) -> String {
        let mut netdev = String::from("user,id=net0");
        if !self.open {
            netdev.push_str(",restrict=on");
        }
        for (guest_port, host_port) in &self.guest_to_host {
            netdev.push_str(&format!(
                ",guestfwd=tcp:{HOST_SERVICES_ADDR}:{guest_port}-tcp:127.0.0.1:{host_port}"
            ));
        }
        for (host_port, guest_port) in &self.host_to_guest {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}"));
        }
        netdev
    }
}

/// One guest to boot.
#[derive(Debug, Clone)]
pub struct Guest {
    pub machine: Machine,
    pub accel: Accel,
    pub kernel: PathBuf,
    pub cmdline: String,
    pub memory_mib: u32,
    pub devices: Vec<Device>,
    /// Extra `-M` properties, e.g. `virtualization=on` to enter at EL2.
    pub machine_options: Vec<String>,
    /// Killed if still running after this long.
    pub timeout: Duration,
}

impl Guest {
    /// A guest with 64 MiB, no devices, a 60 s timeout and the accelerator
    /// this machine should use.
    pub fn new(machine: Machine, kernel: PathBuf) -> Guest {
        Guest {
            machine,
            accel: Accel::for_arch(machine.arch()),
            kernel,
            cmdline: String::new(),
            memory_mib: 64,
            devices: Vec::new(),
            machine_options: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }

    pub fn cmdline(mut self, cmdline: impl Into<String>) -> Guest {
        self.cmdline = cmdline.into();
        self
    }

    pub fn device(mut self, device: Device) -> Guest {
        self.devices.push(device);
        self
    }

    pub fn machine_option(mut self, option: impl Into<String>) -> Guest {
        self.machine_options.push(option.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Guest {
        self.timeout = timeout;
        self
    }

    pub fn accel(mut self, accel: Accel) -> Guest {
        self.accel = accel;
        self
    }

    /// The QEMU arguments (without the binary).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        let mut disks = 0;
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
        let machine = match self.machine {
            Machine::Microvm => "microvm,x-option-roms=off,rtc=on",
            Machine::Q35 => "q35",
            Machine::Virt => "virt",
        };
        let machine = std::iter::once(machine)
            .chain(self.machine_options.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(",");
        push(&["-M", &machine]);
        if self.machine.arch() == Arch::X86_64 {
            // qboot: 2-3x faster to the first instruction than SeaBIOS.
            push(&["-bios", "qboot.rom"]);
            push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        }
        let cpu = guest_arch::qemu_cpu(self.machine.arch(), self.accel);
        push(&["-cpu", cpu, "-accel", self.accel.name()]);
        push(guest_arch::QEMU_HEADLESS_ARGS);
        let memory = format!("{}M", self.memory_mib);
        push(&["-m", &memory]);
        for device in &self.devices {
            match (device, self.machine.uses_pci()) {
                (Device::VirtioRng, true) => push(&["-device", "virtio-rng-pci"]),
                (Device::VirtioRng, false) => push(&["-device", "virtio-rng-device"]),
                (Device::UserNet(net), pci) => {
                    push(&["-netdev", &net.netdev()]);
                    // An empty romfile keeps firmware from loading iPXE.
                    let nic = if pci {
                        "virtio-net-pci,netdev=net0,romfile="
                    } else {
                        "virtio-net-device,netdev=net0"
                    };
                    push(&["-device", nic]);
                }
                (
                    Device::Disk {
                        path,
                        serial,
                        read_only,
                    },
                    pci,
                ) => {
                    let id = format!("disk{disks}");
                    disks += 1;
                    // QEMU option values escape commas by doubling them.
                    let file = path.display().to_string().replace(',', ",,");
                    let ro = if *read_only { ",readonly=on" } else { "" };
                    push(&[
                        "-drive",
                        &format!("file={file},if=none,id={id},format=raw{ro}"),
                    ]);
                    let bus = if pci {
                        "virtio-blk-pci"
                    } else {
                        "virtio-blk-device"
                    };
                    push(&["-device", &format!("{bus},drive={id},serial={serial}")]);
                }
            }
        }
        args.push("-kernel".into());
        args.push(self.kernel.display().to_string());
        if !self.cmdline.is_empty() {
            args.push("-append".into());
            args.push(self.cmdline.clone());
        }
        args
    }

    /// The QEMU command, ready to spawn.
    pub fn command(&self) -> Command {
        let mut command = Command::new(self.machine.arch().qemu());
        command.args(self.args());
        command
    }

    /// The command as one shell-pasteable line, for logs.
    pub fn command_line(&self) -> String {
        std::iter::once(self.machine.arch().qemu().to_string())
            .chain(self.args().into_iter().map(
                |a| {
                    if a.contains(' ') { format!("'{a}'") } else { a }
                },
            ))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(machine: Machine) -> Guest {
        Guest::new(machine, PathBuf::from("/k"))
            .accel(Accel::Tcg)
            .device(Device::VirtioRng)
            .cmdline("a=1 b")
    }

    #[test]
    fn microvm_uses_qboot_mmio_and_debug_exit() {
        let line = guest(Machine::Microvm).command_line();
        assert!(line.starts_with("qemu-system-x86_64 -M microvm"), "{line}");
        assert!(line.contains("-bios qboot.rom"));
        assert!(line.contains("isa-debug-exit,iobase=0xf4"));
        assert!(line.contains("virtio-rng-device"));
        assert!(line.contains("-cpu max -accel tcg"));
        assert!(line.ends_with("-kernel /k -append 'a=1 b'"), "{line}");
    }

    #[test]
    fn q35_puts_virtio_on_pci() {
        let line = guest(Machine::Q35).command_line();
        assert!(line.contains("virtio-rng-pci") && !line.contains("virtio-rng-device"));
    }

    #[test]
    fn virt_has_no_x86_devices() {
        let line = guest(Machine::Virt).accel(Accel::Kvm).command_line();
        assert!(line.starts_with("qemu-system-aarch64 -M virt"));
        assert!(!line.contains("qboot") && !line.contains("debug-exit"));
        assert!(line.contains("-cpu host -accel kvm"));
        let el2 = guest(Machine::Virt).machine_option("virtualization=on");
        assert!(el2.command_line().contains("-M virt,virtualization=on "));
    }

    #[test]
    fn user_net_is_restricted_to_the_listed_forwards() {
        let net = UserNet {
            guest_to_host: vec![(7, 4000)],
            host_to_guest: vec![(4001, 80)],
            open: false,
        };
        let line = guest(Machine::Microvm)
            .device(Device::UserNet(net.clone()))
            .command_line();
        assert!(line.contains(
            "-netdev user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:7-tcp:127.0.0.1:4000,hostfwd=tcp:127.0.0.1:4001-:80"
        ), "{line}");
        assert!(line.contains("-device virtio-net-device,netdev=net0"));
        let line = guest(Machine::Q35)
            .device(Device::UserNet(net))
            .command_line();
        assert!(
            line.contains("-device virtio-net-pci,netdev=net0,romfile="),
            "{line}"
        );
    }

    #[test]
    fn names_round_trip() {
        for m in Machine::ALL {
            assert_eq!(m.name().parse(), Ok(m));
        }
        for a in Arch::ALL {
            assert_eq!(a.name().parse(), Ok(a));
        }
        assert!("riscv".parse::<Arch>().is_err());
    }
}
