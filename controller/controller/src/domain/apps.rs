//! An operator's changes to the apps of one device, made by rewriting its
//! config description: what the console's deploy, stop and start buttons
//! do. Everything else in the config is kept as it is.

use eve_proto::config::EdgeDevConfig;
use serde_json::{Value, json};

use super::{Controller, ControllerError};
use crate::pbuf;

/// An app to deploy.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NewApp {
    /// Display name; the app's UUID is derived from it.
    pub name: String,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
}

impl Controller {
    /// Adds (or replaces) the app `app.name` on `uuid`, activated.
    pub fn deploy_app(&self, uuid: &str, app: &NewApp) -> Result<i64, ControllerError> {
        if app.name.trim().is_empty() {
            return Err(ControllerError::Invalid("an app needs a name".into()));
        }
        self.edit_apps(uuid, |apps| {
            apps.retain(|a| a["displayname"] != app.name.as_str());
            apps.push(json!({
                "displayname": app.name,
                "activate": true,
                "fixedresources": {
                    "memory": u64::from(app.memory_mib) * 1024,
                    "maxmem": u64::from(app.memory_mib) * 1024,
                    "vcpus": app.vcpus.max(1),
                },
            }));
            Ok(())
        })
    }

    /// Starts (`active`) or stops the app named `name` on `uuid`.
    pub fn set_app_active(
        &self,
        uuid: &str,
        name: &str,
        active: bool,
    ) -> Result<i64, ControllerError> {
        self.edit_apps(uuid, |apps| {
            let app = apps
                .iter_mut()
                .find(|a| a["displayname"] == name)
                .ok_or_else(|| ControllerError::Invalid(format!("no app {name:?} on {uuid}")))?;
            app["activate"] = Value::Bool(active);
            Ok(())
        })
    }

    fn edit_apps(
        &self,
        uuid: &str,
        edit: impl FnOnce(&mut Vec<Value>) -> Result<(), ControllerError>,
    ) -> Result<i64, ControllerError> {
        let current = self
            .current_config(uuid)?
            .ok_or_else(|| ControllerError::NoDevice(uuid.into()))?;
        let mut description = describe(&current, uuid)?;
        let mut apps = match description["apps"].take() {
            Value::Array(apps) => apps,
            _ => Vec::new(),
        };
        edit(&mut apps)?;
        description["apps"] = Value::Array(apps);
        let (version, _) = self.set_config(uuid, &description.to_string())?;
        Ok(version)
    }
}

/// A stored config as the description it could have been built from.
fn describe(config: &EdgeDevConfig, uuid: &str) -> Result<Value, ControllerError> {
    let bytes = eve_proto::Message::encode_to_vec(config);
    let text = pbuf::decode_to_json("org.lfedge.eve.config.EdgeDevConfig", &bytes)
        .map_err(|_| ControllerError::CorruptConfig(uuid.into()))?;
    serde_json::from_str(&text).map_err(|_| ControllerError::CorruptConfig(uuid.into()))
}
