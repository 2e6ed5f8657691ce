//! volumemgr's side: what it expects (from the signed config), what it
//! holds, what it sees. Nothing here accepts content bytes.

use std::collections::BTreeSet;

use crate::Digest;
use crate::error::{CreateSlotError, GcError, ReadError, RefError};
use crate::state::SlotRecord;
use crate::storage::Storage;
use crate::store::{BlobStore, blob_path, staging_path};

/// Longest holder name accepted.
const MAX_HOLDER: usize = 128;

/// What [`Manager::expect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A slot now waits for bytes; this many are already staged (a resumed
    /// or shared download).
    Staging {
        /// Bytes staged.
        staged: u64,
    },
    /// The blob is already verified; the holder now refers to it.
    Verified {
        /// Its size.
        size: u64,
    },
}

/// Where a blob stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// Expected, bytes arriving.
    Staging,
    /// Hashed to its digest: immutable.
    Verified,
}

/// One blob or slot, as `ZInfoBlob` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The digest.
    pub digest: Digest,
    /// Staging or verified.
    pub state: BlobState,
    /// The verified size, or the expected size if the config gave one.
    pub size: Option<u64>,
    /// Bytes on disk (staged so far, or the whole blob).
    pub current: u64,
    /// Who refers to it.
    pub holders: Vec<String>,
    /// When the store first had it (Unix seconds).
    pub created: u64,
    /// When its holders last changed.
    pub last_ref_change: u64,
    /// Failed verifications (slots only).
    pub mismatches: u32,
    /// What the last failed verification hashed to.
    pub last_mismatch: Option<Digest>,
}

impl BlobInfo {
    /// Percent of the expected size staged (100 once verified), as
    /// `ZInfoBlob.progressPercentage`; 0 when the size is unknown.
    pub fn progress_percent(&self) -> u32 {
        match (self.state, self.size) {
            (BlobState::Verified, _) => 100,
            (BlobState::Staging, Some(size)) if size > 0 => {
                u32::try_from(self.current.saturating_mul(100) / size)
                    .unwrap_or(100)
                    .min(99)
            }
            _ => 0,
        }
    }
}

/// Disk use, for storage metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of verified blobs.
    pub verified_bytes: u64,
    /// Bytes staged.
    pub staged_bytes: u64,
    /// Verification failures over the store's life.
    pub mismatches_total: u64,
}

/// volumemgr's operations.
pub struct Manager<'s, S: Storage> {
    pub(crate) store: &'s mut BlobStore<S>,
}

impl<S: Storage> BlobStore<S> {
    /// volumemgr's view of the store.
    pub fn manager(&mut self) -> Manager<'_, S> {
        Manager { store: self }
    }
}

/// Holder names come from our own services (a service name and an
/// object id), never from the network; a bad one is refused.
fn check_holder(holder: &str) -> Result<(), String> {
    if holder.is_empty() || holder.len() > MAX_HOLDER || holder.chars().any(char::is_control) {
        Err(holder.chars().take(MAX_HOLDER).collect())
    } else {
        Ok(())
    }
}

