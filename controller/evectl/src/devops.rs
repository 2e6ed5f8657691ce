//! Base OS updates and device operations (`evectl device update|reboot|
//! shutdown`), and the partitions' state in `evectl device show`.
//!
//! An update is a content tree holding the new base OS image (`RAW`: the
//! partition image as written) and `EdgeDevConfig.baseos` naming it with
//! its version; `activate` asks the node to boot it, and `--retry` bumps
//! `retry_update` so that a node retries a version that failed. Reboot and
//! shutdown bump their `DeviceOpsCmd` counters (`EdgeDevConfig.reboot`,
//! `.shutdown`): a node acts when a counter differs from the one it saw.

use std::fmt::Write as _;

use controller::configspec::derived_uuid;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::admin::{Admin, CtlError, proto_json_u64};
use crate::apps::{AppError, AppKind, image_source};
use crate::content::{DatastoreError, add_datastore};

/// A base OS update to put in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSpec {
    /// `http(s)://HOST/PATH/FILE` of the image.
    pub image: String,
    /// The version string inside the image.
    pub version: String,
    /// The image's sha256, 64 hex digits.
    pub sha256: String,
    /// Boot it once downloaded and written.
    pub activate: bool,
    /// Bump `retry_update`.
    pub retry: bool,
}

/// Why a device command was refused before reaching the controller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DevOpsError {
    /// The image is not an HTTP(S) URL of a file.
    #[error(transparent)]
    Image(#[from] AppError),
    /// An empty or odd version.
    #[error("--version {0:?}: expected a version string (letters, digits, . - _ +)")]
    BadVersion(String),
    /// Not 64 hex digits.
    #[error("--sha256 {0:?}: expected the image's sha256, 64 hex digits")]
    BadSha256(String),
    /// The datastore could not be added.
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
}

/// A device operation counted in `EdgeDevConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceOp {
    /// `reboot`.
    Reboot,
    /// `shutdown`: apps stopped, the node powered off.
    Shutdown,
}

impl DeviceOp {
    /// The `EdgeDevConfig` field (protobuf JSON name).
    fn field(self) -> &'static str {
        match self {
            Self::Reboot => "reboot",
            Self::Shutdown => "shutdown",
        }
    }
}

/// `config` with the base OS update `spec`: its datastore (reused when one
/// serves the same place), its content tree (`baseos-VERSION`) and
/// `baseos`. The tree of the previous update goes when nothing else uses it.
pub fn update(mut config: Value, spec: &UpdateSpec) -> Result<Value, DevOpsError> {
    let version = spec.version.as_str();
    let version_ok = !version.is_empty()
        && version.len() <= 128
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_+".contains(&b));
    if !version_ok {
        return Err(DevOpsError::BadVersion(spec.version.clone()));
    }
    if spec.sha256.len() != 64 || !spec.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DevOpsError::BadSha256(spec.sha256.clone()));
    }
    // An HTTP(S) file read as a unikernel's is a RAW tree, which is what a
    // partition image is.
    let source = image_source(&spec.image, Some(AppKind::Unikernel))?;
    let ds_type = if source.datastore.kind == "https" {
        "DsHttps"
    } else {
        "DsHttp"
    };
    let existing = config["datastores"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| {
            d["dType"] == ds_type
                && d["fqdn"] == source.datastore.fqdn.as_str()
                && d["dpath"].as_str().unwrap_or("") == source.datastore.dpath
        })
        .and_then(|d| d["id"].as_str())
        .map(str::to_owned);
    let ds_id = match existing {
        Some(id) => id,
        None => {
            config = add_datastore(config, &source.datastore)?;
            source.datastore.name.clone()
        }
    };
    let previous = config["baseos"]["contentTreeUuid"]
        .as_str()
        .map(str::to_owned);
    let tree_name = format!("baseos-{version}");
    let tree_uuid = derived_uuid("content", &tree_name);
    if !config["contentInfo"].is_array() {
        config["contentInfo"] = json!([]);
    }
    let used_by_volume = |config: &Value, uuid: &str| {
        config["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["origin"]["downloadContentTreeID"] == uuid)
    };
    let stale = previous.filter(|p| *p != tree_uuid && !used_by_volume(&config, p));
    if let Some(trees) = config["contentInfo"].as_array_mut() {
        trees.retain(|t| {
            let uuid = t["uuid"].as_str().map_or_else(
                || derived_uuid("content", t["displayName"].as_str().unwrap_or("")),
                str::to_owned,
            );
            uuid != tree_uuid && Some(&uuid) != stale.as_ref()
        });
        trees.push(json!({
            "uuid": tree_uuid,
            "displayName": tree_name,
            "dsId": ds_id,
            "URL": source.url,
            "iformat": "RAW",
            "sha256": spec.sha256.to_ascii_lowercase(),
        }));
    }
    let mut retry = proto_json_u64(&config["baseos"]["retryUpdate"]["counter"]);
    if spec.retry {
        retry += 1;
    }
    let mut baseos = json!({
        "contentTreeUuid": tree_uuid,
        "activate": spec.activate,
        "baseOsVersion": version,
    });
    if retry > 0 {
        baseos["retryUpdate"] = json!({"counter": retry});
    }
    config["baseos"] = baseos;
    Ok(config)
}

