//! A service's start request made into a `domains::DomainSpec`, or
//! refused: every field is hostile input. Disks name host volumes, which
//! are resolved to the host's own files here and checked to be built and
//! of a form the kind boots; a service never names a path.

use std::path::{Path, PathBuf};

use domains::spec::{
    Blob, CloudInit, ContainerImage, ContainerOverrides, DiskFormat, DiskSpec, ShimKernel, VmBoot,
};
use domains::{DomainSpec, Kind};
use guest_arch::Arch;
use hostops::domains::{DomainError, DomainErrorCode, DomainKind, StartRequest};
use hostops::volumes::{VolumeFormat, VolumeRef, valid_uuid};

use crate::targets::volumes::{BuiltVolume, built_volume};

/// Longest display name kept for the logs.
const MAX_DISPLAY_NAME: usize = 256;
/// Most disks one domain gets (virtio-blk devices on its bus).
const MAX_DISKS: usize = 16;
/// Largest cloud-init user data (EVE caps `userData` well below this).
const MAX_USER_DATA: usize = 256 * 1024;
/// Longest extra kernel arguments.
const MAX_EXTRA_ARGS: usize = 4096;

/// What a start request resolves against.
pub struct Resolver<'a> {
    pub arch: Arch,
    pub volumes_dir: &'a Path,
    /// The node's run directory, where the port switch's sockets are.
    pub run_dir: &'a Path,
    /// The shim VM's kernel and initrd, when the host has them.
    pub shim: Option<&'a (PathBuf, PathBuf)>,
}

fn bad(subject: &str, why: impl std::fmt::Display) -> DomainError {
    DomainError::new(DomainErrorCode::BadRequest, subject, &why.to_string())
}

/// The domain's name on the host: its directory and QEMU's. A UUID does
/// not fit the node's naming rule (32 characters, starting with a
/// letter), so it is `a` and the UUID's first 31 hex digits; two UUIDs
/// equal in those are refused as the same domain.
pub fn domain_name(uuid: &str) -> String {
    let hex: String = uuid.chars().filter(|c| *c != '-').take(31).collect();
    format!("a{hex}")
}

/// `<uuid>.<generation>` exactly as the volumes target writes it (no sign,
/// no leading zeros: it names a directory).
fn volume_name(name: &str) -> Option<&str> {
    let (uuid, generation) = name.split_once('.')?;
    let generation: i64 = generation.parse().ok()?;
    let again = VolumeRef {
        uuid: uuid.to_owned(),
        generation,
    }
    .name()?;
    (again == name).then_some(name)
}

