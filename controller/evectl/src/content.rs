//! Datastores in a device's config (`evectl datastore add|list|remove`),
//! and the device's content trees, volumes and blobs as `device show`
//! prints them.
//!
//! A datastore lives in the device's `EdgeDevConfig`; these commands read
//! the current config through the admin API, change its `datastores`
//! list, and store it again as a new version. A datastore is named by its
//! `id`: a name, from which the controller derives a stable UUID, or a
//! UUID. Credentials given here travel in clear to the controller (over
//! the admin API) and are sealed there for the device before the config
//! is stored.

use std::fmt::Write as _;

use controller::configspec::derived_uuid;
use hyper::Method;
use serde_json::{Map, Value, json};

use crate::admin::{Admin, CtlError};

/// The datastore types `datastore add` accepts, as EVE's `DsType` names.
pub const DS_TYPES: [(&str, &str); 3] = [
    ("http", "DsHttp"),
    ("https", "DsHttps"),
    ("registry", "DsContainerRegistry"),
];

/// A datastore to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreSpec {
    /// Its name (or UUID).
    pub name: String,
    /// `http`, `https` or `registry`.
    pub kind: String,
    /// Host, `host:port` or (registry) `docker://host:port`.
    pub fqdn: String,
    /// Path prefix on the server.
    pub dpath: String,
    /// User name (EVE's `apiKey`).
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
}

/// Why a datastore change was refused before reaching the controller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatastoreError {
    /// Not one of [`DS_TYPES`].
    #[error("datastore type {0:?}: expected http, https or registry")]
    BadType(String),
    /// No datastore by that name or UUID.
    #[error("no datastore {0:?} in the device's config")]
    NotFound(String),
    /// Content trees still use it.
    #[error("datastore {name:?} is used by content trees {trees}")]
    InUse {
        /// The datastore.
        name: String,
        /// The content trees naming it.
        trees: String,
    },
}

/// Whether config datastore `ds` is the one `name` names.
fn is_named(ds: &Value, name: &str) -> bool {
    let id = ds["id"].as_str().unwrap_or("");
    id == name || id == derived_uuid("datastore", name)
}

fn datastores_mut(config: &mut Value) -> &mut Vec<Value> {
    if !config["datastores"].is_array() {
        config["datastores"] = json!([]);
    }
    match config.get_mut("datastores").and_then(Value::as_array_mut) {
        Some(list) => list,
        None => unreachable!("datastores was just made an array"),
    }
}

/// `config` (an `EdgeDevConfig` in protobuf JSON) with `spec` added, or
/// replacing the datastore of the same name.
pub fn add_datastore(mut config: Value, spec: &DatastoreSpec) -> Result<Value, DatastoreError> {
    let ds_type = DS_TYPES
        .iter()
        .find(|(k, _)| *k == spec.kind)
        .map(|(_, t)| *t)
        .ok_or_else(|| DatastoreError::BadType(spec.kind.clone()))?;
    let mut entry = Map::new();
    entry.insert("id".into(), json!(spec.name));
    entry.insert("dType".into(), json!(ds_type));
    entry.insert("fqdn".into(), json!(spec.fqdn));
    if !spec.dpath.is_empty() {
        entry.insert("dpath".into(), json!(spec.dpath));
    }
    if let Some(user) = &spec.user {
        entry.insert("apiKey".into(), json!(user));
    }
    if let Some(password) = &spec.password {
        entry.insert("password".into(), json!(password));
    }
    let list = datastores_mut(&mut config);
    list.retain(|ds| !is_named(ds, &spec.name));
    list.push(Value::Object(entry));
    Ok(config)
}

