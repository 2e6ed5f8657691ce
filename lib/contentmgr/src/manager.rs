//! The manager: inputs (config tables, the downloader's progress), the
//! memory volumemgr keeps between reconciliations, and what it publishes.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::config::{ContentTree, Volume};
use hostops::blobs::BlobInfo;
use hostops::volumes::VolumeInfo;
use ocidist::Platform;
use topics::DomainState;
use topics::content::{
    Blobs, ContentTreeState, DownloadProgress, DownloadRequest, Settings, Usage, VolumeState,
};

use crate::domains::DomainDisks;
use crate::trees::TreeRun;
use crate::{Host, HostError};

/// Seconds between garbage collections: `timer.gc.vdisk`, within these.
const GC_EVERY_SECS: (u64, u64) = (10, 60);

/// What the host has, read at the start of a reconciliation.
pub(crate) struct View {
    pub blobs: BTreeMap<String, BlobInfo>,
    pub volumes: BTreeMap<String, VolumeInfo>,
}

/// What a reconciliation left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// Something is moving (downloads, builds, resolutions): reconcile
    /// again soon rather than only on the next change.
    pub busy: bool,
}

/// volumemgr's state.
pub struct Manager {
    pub(crate) platform: Platform,
    pub(crate) tree_config: BTreeMap<String, ContentTree>,
    pub(crate) volume_config: BTreeMap<String, Volume>,
    pub(crate) settings: Settings,
    trees_synced: bool,
    volumes_synced: bool,
    /// zedagent publishes its content settings after the content tables:
    /// once they are here, the tables are the config's, not what a bus
    /// restarted empty holds.
    settings_seen: bool,
    pub(crate) downloads: BTreeMap<String, DownloadProgress>,
    pub(crate) runs: BTreeMap<String, TreeRun>,
    /// The attempt number of each download key.
    pub(crate) attempts: BTreeMap<String, u32>,
    /// When a download's current attempt was seen failed (Unix seconds).
    pub(crate) failed_at: BTreeMap<String, u64>,
    /// When a volume generation's build was seen failed.
    pub(crate) build_failed_at: BTreeMap<String, u64>,
    /// The host volumes domains run with: never deleted.
    pub(crate) domains: DomainDisks,
    last_gc: Option<u64>,
    pub(crate) requests: BTreeMap<String, DownloadRequest>,
    pub(crate) tree_states: BTreeMap<String, ContentTreeState>,
    pub(crate) volume_states: BTreeMap<String, VolumeState>,
    pub(crate) blobs: Blobs,
    pub(crate) usage: Usage,
}

impl Manager {
    /// A manager for a node whose guests are `arch` (`x86_64`, `aarch64`):
    /// OCI indexes are resolved to that platform's image.
    pub fn new(arch: &str) -> Manager {
        Manager {
            platform: Platform::for_arch(arch),
            tree_config: BTreeMap::new(),
            volume_config: BTreeMap::new(),
            settings: Settings::DEFAULT,
            trees_synced: false,
            volumes_synced: false,
            settings_seen: false,
            downloads: BTreeMap::new(),
            runs: BTreeMap::new(),
            attempts: BTreeMap::new(),
            failed_at: BTreeMap::new(),
            build_failed_at: BTreeMap::new(),
            domains: DomainDisks::default(),
            last_gc: None,
            requests: BTreeMap::new(),
            tree_states: BTreeMap::new(),
            volume_states: BTreeMap::new(),
            blobs: Blobs::default(),
            usage: Usage::default(),
        }
    }

    /// A content tree of the config changed (`None`: deleted).
    pub fn set_tree(&mut self, uuid: &str, tree: Option<ContentTree>) {
        match tree {
            Some(tree) => {
                self.tree_config.insert(String::from(uuid), tree);
            }
            None => {
                self.tree_config.remove(uuid);
            }
        }
    }

    /// A volume of the config changed (`None`: deleted).
    pub fn set_volume(&mut self, uuid: &str, volume: Option<Volume>) {
        match volume {
            Some(volume) => {
                self.volume_config.insert(String::from(uuid), volume);
            }
            None => {
                self.volume_config.remove(uuid);
            }
        }
    }

    /// The content tree table is complete: what it lacks is deleted.
    pub fn trees_synchronized(&mut self) {
        self.trees_synced = true;
    }

    /// The volume table is complete.
    pub fn volumes_synchronized(&mut self) {
        self.volumes_synced = true;
    }

    /// domainmgr's state of a domain changed (`None`: gone): the host
    /// volumes it lists (`disks`) are kept while it lists them.
    pub fn set_domain(&mut self, key: &str, state: Option<DomainState>) {
        self.domains.set(key, state);
    }

