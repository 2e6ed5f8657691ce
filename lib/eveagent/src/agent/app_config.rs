//! The accepted config's app instances as the `app-instance-config` table
//! zedagent publishes for zedmanager, keyed by each app's UUID in
//! canonical lower case (the form every app table of the bus uses).
//!
//! zedagent does not judge an app's config: zedmanager does, and reports a
//! bad one as that app's error to the controller. The one thing a table
//! cannot hold is two apps under one key, so a later app repeating an
//! earlier one's UUID is left out and named, for zedagent to log.
//!
//! Sealed user data (`cipherData`) is the exception to not judging: only
//! zedagent holds the device's keys, so it opens the block and hands the
//! app on with the opened `protectedUserData` (base64, as `userData`) in
//! `userData`. A block it cannot open falls back to the clear `userData`
//! (often none), as EVE's domainmgr does, and is named for zedagent to log.

use alloc::collections::BTreeMap;
use alloc::collections::btree_map::Entry;
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::config::{AppInstanceConfig, EdgeDevConfig};

use crate::identity::{canonical_uuid, valid_uuid};

use super::Agent;

/// The config's apps as a table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppTable {
    /// By UUID (canonical when the app's UUID is one; as given otherwise,
    /// so zedmanager reports it).
    pub apps: BTreeMap<String, AppInstanceConfig>,
    /// Keys of apps left out: an earlier app of the config had the UUID.
    pub duplicates: Vec<String>,
    /// Apps whose sealed user data could not be opened, with why; they
    /// run with their clear `userData`.
    pub unopened_user_data: Vec<(String, String)>,
}

/// The table of `config`'s apps.
pub fn app_table(config: &EdgeDevConfig) -> AppTable {
    let mut table = AppTable::default();
    for app in &config.apps {
        let uuid = app
            .uuidandversion
            .as_ref()
            .map_or("", |id| id.uuid.as_str());
        let key = if valid_uuid(uuid) {
            canonical_uuid(uuid)
        } else {
            String::from(uuid)
        };
        match table.apps.entry(key) {
            Entry::Occupied(taken) => table.duplicates.push(taken.key().clone()),
            Entry::Vacant(slot) => {
                slot.insert(app.clone());
            }
        }
    }
    table
}

impl Agent {
    /// The accepted config's apps as a table, sealed user data opened.
    pub fn app_table(&self) -> Option<AppTable> {
        let config = self.config()?;
        let mut table = app_table(config);
        for (key, app) in &mut table.apps {
            let Some(block) = app.cipher_data.take() else {
                continue;
            };
            if block.cipher_data.is_empty() && block.cipher_context_id.is_empty() {
                continue;
            }
            match self.open_secret(config, &block) {
                Ok(secret) => app.user_data = secret.protected_user_data,
                Err(e) => table.unopened_user_data.push((key.clone(), e)),
            }
        }
        Some(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eve_proto::config::UuiDandVersion;

    fn app(uuid: &str, name: &str) -> AppInstanceConfig {
        AppInstanceConfig {
            uuidandversion: Some(UuiDandVersion {
                uuid: uuid.into(),
                version: "1".into(),
            }),
            displayname: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn apps_are_keyed_by_canonical_uuid_and_a_repeated_uuid_is_left_out() {
        let config = EdgeDevConfig {
            apps: alloc::vec![
                app("6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "first"),
                app("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "again"),
                app("not a uuid", "odd"),
                app("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "second"),
            ],
            ..Default::default()
        };
        let table = app_table(&config);
        let names: Vec<(&str, &str)> = table
            .apps
            .iter()
            .map(|(k, a)| (k.as_str(), a.displayname.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "first"),
                ("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "second"),
                ("not a uuid", "odd"),
            ]
        );
        assert_eq!(table.duplicates, ["6ba7b810-9dad-11d1-80b4-00c04fd430c8"]);
        assert_eq!(app_table(&EdgeDevConfig::default()), AppTable::default());
    }
}
