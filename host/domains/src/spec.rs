//! What an app domain is: the three kinds of app EVE runs and what each
//! VM gets (memory, vCPUs, disks, NICs, console, cloud-init seed).
//!
//! Specs are VMM-neutral data, serializable so the `domains` program reads
//! them from JSON and a host operation can carry them; [`DomainSpec::check`]
//! refuses what cannot run before anything is started.

use std::path::{Path, PathBuf};

use guest_arch::{Accel, Arch};
use serde::{Deserialize, Serialize};

/// One app domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSpec {
    /// Unique on the node; names the domain's directory and its QEMU.
    pub name: String,
    #[serde(with = "by_name")]
    pub arch: Arch,
    /// `None`: detected (`EVE_ACCEL`, then KVM only where it is real).
    #[serde(default, with = "by_name_option")]
    pub accel: Option<Accel>,
    pub memory_mib: u32,
    #[serde(default = "one")]
    pub vcpus: u32,
    pub kind: Kind,
    /// Volumes, in the order the guest sees them.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    #[serde(default)]
    pub nics: Vec<Nic>,
    /// Delivered as a NoCloud seed disk (a vfat volume labelled `cidata`).
    #[serde(default)]
    pub cloud_init: Option<CloudInit>,
}

fn one() -> u32 {
    1
}

/// Arches and accelerators as their names (`x86_64`, `tcg`).
mod by_name {
    use std::{fmt::Display, str::FromStr};

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr<Err = String>,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

mod by_name_option {
    use std::{fmt::Display, str::FromStr};

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<T: Display, S: Serializer>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr<Err = String>,
        D: Deserializer<'de>,
    {
        Option::<String>::deserialize(d)?
            .map(|v| v.parse().map_err(D::Error::custom))
            .transpose()
    }
}

/// The three kinds of app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Kind {
    /// A unikernel booted directly: a PVH ELF on x86_64, an arm64 Image on
    /// aarch64 (our services' boot protocol).
    Unikernel { image: PathBuf, cmdline: String },
    /// A Linux (or any) VM: UEFI boots its first disk, or a kernel given
    /// beside it (EVE's `VmConfig` kernel, ramdisk and extra args).
    LinuxVm { boot: VmBoot },
    /// An OCI image run in a shim VM: a Linux kernel and our init, which
    /// reads the image's blobs from a disk the host attaches and unpacks
    /// them itself; the host never parses them.
    Container {
        shim: ShimKernel,
        image: ContainerImage,
        #[serde(default)]
        overrides: ContainerOverrides,
    },
}

impl Kind {
    pub fn class(&self) -> KindClass {
        match self {
            Kind::Unikernel { .. } => KindClass::Unikernel,
            Kind::LinuxVm { .. } => KindClass::LinuxVm,
            Kind::Container { .. } => KindClass::Container,
        }
    }
}

/// A [`Kind`] without its contents, for accounting and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindClass {
    Unikernel,
    LinuxVm,
    Container,
}

impl KindClass {
    pub const ALL: [KindClass; 3] = [
        KindClass::Unikernel,
        KindClass::LinuxVm,
        KindClass::Container,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KindClass::Unikernel => "unikernel",
            KindClass::LinuxVm => "linux-vm",
            KindClass::Container => "container",
        }
    }
}

/// How a Linux VM boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum VmBoot {
    /// UEFI firmware (OVMF on x86_64, AAVMF on aarch64) boots the first
    /// disk, as a cloud image expects.
    Uefi,
    /// The VMM loads this kernel (and initrd) itself.
    Kernel {
        kernel: PathBuf,
        #[serde(default)]
        initrd: Option<PathBuf>,
        #[serde(default)]
        cmdline: String,
    },
}

/// The shim VM's Linux kernel and its initramfs (with our init).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Extra kernel command-line words (the console and panic handling are
    /// set by the host).
    #[serde(default)]
    pub cmdline: String,
}

/// A container image as verified blobs: the manifest's digest (from the
/// config or a verified index) and every blob file the image needs, each
/// named by its digest. The host copies them to a disk byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerImage {
    /// `sha256:<hex>` of the image manifest.
    pub manifest: String,
    /// The blobs: manifest, config and layers, in any order.
    pub blobs: Vec<Blob>,
}

