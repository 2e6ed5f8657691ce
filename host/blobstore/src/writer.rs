//! The downloader's side: bytes into a slot volumemgr expects, how much is
//! staged, and "complete". Nothing here can make a blob verified except
//! the hash of the staged bytes matching the slot's digest.

use sha2::{Digest as _, Sha256};

use crate::Digest;
use crate::error::{CompleteError, NoteError, StagedError, WriteError};
use crate::state::io;
use crate::storage::Storage;
use crate::store::{BlobStore, blob_path, staging_path};

/// Longest resume note a slot keeps.
pub const MAX_NOTE: usize = 1024;

/// How far a slot is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// Bytes staged: resume at this offset.
    pub length: u64,
    /// The size the config gave, if any.
    pub expected_size: Option<u64>,
    /// The downloader's note about these bytes ([`Writer::remember`]).
    pub note: Option<String>,
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
            note: slot.resume_note.clone(),
        })
    }

    /// Keeps `note` with the slot's bytes until they are dropped (a
    /// restart at 0, a mismatch, collection): the downloader's validator
    /// for the server's copy (ETag, length), so a resume after a restart
    /// can ask the server for the same version. It is only a hint: the
    /// bytes are verified by their hash whatever it says.
    pub fn remember(&mut self, digest: Digest, note: Option<&str>) -> Result<(), NoteError> {
        if let Some(n) = note.filter(|n| n.len() > MAX_NOTE) {
            return Err(NoteError::TooLong(n.len()));
        }
        let store = &mut *self.store;
        let mut next = store.state.clone();
        let slot = next
            .slots
            .get_mut(&digest)
            .ok_or(NoteError::NotExpected(digest))?;
        if slot.resume_note.as_deref() == note {
            return Ok(());
        }
        slot.resume_note = note.map(str::to_owned);
        store.commit(next)?;
        Ok(())
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
        let mut note = slot.resume_note.clone();
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
            // leaves a mark above bytes that are not the old ones. A cut to
            // 0 is a restart: the note about the old bytes goes with them.
            let forget = offset == 0 && note.is_some();
            if offset < durable || forget {
                let mut next = store.state.clone();
                if let Some(s) = next.slots.get_mut(&digest) {
                    s.durable = s.durable.min(offset);
                    if offset == 0 {
                        s.resume_note = None;
                    }
                }
                store.commit(next)?;
                if offset == 0 {
                    note = None;
                }
            }
            store
                .storage
                .truncate(&path, offset)
                .map_err(|e| io("truncating", &path, e))?;
            store.staged.insert(digest, offset);
        }
        // The running hash follows writes that continue it; one from 0
        // starts it over; any other (a resume in a new process, a cut back
        // to the middle) leaves completion to hash the file.
        match store.hashing.get(&digest) {
            Some((_, hashed)) if *hashed == offset => {}
            _ if offset == 0 => {
                store.hashing.insert(digest, (Sha256::new(), 0));
            }
            _ => {
                store.hashing.remove(&digest);
            }
        }
        store.storage.write_at(&path, offset, data).map_err(|e| {
            store.hashing.remove(&digest);
            io("writing", &path, e)
        })?;
        if let Some((hasher, hashed)) = store.hashing.get_mut(&digest) {
            hasher.update(data);
            *hashed = end;
        }
        store.staged.insert(digest, end);
        if end.saturating_sub(durable.min(offset)) >= store.config.checkpoint_bytes {
            self.checkpoint(digest)?;
        }
        Ok(Staged {
            length: end,
            expected_size,
            note,
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
        let actual = match store.hashing.remove(&digest) {
            Some((hasher, hashed)) if hashed == staged => {
                Digest::from_bytes(hasher.finalize().into())
            }
            _ => store.hash_file(&path)?,
        };
        let now = store.clock.now();
        let mut next = store.state.clone();
        if actual != digest {
            let attempts = {
                let Some(slot) = next.slots.get_mut(&digest) else {
                    return Err(CompleteError::NotExpected(digest));
                };
                slot.durable = 0;
                slot.resume_note = None;
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
