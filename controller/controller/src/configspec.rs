//! Turns an operator's config description into the `EdgeDevConfig` a device
//! receives.
//!
//! The description is EVE's own `EdgeDevConfig` in protobuf-JSON form,
//! written as YAML or JSON (YAML is a superset of JSON, so one parser reads
//! both), so every field EVE knows can be set with EVE's names and nothing
//! is lost in a translation layer. What an operator should not have to
//! manage is filled in: object UUIDs (derived from the display name, so a
//! re-applied file keeps them stable), object versions (bumped only when an
//! object changed, because EVE restarts what changes version), the config's
//! own id and version, and `config_timestamp`.
//!
//! Content is described by name too: a datastore's `id` may be a name (a
//! UUID is derived from it), a content tree's `dsId` / `dsIdsList` may name
//! a datastore, and a volume's `origin.downloadContentTreeID` may name a
//! content tree by its `displayName`; names are resolved to UUIDs and an
//! unknown name is refused. Datastore credentials written in clear
//! (`apiKey`, `password`) and apps' clear user data (`userData`) are sealed
//! by [`seal_secrets`] into `cipherData` blocks only the device can open,
//! and the clear fields are emptied before the config is stored.

use eve_proto::Message;
use eve_proto::cipher::{KeyAgreement, encrypt_cipher_block};
use eve_proto::common::{
    CipherContext, EncryptionBlock, EncryptionScheme, HashAlgorithm, KeyExchangeScheme,
};
use eve_proto::config::{EdgeDevConfig, UuiDandVersion, VolumeContentOriginType};
use eve_proto::p256::PublicKey;

use crate::pbuf;