/// One verified blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    pub path: PathBuf,
}

/// EVE's overrides of the image config (from the app instance config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerOverrides {
    /// Replaces the image's entrypoint when set.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's cmd when set.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `NAME=value`, added to (or replacing in) the image's environment.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `user[:group]`, names or numbers, as in the image config.
    #[serde(default)]
    pub user: Option<String>,
}

/// A volume file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    pub path: PathBuf,
    #[serde(default)]
    pub format: DiskFormat,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskFormat {
    #[default]
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// A NIC and what carries its frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// `52:54:00:..`; derived from the domain name and NIC index when unset.
    #[serde(default)]
    pub mac: Option<String>,
    pub backend: NetBackend,
}

/// Where a NIC's frames go. No root, no tap: user-mode networking, or a
/// unix socket another process (zedrouter) serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum NetBackend {
    /// QEMU user-mode networking (DHCP, NAT) with host loopback ports
    /// forwarded to guest ports.
    User {
        #[serde(default)]
        forwards: Vec<PortForward>,
    },
    /// A stream socket (`-netdev stream`) QEMU connects to.
    Stream { path: PathBuf },
    /// Datagrams between two socket paths (`-netdev dgram`).
    Dgram { local: PathBuf, remote: PathBuf },
}

/// `127.0.0.1:<host>` reaches the guest's `<guest>` (TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    pub host: u16,
    pub guest: u16,
}

/// NoCloud data: cloud-init's `user-data` and `meta-data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudInit {
    pub user_data: String,
    /// Defaults to `instance-id` and `local-hostname` from the domain name.
    #[serde(default)]
    pub meta_data: Option<String>,
}

/// Why a spec cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("domain name {0:?}: use 1 to 32 of a-z, 0-9 and -, starting with a letter")]
    Name(String),
    #[error("{name}: memory must be at least {min} MiB, not {got}")]
    Memory { name: String, min: u32, got: u32 },
    #[error("{name}: vCPUs must be 1 to {max}, not {got}")]
    Vcpus { name: String, max: u32, got: u32 },
    #[error("{name}: {what} {path}: {why}")]
    File {
        name: String,
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("{name}: a UEFI Linux VM needs a disk to boot")]
    NoBootDisk { name: String },
    #[error("{name}: digest {digest:?} is not sha256:<64 hex digits>")]
    Digest { name: String, digest: String },
    #[error("{name}: the manifest {digest} is not among the image's blobs")]
    NoManifest { name: String, digest: String },
    #[error("{name}: MAC {mac:?} is not six hex bytes separated by colons")]
    Mac { name: String, mac: String },
    #[error("{name}: host port {port} is forwarded twice")]
    DuplicateForward { name: String, port: u16 },
}

/// Smallest guest RAM we start: a unikernel needs a few MiB, a Linux VM
/// far more, but below this QEMU's own firmware tables do not fit.
pub const MIN_MEMORY_MIB: u32 = 16;
/// QEMU's limit for the machines we use is far higher; this keeps a typo
/// from reaching admission as a huge number.
pub const MAX_VCPUS: u32 = 64;

impl DomainSpec {
    /// A domain of `kind` with 1 vCPU, no disks, NICs or seed.
    pub fn new(name: impl Into<String>, arch: Arch, memory_mib: u32, kind: Kind) -> DomainSpec {
        DomainSpec {
            name: name.into(),
            arch,
            accel: None,
            memory_mib,
            vcpus: 1,
            kind,
            disks: Vec::new(),
            nics: Vec::new(),
            cloud_init: None,
        }
    }

