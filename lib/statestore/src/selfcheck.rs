//! A store self-check for power-cut tests that run outside the host tests
//! (a QEMU guest killed mid-commit, again and again).
//!
//! The guest calls [`advance`] in a loop and reports each counter it
//! committed; after a kill it reboots and calls [`read`], which must return
//! the last reported counter or the one after it (the commit in flight). The
//! counter is written twice, into two records spanning several blocks each
//! and filled with a pattern derived from it, so a snapshot mixing two
//! commits would be caught here even if it got past the store's checksum.

use alloc::vec::Vec;

use blockdev::BlockDevice;

use crate::{Store, StoreError};

/// Records the self-check owns.
pub const RECORDS: [&str; 2] = ["selfcheck.a", "selfcheck.b"];

/// Bytes of each self-check record: enough to span several blocks.
const RECORD_LEN: usize = 3000;

/// Why the self-check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfCheckError {
    /// The store failed.
    Store(StoreError),
    /// The records are not what one commit of [`advance`] wrote.
    Inconsistent,
}

impl From<StoreError> for SelfCheckError {
    fn from(error: StoreError) -> Self {
        SelfCheckError::Store(error)
    }
}

/// The record contents for `counter`: the counter, then a pattern from it.
fn record(counter: u64, which: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_LEN);
    out.extend_from_slice(&counter.to_le_bytes());
    let mut state = counter ^ 0x9e37_79b9_7f4a_7c15 ^ u64::from(which);
    while out.len() < RECORD_LEN {
        // xorshift64: any fixed function of the counter would do.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push(state as u8);
    }
    out
}

/// The committed counter: `None` before the first [`advance`].
pub fn read<D: BlockDevice>(store: &Store<D>) -> Result<Option<u64>, SelfCheckError> {
    match (store.get(RECORDS[0]), store.get(RECORDS[1])) {
        (None, None) => Ok(None),
        (Some(a), Some(b)) => {
            let counter = a
                .get(..8)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or(SelfCheckError::Inconsistent)?;
            if a == record(counter, 0) && b == record(counter, 1) {
                Ok(Some(counter))
            } else {
                Err(SelfCheckError::Inconsistent)
            }
        }
        _ => Err(SelfCheckError::Inconsistent),
    }
}

/// Commits the next counter (1 after none) and returns it.
pub fn advance<D: BlockDevice>(store: &mut Store<D>) -> Result<u64, SelfCheckError> {
    let next = read(store)?.map_or(1, |counter| counter.wrapping_add(1));
    store.put(RECORDS[0], &record(next, 0))?;
    store.put(RECORDS[1], &record(next, 1))?;
    store.commit()?;
    Ok(next)
}
