//! The store itself: opening with recovery, and what both kinds of caller
//! share. The operations live in [`crate::Manager`] (volumemgr's) and
//! [`crate::Writer`] (the downloader's).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::Digest;
use crate::error::{IoFailure, OpenError};
use crate::state::{self, BlobRecord, State, io};
use crate::storage::Storage;

/// Verified blobs, named by their hex digest.
pub(crate) const BLOB_DIR: &str = "blobs/sha256";
/// Staged bytes of expected blobs, named by their hex digest.
pub(crate) const STAGING_DIR: &str = "staging";
/// Bytes read per step when hashing.
const HASH_STEP: usize = 1 << 20;

/// Wall-clock time in Unix seconds (GC ages and reported times).
pub trait Clock: Send {
    /// Now.
    fn now(&self) -> u64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// Limits and timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Bytes that must stay free on the filesystem: a write that would
    /// leave less is refused. EVE reboot-loops on a full /persist.
    pub reserve_bytes: u64,
    /// The most bytes the store may hold (verified and staged): a share
    /// of the disk set aside for content. `None`: the filesystem's free
    /// space is the only bound. Free space for the reserve check is the
    /// smaller of the filesystem's and what is left of this.
    pub capacity_bytes: Option<u64>,
    /// Largest blob accepted.
    pub max_blob_bytes: u64,
    /// Staged bytes between durable points: every this many bytes the
    /// staged file is synced and its length recorded, bounding what a
    /// power cut makes the downloader fetch again.
    pub checkpoint_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            reserve_bytes: 256 << 20,
            capacity_bytes: None,
            max_blob_bytes: 64 << 30,
            checkpoint_bytes: 8 << 20,
        }
    }
}

/// The blob store over one storage.
pub struct BlobStore<S: Storage> {
    pub(crate) storage: S,
    pub(crate) config: Config,
    pub(crate) clock: Box<dyn Clock>,
    pub(crate) state: State,
    /// Staged length per slot, at or past its durable length.
    pub(crate) staged: HashMap<Digest, u64>,
    /// The sha256 of each slot's bytes as they were written, while the
    /// writes came in order from 0 in this process: completing such a
    /// slot needs no second pass over its file.
    pub(crate) hashing: HashMap<Digest, (Sha256, u64)>,
    /// What recovery found at open.
    recovery: Recovery,
}

/// What opening the store repaired after an unclean stop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Staged bytes beyond the last durable point, cut off.
    pub staged_bytes_dropped: u64,
    /// Verified blobs found without a record (a cut during commit),
    /// hashed again and kept.
    pub blobs_adopted: Vec<Digest>,
    /// Files that did not hash to their name, or were not ours, removed.
    pub files_removed: Vec<PathBuf>,
    /// Records whose file was gone, dropped.
    pub records_dropped: Vec<Digest>,
}

pub(crate) fn blob_path(d: &Digest) -> PathBuf {
    Path::new(BLOB_DIR).join(d.hex())
}

pub(crate) fn staging_path(d: &Digest) -> PathBuf {
    Path::new(STAGING_DIR).join(d.hex())
}

impl<S: Storage> BlobStore<S> {
    /// Opens the store (creating it if empty) and brings it to a
    /// consistent state after whatever stopped it.
    pub fn open(storage: S, config: Config, clock: Box<dyn Clock>) -> Result<Self, OpenError> {
        let mut store = Self {
            storage,
            config,
            clock,
            state: State::default(),
            staged: HashMap::new(),
            hashing: HashMap::new(),
            recovery: Recovery::default(),
        };
        for dir in ["", "blobs", BLOB_DIR, STAGING_DIR] {
            let path = Path::new(dir);
            store
                .storage
                .create_dir(path)
                .map_err(|e| io("creating", path, e))?;
        }
        for dir in ["", "blobs"] {
            store.sync_dir(dir)?;
        }
        store.state = match state::load(&store.storage)? {
            Ok(state) => state,
            Err(reason) => {
                return Err(OpenError::CorruptState {
                    path: PathBuf::from(state::STATE_FILE),
                    reason,
                });
            }
        };
        state::remove_leftover(&mut store.storage)?;
        store.recover()?;
        Ok(store)
    }

    /// Makes every slot's staged bytes durable: a clean stop calls this,
    /// so a restart resumes where the downloads were, not at the last
    /// checkpoint.
    pub fn sync_all(&mut self) -> Result<(), IoFailure> {
        let slots: Vec<Digest> = self.state.slots.keys().copied().collect();
        for digest in slots {
            self.writer().checkpoint(digest)?;
        }
        Ok(())
    }

