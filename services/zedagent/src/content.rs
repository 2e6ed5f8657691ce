//! The config's content as bus tables (datastores with their credentials
//! opened, content trees, volumes, content settings) and then its app
//! instances (`app-instance-config`, after the volumes they name), and
//! volumemgr's reports handed to the agent for the controller.

use alloc::collections::BTreeMap;
use alloc::string::String;

use eveagent::{Agent, ContentTables};

use crate::baseos::BaseOsPublisher;
use runtime::service;
use topics::{
    AppInstanceConfig, ContentSettings, ContentTreeConfig, DatastoreConfig, Topic, VolumeConfig,
};

/// The tables as last published.
#[derive(Default)]
pub struct ContentPublisher {
    datastores: BTreeMap<String, <DatastoreConfig as Topic>::Value>,
    trees: BTreeMap<String, <ContentTreeConfig as Topic>::Value>,
    volumes: BTreeMap<String, <VolumeConfig as Topic>::Value>,
    settings: Option<<ContentSettings as Topic>::Value>,
    apps: BTreeMap<String, <AppInstanceConfig as Topic>::Value>,
    synchronized: bool,
    /// The base OS, whose image is one of the content trees.
    baseos: BaseOsPublisher,
}

impl ContentPublisher {
    /// Publishes the accepted config's content; the first time, declares
    /// each table complete (items an earlier boot published and this
    /// config lacks go).
    pub fn publish(&mut self, agent: &Agent) {
        let Some(tables) = agent.content_tables() else {
            return;
        };
        self.baseos
            .publish(agent.config().and_then(|c| c.baseos.as_ref()));
        let ContentTables {
            datastores,
            trees,
            volumes,
            settings,
        } = tables;
        for (id, ds) in &datastores {
            if !ds.credentials_error.is_empty() {
                log::warn!(
                    "datastore {id}: credentials not opened: {}",
                    ds.credentials_error
                );
            }
        }
        service::sync_table::<DatastoreConfig>(&mut self.datastores, &datastores);
        service::sync_table::<ContentTreeConfig>(&mut self.trees, &trees);
        service::sync_table::<VolumeConfig>(&mut self.volumes, &volumes);
        if self.settings != Some(settings) {
            match service::publish::<ContentSettings>(ContentSettings::KEY, &settings) {
                Ok(()) => self.settings = Some(settings),
                Err(e) => log::warn!("publishing the content settings: {e}"),
            }
        }
        if let Some(table) = agent.app_table() {
            for key in &table.duplicates {
                log::warn!("app {key}: another app of the config has its UUID; left out");
            }
            for (key, why) in &table.unopened_user_data {
                log::warn!(
                    "app {key}: sealed user data not opened ({why}); using its clear userData"
                );
            }
            service::sync_table::<AppInstanceConfig>(&mut self.apps, &table.apps);
        }
        if !self.synchronized {
            self.synchronized = true;
            for result in [
                service::synchronized::<DatastoreConfig>(),
                service::synchronized::<ContentTreeConfig>(),
                service::synchronized::<VolumeConfig>(),
                service::synchronized::<ContentSettings>(),
                service::synchronized::<AppInstanceConfig>(),
            ] {
                if let Err(e) = result {
                    log::warn!("declaring a content table synchronized: {e}");
                }
            }
        }
    }
}