/// `config` without the datastore `name`, refused while a content tree
/// uses it.
pub fn remove_datastore(mut config: Value, name: &str) -> Result<Value, DatastoreError> {
    let Some(id) = config["datastores"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|ds| is_named(ds, name))
        .and_then(|ds| ds["id"].as_str())
        .map(str::to_owned)
    else {
        return Err(DatastoreError::NotFound(name.to_owned()));
    };
    let users: Vec<String> = config["contentInfo"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|ct| {
            ct["dsId"].as_str() == Some(&id)
                || ct["dsIdsList"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|d| d.as_str() == Some(&id))
        })
        .map(|ct| ct["displayName"].as_str().unwrap_or("?").to_owned())
        .collect();
    if !users.is_empty() {
        return Err(DatastoreError::InUse {
            name: name.to_owned(),
            trees: users.join(", "),
        });
    }
    datastores_mut(&mut config).retain(|ds| !is_named(ds, name));
    Ok(config)
}

/// The datastores of `config` as a table, with the content trees that use
/// each.
pub fn datastore_table(config: &Value) -> String {
    let mut s = String::new();
    for ds in config["datastores"].as_array().into_iter().flatten() {
        let id = ds["id"].as_str().unwrap_or("");
        let trees: Vec<&str> = config["contentInfo"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|ct| {
                ct["dsId"].as_str() == Some(id)
                    || ct["dsIdsList"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|d| d.as_str() == Some(id))
            })
            .map(|ct| ct["displayName"].as_str().unwrap_or("?"))
            .collect();
        let credentials = if ds["cipherData"].is_object() {
            "sealed"
        } else if ds["apiKey"].is_string() || ds["password"].is_string() {
            "CLEAR"
        } else {
            "none"
        };
        let _ = writeln!(
            s,
            "{id}  {}  {}{}  credentials: {credentials}  used by: {}",
            ds["dType"].as_str().unwrap_or("DsUnknown"),
            ds["fqdn"].as_str().unwrap_or(""),
            ds["dpath"]
                .as_str()
                .map(|p| format!(" /{}", p.trim_start_matches('/')))
                .unwrap_or_default(),
            if trees.is_empty() {
                "-".to_owned()
            } else {
                trees.join(", ")
            }
        );
    }
    if s.is_empty() {
        s.push_str("no datastores\n");
    }
    s
}

/// A protobuf-JSON enum value without its prefix.
fn state(v: &Value) -> &str {
    v.as_str().unwrap_or("INVALID")
}

fn size(v: &Value) -> u64 {
    crate::admin::proto_json_u64(v)
}

fn error_line(err: &Value) -> String {
    err["description"]
        .as_str()
        .filter(|d| !d.is_empty())
        .map(|d| format!("\n    error: {d}"))
        .unwrap_or_default()
}

/// The device's content trees, volumes and blobs, from `GET .../info`
/// (the latest info per object), as `device show` prints them.
pub fn content_status(infos: &Value) -> String {
    let infos: Vec<&Value> = infos
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| &r["info"])
        .collect();
    let mut s = String::new();
    let trees: Vec<&Value> = infos
        .iter()
        .map(|i| &i["cinfo"])
        .filter(|c| c.is_object())
        .collect();
    if !trees.is_empty() {
        s.push_str("content trees:\n");
        for c in trees {
            let _ = writeln!(
                s,
                "  {}  {}  {}%  {} bytes  sha256 {}  uuid {}{}",
                c["displayName"].as_str().unwrap_or("?"),
                state(&c["state"]),
                c["progressPercentage"].as_u64().unwrap_or(0),
                size(&c["resources"]["curSizeBytes"]),
                c["sha256"]
                    .as_str()
                    .filter(|h| !h.is_empty())
                    .unwrap_or("-"),
                c["uuid"].as_str().unwrap_or(""),
                error_line(&c["err"]),
            );
        }
    }
    let volumes: Vec<&Value> = infos
        .iter()
        .map(|i| &i["vinfo"])
        .filter(|v| v.is_object())
        .collect();
    if !volumes.is_empty() {
        s.push_str("volumes:\n");
        for v in volumes {
            let _ = writeln!(
                s,
                "  {}  {}  {}%  {} of {} bytes  generation {}  refs {}  uuid {}{}",
                v["displayName"].as_str().unwrap_or("?"),
                state(&v["state"]),
                v["progressPercentage"].as_u64().unwrap_or(0),
                size(&v["resources"]["curSizeBytes"]),
                size(&v["resources"]["maxSizeBytes"]),
                size(&v["generationCount"]),
                v["usage"]["refCount"].as_u64().unwrap_or(0),
                v["uuid"].as_str().unwrap_or(""),
                error_line(&v["volumeErr"]),
            );
        }
    }
    let blobs: Vec<&Value> = infos
        .iter()
        .flat_map(|i| i["binfo"]["blob"].as_array().into_iter().flatten())
        .collect();
    if !blobs.is_empty() {
        s.push_str("blobs:\n");
        for b in blobs {
            let _ = writeln!(
                s,
                "  {}  {}  {}%  {} bytes  refs {}{}",
                b["sha256"].as_str().unwrap_or("?"),
                state(&b["state"]),
                b["progressPercentage"].as_u64().unwrap_or(0),
                size(&b["resources"]["curSizeBytes"]),
                b["usage"]["refCount"].as_u64().unwrap_or(0),
                error_line(&b["err"]),
            );
        }
    }
    s
}

