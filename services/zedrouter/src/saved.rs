//! The engine's saved state on zedrouter's state volume: address
//! reservations, flows with their NAT bindings and verdicts, learned
//! `host` addresses (`appnet::Engine::export_state`), so a restarted
//! zedrouter gives every app its old address and carries its connections
//! on. Each save is a statestore commit: a power cut leaves the old state
//! or the new one.

use alloc::vec::Vec;

use hal::block::VirtioBlock;
use statestore::Store;

/// The record holding the engine's state.
const RECORD: &str = "appnet";

/// The state volume, if the service has one.
pub struct Saved {
    store: Option<Store<VirtioBlock>>,
    last: Vec<u8>,
}

impl Saved {
    /// Opens the state volume and reads what the previous run saved.
    pub fn open() -> (Saved, Option<Vec<u8>>) {
        let store = match hal::block::open("state") {
            Ok(device) => match Store::open(device) {
                Ok(store) => Some(store),
                Err(e) => {
                    log::error!("state volume unusable: {e}; nothing survives a restart");
                    None
                }
            },
            Err(_) => {
                log::warn!("no state volume: nothing survives a restart");
                None
            }
        };
        let previous = store
            .as_ref()
            .and_then(|s| s.get(RECORD))
            .map(<[u8]>::to_vec);
        let last = previous.clone().unwrap_or_default();
        (Saved { store, last }, previous)
    }

    /// Saves `state` if it differs from what was saved last.
    pub fn save(&mut self, state: Vec<u8>) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if state == self.last {
            return;
        }
        match store.put_commit(RECORD, &state) {
            Ok(()) => self.last = state,
            Err(e) => log::warn!("saving the engine's state: {e}"),
        }
    }
}
