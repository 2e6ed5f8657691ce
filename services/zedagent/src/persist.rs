//! The agent's [`Persist`] on the state volume: each write is a statestore
//! commit (new snapshot in the other slot, checksum, flush), so power loss
//! leaves either the old or the new record, never a mix.

use alloc::vec::Vec;

use blockdev::BlockDevice;
use eveagent::io::{Persist, PersistError};
use statestore::{Store, StoreError};

pub struct StateVolume<D: BlockDevice> {
    store: Store<D>,
}

impl<D: BlockDevice> StateVolume<D> {
    pub fn open(dev: D) -> Result<Self, StoreError> {
        Ok(Self {
            store: Store::open(dev)?,
        })
    }

    /// Bytes the records take and the volume holds.
    pub fn usage(&self) -> (usize, usize) {
        (self.store.used(), self.store.capacity())
    }
}

fn write_error(e: StoreError) -> PersistError {
    match e {
        StoreError::CapacityExceeded => PersistError::Full,
        _ => PersistError::Write,
    }
}

impl<D: BlockDevice> Persist for StateVolume<D> {
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, PersistError> {
        Ok(self.store.get(name).map(<[u8]>::to_vec))
    }

    fn write(&mut self, name: &str, data: &[u8]) -> Result<(), PersistError> {
        self.store.put_commit(name, data).map_err(write_error)
    }

    fn remove(&mut self, name: &str) -> Result<(), PersistError> {
        if self.store.remove(name) {
            self.store.commit().map_err(write_error)?;
        }
        Ok(())
    }
}