/// `config` with operation `op`'s counter bumped; returns the new counter.
pub fn bump(mut config: Value, op: DeviceOp) -> (Value, u64) {
    let next = proto_json_u64(&config[op.field()]["counter"]) + 1;
    // `desiredState` true: the node comes back up after a reboot.
    config[op.field()] = json!({"counter": next, "desiredState": op == DeviceOp::Reboot});
    (config, next)
}

fn enum_name<'a>(v: &'a Value, zero: &'a str) -> &'a str {
    v.as_str().unwrap_or(zero)
}

/// The lines `device show` adds from the device's `ZInfoDevice`: each
/// partition's base OS (its `swList` entry) and the last reboot.
pub fn partitions_summary(dinfo: &Value) -> String {
    let mut s = String::new();
    for sw in dinfo["swList"].as_array().into_iter().flatten() {
        let mut line = format!(
            "partition {}: {} {}{}  status {} ({})",
            sw["partitionLabel"].as_str().unwrap_or("?"),
            sw["shortVersion"]
                .as_str()
                .filter(|v| !v.is_empty())
                .unwrap_or("(none)"),
            if sw["activated"] == true {
                "active"
            } else {
                "inactive"
            },
            sw["partitionState"]
                .as_str()
                .map(|p| format!(", {p}"))
                .unwrap_or_default(),
            enum_name(&sw["userStatus"], "NONE"),
            enum_name(&sw["status"], "INVALID"),
        );
        let sub = enum_name(&sw["subStatus"], "NONE_SUBSTATUS");
        if sub != "NONE_SUBSTATUS" {
            let _ = write!(line, "  {sub}");
            if let Some(text) = sw["subStatusStr"].as_str() {
                let _ = write!(line, ": {text}");
            }
            let progress = proto_json_u64(&sw["subStatusProgress"]);
            if progress > 0 {
                let _ = write!(line, " ({progress})");
            }
        }
        let download = proto_json_u64(&sw["downloadProgress"]);
        if download > 0 && download < 100 {
            let _ = write!(line, "  downloaded {download}%");
        }
        let _ = writeln!(s, "{line}");
        if let Some(e) = sw["swErr"]["description"].as_str() {
            let _ = writeln!(s, "  error: {e}");
        }
    }
    if let Some(reason) = dinfo["lastRebootReason"].as_str().filter(|r| !r.is_empty()) {
        let _ = writeln!(
            s,
            "last reboot:  {reason} (at {})",
            dinfo["lastRebootTime"]
                .as_str()
                .unwrap_or("an unknown time")
        );
    }
    s
}

fn refused(e: DevOpsError) -> CtlError {
    CtlError::Refused {
        status: StatusCode::BAD_REQUEST,
        message: e.to_string(),
    }
}

