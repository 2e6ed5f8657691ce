//! One record on the service's state volume (`state` in its manifest
//! entry), for a service whose memory is a single prost message that must
//! outlive its restarts and the node's reboots (baseosmgr's failed
//! versions, nodeagent's counters acted on). Each save is a statestore
//! commit, so a power cut leaves the old record or the new one.

use alloc::vec::Vec;
use core::marker::PhantomData;

use hal::block::VirtioBlock;
use prost::Message;
use statestore::Store;

/// A message kept in record `name` of the state volume, if the service
/// has one; without one (or with an unusable one) the memory lasts only
/// this run, and that is logged once.
pub struct SavedRecord<M> {
    store: Option<Store<VirtioBlock>>,
    name: &'static str,
    /// What the service loses at restart when a save fails, for the log.
    forgotten: &'static str,
    last: Vec<u8>,
    message: PhantomData<M>,
}

impl<M: Message + Default> SavedRecord<M> {
    /// Opens the state volume and reads what the previous run saved in
    /// record `name`; an unreadable record counts as none. `forgotten`
    /// says what the service would forget at restart, for the log.
    pub fn open(name: &'static str, forgotten: &'static str) -> (SavedRecord<M>, M) {
        let store = match hal::block::open("state") {
            Ok(device) => match Store::open(device) {
                Ok(store) => Some(store),
                Err(e) => {
                    log::error!("state volume unusable: {e}; {forgotten} are forgotten at restart");
                    None
                }
            },
            Err(_) => {
                log::warn!("no state volume: {forgotten} are forgotten at restart");
                None
            }
        };
        let last = store
            .as_ref()
            .and_then(|s| s.get(name))
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let value = M::decode(last.as_slice()).unwrap_or_else(|e| {
            log::warn!("the saved {name} record is unreadable ({e}); starting afresh");
            M::default()
        });
        let saved = SavedRecord {
            store,
            name,
            forgotten,
            last,
            message: PhantomData,
        };
        (saved, value)
    }

    /// Saves `value` if it differs from what was saved last.
    pub fn save(&mut self, value: &M) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let bytes = value.encode_to_vec();
        if bytes == self.last {
            return;
        }
        match store.put_commit(self.name, &bytes) {
            Ok(()) => self.last = bytes,
            Err(e) => log::warn!(
                "saving the {name} record ({}): {e}",
                self.forgotten,
                name = self.name
            ),
        }
    }
}