    /// What recovery repaired when the store was opened.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The storage (tests inspect the simulated disk through it).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, to arrange a power cut in tests.
    #[cfg(any(test, feature = "testing"))]
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Reconciles the state file with the files on disk.
    fn recover(&mut self) -> Result<(), IoFailure> {
        let mut next = self.state.clone();
        let mut report = Recovery::default();
        let now = self.clock.now();

        // Verified blobs on disk: known ones must have their size; unknown
        // ones were renamed in by a commit whose record never landed, and
        // are trusted only if they hash to their name again.
        let on_disk = self.list(BLOB_DIR)?;
        for name in &on_disk {
            let path = Path::new(BLOB_DIR).join(name);
            let Ok(digest) = name.parse::<Digest>() else {
                self.remove_file(&path)?;
                report.files_removed.push(path);
                continue;
            };
            let len = self.file_len(&path)?.unwrap_or(0);
            match next.blobs.get(&digest) {
                Some(rec) if rec.size == len => {}
                Some(_) => {
                    self.remove_file(&path)?;
                    next.blobs.remove(&digest);
                    report.files_removed.push(path);
                }
                None if self.hash_file(&path)? == digest => {
                    let slot = next.slots.remove(&digest);
                    let holders = slot.map(|s| s.holders).unwrap_or_default();
                    let unreferenced_since = holders.is_empty().then_some(now);
                    next.blobs.insert(
                        digest,
                        BlobRecord {
                            size: len,
                            holders,
                            created: now,
                            last_ref_change: now,
                            unreferenced_since,
                        },
                    );
                    report.blobs_adopted.push(digest);
                }
                None => {
                    self.remove_file(&path)?;
                    report.files_removed.push(path);
                }
            }
        }
        let gone: Vec<Digest> = next
            .blobs
            .keys()
            .filter(|d| !on_disk.contains(&d.hex()))
            .copied()
            .collect();
        for digest in gone {
            next.blobs.remove(&digest);
            report.records_dropped.push(digest);
        }

        // A slot whose blob is already verified has nothing left to stage.
        let done: Vec<Digest> = next
            .slots
            .keys()
            .filter(|d| next.blobs.contains_key(d))
            .copied()
            .collect();
        for digest in done {
            if let (Some(slot), Some(blob)) =
                (next.slots.remove(&digest), next.blobs.get_mut(&digest))
            {
                blob.holders.extend(slot.holders);
                if !blob.holders.is_empty() {
                    blob.unreferenced_since = None;
                }
            }
        }

        // Staged files: cut back to their durable length; files of no slot
        // (a slot removed before its file) go.
        for name in self.list(STAGING_DIR)? {
            let path = Path::new(STAGING_DIR).join(&name);
            let slot = name
                .parse::<Digest>()
                .ok()
                .and_then(|d| next.slots.get_mut(&d));
            let Some(slot) = slot else {
                self.remove_file(&path)?;
                report.files_removed.push(path);
                continue;
            };
            let len = self.file_len(&path)?.unwrap_or(0);
            if len > slot.durable {
                self.storage
                    .truncate(&path, slot.durable)
                    .map_err(|e| io("truncating", &path, e))?;
                self.storage
                    .sync_file(&path)
                    .map_err(|e| io("syncing", &path, e))?;
                report.staged_bytes_dropped += len - slot.durable;
            } else {
                slot.durable = len;
            }
        }
        for (digest, slot) in &mut next.slots {
            if self.file_len(&staging_path(digest))?.is_none() {
                slot.durable = 0;
            }
        }
        self.staged = next.slots.iter().map(|(d, s)| (*d, s.durable)).collect();
        if next != self.state {
            self.commit(next)?;
        }
        self.recovery = report;
        Ok(())
    }

    /// Writes `next` as the state, then adopts it; on failure the store
    /// keeps the state it had.
    pub(crate) fn commit(&mut self, next: State) -> Result<(), IoFailure> {
        state::save(&mut self.storage, &next)?;
        self.state = next;
        Ok(())
    }

    pub(crate) fn sync_dir(&mut self, dir: &str) -> Result<(), IoFailure> {
        let path = Path::new(dir);
        self.storage
            .sync_dir(path)
            .map_err(|e| io("syncing", path, e))
    }

    pub(crate) fn remove_file(&mut self, path: &Path) -> Result<(), IoFailure> {
        self.storage
            .remove(path)
            .map_err(|e| io("removing", path, e))
    }

    pub(crate) fn file_len(&self, path: &Path) -> Result<Option<u64>, IoFailure> {
        self.storage.len(path).map_err(|e| io("reading", path, e))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, IoFailure> {
        let path = Path::new(dir);
        self.storage.list(path).map_err(|e| io("listing", path, e))
    }

    /// The sha256 of a file's content.
    pub(crate) fn hash_file(&self, path: &Path) -> Result<Digest, IoFailure> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; HASH_STEP];
        let mut offset = 0u64;
        loop {
            let n = self
                .storage
                .read_at(path, offset, &mut buf)
                .map_err(|e| io("reading", path, e))?;
            if n == 0 {
                return Ok(Digest::from_bytes(hasher.finalize().into()));
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
    }

    /// Bytes the store could still write: the filesystem's free space,
    /// bounded by what is left of [`Config::capacity_bytes`].
    pub fn free_bytes(&self) -> Result<u64, IoFailure> {
        let free = self
            .storage
            .free_bytes()
            .map_err(|e| io("measuring free space of", Path::new("."), e))?;
        Ok(match self.config.capacity_bytes {
            Some(capacity) => {
                let held = self.state.blobs.values().map(|b| b.size).sum::<u64>()
                    + self.staged.values().sum::<u64>();
                free.min(capacity.saturating_sub(held))
            }
            None => free,
        })
    }

    /// Refuses `needed` more bytes when they would eat into the reserve.
    pub(crate) fn check_reserve(
        &self,
        digest: Digest,
        needed: u64,
    ) -> Result<Result<(), crate::ReserveExceeded>, IoFailure> {
        let free = self.free_bytes()?;
        let reserve = self.config.reserve_bytes;
        Ok(if free.saturating_sub(needed) < reserve || free < needed {
            Err(crate::ReserveExceeded {
                digest,
                needed,
                free,
                reserve,
            })
        } else {
            Ok(())
        })
    }
}
