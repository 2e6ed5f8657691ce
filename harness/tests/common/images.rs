//! The images of a node's services, built as the host runs them. Included
//! with `#[path]` by the scenarios that run a whole node.

use std::path::{Path, PathBuf};

use eve_host::manifest::Manifest;
use harness::{Profile, build_service};

/// Builds the image of every service of `manifest` for its arch; the
/// directory they are in (the host's `--images`).
pub fn service_images(manifest: &Manifest) -> PathBuf {
    let mut dir = None;
    for service in &manifest.services {
        let image = build_service(&service.image, manifest.node.arch, Profile::Release)
            .unwrap_or_else(|e| panic!("building {}: {e}", service.image));
        dir = image.parent().map(Path::to_path_buf);
    }
    dir.expect("an image directory")
}
