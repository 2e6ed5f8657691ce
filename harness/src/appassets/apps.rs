//! The three kinds of app as [`DomainSpec`]s, each answering HTTP on a
//! host loopback port: the app-kinds tests and `cargo xtask appsbench`
//! run the same apps, so they build them here once.

use std::path::Path;

use domains::spec::{
    Blob, ContainerImage, ContainerOverrides, DiskFormat, DiskSpec, NetBackend, Nic, PortForward,
    ShimKernel, VmBoot,
};
use domains::{DomainSpec, Kind};

use super::{AssetError, app_unikernel, linux_vm_disk, oci, shim};
use crate::Arch;

/// The port the unikernel app and the Linux VM serve HTTP on in the guest.
const GUEST_HTTP_PORT: u16 = 80;

/// One user-mode NIC forwarding host loopback port `host` to the guest's
/// `guest`.
pub fn user_net(host: u16, guest: u16) -> Vec<Nic> {
    vec![Nic {
        mac: None,
        backend: NetBackend::User {
            forwards: vec![PortForward { host, guest }],
        },
    }]
}

/// The example app unikernel (`hello-http`, 32 MiB) as `name`, answering
/// on host port `port`; `extra_cmdline` (may be empty) follows its port
/// on the kernel command line.
pub fn unikernel_app(
    arch: Arch,
    name: &str,
    port: u16,
    extra_cmdline: &str,
) -> Result<DomainSpec, AssetError> {
    let image = app_unikernel(arch)?;
    let cmdline = if extra_cmdline.is_empty() {
        format!("port={GUEST_HTTP_PORT}")
    } else {
        format!("port={GUEST_HTTP_PORT} {extra_cmdline}")
    };
    let mut spec = DomainSpec::new(name, arch, 32, Kind::Unikernel { image, cmdline });
    spec.nics = user_net(port, GUEST_HTTP_PORT);
    Ok(spec)
}

/// The UEFI Linux VM (256 MiB) as `name`, booting a fresh qcow2 `overlay`
/// of the cached disk, answering on host port `port`.
pub fn linux_vm_app(
    arch: Arch,
    name: &str,
    overlay: &Path,
    port: u16,
) -> Result<DomainSpec, AssetError> {
    let overlay = linux_vm_disk(arch)?.overlay(overlay)?;
    let mut spec = DomainSpec::new(name, arch, 256, Kind::LinuxVm { boot: VmBoot::Uefi });
    spec.disks = vec![DiskSpec {
        path: overlay,
        format: DiskFormat::Qcow2,
        read_only: false,
    }];
    spec.nics = user_net(port, GUEST_HTTP_PORT);
    Ok(spec)
}

/// The busybox httpd container (128 MiB shim VM) as `name`, its OCI image
/// made in `image_dir`, answering on host port `port`.
pub fn container_app(
    arch: Arch,
    name: &str,
    image_dir: &Path,
    port: u16,
) -> Result<DomainSpec, AssetError> {
    let shim = shim(arch)?;
    let image = oci::busybox_httpd_image(arch, image_dir)?;
    let mut spec = DomainSpec::new(
        name,
        arch,
        128,
        Kind::Container {
            shim: ShimKernel {
                kernel: shim.kernel,
                initrd: shim.initrd,
                cmdline: String::new(),
            },
            image: ContainerImage {
                manifest: image.manifest,
                blobs: image
                    .blobs
                    .into_iter()
                    .map(|(digest, path)| Blob { digest, path })
                    .collect(),
            },
            overrides: ContainerOverrides::default(),
        },
    );
    spec.nics = user_net(port, oci::HTTPD_PORT);
    Ok(spec)
}
