//! Admission: a domain starts only if the node can hold it next to the
//! ones running, counting what its VMM costs beside the guest's RAM. A
//! domain that does not fit is refused with the numbers, never started
//! into swap or the OOM killer (EVE overcommits, then apps die).
//!
//! EVE charges a guessed 370 MB per app for its VMM. We charge what
//! `cargo xtask bench apps` measured for each kind under TCG: the QEMU
//! process's PSS minus the guest RAM it holds, after the app answered on
//! its port (see `docs/benchmarks.md`). Under KVM there is no translation
//! cache, so the TCG figure is an upper bound there.

use guest_arch::Arch;

use crate::spec::KindClass;

/// The node's capacity for apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeResources {
    /// Memory apps may use, MiB: the node's RAM less what the host and the
    /// service VMs keep.
    pub memory_mib: u64,
    /// CPUs; a domain may have at most this many vCPUs. vCPUs of
    /// different domains share CPUs, as EVE's do without pinning.
    pub cpus: u32,
}

/// Why a node's resources could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResourcesError {
    #[error("/proc/meminfo: {0}")]
    Meminfo(std::io::Error),
    #[error("/proc/meminfo has no MemTotal line")]
    NoMemTotal,
    #[error("counting CPUs: {0}")]
    Cpus(std::io::Error),
}

impl NodeResources {
    /// This machine's RAM less `reserve_mib`, and its CPUs.
    pub fn of_this_host(reserve_mib: u64) -> Result<NodeResources, ResourcesError> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(ResourcesError::Meminfo)?;
        let total_kib = meminfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .ok_or(ResourcesError::NoMemTotal)?;
        let cpus = std::thread::available_parallelism().map_err(ResourcesError::Cpus)?;
        Ok(NodeResources {
            memory_mib: (total_kib / 1024).saturating_sub(reserve_mib),
            cpus: u32::try_from(cpus.get()).unwrap_or(u32::MAX),
        })
    }
}

// What `cargo xtask bench apps` measured (see [`VmmOverhead::measured`]):
// 41.3, 129.7, 118.4, 47.6, 244.0 and 127.5 MiB at most.
const UNIKERNEL_X86_64: u64 = 48;
const LINUX_VM_X86_64: u64 = 136;
const CONTAINER_X86_64: u64 = 120;
const UNIKERNEL_AARCH64: u64 = 48;
const LINUX_VM_AARCH64: u64 = 248;
const CONTAINER_AARCH64: u64 = 128;

/// The VMM's memory beside guest RAM, per arch and kind, MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmOverhead {
    table: Vec<(Arch, KindClass, u64)>,
}

impl VmmOverhead {
    /// Measured by `cargo xtask bench apps` (QEMU 10.0.2, TCG, the 2-core
    /// Debian 12 machine, 2026-12-04), the largest of three runs rounded up
    /// to the next 8 MiB: a unikernel on microvm/virt; a Linux VM on q35
    /// with OVMF or virt with AAVMF, whose two 64 MiB flash images QEMU
    /// maps beside the translation cache of a whole kernel; a shim VM on
    /// q35 with qboot or virt.
    pub fn measured() -> VmmOverhead {
        VmmOverhead::from([
            (Arch::X86_64, KindClass::Unikernel, UNIKERNEL_X86_64),
            (Arch::X86_64, KindClass::LinuxVm, LINUX_VM_X86_64),
            (Arch::X86_64, KindClass::Container, CONTAINER_X86_64),
            (Arch::Aarch64, KindClass::Unikernel, UNIKERNEL_AARCH64),
            (Arch::Aarch64, KindClass::LinuxVm, LINUX_VM_AARCH64),
            (Arch::Aarch64, KindClass::Container, CONTAINER_AARCH64),
        ])
    }

    /// The charge for `kind` on `arch`; 0 for a pair the table lacks.
    pub fn of(&self, arch: Arch, kind: KindClass) -> u64 {
        self.table
            .iter()
            .find(|(a, k, _)| *a == arch && *k == kind)
            .map_or(0, |(_, _, mib)| *mib)
    }
}

impl<const N: usize> From<[(Arch, KindClass, u64); N]> for VmmOverhead {
    fn from(table: [(Arch, KindClass, u64); N]) -> VmmOverhead {
        VmmOverhead {
            table: table.to_vec(),
        }
    }
}

/// What a domain holds while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    pub name: String,
    pub arch: Arch,
    pub kind: KindClass,
    pub memory_mib: u64,
    pub vcpus: u32,
}

