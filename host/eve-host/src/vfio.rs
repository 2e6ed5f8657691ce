//! PCI passthrough through VFIO: the checks the host makes before it hands
//! a host device to a VM, and the VMM argument that does it.
//!
//! The IOMMU group, not the device, is the unit the kernel isolates: QEMU
//! can only open a group whose every endpoint is bound to `vfio-pci`, and a
//! group split between two VMs would let one DMA into the other's device.
//! So the host checks the whole group and refuses with the reason, instead
//! of letting QEMU fail later with a less direct message.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

/// A PCI address, `domain:bus:device.function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bdf {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

/// Why a string is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a PCI address (DDDD:BB:DD.F or BB:DD.F, hex): {why}")]
pub struct BdfError {
    pub text: String,
    pub why: &'static str,
}

impl FromStr for Bdf {
    type Err = BdfError;

    /// Parses `DDDD:BB:DD.F` (sysfs form) or `BB:DD.F` (domain 0).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |why| BdfError {
            text: text.to_string(),
            why,
        };
        let hex = |s: &str, digits: usize, what| {
            if s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                u16::from_str_radix(s, 16).map_err(|_| fail(what))
            } else {
                Err(fail(what))
            }
        };
        let (slot, function) = text
            .rsplit_once('.')
            .ok_or_else(|| fail("no `.function`"))?;
        let parts: Vec<&str> = slot.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [domain, bus, device] => (hex(domain, 4, "domain must be 4 hex digits")?, bus, device),
            [bus, device] => (0, bus, device),
            _ => return Err(fail("expected bus:device or domain:bus:device")),
        };
        let bus = hex(bus, 2, "bus must be 2 hex digits")?;
        let device = hex(device, 2, "device must be 2 hex digits")?;
        let function = hex(function, 1, "function must be 1 hex digit")?;
        if device > 0x1f {
            return Err(fail("device must be at most 1f"));
        }
        if function > 7 {
            return Err(fail("function must be at most 7"));
        }
        Ok(Bdf {
            domain,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for Bdf {
    /// The sysfs form, which QEMU's `vfio-pci,host=` also takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// Where the host looks: `/sys` and `/dev` on a real host, a fake tree in
/// tests.
#[derive(Debug, Clone)]
pub struct VfioRoots {
    pub sys: PathBuf,
    pub dev: PathBuf,
}

impl Default for VfioRoots {
    fn default() -> Self {
        VfioRoots {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// A device that passed every check, with the group it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passthrough {
    pub bdf: Bdf,
    pub iommu_group: u32,
}

impl Passthrough {
    /// The QEMU arguments that hand the device to the guest.
    pub fn qemu_args(&self) -> [String; 2] {
        ["-device".to_string(), format!("vfio-pci,host={}", self.bdf)]
    }
}

/// Why a device cannot be passed through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VfioError {
    #[error("PCI device {bdf}: no such device under {path}")]
    NoDevice { bdf: Bdf, path: PathBuf },
    #[error(
        "PCI device {bdf}: not in an IOMMU group (is the IOMMU on? intel_iommu=on or amd_iommu=on on the kernel command line)"
    )]
    NoIommuGroup { bdf: Bdf },
    #[error("PCI device {bdf}: cannot read its IOMMU group: {why}")]
    BadIommuGroup { bdf: Bdf, why: String },
    #[error(
        "PCI device {bdf}: IOMMU group {group} also holds {member}, which is bound to {driver} instead of vfio-pci (bind every device of the group to vfio-pci)"
    )]
    GroupMemberNotVfio {
        bdf: Bdf,
        group: u32,
        member: String,
        driver: String,
    },
    #[error("PCI device {bdf}: {path} is missing (is the vfio-pci module loaded?)")]
    NoGroupDevice { bdf: Bdf, path: PathBuf },
    #[error(
        "PCI devices {first} (service `{first_service}`) and {second} (service `{second_service}`) share IOMMU group {group}: a group cannot be split between VMs"
    )]
    GroupSplit {
        group: u32,
        first: Bdf,
        first_service: String,
        second: Bdf,
        second_service: String,
    },
}

/// The PCI class of bridges (base class 06, subclass 04), which the kernel
/// lets stay on their own driver or none inside a group given to VFIO.
const PCI_BRIDGE_CLASS_PREFIX: &str = "0x0604";