    /// The `domain-status` table is complete: a host volume no domain
    /// lists may go. Until then no host volume is deleted (a volumemgr
    /// that started again does not know which ones domains run with);
    /// volumes are still built and reported.
    pub fn domains_synchronized(&mut self) {
        self.domains.synchronized();
    }

    /// Whether the config is known: both tables complete and the content
    /// settings, which zedagent publishes after them, arrived. Before,
    /// nothing is done and there is nothing to publish.
    pub fn ready(&self) -> bool {
        self.trees_synced && self.volumes_synced && self.settings_seen
    }

    /// The config's content settings (zedagent publishes them after the
    /// content tables).
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
        self.settings_seen = true;
    }

    /// The downloader's progress on a request changed (`None`: gone).
    pub fn set_download(&mut self, key: &str, progress: Option<DownloadProgress>) {
        match progress {
            Some(p) => {
                self.downloads.insert(String::from(key), p);
            }
            None => {
                self.downloads.remove(key);
            }
        }
    }

    /// The downloads to ask the downloader for, by key.
    pub fn requests(&self) -> &BTreeMap<String, DownloadRequest> {
        &self.requests
    }

    /// Each content tree's state, by UUID.
    pub fn tree_states(&self) -> &BTreeMap<String, ContentTreeState> {
        &self.tree_states
    }

    /// Each volume's state, by UUID.
    pub fn volume_states(&self) -> &BTreeMap<String, VolumeState> {
        &self.volume_states
    }

    /// The blob store's blobs.
    pub fn blob_report(&self) -> &Blobs {
        &self.blobs
    }

    /// Disk use by content.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Brings the host towards the config; `now` is Unix seconds. Nothing
    /// is done before the config is known ([`Manager::ready`]), so a node
    /// whose bus starts empty never looks like a config without content
    /// and loses what it holds.
    pub fn reconcile(&mut self, host: &mut dyn Host, now: u64) -> Result<Reconciled, HostError> {
        if !self.ready() {
            return Ok(Reconciled { busy: false });
        }
        let list = host.blobs()?;
        let mut view = View {
            blobs: list
                .blobs
                .iter()
                .map(|b| (b.digest.clone(), b.clone()))
                .collect(),
            volumes: host
                .volumes()?
                .into_iter()
                .map(|v| (v.name.clone(), v))
                .collect(),
        };
        let mut busy = false;
        let mut requests = BTreeMap::new();
        let mut states = BTreeMap::new();
        let uuids: Vec<String> = self.tree_config.keys().cloned().collect();
        for uuid in uuids {
            let (state, moving) = self.reconcile_tree(&uuid, host, &mut view, &mut requests, now);
            busy |= moving;
            states.insert(uuid, state);
        }
        self.runs.retain(|uuid, _| states.contains_key(uuid));
        self.drop_stale_holders(host, &view)?;
        self.tree_states = states;
        let keys: BTreeSet<&String> = requests.keys().collect();
        self.attempts.retain(|k, _| keys.contains(k));
        self.failed_at.retain(|k, _| keys.contains(k));
        self.requests = requests;
        busy |= self.reconcile_volumes(host, &mut view, now);
        let every = self
            .settings
            .gc_vdisk_secs
            .clamp(GC_EVERY_SECS.0, GC_EVERY_SECS.1);
        if self.last_gc.is_none_or(|t| now >= t + every) {
            self.last_gc = Some(now);
            let gone = host.collect_garbage(self.settings.gc_vdisk_secs)?;
            if !gone.is_empty() {
                log::info!("collected {} unreferenced blobs", gone.len());
                view.blobs.retain(|d, _| !gone.contains(d));
            }
        }
        self.report(&view, list.usage.unwrap_or_default());
        Ok(Reconciled { busy })
    }

    /// Drops the references of trees no longer in the config (deleted
    /// while volumemgr ran, or before it started again).
    fn drop_stale_holders(&self, host: &mut dyn Host, view: &View) -> Result<(), HostError> {
        let mut stale = BTreeSet::new();
        for blob in view.blobs.values() {
            for holder in &blob.holders {
                let Some(own) = holder.strip_prefix("volumemgr/") else {
                    continue;
                };
                let tree = own
                    .strip_prefix(crate::trees::PARTS_HOLDER)
                    .or_else(|| own.strip_prefix(crate::trees::ROOT_HOLDER));
                if tree.is_some_and(|t| !self.tree_config.contains_key(t)) {
                    stale.insert(String::from(own));
                }
            }
        }
        for holder in stale {
            log::info!("dropping the references of {holder}: its content tree is gone");
            host.reassert(&holder, &[])?;
        }
        Ok(())
    }
}
