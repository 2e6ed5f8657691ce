//! The engine's saved state on zedrouter's state volume: address
//! reservations, flows with their NAT bindings and verdicts, learned
//! `host` addresses (`appnet::Engine::export_state`), so a restarted
//! zedrouter gives every app its old address and carries its connections
//! on. Each save is a statestore commit: a power cut leaves the old state
//! or the new one.
//!
//! A save stops the router while it runs, and the state grows by about
//! 118 bytes a flow up to `appnet::MAX_SAVED_FLOWS` flows (about 360 KB,
//! within the 1 MiB volume's two snapshot slots), so the periodic saves
//! are spaced: after one that
//! took `t`, the next waits at least `SPACING` times `t`, which keeps them
//! under one twentieth of zedrouter's time however many flows there are.
//! Saves after a config change are not spaced: the addresses they hold
//! must survive a restart. A slow save is logged with its size.

use alloc::vec::Vec;
use core::time::Duration;

use hal::clock::Instant;

use hal::block::VirtioBlock;
use statestore::Store;

/// The record holding the engine's state.
const RECORD: &str = "appnet";

/// A save that took `t` is followed by at least `SPACING * t` without one.
const SPACING: u32 = 20;
/// Saves slower than this are logged.
const SLOW: Duration = Duration::from_millis(100);

/// The state volume, if the service has one.
pub struct Saved {
    store: Option<Store<VirtioBlock>>,
    last: Vec<u8>,
    /// No save before this (see `SPACING`).
    next_allowed: Option<Instant>,
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
        (
            Saved {
                store,
                last,
                next_allowed: None,
            },
            previous,
        )
    }

    /// The periodic save: as [`Saved::save`], but not at all (nor the
    /// export) too soon after the last save.
    pub fn save_spaced(&mut self, export: impl FnOnce() -> Vec<u8>) {
        if self.next_allowed.is_some_and(|at| Instant::now() < at) {
            return;
        }
        self.save(export);
    }

    /// Saves the state `export` gives if it differs from what was saved
    /// last: after a change of config, whose addresses must survive a
    /// restart, whenever the last save was.
    pub fn save(&mut self, export: impl FnOnce() -> Vec<u8>) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let state = export();
        if state == self.last {
            return;
        }
        let started = Instant::now();
        let result = store.put_commit(RECORD, &state);
        let took = started.elapsed();
        self.next_allowed = Some(Instant::now().saturating_add(took.saturating_mul(SPACING)));
        if took > SLOW {
            log::warn!(
                "saving the engine's state ({} bytes) took {} ms: the next save waits {} ms",
                state.len(),
                took.as_millis(),
                took.saturating_mul(SPACING).as_millis()
            );
        }
        match result {
            Ok(()) => self.last = state,
            Err(e) => log::warn!("saving the engine's state: {e}"),
        }
    }
}