impl Admin {
    pub(crate) async fn current_config(&mut self, uuid: &str) -> Result<Value, CtlError> {
        let v = self.get(&format!("/api/v1/devices/{uuid}/config")).await?;
        Ok(match &v["config"] {
            Value::Null => json!({}),
            config => config.clone(),
        })
    }

    pub(crate) async fn store_config(
        &mut self,
        uuid: &str,
        config: &Value,
    ) -> Result<Value, CtlError> {
        self.call(
            Method::PUT,
            &format!("/api/v1/devices/{uuid}/config"),
            config.to_string(),
        )
        .await
    }

    /// `datastore add UUID NAME ...`
    pub async fn datastore_add(
        &mut self,
        uuid: &str,
        spec: &DatastoreSpec,
    ) -> Result<String, CtlError> {
        let config = add_datastore(self.current_config(uuid).await?, spec).map_err(refused)?;
        let v = self.store_config(uuid, &config).await?;
        Ok(self.out(&v, |v| {
            format!(
                "datastore {} ({}) set; config version {} stored for {uuid}\n",
                spec.name,
                derived_or_given(&spec.name),
                v["version"]
            )
        }))
    }

    /// `datastore list UUID`
    pub async fn datastore_list(&mut self, uuid: &str) -> Result<String, CtlError> {
        let config = self.current_config(uuid).await?;
        let list = json!(config["datastores"].as_array().cloned().unwrap_or_default());
        Ok(self.out(&list, |_| datastore_table(&config)))
    }

    /// `datastore remove UUID NAME`
    pub async fn datastore_remove(&mut self, uuid: &str, name: &str) -> Result<String, CtlError> {
        let config = remove_datastore(self.current_config(uuid).await?, name).map_err(refused)?;
        let v = self.store_config(uuid, &config).await?;
        Ok(self.out(&v, |v| {
            format!(
                "datastore {name} removed; config version {} stored for {uuid}\n",
                v["version"]
            )
        }))
    }
}

fn derived_or_given(name: &str) -> String {
    if name.len() == 36 && name.matches('-').count() == 4 {
        name.to_owned()
    } else {
        derived_uuid("datastore", name)
    }
}