impl<S: Storage> Manager<'_, S> {
    /// Expects `digest` (with `size` when the config gives it) on behalf
    /// of `holder`, who then refers to it. Creating a slot for a blob
    /// already verified only adds the reference.
    pub fn expect(
        &mut self,
        holder: &str,
        digest: Digest,
        size: Option<u64>,
    ) -> Result<Expected, CreateSlotError> {
        check_holder(holder).map_err(CreateSlotError::BadHolder)?;
        let store = &mut *self.store;
        let now = store.clock.now();
        let mut next = store.state.clone();
        if let Some(blob) = next.blobs.get_mut(&digest) {
            let size = blob.size;
            if blob.holders.insert(holder.to_owned()) {
                blob.last_ref_change = now;
                blob.unreferenced_since = None;
                store.commit(next)?;
            }
            return Ok(Expected::Verified { size });
        }
        if let Some(slot) = next.slots.get_mut(&digest) {
            if size.is_some() && slot.expected_size.is_some() && slot.expected_size != size {
                return Err(CreateSlotError::SizeConflict {
                    digest,
                    existing: slot.expected_size,
                    requested: size,
                });
            }
            slot.expected_size = slot.expected_size.or(size);
            if slot.holders.insert(holder.to_owned()) {
                slot.last_ref_change = now;
                slot.unreferenced_since = None;
            }
            store.commit(next)?;
            return Ok(Expected::Staging {
                staged: store.staged.get(&digest).copied().unwrap_or(0),
            });
        }
        let limit = store.config.max_blob_bytes;
        if let Some(size) = size.filter(|&s| s > limit) {
            return Err(CreateSlotError::TooLarge {
                digest,
                size,
                limit,
            });
        }
        if let Some(size) = size {
            store.check_reserve(digest, size)??;
        }
        next.slots.insert(
            digest,
            SlotRecord {
                expected_size: size,
                durable: 0,
                holders: BTreeSet::from([holder.to_owned()]),
                mismatches: 0,
                last_mismatch: None,
                created: now,
                last_ref_change: now,
                unreferenced_since: None,
                resume_note: None,
            },
        );
        store.commit(next)?;
        store.staged.insert(digest, 0);
        Ok(Expected::Staging { staged: 0 })
    }

    /// `holder` refers to an existing blob or slot.
    pub fn add_ref(&mut self, holder: &str, digest: Digest) -> Result<(), RefError> {
        self.change_ref(holder, digest, true)
    }

    /// `holder` no longer refers to `digest`. Unreferenced, it is
    /// collected by the first [`Manager::collect_garbage`] that finds it
    /// unreferenced for long enough.
    pub fn drop_ref(&mut self, holder: &str, digest: Digest) -> Result<(), RefError> {
        self.change_ref(holder, digest, false)
    }

    fn change_ref(&mut self, holder: &str, digest: Digest, add: bool) -> Result<(), RefError> {
        check_holder(holder).map_err(RefError::BadHolder)?;
        let store = &mut *self.store;
        let now = store.clock.now();
        let mut next = store.state.clone();
        let (holders, last_change, unref) = if let Some(b) = next.blobs.get_mut(&digest) {
            (
                &mut b.holders,
                &mut b.last_ref_change,
                &mut b.unreferenced_since,
            )
        } else if let Some(s) = next.slots.get_mut(&digest) {
            (
                &mut s.holders,
                &mut s.last_ref_change,
                &mut s.unreferenced_since,
            )
        } else {
            return Err(RefError::Unknown(digest));
        };
        let changed = if add {
            holders.insert(holder.to_owned())
        } else {
            holders.remove(holder)
        };
        if !changed {
            return Ok(());
        }
        *last_change = now;
        *unref = if holders.is_empty() { Some(now) } else { None };
        store.commit(next)?;
        Ok(())
    }

    /// Makes `holder`'s references exactly `digests`: what a restarted
    /// volumemgr calls with everything its config still needs. References
    /// it no longer asserts are dropped; digests the store does not have
    /// are returned (to be expected again).
    pub fn reassert(&mut self, holder: &str, digests: &[Digest]) -> Result<Vec<Digest>, RefError> {
        check_holder(holder).map_err(RefError::BadHolder)?;
        let store = &mut *self.store;
        let now = store.clock.now();
        let mut next = store.state.clone();
        let wanted: BTreeSet<Digest> = digests.iter().copied().collect();
        let mut changed = false;
        let entries = next
            .blobs
            .iter_mut()
            .map(|(d, b)| {
                (
                    *d,
                    &mut b.holders,
                    &mut b.last_ref_change,
                    &mut b.unreferenced_since,
                )
            })
            .chain(next.slots.iter_mut().map(|(d, s)| {
                (
                    *d,
                    &mut s.holders,
                    &mut s.last_ref_change,
                    &mut s.unreferenced_since,
                )
            }));
        for (digest, holders, last_change, unref) in entries {
            let did = if wanted.contains(&digest) {
                holders.insert(holder.to_owned())
            } else {
                holders.remove(holder)
            };
            if did {
                changed = true;
                *last_change = now;
                *unref = if holders.is_empty() { Some(now) } else { None };
            }
        }
        let missing = wanted
            .iter()
            .filter(|d| !next.blobs.contains_key(d) && !next.slots.contains_key(d))
            .copied()
            .collect();
        if changed {
            store.commit(next)?;
        }
        Ok(missing)
    }

    /// One blob or slot.
    pub fn status(&self, digest: Digest) -> Option<BlobInfo> {
        self.list().into_iter().find(|b| b.digest == digest)
    }

    /// Every blob and slot, for `ZInfoBlobList`.
    pub fn list(&self) -> Vec<BlobInfo> {
        let store = &*self.store;
        let blobs = store.state.blobs.iter().map(|(d, b)| BlobInfo {
            digest: *d,
            state: BlobState::Verified,
            size: Some(b.size),
            current: b.size,
            holders: b.holders.iter().cloned().collect(),
            created: b.created,
            last_ref_change: b.last_ref_change,
            mismatches: 0,
            last_mismatch: None,
        });
        let slots = store.state.slots.iter().map(|(d, s)| BlobInfo {
            digest: *d,
            state: BlobState::Staging,
            size: s.expected_size,
            current: store.staged.get(d).copied().unwrap_or(s.durable),
            holders: s.holders.iter().cloned().collect(),
            created: s.created,
            last_ref_change: s.last_ref_change,
            mismatches: s.mismatches,
            last_mismatch: s.last_mismatch,
        });
        blobs.chain(slots).collect()
    }

    /// Disk use and counters.
    pub fn usage(&self) -> Usage {
        let store = &*self.store;
        Usage {
            verified_bytes: store.state.blobs.values().map(|b| b.size).sum(),
            staged_bytes: store.staged.values().sum(),
            mismatches_total: store.state.mismatches_total,
        }
    }

    /// Up to `max` bytes of a verified blob from `offset` (fewer at its
    /// end): volumemgr reads manifests it walks this way, after the store
    /// verified them.
    pub fn read(&self, digest: Digest, offset: u64, max: usize) -> Result<Vec<u8>, ReadError> {
        let store = &*self.store;
        let size = store
            .state
            .blobs
            .get(&digest)
            .map(|b| b.size)
            .ok_or(ReadError::NotVerified(digest))?;
        let want = usize::try_from(size.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(max);
        let mut out = vec![0u8; want];
        let path = blob_path(&digest);
        let mut filled = 0;
        while filled < want {
            let n = store
                .storage
                .read_at(&path, offset + filled as u64, &mut out[filled..])
                .map_err(|e| crate::state::io("reading", &path, e))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        out.truncate(filled);
        Ok(out)
    }

    /// Where a verified blob's file is, for a volume builder to read.
    pub fn verified_path(&self, digest: Digest) -> Option<std::path::PathBuf> {
        let store = &*self.store;
        store
            .state
            .blobs
            .contains_key(&digest)
            .then(|| store.storage.real_path(&blob_path(&digest)))
            .flatten()
    }

    /// Removes blobs and slots unreferenced for at least `after_secs`
    /// (EVE's `timer.gc.vdisk`, which volumemgr reads from the config: a
    /// blob stays a while after its last reference so a config that flips
    /// back does not download it again); returns what went. Each file is
    /// removed (and its directory synced) before its record, so a cut
    /// leaves at worst a record without a file, which opening drops.
    pub fn collect_garbage(&mut self, after_secs: u64) -> Result<Vec<Digest>, GcError> {
        let store = &mut *self.store;
        let now = store.clock.now();
        let after = after_secs;
        let due = |since: Option<u64>| since.is_some_and(|t| now.saturating_sub(t) >= after);
        let blobs: Vec<Digest> = store
            .state
            .blobs
            .iter()
            .filter(|(_, b)| due(b.unreferenced_since))
            .map(|(d, _)| *d)
            .collect();
        let slots: Vec<Digest> = store
            .state
            .slots
            .iter()
            .filter(|(_, s)| due(s.unreferenced_since))
            .map(|(d, _)| *d)
            .collect();
        if blobs.is_empty() && slots.is_empty() {
            return Ok(Vec::new());
        }
        let candidates = blobs
            .iter()
            .map(|d| (*d, blob_path(d)))
            .chain(slots.iter().map(|d| (*d, staging_path(d))));
        let mut gone = Vec::new();
        let mut failure = None;
        for (digest, path) in candidates {
            match store.remove_file(&path) {
                Ok(()) => gone.push(digest),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        for dir in [crate::store::BLOB_DIR, crate::store::STAGING_DIR] {
            if let Err(e) = store.sync_dir(dir) {
                failure.get_or_insert(e);
            }
        }
        // Records go even when a sync failed: a file that comes back after
        // a cut is hashed again (blob) or removed (staged) at open.
        let mut next = store.state.clone();
        for d in &gone {
            next.blobs.remove(d);
            next.slots.remove(d);
        }
        store.commit(next)?;
        for d in &gone {
            store.staged.remove(d);
            store.hashing.remove(d);
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(gone),
        }
    }
}