/// Why a description was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither YAML nor JSON.
    #[error("not YAML or JSON: {0}")]
    Syntax(#[from] serde_yaml::Error),
    /// Readable, but not an `EdgeDevConfig`.
    #[error(transparent)]
    Schema(#[from] pbuf::EncodeError),
    /// An object has neither a UUID nor a display name to derive one from.
    #[error("{0}: every object needs a uuid or a display name")]
    Unnamed(&'static str),
    /// A reference names no object of its kind.
    #[error("{from} refers to {kind} {name:?}, which the description does not have")]
    UnknownRef {
        /// The referring object.
        from: String,
        /// The kind referred to.
        kind: &'static str,
        /// The name or UUID given.
        name: String,
    },
    /// Datastore credentials or app user data cannot be sealed for this
    /// device.
    #[error("cannot encrypt secrets for the device: {0}")]
    Seal(String),
    /// Two objects of a kind share a UUID.
    #[error("{kind} uuid {uuid} appears twice")]
    Duplicate {
        /// Object kind.
        kind: &'static str,
        /// The repeated UUID.
        uuid: String,
    },
}

/// Builds config version `version` for `device` from `text`, bumping object
/// versions relative to `previous`.
pub fn build(
    text: &str,
    device: &str,
    version: i64,
    previous: Option<&EdgeDevConfig>,
    now: std::time::SystemTime,
) -> Result<EdgeDevConfig, SpecError> {
    let value: serde_json::Value = serde_yaml::from_str(text)?;
    let bytes = pbuf::encode_from_json("org.lfedge.eve.config.EdgeDevConfig", &value.to_string())?;
    let mut cfg = EdgeDevConfig::decode(bytes.as_slice())
        .expect("prost decodes what prost-reflect encoded from the same descriptors");
    let empty = EdgeDevConfig::default();
    let prev = previous.unwrap_or(&empty);

    let apps_prev: Vec<_> = prev
        .apps
        .iter()
        .map(|a| (a.uuidandversion.clone(), a.clone()))
        .collect();
    for app in &mut cfg.apps {
        let name = app.displayname.clone();
        let slot = ensure_uv(&mut app.uuidandversion, "app", &name)?;
        let old = apps_prev
            .iter()
            .find(|(uv, _)| uv.as_ref().is_some_and(|u| u.uuid == slot));
        let version = bump(old.map(|(uv, a)| (uv, a)), app, |a| &mut a.uuidandversion);
        set_version(&mut app.uuidandversion, version);
    }
    check_unique("app", cfg.apps.iter().map(|a| uuid_of(&a.uuidandversion)))?;

    let ni_prev: Vec<_> = prev
        .network_instances
        .iter()
        .map(|n| (n.uuidandversion.clone(), n.clone()))
        .collect();
    for ni in &mut cfg.network_instances {
        let name = ni.displayname.clone();
        let slot = ensure_uv(&mut ni.uuidandversion, "network instance", &name)?;
        let old = ni_prev
            .iter()
            .find(|(uv, _)| uv.as_ref().is_some_and(|u| u.uuid == slot));
        let version = bump(old.map(|(uv, n)| (uv, n)), ni, |n| &mut n.uuidandversion);
        set_version(&mut ni.uuidandversion, version);
    }
    check_unique(
        "network instance",
        cfg.network_instances
            .iter()
            .map(|n| uuid_of(&n.uuidandversion)),
    )?;

    for vol in &mut cfg.volumes {
        if vol.uuid.is_empty() {
            if vol.display_name.is_empty() {
                return Err(SpecError::Unnamed("volume"));
            }
            vol.uuid = derived_uuid("volume", &vol.display_name);
        }
    }
    check_unique("volume", cfg.volumes.iter().map(|v| v.uuid.clone()))?;

    for ct in &mut cfg.content_info {
        if ct.uuid.is_empty() {
            if ct.display_name.is_empty() {
                return Err(SpecError::Unnamed("content tree"));
            }
            ct.uuid = derived_uuid("content", &ct.display_name);
        }
    }
    check_unique(
        "content tree",
        cfg.content_info.iter().map(|c| c.uuid.clone()),
    )?;

    resolve_content_names(&mut cfg)?;
    bump_volume_generations(&mut cfg, prev);

    cfg.id = Some(UuiDandVersion {
        uuid: device.to_owned(),
        version: version.to_string(),
    });
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    cfg.config_timestamp = Some(eve_proto::prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    });
    Ok(cfg)
}

/// A volume's `generationCount` (EVE's purge counter): a volume that
/// changed (its names resolved, so a name and its UUID are the same) goes
/// to the next generation; a description that asks for a higher one (a
/// purge) gets it; an unchanged volume keeps its generation.
fn bump_volume_generations(cfg: &mut EdgeDevConfig, prev: &EdgeDevConfig) {
    for vol in &mut cfg.volumes {
        let Some(old) = prev.volumes.iter().find(|v| v.uuid == vol.uuid) else {
            continue;
        };
        let mut a = old.clone();
        let mut b = vol.clone();
        a.generation_count = 0;
        b.generation_count = 0;
        let carried = if a == b {
            old.generation_count
        } else {
            old.generation_count + 1
        };
        vol.generation_count = carried.max(vol.generation_count);
    }
}

/// Whether `s` is a UUID in the hyphenated form.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Gives named datastores their UUIDs and resolves the names content
/// trees and volumes refer to.
fn resolve_content_names(cfg: &mut EdgeDevConfig) -> Result<(), SpecError> {
    let mut datastores = Vec::new();
    for ds in &mut cfg.datastores {
        if ds.id.is_empty() {
            return Err(SpecError::Unnamed("datastore"));
        }
        let name = ds.id.clone();
        if !is_uuid(&name) {
            ds.id = derived_uuid("datastore", &name);
        }
        datastores.push((name, ds.id.clone()));
    }
    check_unique("datastore", cfg.datastores.iter().map(|d| d.id.clone()))?;
    let datastore = |from: &str, given: &str| {
        datastores
            .iter()
            .find(|(name, uuid)| name == given || uuid == given)
            .map(|(_, uuid)| uuid.clone())
            .ok_or_else(|| SpecError::UnknownRef {
                from: from.to_owned(),
                kind: "datastore",
                name: given.to_owned(),
            })
    };
    for ct in &mut cfg.content_info {
        let from = format!("content tree {:?}", ct.display_name);
        if !ct.ds_id.is_empty() {
            ct.ds_id = datastore(&from, &ct.ds_id)?;
        }
        for id in &mut ct.ds_ids_list {
            *id = datastore(&from, id)?;
        }
    }
    let trees: Vec<(String, String)> = cfg
        .content_info
        .iter()
        .map(|c| (c.display_name.clone(), c.uuid.clone()))
        .collect();
    for vol in &mut cfg.volumes {
        let Some(origin) = vol.origin.as_mut() else {
            continue;
        };
        if origin.r#type != VolumeContentOriginType::VcotDownload as i32 {
            continue;
        }
        let given = origin.download_content_tree_id.clone();
        origin.download_content_tree_id = trees
            .iter()
            .find(|(name, uuid)| *name == given || *uuid == given)
            .map(|(_, uuid)| uuid.clone())
            .ok_or_else(|| SpecError::UnknownRef {
                from: format!("volume {:?}", vol.display_name),
                kind: "content tree",
                name: given,
            })?;
    }
    Ok(())
}

