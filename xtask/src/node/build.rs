//! The node's parts, built: every service image its manifest names and
//! `eve-host`.

use std::path::{Path, PathBuf};

use eve_host::manifest::Manifest;
use harness::appassets::{self, ShimAssets};
use harness::{Arch, Profile, build_service};

use crate::controller;

/// A node's service images and host, built.
pub struct BuiltNode {
    pub arch: Arch,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    /// The directory `eve-host --images` takes.
    pub images: PathBuf,
    /// Each service's name and image file.
    pub image_files: Vec<(String, PathBuf)>,
    pub host_binary: PathBuf,
    /// The container shim VM's kernel and initrd given to the host
    /// (`--shim-kernel`, `--shim-initrd`); `None`: the node runs no
    /// container apps.
    pub shim: Option<ShimAssets>,
    /// `LABEL=INTERFACE` device ports the host bridges with Linux
    /// interfaces (`--device-port`); none: every device port unbridged.
    pub device_ports: Vec<String>,
}

impl BuiltNode {
    pub fn service_names(&self) -> impl Iterator<Item = &str> {
        self.manifest.services.iter().map(|s| s.name.as_str())
    }

    /// Gives the host the shim VM for container apps, built (or taken
    /// from `target/app-assets`) as the app tests build it.
    pub fn add_shim(&mut self) -> Result<(), String> {
        let shim = appassets::shim(self.arch)
            .map_err(|e| format!("building the container shim VM: {e}"))?;
        self.shim = Some(shim);
        Ok(())
    }
}

/// The arch `manifest_path` names for its node.
pub fn manifest_arch(manifest_path: &Path) -> Result<Arch, String> {
    Ok(load(manifest_path)?.node.arch)
}

fn load(manifest_path: &Path) -> Result<Manifest, String> {
    Manifest::load(manifest_path).map_err(|e| format!("{}:\n{e}", manifest_path.display()))
}

/// Builds (release) every image `manifest_path` names for `arch` (the
/// manifest's own when `None`), and `eve-host` unless the test run built it
/// ([`controller::host_binary`]).
pub fn build(manifest_path: &Path, arch: Option<Arch>) -> Result<BuiltNode, String> {
    let manifest = load(manifest_path)?;
    let arch = arch.unwrap_or(manifest.node.arch);
    let mut images: Option<PathBuf> = None;
    let mut image_files = Vec::new();
    for service in &manifest.services {
        let file =
            build_service(&service.image, arch, Profile::Release).map_err(|e| e.to_string())?;
        let dir = file
            .parent()
            .ok_or("image without a directory")?
            .to_path_buf();
        if eve_host::node::image_path(&dir, &service.image, arch) != file {
            return Err(format!(
                "{} is not where eve-host looks for image {}",
                file.display(),
                service.image
            ));
        }
        images.get_or_insert(dir);
        image_files.push((service.name.clone(), file));
    }
    let host_binary = controller::host_binary("eve-host", "eve-host")?;
    Ok(BuiltNode {
        arch,
        manifest_path: manifest_path.to_path_buf(),
        images: images.ok_or("the manifest has no services")?,
        image_files,
        manifest,
        host_binary,
        shim: None,
        device_ports: Vec::new(),
    })
}