impl Admin {
    /// The UUID of the device `name` names: the device with that serial,
    /// else `name` itself as a UUID (which the controller refuses with 404
    /// when it has no such device).
    pub async fn resolve_device(&mut self, name: &str) -> Result<String, CtlError> {
        let devices = self.get("/api/v1/devices").await?;
        Ok(devices
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["serial"] == name)
            .and_then(|d| d["uuid"].as_str())
            .unwrap_or(name)
            .to_owned())
    }

    /// `device update NAME --image URL --version V --sha256 HEX`
    pub async fn device_update(
        &mut self,
        device: &str,
        spec: &UpdateSpec,
    ) -> Result<String, CtlError> {
        let config = update(self.current_config(device).await?, spec).map_err(refused)?;
        let v = self.store_config(device, &config).await?;
        let v = json!({"baseos": config["baseos"], "version": v["version"]});
        Ok(self.out(&v, |v| {
            format!(
                "base OS {} set{}; config version {} stored for {device}\n",
                spec.version,
                if spec.activate {
                    " to activate"
                } else {
                    " (not activated)"
                },
                v["version"]
            )
        }))
    }

    /// `device reboot|shutdown NAME`
    pub async fn device_op(&mut self, device: &str, op: DeviceOp) -> Result<String, CtlError> {
        let (config, counter) = bump(self.current_config(device).await?, op);
        let v = self.store_config(device, &config).await?;
        let v = json!({"counter": counter, "version": v["version"]});
        Ok(self.out(&v, |v| {
            format!(
                "{} asked ({} counter {counter}); config version {} stored for {device}\n",
                op.field(),
                op.field(),
                v["version"]
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12";

    fn spec(version: &str) -> UpdateSpec {
        UpdateSpec {
            image: format!("http://10.0.2.2:8000/os/eve-{version}.img"),
            version: version.into(),
            sha256: SHA.into(),
            activate: true,
            retry: false,
        }
    }

    #[test]
    fn an_update_replaces_the_previous_tree_and_keeps_the_retry_counter() {
        let c = update(json!({}), &spec("2.0")).unwrap();
        let t2 = derived_uuid("content", "baseos-2.0");
        assert_eq!(c["baseos"]["contentTreeUuid"], t2.as_str());
        assert_eq!(c["baseos"]["baseOsVersion"], "2.0");
        assert_eq!(c["contentInfo"][0]["iformat"], "RAW");
        assert_eq!(c["contentInfo"][0]["sha256"], SHA.to_ascii_lowercase());
        assert_eq!(c["contentInfo"][0]["URL"], "eve-2.0.img");
        let c = update(
            c,
            &UpdateSpec {
                retry: true,
                ..spec("3.0")
            },
        )
        .unwrap();
        assert_eq!(c["contentInfo"].as_array().unwrap().len(), 1);
        assert_eq!(c["datastores"].as_array().unwrap().len(), 1);
        assert_eq!(c["baseos"]["retryUpdate"]["counter"], 1);
        let c = update(c, &spec("3.0")).unwrap();
        assert_eq!(c["baseos"]["retryUpdate"]["counter"], 1, "kept");
        for bad in ["", "1 0", "v/1"] {
            assert!(matches!(
                update(json!({}), &spec(bad)),
                Err(DevOpsError::BadVersion(_))
            ));
        }
        let short = UpdateSpec {
            sha256: "ab".into(),
            ..spec("1")
        };
        assert!(matches!(
            update(json!({}), &short),
            Err(DevOpsError::BadSha256(_))
        ));
        let docker = UpdateSpec {
            image: "docker://lfedge/eve:1".into(),
            ..spec("1")
        };
        assert!(matches!(
            update(json!({}), &docker),
            Err(DevOpsError::Image(_))
        ));
    }

    #[test]
    fn operations_bump_their_own_counter() {
        let (c, n) = bump(json!({"reboot": {"counter": 4}}), DeviceOp::Reboot);
        assert_eq!((n, c["reboot"]["counter"].as_u64()), (5, Some(5)));
        let (c, n) = bump(c, DeviceOp::Shutdown);
        assert_eq!(n, 1);
        assert_eq!(c["reboot"]["counter"], 5);
        assert_eq!(c["shutdown"]["counter"], 1);
    }
}