    /// Refuses a spec that cannot run: bad name, memory or vCPUs, missing
    /// files, malformed digests or MACs.
    pub fn check(&self) -> Result<(), SpecError> {
        let name = &self.name;
        if !valid_name(name) {
            return Err(SpecError::Name(name.clone()));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(SpecError::Memory {
                name: name.clone(),
                min: MIN_MEMORY_MIB,
                got: self.memory_mib,
            });
        }
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(SpecError::Vcpus {
                name: name.clone(),
                max: MAX_VCPUS,
                got: self.vcpus,
            });
        }
        let file = |what: &'static str, path: &Path| readable(name, what, path);
        match &self.kind {
            Kind::Unikernel { image, .. } => file("image", image)?,
            Kind::LinuxVm { boot: VmBoot::Uefi } => {
                if self.disks.is_empty() {
                    return Err(SpecError::NoBootDisk { name: name.clone() });
                }
            }
            Kind::LinuxVm {
                boot: VmBoot::Kernel { kernel, initrd, .. },
            } => {
                file("kernel", kernel)?;
                if let Some(initrd) = initrd {
                    file("initrd", initrd)?;
                }
            }
            Kind::Container { shim, image, .. } => {
                file("shim kernel", &shim.kernel)?;
                file("shim initrd", &shim.initrd)?;
                for digest in
                    std::iter::once(&image.manifest).chain(image.blobs.iter().map(|b| &b.digest))
                {
                    if !valid_digest(digest) {
                        return Err(SpecError::Digest {
                            name: name.clone(),
                            digest: digest.clone(),
                        });
                    }
                }
                if !image.blobs.iter().any(|b| b.digest == image.manifest) {
                    return Err(SpecError::NoManifest {
                        name: name.clone(),
                        digest: image.manifest.clone(),
                    });
                }
                for blob in &image.blobs {
                    file("blob", &blob.path)?;
                }
            }
        }
        for disk in &self.disks {
            file("disk", &disk.path)?;
        }
        let mut ports = Vec::new();
        for nic in &self.nics {
            if let Some(mac) = &nic.mac
                && parse_mac(mac).is_none()
            {
                return Err(SpecError::Mac {
                    name: name.clone(),
                    mac: mac.clone(),
                });
            }
            if let NetBackend::User { forwards } = &nic.backend {
                for f in forwards {
                    if ports.contains(&f.host) {
                        return Err(SpecError::DuplicateForward {
                            name: name.clone(),
                            port: f.host,
                        });
                    }
                    ports.push(f.host);
                }
            }
        }
        Ok(())
    }

    /// The MAC of NIC `index`: the one given, else `52:54:00` (QEMU's
    /// prefix) and three bytes of a hash of the name and index, so a
    /// domain keeps its MACs across restarts and domains differ.
    pub fn mac(&self, index: usize) -> String {
        if let Some(mac) = self.nics.get(index).and_then(|n| n.mac.clone()) {
            return mac;
        }
        let hash = fnv1a(format!("{}/{index}", self.name).as_bytes());
        let b = hash.to_le_bytes();
        format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
    }
}