/// What sealing secrets for one device needs: the controller's ECDH key
/// and certificate, and the device's certificate.
pub struct Sealer<'a> {
    /// The controller's ECDH private key.
    pub controller_key: &'a dyn KeyAgreement,
    /// The controller's ECDH certificate, PEM as `/certs` serves it.
    pub controller_cert_pem: &'a str,
    /// The certificate secrets are sealed for, PEM: the device's ECDH
    /// certificate when it gave one (its key is in a TPM), else its device
    /// certificate as it registered.
    pub device_cert_pem: &'a str,
}

/// Whether any datastore carries credentials, or any app user data, in
/// clear.
pub fn has_clear_secrets(cfg: &EdgeDevConfig) -> bool {
    cfg.datastores
        .iter()
        .any(|d| !d.api_key.is_empty() || !d.password.is_empty())
        || cfg.apps.iter().any(|a| !a.user_data.is_empty())
}

/// Moves clear datastore credentials and app user data into `cipherData`
/// blocks sealed for the device (ECDH between the controller's and the
/// device's keys, AES-256-CFB, as EVE does), adding the cipher context
/// that names both certificates (16-byte SHA-256 of each PEM). User data
/// goes into `protectedUserData` still base64, as `userData` carries it
/// and EVE's domainmgr decodes it. `iv` must give fresh random bytes each
/// call.
pub fn seal_secrets(
    cfg: &mut EdgeDevConfig,
    sealer: &Sealer<'_>,
    mut iv: impl FnMut() -> [u8; 16],
) -> Result<(), SpecError> {
    if !has_clear_secrets(cfg) {
        return Ok(());
    }
    let cert = eve_proto::x509::parse_pem(sealer.device_cert_pem.as_bytes())
        .map_err(|e| SpecError::Seal(format!("device certificate: {e:?}")))?;
    let device_key: PublicKey = eve_proto::x509::p256_public_key(&cert)
        .map_err(|e| SpecError::Seal(format!("device key: {e:?}")))?;
    let controller_hash = eve_proto::sha256(sealer.controller_cert_pem.as_bytes())[..16].to_vec();
    let device_hash = eve_proto::sha256(sealer.device_cert_pem.as_bytes())[..16].to_vec();
    let context_id = derived_uuid(
        "cipher-context",
        &format!(
            "{}{}",
            format_hex(&controller_hash),
            format_hex(&device_hash)
        ),
    );
    if !cfg
        .cipher_contexts
        .iter()
        .any(|c| c.context_id == context_id)
    {
        cfg.cipher_contexts.push(CipherContext {
            context_id: context_id.clone(),
            hash_scheme: HashAlgorithm::Sha25616bytes as i32,
            key_exchange_scheme: KeyExchangeScheme::KeaEcdh as i32,
            encryption_scheme: EncryptionScheme::SaAes256Cfb as i32,
            device_cert_hash: device_hash,
            controller_cert_hash: controller_hash,
        });
    }
    let mut seal = |clear: EncryptionBlock| {
        encrypt_cipher_block(
            &clear.encode_to_vec(),
            &context_id,
            iv(),
            sealer.controller_key,
            &device_key,
        )
        .map_err(|e| SpecError::Seal(format!("{e:?}")))
    };
    for ds in &mut cfg.datastores {
        if ds.api_key.is_empty() && ds.password.is_empty() {
            continue;
        }
        ds.cipher_data = Some(seal(EncryptionBlock {
            ds_api_key: std::mem::take(&mut ds.api_key),
            ds_password: std::mem::take(&mut ds.password),
            ..Default::default()
        })?);
    }
    for app in &mut cfg.apps {
        if app.user_data.is_empty() {
            continue;
        }
        app.cipher_data = Some(seal(EncryptionBlock {
            protected_user_data: std::mem::take(&mut app.user_data),
            ..Default::default()
        })?);
    }
    Ok(())
}

