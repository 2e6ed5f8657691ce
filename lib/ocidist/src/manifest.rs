//! Manifests and image indexes (OCI and Docker v2 schema 2), parsed into
//! our own descriptor types, with the checks a downloader needs: media
//! types, digests in canonical sha256 form, sizes within limits, and the
//! choice of the node's platform from an index.

use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::{Digest, OciError};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Every manifest media type we accept, for `Accept`.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Longest media type string accepted.
const MAX_MEDIA_TYPE: usize = 255;
/// Most entries in an index, layers in a manifest.
const MAX_ENTRIES: usize = 1024;

/// What a manifest document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An index or manifest list: one manifest per platform.
    Index,
    /// An image manifest: a config and layers.
    Manifest,
}

/// The kind a media type names, if we handle it.
pub fn kind_of(media_type: &str) -> Option<Kind> {
    match media_type {
        OCI_INDEX | DOCKER_LIST => Some(Kind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Manifest),
        _ => None,
    }
}

/// A content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// Its sha256.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The platform, for index entries.
    pub platform: Option<Platform>,
}

/// An OS, architecture and variant (OCI / Go names: `amd64`, `arm64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, ...
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v8` for arm64, usually.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of a node whose guests are `arch` (Rust's names:
    /// `x86_64`, `aarch64`), running Linux containers.
    pub fn for_arch(arch: &str) -> Self {
        let architecture = match arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        Self {
            os: String::from("linux"),
            architecture: String::from(architecture),
            variant: (architecture == "arm64").then(|| String::from("v8")),
        }
    }

    /// Whether an index entry's platform suits this one: same OS and
    /// architecture, and the entry's variant (if any) is ours. (arm64
    /// images usually say `v8` or nothing.)
    pub fn accepts(&self, entry: &Platform) -> bool {
        entry.os == self.os
            && entry.architecture == self.architecture
            && entry
                .variant
                .as_deref()
                .is_none_or(|v| self.variant.as_deref() == Some(v))
    }
}

#[derive(Deserialize)]
struct RawPlatform {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndex {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    manifests: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    config: RawDescriptor,
    layers: Vec<RawDescriptor>,
}

/// An image manifest's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    /// The config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
}

fn descriptor(raw: RawDescriptor, max_size: u64) -> Result<Descriptor, OciError> {
    check_media_type(&raw.media_type)?;
    let digest = Digest::parse(&raw.digest).ok_or(OciError::BadManifest("descriptor digest"))?;
    let size = u64::try_from(raw.size).map_err(|_| OciError::BadManifest("negative size"))?;
    if size > max_size {
        return Err(OciError::BlobTooLarge);
    }
    Ok(Descriptor {
        media_type: raw.media_type,
        digest,
        size,
        platform: raw.platform.map(|p| Platform {
            os: p.os,
            architecture: p.architecture,
            variant: p.variant.filter(|v| !v.is_empty()),
        }),
    })
}

/// `type/subtype` with the characters RFC 6838 allows, bounded.
fn check_media_type(mt: &str) -> Result<(), OciError> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b);
    let ok = mt.len() <= MAX_MEDIA_TYPE
        && mt.split_once('/').is_some_and(|(t, s)| {
            !t.is_empty() && !s.is_empty() && t.bytes().all(ok_char) && s.bytes().all(ok_char)
        });
    if ok {
        Ok(())
    } else {
        Err(OciError::UnsupportedMediaType)
    }
}

/// The document's own `mediaType`, when it has one, must be the one it
/// was served as.
fn check_declared(declared: Option<&str>, served: &str) -> Result<(), OciError> {
    match declared {
        Some(d) if d != served => Err(OciError::BadManifest("mediaType differs from Content-Type")),
        _ => Ok(()),
    }
}

/// Parses an index or manifest list served as `media_type`.
pub fn parse_index(
    bytes: &[u8],
    media_type: &str,
    max_blob: u64,
) -> Result<Vec<Descriptor>, OciError> {
    let raw: RawIndex =
        serde_json::from_slice(bytes).map_err(|_| OciError::BadManifest("index JSON"))?;
    if raw.schema_version != 2 {
        return Err(OciError::BadManifest("schemaVersion"));
    }
    check_declared(raw.media_type.as_deref(), media_type)?;
    if raw.manifests.len() > MAX_ENTRIES {
        return Err(OciError::BadManifest("too many entries"));
    }
    raw.manifests
        .into_iter()
        .map(|d| descriptor(d, max_blob))
        .collect()
}

/// Parses an image manifest served as `media_type`.
pub fn parse_manifest(
    bytes: &[u8],
    media_type: &str,
    max_blob: u64,
) -> Result<ImageManifest, OciError> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|_| OciError::BadManifest("manifest JSON"))?;
    if raw.schema_version != 2 {
        return Err(OciError::BadManifest("schemaVersion"));
    }
    check_declared(raw.media_type.as_deref(), media_type)?;
    if raw.layers.len() > MAX_ENTRIES {
        return Err(OciError::BadManifest("too many layers"));
    }
    let config = descriptor(raw.config, max_blob)?;
    if !matches!(config.media_type.as_str(), OCI_CONFIG | DOCKER_CONFIG) {
        return Err(OciError::UnsupportedMediaType);
    }
    let layers = raw
        .layers
        .into_iter()
        .map(|d| descriptor(d, max_blob))
        .collect::<Result<Vec<_>, _>>()?;
    if layers.iter().any(|l| kind_of(&l.media_type).is_some()) {
        return Err(OciError::BadManifest("a layer claims to be a manifest"));
    }
    Ok(ImageManifest { config, layers })
}

/// A verified manifest document, whichever kind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// An index or manifest list: its entries.
    Index(Vec<Descriptor>),
    /// An image manifest.
    Manifest(ImageManifest),
}

/// Just enough of a document to tell its kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    config: Option<serde::de::IgnoredAny>,
}

/// Parses a manifest or index whose bytes are already verified (read back
/// from the blob store) when the media type it was served as may not be
/// known: the document's own `mediaType` decides, else `hint`, else its
/// shape (`manifests`: an OCI index; `config`: an OCI manifest). Returns
/// the media type it was parsed as, with the document.
pub fn parse_document(
    bytes: &[u8],
    hint: Option<&str>,
    max_blob: u64,
) -> Result<(String, Document), OciError> {
    let shape: Shape =
        serde_json::from_slice(bytes).map_err(|_| OciError::BadManifest("document JSON"))?;
    let media_type = match (shape.media_type, hint.filter(|h| kind_of(h).is_some())) {
        (Some(declared), _) => declared,
        (None, Some(hint)) => String::from(hint),
        (None, None) if shape.manifests.is_some() => String::from(OCI_INDEX),
        (None, None) if shape.config.is_some() => String::from(OCI_MANIFEST),
        (None, None) => return Err(OciError::BadManifest("neither an index nor a manifest")),
    };
    let document = match kind_of(&media_type) {
        Some(Kind::Index) => Document::Index(parse_index(bytes, &media_type, max_blob)?),
        Some(Kind::Manifest) => Document::Manifest(parse_manifest(bytes, &media_type, max_blob)?),
        None => return Err(OciError::UnsupportedMediaType),
    };
    Ok((media_type, document))
}

/// The index entry for `platform`: the first that suits it, preferring
/// an exact variant match, and only image manifests (never a nested index
/// or an attestation entry with an unknown platform).
pub fn choose(entries: &[Descriptor], platform: &Platform) -> Result<Descriptor, OciError> {
    let suitable = |d: &&Descriptor| {
        kind_of(&d.media_type) == Some(Kind::Manifest)
            && d.platform.as_ref().is_some_and(|p| platform.accepts(p))
    };
    let exact = entries.iter().filter(suitable).find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.variant == platform.variant)
    });
    exact
        .or_else(|| entries.iter().find(suitable))
        .cloned()
        .ok_or(OciError::NoMatchingPlatform)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn d(mt: &str, arch: &str, variant: Option<&str>) -> String {
        let v = variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
        format!(
            r#"{{"mediaType":"{mt}","digest":"{}","size":10,"platform":{{"os":"linux","architecture":"{arch}"{v}}}}}"#,
            Digest::of(arch.as_bytes())
        )
    }

    #[test]
    fn chooses_the_nodes_platform() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{},{},{},{}]}}"#,
            d(OCI_MANIFEST, "unknown", None),
            d(OCI_MANIFEST, "arm", Some("v7")),
            d(OCI_MANIFEST, "amd64", None),
            d(OCI_MANIFEST, "arm64", Some("v8")),
        );
        let entries = parse_index(index.as_bytes(), OCI_INDEX, 1 << 30).unwrap();
        assert_eq!(entries.len(), 4);
        let amd = choose(&entries, &Platform::for_arch("x86_64")).unwrap();
        assert_eq!(amd.digest, Digest::of(b"amd64"));
        let arm = choose(&entries, &Platform::for_arch("aarch64")).unwrap();
        assert_eq!(arm.digest, Digest::of(b"arm64"));
        assert_eq!(
            choose(&entries[..2], &Platform::for_arch("x86_64")),
            Err(OciError::NoMatchingPlatform)
        );
        // A nested index is never chosen as an image.
        let nested = format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            d(OCI_INDEX, "amd64", None)
        );
        let entries = parse_index(nested.as_bytes(), OCI_INDEX, 1 << 30).unwrap();
        assert_eq!(
            choose(&entries, &Platform::for_arch("x86_64")),
            Err(OciError::NoMatchingPlatform)
        );
    }

    #[test]
    fn documents_say_what_they_are_or_their_shape_does() {
        let cfg = Digest::of(b"cfg");
        let bare = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{cfg}","size":3}},"layers":[]}}"#
        );
        let (mt, doc) = parse_document(bare.as_bytes(), None, 100).unwrap();
        assert_eq!(mt, OCI_MANIFEST);
        assert!(matches!(doc, Document::Manifest(m) if m.config.digest == cfg));
        // A Docker manifest says so itself, whatever the hint.
        let docker = bare.replace(
            r#""schemaVersion":2,"#,
            &format!(r#""schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","#),
        );
        let (mt, _) = parse_document(docker.as_bytes(), Some(OCI_INDEX), 100).unwrap();
        assert_eq!(mt, DOCKER_MANIFEST);
        // The hint decides for a document that does not say.
        let (mt, _) = parse_document(bare.as_bytes(), Some(DOCKER_MANIFEST), 100).unwrap();
        assert_eq!(mt, DOCKER_MANIFEST);
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            d(OCI_MANIFEST, "amd64", None)
        );
        let (mt, doc) = parse_document(index.as_bytes(), None, 100).unwrap();
        assert_eq!(mt, OCI_INDEX);
        assert!(matches!(doc, Document::Index(e) if e.len() == 1));
        for bad in [&b"{}"[..], b"[1]", b"\xff", br#"{"mediaType":"text/html"}"#] {
            assert!(parse_document(bad, None, 100).is_err());
        }
    }

    #[test]
    fn manifests_are_checked() {
        let cfg = Digest::of(b"cfg");
        let layer = Digest::of(b"layer");
        let good = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{cfg}","size":3}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":5}}]}}"#
        );
        let m = parse_manifest(good.as_bytes(), OCI_MANIFEST, 100).unwrap();
        assert_eq!(
            (m.config.digest, m.layers[0].digest, m.layers[0].size),
            (cfg, layer, 5)
        );
        assert_eq!(
            parse_manifest(good.as_bytes(), DOCKER_MANIFEST, 100),
            Err(OciError::BadManifest("mediaType differs from Content-Type"))
        );
        assert_eq!(
            parse_manifest(good.as_bytes(), OCI_MANIFEST, 4),
            Err(OciError::BlobTooLarge)
        );
        for (from, to, err) in [
            (
                r#""size":5"#,
                r#""size":-5"#,
                OciError::BadManifest("negative size"),
            ),
            (
                &format!("{layer}")[..],
                "sha512:00",
                OciError::BadManifest("descriptor digest"),
            ),
            (OCI_CONFIG, "text/html", OciError::UnsupportedMediaType),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "bad type",
                OciError::UnsupportedMediaType,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                OCI_INDEX,
                OciError::BadManifest("a layer claims to be a manifest"),
            ),
            (
                r#""schemaVersion":2"#,
                r#""schemaVersion":1"#,
                OciError::BadManifest("schemaVersion"),
            ),
            ("layers", "lawyers", OciError::BadManifest("manifest JSON")),
        ] {
            let bad = good.replace(from, to);
            assert_eq!(
                parse_manifest(bad.as_bytes(), OCI_MANIFEST, 100),
                Err(err),
                "{to}"
            );
        }
        assert_eq!(
            parse_manifest(b"\xff{", OCI_MANIFEST, 100),
            Err(OciError::BadManifest("manifest JSON"))
        );
    }
}
