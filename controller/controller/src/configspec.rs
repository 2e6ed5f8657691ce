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

use eve_proto::Message;
use eve_proto::config::{EdgeDevConfig, UuiDandVersion};

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
        let old = prev.volumes.iter().find(|v| v.uuid == vol.uuid);
        vol.generation_count = match old {
            Some(o) => {
                let mut a = o.clone();
                let mut b = vol.clone();
                a.generation_count = 0;
                b.generation_count = 0;
                if a == b {
                    o.generation_count
                } else {
                    o.generation_count + 1
                }
            }
            None => vol.generation_count,
        };
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
}