impl VfioRoots {
    /// Checks that `bdf` can be passed through: it exists, it is in an
    /// IOMMU group, every endpoint of the group is bound to `vfio-pci`
    /// (bridges may be unbound or on `pcieport`), and the group's VFIO
    /// device node exists.
    pub fn validate(&self, bdf: Bdf) -> Result<Passthrough, VfioError> {
        let device = self.sys.join("bus/pci/devices").join(bdf.to_string());
        if !device.exists() {
            return Err(VfioError::NoDevice { bdf, path: device });
        }
        let group_link = device.join("iommu_group");
        let target =
            std::fs::read_link(&group_link).map_err(|_| VfioError::NoIommuGroup { bdf })?;
        let group: u32 = target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| VfioError::BadIommuGroup {
                bdf,
                why: format!("link points at {}", target.display()),
            })?;
        let members_dir = self
            .sys
            .join("kernel/iommu_groups")
            .join(group.to_string())
            .join("devices");
        let members = std::fs::read_dir(&members_dir).map_err(|e| VfioError::BadIommuGroup {
            bdf,
            why: format!("{}: {e}", members_dir.display()),
        })?;
        let mut names: Vec<String> = members
            .filter_map(|m| m.ok())
            .map(|m| m.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for member in names {
            let member_dir = self.sys.join("bus/pci/devices").join(&member);
            let driver = driver_of(&member_dir);
            if driver.as_deref() == Some("vfio-pci") {
                continue;
            }
            let is_bridge = std::fs::read_to_string(member_dir.join("class"))
                .is_ok_and(|c| c.trim().starts_with(PCI_BRIDGE_CLASS_PREFIX));
            let bridge_ok = matches!(driver.as_deref(), None | Some("pcieport"));
            if is_bridge && bridge_ok && member != bdf.to_string() {
                continue;
            }
            return Err(VfioError::GroupMemberNotVfio {
                bdf,
                group,
                member,
                driver: driver.unwrap_or_else(|| "no driver".to_string()),
            });
        }
        let node = self.dev.join("vfio").join(group.to_string());
        if !node.exists() {
            return Err(VfioError::NoGroupDevice { bdf, path: node });
        }
        Ok(Passthrough {
            bdf,
            iommu_group: group,
        })
    }

    /// Validates every device of every service and refuses an IOMMU group
    /// split between two services. Returns the devices per service, in the
    /// order given.
    pub fn validate_node<'a>(
        &self,
        services: impl IntoIterator<Item = (&'a str, &'a [Bdf])>,
    ) -> Result<BTreeMap<String, Vec<Passthrough>>, VfioError> {
        let mut owners: BTreeMap<u32, (Bdf, String)> = BTreeMap::new();
        let mut out = BTreeMap::new();
        for (service, bdfs) in services {
            let mut devices = Vec::new();
            for &bdf in bdfs {
                let pass = self.validate(bdf)?;
                match owners.get(&pass.iommu_group) {
                    Some((first, owner)) if owner != service => {
                        return Err(VfioError::GroupSplit {
                            group: pass.iommu_group,
                            first: *first,
                            first_service: owner.clone(),
                            second: bdf,
                            second_service: service.to_string(),
                        });
                    }
                    Some(_) => {}
                    None => {
                        owners.insert(pass.iommu_group, (bdf, service.to_string()));
                    }
                }
                devices.push(pass);
            }
            out.insert(service.to_string(), devices);
        }
        Ok(out)
    }
}