/// Why a domain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error(
        "{name} does not fit: it needs {needs_mib} MiB ({memory_mib} MiB of RAM and {overhead_mib} MiB for its VMM), \
         {free_mib} MiB of the node's {total_mib} MiB for apps are free ({running} running)"
    )]
    Memory {
        name: String,
        memory_mib: u64,
        overhead_mib: u64,
        needs_mib: u64,
        free_mib: u64,
        total_mib: u64,
        running: usize,
    },
    #[error("{name} asks for {vcpus} vCPUs; the node has {cpus} CPUs")]
    Vcpus { name: String, vcpus: u32, cpus: u32 },
    #[error("{0} is already running")]
    Duplicate(String),
}

/// Admits `new` beside `running`, or says why not.
pub fn admit(
    node: &NodeResources,
    overhead: &VmmOverhead,
    running: &[Footprint],
    new: &Footprint,
) -> Result<(), AdmissionError> {
    if running.iter().any(|f| f.name == new.name) {
        return Err(AdmissionError::Duplicate(new.name.clone()));
    }
    if new.vcpus > node.cpus {
        return Err(AdmissionError::Vcpus {
            name: new.name.clone(),
            vcpus: new.vcpus,
            cpus: node.cpus,
        });
    }
    let charge = |f: &Footprint| f.memory_mib + overhead.of(f.arch, f.kind);
    let used: u64 = running.iter().map(charge).sum();
    let free = node.memory_mib.saturating_sub(used);
    let needs = charge(new);
    if needs > free {
        return Err(AdmissionError::Memory {
            name: new.name.clone(),
            memory_mib: new.memory_mib,
            overhead_mib: overhead.of(new.arch, new.kind),
            needs_mib: needs,
            free_mib: free,
            total_mib: node.memory_mib,
            running: running.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footprint(name: &str, kind: KindClass, memory_mib: u64) -> Footprint {
        Footprint {
            name: name.into(),
            arch: Arch::X86_64,
            kind,
            memory_mib,
            vcpus: 1,
        }
    }

    #[test]
    fn memory_counts_the_vmm_beside_guest_ram() {
        let node = NodeResources {
            memory_mib: 1000,
            cpus: 2,
        };
        let overhead = VmmOverhead::from([
            (Arch::X86_64, KindClass::LinuxVm, 100),
            (Arch::X86_64, KindClass::Unikernel, 40),
            (Arch::Aarch64, KindClass::LinuxVm, 1000),
        ]);
        let vm = footprint("vm", KindClass::LinuxVm, 500);
        admit(&node, &overhead, &[], &vm).unwrap();
        // 600 used; a 360 MiB VM needs 460.
        let second = footprint("vm2", KindClass::LinuxVm, 360);
        let err = admit(&node, &overhead, std::slice::from_ref(&vm), &second).unwrap_err();
        assert_eq!(
            err,
            AdmissionError::Memory {
                name: "vm2".into(),
                memory_mib: 360,
                overhead_mib: 100,
                needs_mib: 460,
                free_mib: 400,
                total_mib: 1000,
                running: 1,
            }
        );
        assert!(
            err.to_string()
                .contains("needs 460 MiB (360 MiB of RAM and 100 MiB for its VMM)")
        );
        // A unikernel of 300 + 40 still fits; exactly full is allowed.
        let uni = footprint("uni", KindClass::Unikernel, 360);
        admit(&node, &overhead, std::slice::from_ref(&vm), &uni).unwrap();
        // Each arch is charged its own measurement.
        let mut arm = footprint("arm", KindClass::LinuxVm, 1);
        arm.arch = Arch::Aarch64;
        assert!(matches!(
            admit(&node, &overhead, &[], &arm),
            Err(AdmissionError::Memory {
                needs_mib: 1001,
                ..
            })
        ));
    }

    #[test]
    fn vcpus_and_names_are_checked() {
        let node = NodeResources {
            memory_mib: 4096,
            cpus: 2,
        };
        let overhead = VmmOverhead::measured();
        let mut big = footprint("big", KindClass::Container, 64);
        big.vcpus = 3;
        assert_eq!(
            admit(&node, &overhead, &[], &big),
            Err(AdmissionError::Vcpus {
                name: "big".into(),
                vcpus: 3,
                cpus: 2
            })
        );
        let a = footprint("a", KindClass::Unikernel, 32);
        assert_eq!(
            admit(&node, &overhead, std::slice::from_ref(&a), &a),
            Err(AdmissionError::Duplicate("a".into()))
        );
    }

    #[test]
    fn this_host_has_memory_and_cpus() {
        let node = NodeResources::of_this_host(0).unwrap();
        assert!(node.memory_mib > 0 && node.cpus > 0);
        let reserved = NodeResources::of_this_host(u64::MAX).unwrap();
        assert_eq!(reserved.memory_mib, 0);
    }
}
