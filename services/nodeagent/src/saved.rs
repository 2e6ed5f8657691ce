//! The counters acted on ([`nodepolicy::Memory`]) on nodeagent's state
//! volume: a command is acted on once, across its restarts and the
//! node's reboots. Each save is a statestore commit, so a power cut
//! leaves the old memory or the new one.

use alloc::vec::Vec;

use hal::block::VirtioBlock;
use nodepolicy::Memory;
use prost::Message;
use statestore::Store;

/// The record holding the memory.
const RECORD: &str = "commands";

/// The state volume, if the service has one.
pub struct Saved {
    store: Option<Store<VirtioBlock>>,
    last: Vec<u8>,
}

impl Saved {
    /// Opens the state volume and reads what the previous run saved (an
    /// unreadable record counts as none: the next counters seen are then
    /// only remembered, never acted on).
    pub fn open() -> (Saved, Memory) {
        let store = match hal::block::open("state") {
            Ok(device) => match Store::open(device) {
                Ok(store) => Some(store),
                Err(e) => {
                    log::error!(
                        "state volume unusable: {e}; commands acted on are forgotten at restart"
                    );
                    None
                }
            },
            Err(_) => {
                log::warn!("no state volume: commands acted on are forgotten at restart");
                None
            }
        };
        let last = store
            .as_ref()
            .and_then(|s| s.get(RECORD))
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let memory = Memory::decode(last.as_slice()).unwrap_or_else(|e| {
            log::warn!("the saved memory is unreadable ({e}); starting afresh");
            Memory::default()
        });
        (Saved { store, last }, memory)
    }

    /// Saves `memory` if it differs from what was saved last.
    pub fn save(&mut self, memory: &Memory) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let bytes = memory.encode_to_vec();
        if bytes == self.last {
            return;
        }
        match store.put_commit(RECORD, &bytes) {
            Ok(()) => self.last = bytes,
            Err(e) => log::warn!("saving the commands acted on: {e}"),
        }
    }
}