impl Resolver<'_> {
    fn volume(&self, subject: &str, name: &str) -> Result<BuiltVolume, DomainError> {
        let name = volume_name(name)
            .ok_or_else(|| bad(subject, format!("{name:?} is not a host volume name")))?;
        built_volume(self.volumes_dir, name).ok_or_else(|| {
            DomainError::new(
                DomainErrorCode::VolumeNotReady,
                name,
                "no built volume of that name",
            )
        })
    }

    /// A disk image volume as a disk.
    fn disk(&self, subject: &str, name: &str, readonly: bool) -> Result<DiskSpec, DomainError> {
        let volume = self.volume(subject, name)?;
        let (file, format) = match volume.format {
            VolumeFormat::Raw | VolumeFormat::Blank => ("disk.raw", DiskFormat::Raw),
            VolumeFormat::Qcow2 => ("disk.qcow2", DiskFormat::Qcow2),
            other => {
                return Err(bad(
                    subject,
                    format!("volume {name} is a {other:?} volume, not a disk"),
                ));
            }
        };
        Ok(DiskSpec {
            path: volume.dir.join(file),
            format,
            read_only: readonly,
        })
    }

    /// Checks `request` and builds what the host starts.
    pub fn spec(&self, request: &StartRequest) -> Result<DomainSpec, DomainError> {
        let uuid = &request.uuid;
        if !valid_uuid(uuid) {
            return Err(bad(
                &uuid.chars().take(40).collect::<String>(),
                "not a lowercase UUID",
            ));
        }
        if request.display_name.len() > MAX_DISPLAY_NAME {
            return Err(bad(uuid, "the display name is too long"));
        }
        let memory_mib = u32::try_from(request.memory_kib.div_ceil(1024))
            .map_err(|_| bad(uuid, format!("{} KiB of memory", request.memory_kib)))?;
        if request.disks.is_empty() || request.disks.len() > MAX_DISKS {
            return Err(bad(uuid, format!("a domain has 1 to {MAX_DISKS} disks")));
        }
        if request.extra_args.len() > MAX_EXTRA_ARGS
            || request.extra_args.chars().any(char::is_control)
        {
            return Err(bad(
                uuid,
                "the extra arguments are too long or not printable",
            ));
        }
        let user_data = match request.user_data.len() {
            0 => None,
            n if n > MAX_USER_DATA => {
                return Err(bad(uuid, format!("{n} bytes of user data")));
            }
            _ => Some(
                String::from_utf8(request.user_data.clone())
                    .map_err(|_| bad(uuid, "the user data is not UTF-8"))?,
            ),
        };
        let nics = nics::nics(self.run_dir, request)?;
        let first = &request.disks[0];
        let rest = &request.disks[1..];
        let kind = match request.kind() {
            DomainKind::Unikernel => {
                let image = self.volume(uuid, &first.host_volume)?;
                if image.format != VolumeFormat::Raw {
                    return Err(bad(
                        uuid,
                        format!(
                            "a unikernel's first disk is a raw volume, {} is {:?}",
                            first.host_volume, image.format
                        ),
                    ));
                }
                Kind::Unikernel {
                    image: image.dir.join("disk.raw"),
                    cmdline: request.extra_args.clone(),
                }
            }
            DomainKind::LinuxVm => Kind::LinuxVm { boot: VmBoot::Uefi },
            DomainKind::Container => {
                let (kernel, initrd) = self.shim.ok_or_else(|| {
                    DomainError::new(
                        DomainErrorCode::Unsupported,
                        uuid,
                        "this host has no shim VM for containers (eve-host run --shim-kernel, --shim-initrd)",
                    )
                })?;
                let image = self.volume(uuid, &first.host_volume)?;
                container_kind(uuid, &first.host_volume, &image, kernel, initrd, request)?
            }
            DomainKind::Unspecified => return Err(bad(uuid, "no kind")),
        };
        let mut disks = Vec::new();
        if request.kind() == DomainKind::LinuxVm {
            disks.push(self.disk(uuid, &first.host_volume, first.readonly)?);
        }
        for disk in rest {
            disks.push(self.disk(uuid, &disk.host_volume, disk.readonly)?);
        }
        let mut spec = DomainSpec::new(domain_name(uuid), self.arch, memory_mib, kind);
        spec.vcpus = request.vcpus.max(1);
        spec.disks = disks;
        spec.nics = nics;
        spec.cloud_init = user_data.map(|user_data| CloudInit {
            user_data,
            meta_data: None,
        });
        spec.check().map_err(|e| bad(uuid, e))?;
        Ok(spec)
    }
}

/// A container volume's OCI layout as the shim's image: its manifest
/// first, every blob a file of the layout.
fn container_kind(
    uuid: &str,
    name: &str,
    image: &BuiltVolume,
    kernel: &Path,
    initrd: &Path,
    request: &StartRequest,
) -> Result<Kind, DomainError> {
    if image.format != VolumeFormat::Container {
        return Err(bad(
            uuid,
            format!(
                "a container's first disk is a container volume, {name} is {:?}",
                image.format
            ),
        ));
    }
    let blobs = image
        .components
        .iter()
        .map(|(digest, _)| {
            let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
            Blob {
                digest: format!("sha256:{hex}"),
                path: image.dir.join("blobs/sha256").join(hex),
            }
        })
        .collect::<Vec<_>>();
    let manifest = blobs
        .first()
        .map(|b| b.digest.clone())
        .ok_or_else(|| bad(uuid, format!("volume {name} holds no image")))?;
    Ok(Kind::Container {
        shim: ShimKernel {
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            cmdline: request.extra_args.clone(),
        },
        image: ContainerImage { manifest, blobs },
        overrides: ContainerOverrides::default(),
    })
}

mod nics;
#[cfg(test)]
mod tests;
