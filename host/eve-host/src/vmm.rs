//! The seam between the host and a virtual machine monitor: what to run
//! ([`VmSpec`], VMM-neutral) and what a running VM offers ([`Vm`]).
//!
//! QEMU is the only implementation today; our own KVM micro-VMM will be
//! another, so nothing here names QEMU options: a VMM reports how its
//! process ended in [`VmmExit`] terms and hands out the guest console as a
//! byte stream.

use std::{io, path::PathBuf};

use crate::{Accel, Arch, manifest::PortForward, vfio::Passthrough};

/// One VM to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The service name, for process names and messages.
    pub name: String,
    pub arch: Arch,
    pub accel: Accel,
    /// The image to boot: a PVH ELF on x86_64, an arm64 Image on aarch64.
    pub kernel: PathBuf,
    pub cmdline: String,
    pub ram_mib: u32,
    pub vcpus: u32,
    pub net: Option<NetSpec>,
    /// The port switch's trunk socket: a second NIC (MAC
    /// `guest_abi::TRUNK_MAC`) that connects to it and reconnects when
    /// either end restarts.
    pub trunk: Option<PathBuf>,
    /// Device ports' sockets (`crate::deviceports`): NIC `i` (MAC
    /// `guest_abi::device_port_mac(i)`) connects to the `i`th and
    /// reconnects, as the trunk's does.
    pub device_ports: Vec<PathBuf>,
    /// A QMP socket the VMM listens on, for the host's uplink forwards
    /// (the `ports` target's `forward`).
    pub monitor: Option<PathBuf>,
    pub disks: Vec<Disk>,
    /// A unix socket the host listens on; the VMM connects the guest's bus
    /// port (a virtio console) to it.
    pub bus_socket: Option<PathBuf>,
    /// Host PCI devices, already validated.
    pub passthrough: Vec<Passthrough>,
    /// Where the VMM writes its pid, so that a host started after this one
    /// died can stop the VMs it left (see [`crate::orphans`]).
    pub pid_file: Option<PathBuf>,
}

impl VmSpec {
    /// A VM with no devices beyond the console and an entropy source.
    pub fn new(name: impl Into<String>, arch: Arch, accel: Accel, kernel: PathBuf) -> VmSpec {
        VmSpec {
            name: name.into(),
            arch,
            accel,
            kernel,
            cmdline: String::new(),
            ram_mib: 64,
            vcpus: 1,
            net: None,
            trunk: None,
            device_ports: Vec::new(),
            monitor: None,
            disks: Vec::new(),
            bus_socket: None,
            passthrough: Vec::new(),
            pid_file: None,
        }
    }
}

/// A user-mode network (no root, no tap) and its forwards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetSpec {
    pub host_forward: Vec<PortForward>,
    pub guest_forward: Vec<PortForward>,
    /// Reach nothing but the forwards and the VMM's DHCP server (tests).
    pub restrict: bool,
}

/// What a disk is to the guest, which tells its disks apart by this role
/// (the virtio-blk serial).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskRole {
    /// The EVE CONFIG partition: always read-only.
    Config,
    /// The service's own writable state volume.
    State,
}

impl DiskRole {
    /// The serial the guest sees.
    pub fn serial(self) -> &'static str {
        match self {
            DiskRole::Config => "config",
            DiskRole::State => "state",
        }
    }

    pub fn read_only(self) -> bool {
        self == DiskRole::Config
    }
}

/// A raw disk image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub role: DiskRole,
}

/// How a VMM process ended, in the VMM's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmmExit {
    /// The guest powered the VM off, with the status it handed the VMM if
    /// the machine can carry one (x86_64 `isa-debug-exit` can; aarch64 PSCI
    /// cannot).
    PoweredOff { status: Option<i32> },
    /// Either the guest powered off with `status` or the VMM failed with
    /// `code`: the VMM's exit cannot tell them apart (QEMU on x86_64 exits
    /// 1 both when the guest writes status 0 to `isa-debug-exit` and on
    /// its own errors, a bad argument or a missing socket). The guest's
    /// exit marker decides.
    PoweredOffOrFailed { status: i32, code: i32 },
    /// The VMM ended otherwise: its own error, a reset it was told not to
    /// do, a signal.
    Failed {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

/// Why a VM could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{binary} not found: install QEMU (cargo xtask deps)")]
    VmmMissing { binary: String },
    #[error("starting {binary}: {source}")]
    Spawn { binary: String, source: io::Error },
}

/// A monitor that starts VMs.
pub trait Vmm {
    type Vm: Vm;

    fn launch(&self, spec: &VmSpec) -> Result<Self::Vm, LaunchError>;
}

/// A started VM.
pub trait Vm: Send {
    /// The VMM process, for resource accounting (RSS).
    fn pid(&self) -> Option<u32>;

    /// The guest's console output; `None` after the first call.
    fn take_console(&mut self) -> Option<Box<dyn io::Read + Send>>;

    /// The VMM's own messages (errors, warnings); `None` after the first
    /// call or if the VMM has none.
    fn take_diagnostics(&mut self) -> Option<Box<dyn io::Read + Send>>;

    /// How the VM ended, or `None` while it runs.
    fn try_wait(&mut self) -> io::Result<Option<VmmExit>>;

    /// Asks the VMM to stop the VM cleanly, flushing its disks.
    fn terminate(&mut self) -> io::Result<()>;

    /// Stops the VM at once.
    fn kill(&mut self) -> io::Result<()>;
}
