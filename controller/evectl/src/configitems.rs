//! `evectl device config-item set NAME VALUE`: one of the controller's
//! config items (`EdgeDevConfig.configItems`, EVE's global settings such as
//! `timer.update.fallback.no.network`) set in the device's current config,
//! the other items and the rest of the config kept. The node validates the
//! value (EVE's ranges), so any text is passed as given.

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::admin::{Admin, CtlError};

/// Why an item was refused before reaching the controller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigItemError {
    /// An item's name is EVE's dotted key: not empty, no spaces.
    #[error("config item name {0:?}: expected a key such as timer.config.interval")]
    BadName(String),
}

/// `config` with item `name` set to `value`: replaced where the config
/// has it (its first entry; later duplicates go, as the node would read
/// only one), appended otherwise.
pub fn set_item(mut config: Value, name: &str, value: &str) -> Result<Value, ConfigItemError> {
    let name_ok = !name.is_empty()
        && name.len() <= 256
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'"');
    if !name_ok {
        return Err(ConfigItemError::BadName(name.to_owned()));
    }
    let item = json!({"key": name, "value": value});
    let mut items: Vec<Value> = config["configItems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match items.iter().position(|i| i["key"] == name) {
        Some(first) => {
            items[first] = item;
            let mut index = 0;
            items.retain(|i| {
                let keep = index <= first || i["key"] != name;
                index += 1;
                keep
            });
        }
        None => items.push(item),
    }
    config["configItems"] = Value::Array(items);
    Ok(config)
}

impl Admin {
    /// `device config-item set DEVICE NAME VALUE`
    pub async fn device_config_item_set(
        &mut self,
        device: &str,
        name: &str,
        value: &str,
    ) -> Result<String, CtlError> {
        let config = set_item(self.current_config(device).await?, name, value).map_err(|e| {
            CtlError::Refused {
                status: StatusCode::BAD_REQUEST,
                message: e.to_string(),
            }
        })?;
        let v = self.store_config(device, &config).await?;
        let v = json!({"key": name, "value": value, "version": v["version"]});
        Ok(self.out(&v, |v| {
            format!(
                "config item {name} set to {value:?}; config version {} stored for {device}\n",
                v["version"]
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_is_added_beside_the_rest_of_the_config() {
        let config = json!({"baseos": {"baseOsVersion": "2.0"}});
        let set = set_item(config, "timer.update.fallback.no.network", "60").unwrap();
        assert_eq!(
            set,
            json!({
                "baseos": {"baseOsVersion": "2.0"},
                "configItems": [{"key": "timer.update.fallback.no.network", "value": "60"}],
            })
        );
    }

    #[test]
    fn an_item_set_again_replaces_its_value_and_keeps_the_others() {
        let config = json!({"configItems": [
            {"key": "timer.config.interval", "value": "5"},
            {"key": "timer.test.baseimage.update", "value": "600"},
            {"key": "timer.config.interval", "value": "7"},
        ]});
        let set = set_item(config, "timer.config.interval", "10").unwrap();
        assert_eq!(
            set["configItems"],
            json!([
                {"key": "timer.config.interval", "value": "10"},
                {"key": "timer.test.baseimage.update", "value": "600"},
            ])
        );
    }

    #[test]
    fn a_name_that_is_no_key_is_refused() {
        for name in ["", "timer config", "a\"b", "tab\t"] {
            assert_eq!(
                set_item(json!({}), name, "1"),
                Err(ConfigItemError::BadName(name.to_owned()))
            );
        }
    }
}
