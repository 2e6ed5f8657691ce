//! What volumemgr has published: each table is brought to the manager's
//! view by publishing what changed and withdrawing what went; once the
//! first complete view is out, each table is declared synchronized, so
//! items a previous boot left and this one does not have disappear.

use alloc::collections::BTreeMap;
use alloc::string::String;

use contentmgr::Manager;
use runtime::service;
use topics::{BlobStatus, ContentTreeStatus, ContentUsage, DownloadRequests, Topic, VolumeStatus};

/// The tables as last published.
#[derive(Default)]
pub struct Published {
    requests: BTreeMap<String, <DownloadRequests as Topic>::Value>,
    trees: BTreeMap<String, <ContentTreeStatus as Topic>::Value>,
    volumes: BTreeMap<String, <VolumeStatus as Topic>::Value>,
    blobs: Option<<BlobStatus as Topic>::Value>,
    usage: Option<<ContentUsage as Topic>::Value>,
    synchronized: bool,
}

fn sync_item<T: Topic>(old: &mut Option<T::Value>, key: &str, new: &T::Value)
where
    T::Value: Clone + PartialEq,
{
    if old.as_ref() != Some(new) {
        match service::publish::<T>(key, new) {
            Ok(()) => *old = Some(new.clone()),
            Err(e) => log::warn!("publishing {}: {e}", T::NAME),
        }
    }
}

impl Published {
    pub fn update(&mut self, manager: &Manager) {
        service::sync_table::<DownloadRequests>(&mut self.requests, manager.requests());
        service::sync_table::<ContentTreeStatus>(&mut self.trees, manager.tree_states());
        service::sync_table::<VolumeStatus>(&mut self.volumes, manager.volume_states());
        sync_item::<BlobStatus>(&mut self.blobs, BlobStatus::KEY, manager.blob_report());
        sync_item::<ContentUsage>(&mut self.usage, ContentUsage::KEY, manager.usage());
        if !self.synchronized {
            self.synchronized = true;
            for result in [
                service::synchronized::<DownloadRequests>(),
                service::synchronized::<ContentTreeStatus>(),
                service::synchronized::<VolumeStatus>(),
                service::synchronized::<BlobStatus>(),
                service::synchronized::<ContentUsage>(),
            ] {
                if let Err(e) = result {
                    log::warn!("declaring a table synchronized: {e}");
                }
            }
        }
    }
}
