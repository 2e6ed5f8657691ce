//! The downloader's side: bytes into a slot volumemgr expects, how much is
//! staged, and "complete". Nothing here can make a blob verified except
//! the hash of the staged bytes matching the slot's digest.

use crate::Digest;
use crate::error::{CompleteError, StagedError, WriteError};
use crate::state::io;
use crate::storage::Storage;
use crate::store::{BlobStore, blob_path, staging_path};

/// How far a slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staged {
    /// Bytes staged: resume at this offset.
    pub length: u64,
    /// The size the config gave, if any.
    pub expected_size: Option<u64>,
}

/// The downloader's operations.
pub struct Writer<'s, S: Storage> {
    store: &'s mut BlobStore<S>,
}

impl<S: Storage> BlobStore<S> {
    /// The downloader's view of the store.
    pub fn writer(&mut self) -> Writer<'_, S> {
        Writer { store: self }
    }
}

impl<S: Storage> Writer<'_, S> {
    /// How much of `digest` is staged.
    pub fn staged(&self, digest: Digest) -> Result<Staged, StagedError> {
        let slot = self
            .store
            .state
            .slots
            .get(&digest)
            .ok_or(StagedError::NotExpected(digest))?;
        Ok(Staged {
            length: self.store.staged.get(&digest).copied().unwrap_or(0),
            expected_size: slot.expected_size,
        })
    }

    /// Writes `data` at `offset`, which is at most the staged length: at
    /// it to append, before it to fetch again from there (a server that
    /// ignored a range request restarts at 0). Every
    /// [`crate::Config::checkpoint_bytes`] the staged bytes are made
    /// durable and their length recorded.
    pub fn write(
        &mut self,
        digest: Digest,
        offset: u64,
        data: &[u8],
    ) -> Result<Staged, WriteError> {
        let store = &mut *self.store;
        let slot = store
            .state
            .slots
            .get(&digest)
            .ok_or(WriteError::NotExpected(digest))?;
        let expected_size = slot.expected_size;
        let durable = slot.durable;
        let staged = store.staged.get(&digest).copied().unwrap_or(0);
        if offset > staged {
            return Err(WriteError::Gap {
                digest,
                offset,
                staged,
            });
        }
        let end = offset.saturating_add(data.len() as u64);
        let limit = expected_size.unwrap_or(store.config.max_blob_bytes);
        if end > limit {
            return Err(WriteError::TooLarge { digest, end, limit });
        }
        let grows = end.saturating_sub(staged);
        if grows > 0 {
            store.check_reserve(digest, grows)??;
        }
        let path = staging_path(&digest);
        if offset < staged {
            // Lower the durable mark before cutting, so a power cut never
            // leaves a mark above bytes that are not the old ones.
            if offset < durable {
                let mut next = store.state.clone();
                if let Some(s) = next.slots.get_mut(&digest) {
                    s.durable = offset;
                }
                store.commit(next)?;
            }
            store
                .storage
                .truncate(&path, offset)
                .map_err(|e| io("truncating", &path, e))?;
            store.staged.insert(digest, offset);
        }
        store
            .storage
            .write_at(&path, offset, data)
            .map_err(|e| io("writing", &path, e))?;
        store.staged.insert(digest, end);
        if end.saturating_sub(durable.min(offset)) >= store.config.checkpoint_bytes {
            self.checkpoint(digest)?;
        }
        Ok(Staged {
            length: end,
            expected_size,
        })
    }

    /// Makes the staged bytes durable and records their length.
    pub(crate) fn checkpoint(&mut self, digest: Digest) -> Result<(), crate::IoFailure> {
        let store = &mut *self.store;
        let staged = store.staged.get(&digest).copied().unwrap_or(0);
        let path = staging_path(&digest);
        if staged > 0 {
            store
                .storage
                .sync_file(&path)
                .map_err(|e| io("syncing", &path, e))?;
            if store
                .state
                .slots
                .get(&digest)
                .is_some_and(|s| s.durable == 0)
            {
                // The staged file's name must survive too.
                store.sync_dir(crate::store::STAGING_DIR)?;
            }
        }
        let mut next = store.state.clone();
        match next.slots.get_mut(&digest) {
            Some(s) if s.durable != staged => s.durable = staged,
            _ => return Ok(()),
        }
        store.commit(next)
    }

    /// The downloader says every byte is staged: the store hashes them.
    /// A match makes the blob verified, immutable and content-addressed;
    /// a mismatch discards the bytes, counts it and reports both digests.
    pub fn complete(&mut self, digest: Digest) -> Result<u64, CompleteError> {
        let (expected_size, staged) = {
            let store = &*self.store;
            let slot = store
                .state
                .slots
                .get(&digest)
                .ok_or(CompleteError::NotExpected(digest))?;
            (
                slot.expected_size,
                store.staged.get(&digest).copied().unwrap_or(0),
            )
        };
        if let Some(expected) = expected_size.filter(|&e| e != staged) {
            return Err(CompleteError::Incomplete {
                digest,
                staged,
                expected,
            });
        }
        self.checkpoint(digest)?;
        let store = &mut *self.store;
        let path = staging_path(&digest);
        if store.file_len(&path)?.is_none() {
            // Nothing was ever written: an empty blob.
            store
                .storage
                .write_at(&path, 0, &[])
                .map_err(|e| io("creating", &path, e))?;
        }
        let actual = store.hash_file(&path)?;
        let now = store.clock.now();
        let mut next = store.state.clone();
        if actual != digest {
            let attempts = {
                let Some(slot) = next.slots.get_mut(&digest) else {
                    return Err(CompleteError::NotExpected(digest));
                };
                slot.durable = 0;
                slot.mismatches = slot.mismatches.saturating_add(1);
                slot.last_mismatch = Some(actual);
                slot.mismatches
            };
            next.mismatches_total = next.mismatches_total.saturating_add(1);
            store.commit(next)?;
            store.staged.insert(digest, 0);
            store
                .storage
                .truncate(&path, 0)
                .map_err(|e| io("truncating", &path, e))?;
            return Err(CompleteError::Mismatch {
                expected: digest,
                actual,
                attempts,
            });
        }
        let target = blob_path(&digest);
        store
            .storage
            .set_read_only(&path)
            .map_err(|e| io("protecting", &path, e))?;
        store
            .storage
            .rename(&path, &target)
            .map_err(|e| io("renaming", &path, e))?;
        let Some(slot) = next.slots.remove(&digest) else {
            return Err(CompleteError::NotExpected(digest));
        };
        next.blobs.insert(
            digest,
            crate::state::BlobRecord {
                size: staged,
                unreferenced_since: slot.holders.is_empty().then_some(now),
                holders: slot.holders,
                created: now,
                last_ref_change: slot.last_ref_change,
            },
        );
        // From the rename on, opening the store would find the blob
        // verified (it hashes the file again); the running store agrees,
        // whether or not the record below lands. The staging directory
        // needs no sync: a stale staging name that comes back after a cut
        // belongs to no slot, and opening removes it.
        store.staged.remove(&digest);
        let durable = store
            .sync_dir(crate::store::BLOB_DIR)
            .and_then(|()| crate::state::save(&mut store.storage, &next));
        store.state = next;
        durable?;
        Ok(staged)
    }
}
