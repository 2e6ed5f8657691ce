//! The store: named records over the two slots.

use alloc::string::String;
use alloc::vec::Vec;

use blockdev::BlockDevice;

use crate::StoreError;
use crate::queue::{BoundedQueue, QueueLimits};
use crate::records::{self, EMPTY_LEN, Records, record_len};
use crate::slot::{SlotLayout, is_newer};

/// Longest record name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Named byte records on a state volume, committed atomically.
///
/// Changes ([`put`](Store::put), [`remove`](Store::remove),
/// [`put_queue`](Store::put_queue)) are staged in memory and visible to
/// [`get`](Store::get) at once; [`commit`](Store::commit) makes all staged
/// changes durable together or, if power fails first, none of them.
#[derive(Debug)]
pub struct Store<D: BlockDevice> {
    dev: D,
    layout: SlotLayout,
    /// Slot holding the last committed snapshot.
    current_slot: usize,
    sequence: u64,
    records: Records,
    encoded_len: usize,
    dirty: bool,
}

impl<D: BlockDevice> Store<D> {
    /// Opens the store on `dev`, keeping the newest intact snapshot.
    ///
    /// A device with no intact snapshot (blank, foreign or destroyed
    /// contents) is formatted to an empty store. Only device errors fail.
    pub fn open(mut dev: D) -> Result<Self, StoreError> {
        let layout = SlotLayout::for_device(dev.block_count()).ok_or(StoreError::DeviceTooSmall)?;
        let mut newest: Option<(usize, u64, Records)> = None;
        for slot in 0..2 {
            let Some((sequence, payload)) = layout.read(&mut dev, slot)? else {
                continue;
            };
            let Some(records) = records::decode(&payload) else {
                continue;
            };
            if newest
                .as_ref()
                .is_none_or(|(_, best, _)| is_newer(sequence, *best))
            {
                newest = Some((slot, sequence, records));
            }
        }
        let mut store = Store {
            dev,
            layout,
            current_slot: 1,
            sequence: 0,
            records: Records::new(),
            encoded_len: EMPTY_LEN,
            dirty: false,
        };
        match newest {
            Some((slot, sequence, records)) => {
                store.current_slot = slot;
                store.sequence = sequence;
                store.encoded_len = EMPTY_LEN
                    + records
                        .iter()
                        .map(|(name, value)| record_len(name, value))
                        .sum::<usize>();
                store.records = records;
            }
            None => {
                store.dirty = true;
                store.commit()?;
            }
        }
        Ok(store)
    }

    /// The staged value of a record.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.records.get(name).map(Vec::as_slice)
    }

    /// Names of the staged records, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.records.keys().map(String::as_str)
    }

    /// Stages `name = value`. Refused, with nothing staged, if the snapshot
    /// would no longer fit a slot.
    pub fn put(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(StoreError::BadName);
        }
        let old_len = self
            .records
            .get(name)
            .map_or(0, |old| record_len(name, old));
        let new_len = self.encoded_len - old_len + record_len(name, value);
        if new_len > self.layout.capacity() {
            return Err(StoreError::CapacityExceeded);
        }
        self.records.insert(String::from(name), value.to_vec());
        self.encoded_len = new_len;
        self.dirty = true;
        Ok(())
    }

    /// Stages the removal of `name`; returns whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some(old) = self.records.remove(name) else {
            return false;
        };
        self.encoded_len -= record_len(name, &old);
        self.dirty = true;
        true
    }

    /// Makes every staged change durable at once. A no-op when nothing is
    /// staged. On error the previous commit is what a reopen finds, and the
    /// staged changes stay staged for a retry.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if !self.dirty {
            return Ok(());
        }
        let payload = records::encode(&self.records, self.encoded_len);
        let target = 1 - self.current_slot;
        let sequence = self.sequence.wrapping_add(1);
        self.layout
            .write(&mut self.dev, target, sequence, &payload)?;
        self.current_slot = target;
        self.sequence = sequence;
        self.dirty = false;
        Ok(())
    }

    /// [`put`](Store::put) then [`commit`](Store::commit).
    pub fn put_commit(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put(name, value)?;
        self.commit()
    }

    /// Whether changes are staged but not committed.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Sequence number of the last commit; grows by one per commit.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Largest snapshot, in bytes, the volume holds.
    pub fn capacity(&self) -> usize {
        self.layout.capacity()
    }

    /// Bytes the staged snapshot takes.
    pub fn used(&self) -> usize {
        self.encoded_len
    }

    /// The queue kept in record `name`, or an empty one if there is none.
    pub fn queue(&self, name: &str, limits: QueueLimits) -> Result<BoundedQueue, StoreError> {
        match self.get(name) {
            None => Ok(BoundedQueue::new(limits)),
            Some(bytes) => BoundedQueue::decode(bytes, limits).ok_or(StoreError::BadRecord),
        }
    }

    /// Stages `queue` as record `name`.
    pub fn put_queue(&mut self, name: &str, queue: &BoundedQueue) -> Result<(), StoreError> {
        self.put(name, &queue.encode())
    }

    /// The device, giving up the store (tests reopen it to simulate reboots).
    pub fn into_device(self) -> D {
        self.dev
    }
}
