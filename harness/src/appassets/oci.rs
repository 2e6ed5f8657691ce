//! An OCI image made here: busybox httpd in two gzip layers (the second
//! deletes a file of the first through a whiteout), a config with
//! entrypoint, cmd, env, working directory and user, and a manifest, laid
//! out as an OCI image layout. Tests hand its blobs to a container app as
//! the verified blobs volumemgr will.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use flate2::{Compression, write::GzEncoder};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{AssetError, debian, io_error};
use crate::Arch;
use crate::content::Registry;

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_GZIP_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The port the image's httpd listens on.
pub const HTTPD_PORT: u16 = 8080;

/// An image in an OCI layout directory.
#[derive(Debug, Clone)]
pub struct OciImage {
    pub dir: PathBuf,
    /// `sha256:<hex>` of the manifest.
    pub manifest: String,
    /// Every blob: manifest, config, layers.
    pub blobs: Vec<(String, PathBuf)>,
}

impl OciImage {
    /// Pushes the image to `registry` as `repo:tag`: every blob first, the
    /// manifest last (a registry refuses a manifest whose blobs it lacks).
    pub fn push_tagged(&self, registry: &Registry, repo: &str, tag: &str) -> std::io::Result<()> {
        let mut manifest = None;
        for (digest, path) in &self.blobs {
            let bytes = std::fs::read(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            if *digest == self.manifest {
                manifest = Some(bytes);
            } else {
                registry.push_blob(repo, &bytes)?;
            }
        }
        let manifest =
            manifest.ok_or_else(|| std::io::Error::other("the image has no manifest"))?;
        registry.push_manifest(repo, tag, MANIFEST_TYPE, &manifest)
    }
}

fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A tar stream built in memory.
struct Layer {
    tar: tar::Builder<Vec<u8>>,
}

impl Layer {
    fn new() -> Layer {
        Layer {
            tar: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    fn dir(&mut self, path: &str) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.tar.append_data(&mut h, path, std::io::empty())
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar.append_data(&mut h, path, data)
    }

    fn symlink(&mut self, path: &str, target: &str) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut h, path, target)
    }

    /// (uncompressed tar, gzip of it).
    fn finish(self) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        let tar = self.tar.into_inner()?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar)?;
        Ok((tar, gz.finish()?))
    }
}

/// busybox httpd for `arch` on [`HTTPD_PORT`], serving `/www` as user
/// `www`, written to `dir`.
pub fn busybox_httpd_image(arch: Arch, dir: &Path) -> Result<OciImage, AssetError> {
    let busybox_path = debian::busybox(arch)?;
    let busybox = std::fs::read(&busybox_path).map_err(io_error(&busybox_path))?;
    let io = io_error(dir);
    let build = || -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut base = Layer::new();
        for d in ["bin", "etc", "www"] {
            base.dir(d)?;
        }
        base.file("bin/busybox", 0o755, &busybox)?;
        for applet in ["sh", "httpd", "env", "id"] {
            base.symlink(&format!("bin/{applet}"), "busybox")?;
        }
        base.file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/:/bin/sh\nwww:x:1000:1000:www:/www:/bin/sh\n",
        )?;
        base.file("etc/group", 0o644, b"root:x:0:\nwww:x:1000:\n")?;
        base.file("www/old.html", 0o644, b"deleted by the second layer\n")?;
        let mut top = Layer::new();
        top.dir("www")?;
        top.file("www/.wh.old.html", 0o644, b"")?;
        top.file("www/index.html", 0o644, b"hello from the container\n")?;
        Ok(vec![base.finish()?, top.finish()?])
    };
    let layers = build().map_err(io)?;
    let config = json!({
        "architecture": debian::debian_arch(arch),
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/httpd", "-f", "-v"],
            "Cmd": ["-p", HTTPD_PORT.to_string(), "-h", "/www"],
            "Env": ["PATH=/bin", "GREETING=from-the-image"],
            "WorkingDir": "/www",
            "User": "www",
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|(tar, _)| sha256(tar)).collect::<Vec<_>>(),
        },
    });
    let config = serde_json::to_vec(&config).map_err(|e| AssetError::Disk(e.to_string()))?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": sha256(&config), "size": config.len()},
        "layers": layers.iter().map(|(_, gz)| json!({
            "mediaType": LAYER_GZIP_TYPE, "digest": sha256(gz), "size": gz.len(),
        })).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| AssetError::Disk(e.to_string()))?;
    let blobs_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).map_err(io_error(&blobs_dir))?;
    let mut blobs = Vec::new();
    let mut put = |bytes: &[u8]| -> Result<String, AssetError> {
        let digest = sha256(bytes);
        let path = blobs_dir.join(digest.trim_start_matches("sha256:"));
        std::fs::write(&path, bytes).map_err(io_error(&path))?;
        blobs.push((digest.clone(), path));
        Ok(digest)
    };
    let manifest_digest = put(&manifest)?;
    put(&config)?;
    for (_, gz) in &layers {
        put(gz)?;
    }
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": MANIFEST_TYPE, "digest": manifest_digest, "size": manifest.len()}],
    });
    for (name, bytes) in [
        ("oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#.to_vec()),
        ("index.json", index.to_string().into_bytes()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(io_error(&path))?;
    }
    Ok(OciImage {
        dir: dir.to_path_buf(),
        manifest: manifest_digest,
        blobs,
    })
}