/// The name of the driver a device is bound to, if any.
fn driver_of(device: &Path) -> Option<String> {
    std::fs::read_link(device.join("driver"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A fake /sys and /dev: devices with a class, an optional driver and a
    /// group; group device nodes created on request.
    struct FakeHost {
        dir: tempfile::TempDir,
    }

    impl FakeHost {
        fn new() -> FakeHost {
            FakeHost {
                dir: tempfile::tempdir().expect("temp dir"),
            }
        }

        fn roots(&self) -> VfioRoots {
            VfioRoots {
                sys: self.dir.path().join("sys"),
                dev: self.dir.path().join("dev"),
            }
        }

        fn device(&self, bdf: &str, class: &str, driver: Option<&str>, group: Option<u32>) {
            let roots = self.roots();
            let dir = roots.sys.join("bus/pci/devices").join(bdf);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("class"), format!("{class}\n")).unwrap();
            if let Some(driver) = driver {
                let driver_dir = roots.sys.join("bus/pci/drivers").join(driver);
                std::fs::create_dir_all(&driver_dir).unwrap();
                symlink(&driver_dir, dir.join("driver")).unwrap();
            }
            if let Some(group) = group {
                let group_dir = roots
                    .sys
                    .join("kernel/iommu_groups")
                    .join(group.to_string());
                std::fs::create_dir_all(group_dir.join("devices")).unwrap();
                symlink(&group_dir, dir.join("iommu_group")).unwrap();
                symlink(&dir, group_dir.join("devices").join(bdf)).unwrap();
            }
        }

        fn group_node(&self, group: u32) {
            let vfio = self.roots().dev.join("vfio");
            std::fs::create_dir_all(&vfio).unwrap();
            std::fs::write(vfio.join(group.to_string()), b"").unwrap();
        }
    }

    fn bdf(s: &str) -> Bdf {
        s.parse().expect("valid BDF")
    }

    #[test]
    fn bdfs_parse_and_print_in_sysfs_form() {
        assert_eq!(
            bdf("0000:01:00.0"),
            Bdf {
                domain: 0,
                bus: 1,
                device: 0,
                function: 0
            }
        );
        assert_eq!(bdf("3a:1f.7").to_string(), "0000:3a:1f.7");
        assert_eq!(bdf("ABCD:ff:02.1").to_string(), "abcd:ff:02.1");
        for bad in [
            "",
            "01:00",
            "1:00.0",
            "0000:01:00.8",
            "0000:01:20.0",
            "00000:01:00.0",
            "0000:01:00.0.0",
            "x0:00.0",
            "0000:01:00.",
            "+1:00.0",
            "a:b:c:d.0",
        ] {
            assert!(bad.parse::<Bdf>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_device_whose_group_is_all_vfio_passes() {
        let host = FakeHost::new();
        host.device("0000:01:00.0", "0x020000", Some("vfio-pci"), Some(7));
        host.device("0000:01:00.1", "0x020000", Some("vfio-pci"), Some(7));
        host.device("0000:00:1c.0", "0x060400", Some("pcieport"), Some(7));
        host.group_node(7);
        let pass = host.roots().validate(bdf("01:00.0")).expect("passes");
        assert_eq!(pass.iommu_group, 7);
        assert_eq!(
            pass.qemu_args(),
            [
                "-device".to_string(),
                "vfio-pci,host=0000:01:00.0".to_string()
            ]
        );
    }

    #[test]
    fn refusals_name_the_reason() {
        let host = FakeHost::new();
        let roots = host.roots();
        assert!(matches!(
            roots.validate(bdf("02:00.0")),
            Err(VfioError::NoDevice { .. })
        ));

        host.device("0000:02:00.0", "0x020000", Some("vfio-pci"), None);
        let err = roots.validate(bdf("02:00.0")).unwrap_err();
        assert!(matches!(err, VfioError::NoIommuGroup { .. }));
        assert!(err.to_string().contains("intel_iommu=on"), "{err}");

        host.device("0000:03:00.0", "0x020000", Some("e1000e"), Some(3));
        let err = roots.validate(bdf("03:00.0")).unwrap_err();
        assert_eq!(
            err,
            VfioError::GroupMemberNotVfio {
                bdf: bdf("03:00.0"),
                group: 3,
                member: "0000:03:00.0".into(),
                driver: "e1000e".into()
            }
        );

        host.device("0000:04:00.0", "0x010802", Some("vfio-pci"), Some(4));
        host.device("0000:04:00.1", "0x010802", None, Some(4));
        let err = roots.validate(bdf("04:00.0")).unwrap_err().to_string();
        assert!(
            err.contains("0000:04:00.1, which is bound to no driver"),
            "{err}"
        );

        host.device("0000:05:00.0", "0x030000", Some("vfio-pci"), Some(5));
        let err = roots.validate(bdf("05:00.0")).unwrap_err();
        assert!(matches!(err, VfioError::NoGroupDevice { .. }), "{err}");
        host.group_node(5);
        assert!(roots.validate(bdf("05:00.0")).is_ok());
    }

    #[test]
    fn an_unbound_bridge_is_allowed_but_the_device_itself_must_be_vfio() {
        let host = FakeHost::new();
        host.device("0000:06:00.0", "0x020000", Some("vfio-pci"), Some(6));
        host.device("0000:00:1d.0", "0x060400", None, Some(6));
        host.group_node(6);
        assert!(host.roots().validate(bdf("06:00.0")).is_ok());
        let err = host.roots().validate(bdf("00:1d.0")).unwrap_err();
        assert!(matches!(err, VfioError::GroupMemberNotVfio { .. }), "{err}");
    }

    #[test]
    fn a_group_split_between_services_is_refused() {
        let host = FakeHost::new();
        host.device("0000:01:00.0", "0x020000", Some("vfio-pci"), Some(1));
        host.device("0000:01:00.1", "0x020000", Some("vfio-pci"), Some(1));
        host.group_node(1);
        let a = [bdf("01:00.0"), bdf("01:00.1")];
        let ok = host
            .roots()
            .validate_node([("a", &a[..])])
            .expect("one service may take a whole group");
        assert_eq!(ok["a"].len(), 2);
        let err = host
            .roots()
            .validate_node([("a", &a[..1]), ("b", &a[1..])])
            .unwrap_err();
        assert!(
            matches!(err, VfioError::GroupSplit { group: 1, .. }),
            "{err}"
        );
    }
}
