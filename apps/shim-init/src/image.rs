//! The parts of an OCI image the shim reads: the manifest (which config,
//! which layers in which order) and the config (what to run). Parsed from
//! bytes whose digest was checked, with every size bounded.

use serde::Deserialize;

/// Manifests and configs are kilobytes; anything near this is hostile.
pub const MAX_JSON: u64 = 4 << 20;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// How a layer is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("{what}: {why}")]
    Json { what: &'static str, why: String },
    #[error("manifest media type {0:?} is not an OCI or Docker v2 image manifest")]
    ManifestType(String),
    #[error("manifest schemaVersion {0}, expected 2")]
    Schema(u32),
    #[error("layer {digest}: media type {media_type:?} is not supported (tar, tar+gzip)")]
    LayerType { digest: String, media_type: String },
    #[error("the image has {0} layers; at most 256")]
    TooManyLayers(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ImageError> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| ImageError::Json {
            what: "manifest",
            why: e.to_string(),
        })?;
        if manifest.schema_version != 2 {
            return Err(ImageError::Schema(manifest.schema_version));
        }
        if let Some(t) = &manifest.media_type
            && t != OCI_MANIFEST
            && t != DOCKER_MANIFEST
        {
            return Err(ImageError::ManifestType(t.clone()));
        }
        if manifest.layers.len() > 256 {
            return Err(ImageError::TooManyLayers(manifest.layers.len()));
        }
        for layer in &manifest.layers {
            layer_compression(layer)?;
        }
        Ok(manifest)
    }
}

/// How `layer` is compressed, from its media type.
pub fn layer_compression(layer: &Descriptor) -> Result<Compression, ImageError> {
    match layer.media_type.as_str() {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Ok(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Ok(Compression::Gzip),
        other => Err(ImageError::LayerType {
            digest: layer.digest.clone(),
            media_type: other.to_string(),
        }),
    }
}

/// What the image says to run (`config` in the image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| ImageError::Json {
            what: "image config",
            why: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":10},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l","size":5}]}"#;

    #[test]
    fn manifests_and_configs_parse() {
        let m = Manifest::parse(MANIFEST.as_bytes()).unwrap();
        assert_eq!(m.config.digest, "sha256:c");
        assert_eq!(layer_compression(&m.layers[0]), Ok(Compression::Gzip));
        let c = ImageConfig::parse(
            br#"{"architecture":"arm64","config":{"Entrypoint":["/bin/httpd"],"User":"www"}}"#,
        )
        .unwrap();
        let run = c.config.unwrap();
        assert_eq!(run.entrypoint.unwrap(), ["/bin/httpd"]);
        assert_eq!(run.user.as_deref(), Some("www"));
        assert_eq!(run.cmd, None);
    }

    #[test]
    fn what_we_cannot_run_is_refused() {
        let zstd = MANIFEST.replace("tar+gzip", "tar+zstd");
        assert!(matches!(
            Manifest::parse(zstd.as_bytes()),
            Err(ImageError::LayerType { .. })
        ));
        let v1 = MANIFEST.replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert_eq!(Manifest::parse(v1.as_bytes()), Err(ImageError::Schema(1)));
        let index = MANIFEST.replace(OCI_MANIFEST, "application/vnd.oci.image.index.v1+json");
        assert!(matches!(
            Manifest::parse(index.as_bytes()),
            Err(ImageError::ManifestType(_))
        ));
        for junk in [&b""[..], b"{", b"[]", b"{\"schemaVersion\":\"x\"}"] {
            assert!(Manifest::parse(junk).is_err());
        }
        for junk in [&b""[..], b"{", b"{\"config\":7}"] {
            assert!(ImageConfig::parse(junk).is_err());
        }
    }
}