fn refused(e: DatastoreError) -> CtlError {
    CtlError::Refused {
        status: hyper::StatusCode::BAD_REQUEST,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: &str) -> DatastoreSpec {
        DatastoreSpec {
            name: name.into(),
            kind: kind.into(),
            fqdn: "files.example".into(),
            dpath: "images".into(),
            user: Some("ops".into()),
            password: Some("pw".into()),
        }
    }

    #[test]
    fn add_replace_list_and_remove() {
        let c = add_datastore(json!({}), &spec("files", "https")).unwrap();
        let c = add_datastore(c, &spec("hub", "registry")).unwrap();
        let c = add_datastore(
            c,
            &DatastoreSpec {
                fqdn: "other".into(),
                user: None,
                password: None,
                ..spec("files", "http")
            },
        )
        .unwrap();
        let list = c["datastores"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1]["dType"], "DsHttp");
        assert_eq!(list[1]["fqdn"], "other");
        assert_eq!(
            add_datastore(json!({}), &spec("x", "s3")),
            Err(DatastoreError::BadType("s3".into()))
        );
        // As stored: UUIDs, one credential sealed, used by a content tree.
        let hub = derived_uuid("datastore", "hub");
        let stored = json!({
            "datastores": [
                {"id": hub, "dType": "DsContainerRegistry", "fqdn": "docker://h:5000", "cipherData": {"cipherContextId": "c"}},
                {"id": derived_uuid("datastore", "files"), "dType": "DsHttps", "fqdn": "f", "dpath": "img"}
            ],
            "contentInfo": [{"displayName": "web", "dsIdsList": [hub]}]
        });
        let table = datastore_table(&stored);
        assert!(
            table.contains(&format!(
                "{hub}  DsContainerRegistry  docker://h:5000  credentials: sealed  used by: web"
            )),
            "{table}"
        );
        assert!(
            table.contains("f /img  credentials: none  used by: -"),
            "{table}"
        );
        assert_eq!(
            remove_datastore(stored.clone(), "hub"),
            Err(DatastoreError::InUse {
                name: "hub".into(),
                trees: "web".into()
            })
        );
        assert_eq!(
            remove_datastore(stored.clone(), "nope"),
            Err(DatastoreError::NotFound("nope".into()))
        );
        let left = remove_datastore(stored, "files").unwrap();
        assert_eq!(left["datastores"].as_array().unwrap().len(), 1);
        assert_eq!(datastore_table(&json!({})), "no datastores\n");
    }

    #[test]
    fn content_status_is_readable() {
        use eve_proto::info::*;
        let info = |content| {
            let msg = ZInfoMsg {
                info_content: Some(content),
                ..Default::default()
            };
            let json = controller::pbuf::decode_to_json(
                "org.lfedge.eve.info.ZInfoMsg",
                &prost::Message::encode_to_vec(&msg),
            )
            .unwrap();
            json!({"key": "k", "received_ms": 0, "info": serde_json::from_str::<Value>(&json).unwrap()})
        };
        let infos = json!([
            info(z_info_msg::InfoContent::Cinfo(ZInfoContentTree {
                uuid: "ct-1".into(),
                display_name: "disk".into(),
                sha256: "ab".repeat(32),
                state: ZSwState::DownloadStarted as i32,
                progress_percentage: 42,
                resources: Some(ContentResources {
                    cur_size_bytes: 4200
                }),
                ..Default::default()
            })),
            info(z_info_msg::InfoContent::Vinfo(ZInfoVolume {
                uuid: "vol-1".into(),
                display_name: "root".into(),
                state: ZSwState::Error as i32,
                volume_err: Some(ErrorInfo {
                    description: "sha256 mismatch: expected sha256:aa, got sha256:bb".into(),
                    ..Default::default()
                }),
                generation_count: 2,
                resources: Some(VolumeResources {
                    max_size_bytes: 1000,
                    cur_size_bytes: 0
                }),
                ..Default::default()
            })),
            info(z_info_msg::InfoContent::Binfo(ZInfoBlobList {
                blob: vec![ZInfoBlob {
                    sha256: "cd".repeat(32),
                    state: ZSwState::Verified as i32,
                    progress_percentage: 100,
                    resources: Some(ContentResources { cur_size_bytes: 5 }),
                    usage: Some(UsageInfo {
                        ref_count: 1,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            })),
        ]);
        let text = content_status(&infos);
        assert!(
            text.contains(&format!(
                "content trees:\n  disk  DOWNLOAD_STARTED  42%  4200 bytes  sha256 {}  uuid ct-1\n",
                "ab".repeat(32)
            )),
            "{text}"
        );
        assert!(text.contains("volumes:\n  root  ERROR  0%  0 of 1000 bytes  generation 2  refs 0  uuid vol-1\n    error: sha256 mismatch: expected sha256:aa, got sha256:bb\n"), "{text}");
        assert!(
            text.contains(&format!(
                "blobs:\n  {}  VERIFIED  100%  5 bytes  refs 1\n",
                "cd".repeat(32)
            )),
            "{text}"
        );
        assert_eq!(content_status(&json!([])), "");
    }
}