fn format_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The first config of a freshly registered device: only its identity.
pub fn initial(device: &str, now: std::time::SystemTime) -> EdgeDevConfig {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    EdgeDevConfig {
        id: Some(UuiDandVersion {
            uuid: device.to_owned(),
            version: "1".into(),
        }),
        config_timestamp: Some(eve_proto::prost_types::Timestamp {
            seconds: since.as_secs() as i64,
            nanos: since.subsec_nanos() as i32,
        }),
        ..Default::default()
    }
}

fn uuid_of(uv: &Option<UuiDandVersion>) -> String {
    uv.as_ref().map(|u| u.uuid.clone()).unwrap_or_default()
}

fn set_version(uv: &mut Option<UuiDandVersion>, version: u64) {
    if let Some(u) = uv {
        u.version = version.to_string();
    }
}

fn ensure_uv(
    uv: &mut Option<UuiDandVersion>,
    kind: &'static str,
    name: &str,
) -> Result<String, SpecError> {
    let u = uv.get_or_insert_with(UuiDandVersion::default);
    if u.uuid.is_empty() {
        if name.is_empty() {
            return Err(SpecError::Unnamed(kind));
        }
        u.uuid = derived_uuid(kind, name);
    }
    Ok(u.uuid.clone())
}

/// The version an object gets: its previous version if nothing but the
/// version differs, the previous plus one if it changed, 1 if it is new.
fn bump<T: Clone + PartialEq>(
    old: Option<(&Option<UuiDandVersion>, &T)>,
    new: &T,
    uv: impl Fn(&mut T) -> &mut Option<UuiDandVersion>,
) -> u64 {
    let Some((old_uv, old)) = old else { return 1 };
    let old_version = old_uv
        .as_ref()
        .and_then(|u| u.version.parse::<u64>().ok())
        .unwrap_or(0);
    let (mut a, mut b) = (old.clone(), new.clone());
    for x in [&mut a, &mut b] {
        if let Some(u) = uv(x) {
            u.version.clear();
        }
    }
    if a == b {
        old_version.max(1)
    } else {
        old_version + 1
    }
}

fn check_unique(kind: &'static str, uuids: impl Iterator<Item = String>) -> Result<(), SpecError> {
    let mut seen = std::collections::HashSet::new();
    for uuid in uuids {
        if !seen.insert(uuid.clone()) {
            return Err(SpecError::Duplicate { kind, uuid });
        }
    }
    Ok(())
}