/// The node's naming rule for domains (it names directories and sockets).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `sha256:` and 64 lowercase hex digits.
pub fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = mac.split(':');
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn readable(name: &str, what: &'static str, path: &Path) -> Result<(), SpecError> {
    let error = |why: String| SpecError::File {
        name: name.to_string(),
        what,
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
    if !meta.is_file() {
        return Err(error("not a file".into()));
    }
    std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unikernel(dir: &Path) -> DomainSpec {
        let image = dir.join("app.elf");
        std::fs::write(&image, b"elf").unwrap();
        DomainSpec::new(
            "hello",
            Arch::X86_64,
            32,
            Kind::Unikernel {
                image,
                cmdline: String::new(),
            },
        )
    }

    #[test]
    fn a_good_spec_passes_and_bad_ones_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let good = unikernel(dir.path());
        good.check().unwrap();

        let mut bad = good.clone();
        bad.name = "Hello".into();
        assert_eq!(bad.check(), Err(SpecError::Name("Hello".into())));
        bad.name = "a".repeat(33);
        assert!(matches!(bad.check(), Err(SpecError::Name(_))));

        let mut bad = good.clone();
        bad.memory_mib = 0;
        assert!(matches!(bad.check(), Err(SpecError::Memory { got: 0, .. })));

        let mut bad = good.clone();
        bad.vcpus = 0;
        assert!(matches!(bad.check(), Err(SpecError::Vcpus { got: 0, .. })));

        let mut bad = good.clone();
        bad.kind = Kind::Unikernel {
            image: dir.path().join("missing"),
            cmdline: String::new(),
        };
        let err = bad.check().unwrap_err().to_string();
        assert!(
            err.starts_with("hello: image ") && err.contains("missing"),
            "{err}"
        );

        let mut bad = good.clone();
        bad.kind = Kind::LinuxVm { boot: VmBoot::Uefi };
        assert_eq!(
            bad.check(),
            Err(SpecError::NoBootDisk {
                name: "hello".into()
            })
        );

        let mut bad = good.clone();
        bad.nics = vec![Nic {
            mac: Some("52:54:00:zz:00:01".into()),
            backend: NetBackend::User { forwards: vec![] },
        }];
        assert!(matches!(bad.check(), Err(SpecError::Mac { .. })));

        let mut bad = good;
        let forward = PortForward {
            host: 8080,
            guest: 80,
        };
        bad.nics = vec![Nic {
            mac: None,
            backend: NetBackend::User {
                forwards: vec![forward, forward],
            },
        }];
        assert_eq!(
            bad.check(),
            Err(SpecError::DuplicateForward {
                name: "hello".into(),
                port: 8080
            })
        );
    }

    #[test]
    fn container_digests_are_checked_and_the_manifest_must_be_a_blob() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, name).unwrap();
            path
        };
        let manifest = format!("sha256:{}", "a".repeat(64));
        let mut spec = DomainSpec::new(
            "web",
            Arch::Aarch64,
            128,
            Kind::Container {
                shim: ShimKernel {
                    kernel: file("vmlinuz"),
                    initrd: file("initrd"),
                    cmdline: String::new(),
                },
                image: ContainerImage {
                    manifest: manifest.clone(),
                    blobs: vec![Blob {
                        digest: manifest.clone(),
                        path: file("manifest"),
                    }],
                },
                overrides: ContainerOverrides::default(),
            },
        );
        spec.check().unwrap();
        let Kind::Container { image, .. } = &mut spec.kind else {
            unreachable!()
        };
        image.manifest = format!("sha256:{}", "b".repeat(64));
        assert!(matches!(spec.check(), Err(SpecError::NoManifest { .. })));
        let Kind::Container { image, .. } = &mut spec.kind else {
            unreachable!()
        };
        image.manifest = "sha256:ABC".into();
        assert!(matches!(spec.check(), Err(SpecError::Digest { .. })));
    }

    #[test]
    fn macs_are_stable_per_domain_and_nic() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = unikernel(dir.path());
        let nic = Nic {
            mac: None,
            backend: NetBackend::User { forwards: vec![] },
        };
        a.nics = vec![nic.clone(), nic];
        let mut b = a.clone();
        b.name = "other".into();
        assert_eq!(a.mac(0), a.clone().mac(0));
        assert_ne!(a.mac(0), a.mac(1));
        assert_ne!(a.mac(0), b.mac(0));
        assert!(parse_mac(&a.mac(0)).is_some());
        a.nics[0].mac = Some("02:00:00:00:00:01".into());
        assert_eq!(a.mac(0), "02:00:00:00:00:01");
    }

    #[test]
    fn specs_read_from_json() {
        let json = r##"{
            "name": "web", "arch": "x86_64", "memory_mib": 256, "vcpus": 2,
            "kind": {"type": "linux-vm", "boot": {"type": "uefi"}},
            "disks": [{"path": "/v/disk.qcow2", "format": "qcow2"}],
            "nics": [{"backend": {"type": "user", "forwards": [{"host": 8080, "guest": 80}]}},
                     {"backend": {"type": "stream", "path": "/run/zedrouter/web.sock"}}],
            "cloud_init": {"user_data": "#cloud-config\n"}
        }"##;
        let spec: DomainSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.vcpus, 2);
        assert_eq!(spec.disks[0].format, DiskFormat::Qcow2);
        assert_eq!(spec.kind.class(), KindClass::LinuxVm);
        assert!(matches!(spec.nics[1].backend, NetBackend::Stream { .. }));
    }
}