/// A stable UUID (RFC 4122 layout, version 8 "custom") from kind and name.
pub fn derived_uuid(kind: &str, name: &str) -> String {
    let h = eve_proto::sha256(format!("{kind}\0{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uuid(&b)
}

/// Formats 16 bytes as a hyphenated UUID.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
apps:
  - displayname: web
    activate: true
    fixedresources: { memory: 524288, vcpus: 1 }
networkInstances:
  - displayname: local
configItems:
  - { key: timer.config.interval, value: "60" }
volumes:
  - displayName: data
baseos: { baseOsVersion: "1.2.3", activate: true }
"#;

    #[test]
    fn a_field_out_of_range_is_refused_naming_it() {
        let spec = "apps:\n  - { displayname: web, fixedresources: { memory: -1024, vcpus: 1 } }\n";
        let err = build(spec, "dev", 1, None, std::time::UNIX_EPOCH)
            .expect_err("a negative uint32")
            .to_string();
        assert!(err.contains("out of range"), "{err}");
        assert!(err.contains(r#""memory":-1024`"#), "{err}");
    }

    #[test]
    fn yaml_builds_config_and_versions_bump_only_on_change() {
        let t = std::time::SystemTime::now();
        let v1 = build(SPEC, "dev", 2, None, t).expect("v1");
        let app = v1.apps[0].uuidandversion.clone().unwrap();
        assert_eq!(
            (app.uuid.clone(), app.version.as_str()),
            (derived_uuid("app", "web"), "1")
        );
        assert_eq!(v1.id.as_ref().unwrap().version, "2");
        assert_eq!(v1.config_items[0].value, "60");
        assert_eq!(v1.baseos.as_ref().unwrap().base_os_version, "1.2.3");
        let same = build(SPEC, "dev", 3, Some(&v1), t).expect("same");
        assert_eq!(same.apps[0].uuidandversion.as_ref().unwrap().version, "1");
        let changed = build(
            &SPEC.replace("vcpus: 1", "vcpus: 2"),
            "dev",
            4,
            Some(&same),
            t,
        )
        .expect("changed");
        assert_eq!(
            changed.apps[0].uuidandversion.as_ref().unwrap().version,
            "2"
        );
        assert_eq!(
            changed.network_instances[0]
                .uuidandversion
                .as_ref()
                .unwrap()
                .version,
            "1"
        );
        assert!(matches!(
            build("apps: [{activate: true}]", "d", 1, None, t),
            Err(SpecError::Unnamed("app"))
        ));
        assert!(matches!(
            build("nosuchfield: 1", "d", 1, None, t),
            Err(SpecError::Schema(_))
        ));
        assert!(matches!(
            build("apps: [", "d", 1, None, t),
            Err(SpecError::Syntax(_))
        ));
    }

    const CONTENT: &str = r#"
datastores:
  - { id: files, dType: DsHttps, fqdn: "files.example:8443", dpath: images, apiKey: ops, password: s3cret }
  - { id: registry, dType: DsContainerRegistry, fqdn: "docker://127.0.0.1:5000" }
contentInfo:
  - { displayName: disk, dsId: files, URL: vm.qcow2, iformat: QCOW2, sha256: "00", maxSizeBytes: 1000 }
  - { displayName: web, dsIdsList: [registry], URL: "apps/web:1.0", iformat: CONTAINER }
volumes:
  - displayName: root
    origin: { type: VCOT_DOWNLOAD, downloadContentTreeID: disk }
  - displayName: scratch
    origin: { type: VCOT_BLANK }
    maxsizebytes: 1048576
"#;

    #[test]
    fn content_is_described_by_name() {
        let t = std::time::SystemTime::now();
        let cfg = build(CONTENT, "dev", 1, None, t).expect("content config");
        let files = derived_uuid("datastore", "files");
        let registry = derived_uuid("datastore", "registry");
        assert_eq!(cfg.datastores[0].id, files);
        assert_eq!(cfg.content_info[0].ds_id, files);
        assert_eq!(cfg.content_info[1].ds_ids_list, [registry]);
        let disk = derived_uuid("content", "disk");
        assert_eq!(cfg.content_info[0].uuid, disk);
        let root = cfg.volumes[0].origin.as_ref().unwrap();
        assert_eq!(root.download_content_tree_id, disk);
        // Re-applying the built config (UUIDs instead of names) is stable.
        let again = build(&pbuf_json(&cfg), "dev", 2, Some(&cfg), t).expect("round trip");
        assert_eq!(
            (again.datastores.clone(), again.content_info.clone()),
            (cfg.datastores.clone(), cfg.content_info.clone())
        );
        assert_eq!(
            again.volumes[0].generation_count,
            cfg.volumes[0].generation_count
        );
        // The same description again, names and all: no new generation.
        let same = build(CONTENT, "dev", 3, Some(&again), t).expect("the same again");
        assert_eq!(
            same.volumes[0].generation_count,
            cfg.volumes[0].generation_count
        );
        // A changed volume goes to the next generation; a purge asks for
        // one explicitly.
        let grown = CONTENT.replace("maxsizebytes: 1048576", "maxsizebytes: 2097152");
        let grown = build(&grown, "dev", 4, Some(&same), t).expect("a grown volume");
        assert_eq!(
            (
                grown.volumes[0].generation_count,
                grown.volumes[1].generation_count
            ),
            (
                same.volumes[0].generation_count,
                same.volumes[1].generation_count + 1
            )
        );
        let purge = CONTENT.replace(
            "downloadContentTreeID: disk }",
            "downloadContentTreeID: disk }\n    generationCount: 7",
        );
        let purged = build(&purge, "dev", 5, Some(&grown), t).expect("a purge");
        assert_eq!(purged.volumes[0].generation_count, 7);

        for (from, to, kind) in [
            ("dsId: files", "dsId: nowhere", "datastore"),
            ("[registry]", "[nowhere]", "datastore"),
            (
                "downloadContentTreeID: disk",
                "downloadContentTreeID: nodisk",
                "content tree",
            ),
        ] {
            match build(&CONTENT.replace(from, to), "dev", 1, None, t) {
                Err(SpecError::UnknownRef { kind: k, .. }) => assert_eq!(k, kind),
                other => panic!("{to}: {other:?}"),
            }
        }
        assert!(matches!(
            build(
                &CONTENT.replace("id: registry", "id: files"),
                "dev",
                1,
                None,
                t
            ),
            Err(SpecError::Duplicate {
                kind: "datastore",
                ..
            })
        ));
    }

    fn pbuf_json(cfg: &EdgeDevConfig) -> String {
        crate::pbuf::decode_to_json("org.lfedge.eve.config.EdgeDevConfig", &cfg.encode_to_vec())
            .unwrap()
    }

    #[test]
    fn clear_secrets_are_sealed_for_the_device_only() {
        use eve_proto::cipher::decrypt_encryption_block;
        use eve_proto::p256::SecretKey;
        use eve_proto::sign::SoftwareSigner;
        use eve_proto::x509::{self, DeviceCertParams};

        let controller = SecretKey::from_bytes(&[7u8; 32].into()).unwrap();
        let device = SecretKey::from_bytes(&[9u8; 32].into()).unwrap();
        let cert = x509::generate_device_cert(
            &SoftwareSigner::new(&device),
            &DeviceCertParams {
                common_name: "dev",
                serial: &[1],
                not_before_unix: 0,
                not_after_unix: 4_000_000_000,
            },
        )
        .unwrap();
        let device_pem = x509::to_pem(&cert).unwrap();
        let controller_pem = "-----BEGIN CERTIFICATE-----\nECDH\n-----END CERTIFICATE-----\n";
        let mut cfg = build(CONTENT, "dev", 1, None, std::time::SystemTime::now()).unwrap();
        assert!(has_clear_secrets(&cfg));
        let sealer = Sealer {
            controller_key: &controller,
            controller_cert_pem: controller_pem,
            device_cert_pem: &device_pem,
        };
        seal_secrets(&mut cfg, &sealer, || [3u8; 16]).unwrap();
        assert!(!has_clear_secrets(&cfg));
        let ds = &cfg.datastores[0];
        assert!(ds.api_key.is_empty() && ds.password.is_empty());
        let block = ds.cipher_data.as_ref().expect("sealed");
        assert!(cfg.datastores[1].cipher_data.is_none(), "nothing to seal");
        assert_eq!(cfg.cipher_contexts.len(), 1);
        let ctx = &cfg.cipher_contexts[0];
        assert_eq!(
            ctx.controller_cert_hash,
            eve_proto::sha256(controller_pem.as_bytes())[..16]
        );
        assert_eq!(
            ctx.device_cert_hash,
            eve_proto::sha256(device_pem.as_bytes())[..16]
        );
        let opened =
            decrypt_encryption_block(block, ctx, &device, &controller.public_key()).unwrap();
        assert_eq!(
            (opened.ds_api_key.as_str(), opened.ds_password.as_str()),
            ("ops", "s3cret")
        );
        // Another device's key opens nothing.
        let other = SecretKey::from_bytes(&[11u8; 32].into()).unwrap();
        assert!(decrypt_encryption_block(block, ctx, &other, &controller.public_key()).is_err());

        // App user data is sealed with the same context, still base64.
        let apps = "apps:\n  - { displayname: web, userData: I2Nsb3VkLWNvbmZpZwo= }\n  - { displayname: bare }\n";
        let mut cfg = build(apps, "dev", 2, None, std::time::SystemTime::now()).unwrap();
        assert!(has_clear_secrets(&cfg));
        seal_secrets(&mut cfg, &sealer, || [4u8; 16]).unwrap();
        assert!(!has_clear_secrets(&cfg));
        assert!(cfg.apps[1].cipher_data.is_none(), "nothing to seal");
        let web = &cfg.apps[0];
        assert!(web.user_data.is_empty());
        let block = web.cipher_data.as_ref().expect("sealed");
        let opened = decrypt_encryption_block(
            block,
            &cfg.cipher_contexts[0],
            &device,
            &controller.public_key(),
        )
        .unwrap();
        assert_eq!(opened.protected_user_data, "I2Nsb3VkLWNvbmZpZwo=");
    }
}
