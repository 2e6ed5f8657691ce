//! What the store remembers across restarts, and how it is written: the
//! whole state as one JSON file, replaced atomically (write a temporary
//! file, sync it, rename it over the old one, sync the directory), so a
//! power cut leaves the old state or the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::error::IoFailure;
use crate::storage::Storage;

/// The state file's name, in the store's root.
pub(crate) const STATE_FILE: &str = "state.json";
const STATE_TMP: &str = "state.json.tmp";
/// Version of the state file's layout.
const FORMAT: u32 = 1;

/// An expected blob whose bytes are being staged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlotRecord {
    /// Size the config gave, if any.
    pub expected_size: Option<u64>,
    /// Staged bytes known to be on disk (synced before this was written):
    /// after a power cut the staged file is cut back to this, and anything
    /// beyond it is fetched again.
    pub durable: u64,
    pub holders: BTreeSet<String>,
    /// Verification failures of this slot.
    pub mismatches: u32,
    pub last_mismatch: Option<Digest>,
    pub created: u64,
    pub last_ref_change: u64,
    /// Since when no holder refers to it (a GC candidate).
    pub unreferenced_since: Option<u64>,
    /// What the downloader needs to resume these bytes safely (the
    /// server's validator), kept with them; dropped when they are.
    #[serde(default)]
    pub resume_note: Option<String>,
}

/// A verified, immutable blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobRecord {
    pub size: u64,
    pub holders: BTreeSet<String>,
    pub created: u64,
    pub last_ref_change: u64,
    pub unreferenced_since: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    pub format: u32,
    pub slots: BTreeMap<Digest, SlotRecord>,
    pub blobs: BTreeMap<Digest, BlobRecord>,
    /// Verification failures over the store's life.
    pub mismatches_total: u64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            format: FORMAT,
            slots: BTreeMap::new(),
            blobs: BTreeMap::new(),
            mismatches_total: 0,
        }
    }
}

/// Reads the state; a missing file is an empty store. `Err(reason)` for
/// a file that is not a state of ours.
pub(crate) fn load(storage: &dyn Storage) -> Result<Result<State, String>, IoFailure> {
    let path = Path::new(STATE_FILE);
    let bytes = match storage.read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(State::default())),
        Err(source) => return Err(io("reading", path, source)),
    };
    Ok(match serde_json::from_slice::<State>(&bytes) {
        Ok(state) if state.format == FORMAT => Ok(state),
        Ok(state) => Err(format!("unknown format {}", state.format)),
        Err(e) => Err(e.to_string()),
    })
}

/// Replaces the state file atomically.
pub(crate) fn save(storage: &mut dyn Storage, state: &State) -> Result<(), IoFailure> {
    let tmp = Path::new(STATE_TMP);
    let bytes = serde_json::to_vec(state).map_err(|e| io("encoding", tmp, e.into()))?;
    storage.remove(tmp).map_err(|e| io("removing", tmp, e))?;
    storage
        .write_at(tmp, 0, &bytes)
        .map_err(|e| io("writing", tmp, e))?;
    storage.sync_file(tmp).map_err(|e| io("syncing", tmp, e))?;
    storage
        .rename(tmp, Path::new(STATE_FILE))
        .map_err(|e| io("renaming", tmp, e))?;
    storage
        .sync_dir(Path::new(""))
        .map_err(|e| io("syncing", Path::new("."), e))
}

/// Removes a temporary state left by a cut during [`save`].
pub(crate) fn remove_leftover(storage: &mut dyn Storage) -> Result<(), IoFailure> {
    let tmp = Path::new(STATE_TMP);
    storage.remove(tmp).map_err(|e| io("removing", tmp, e))
}

pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> IoFailure {
    IoFailure {
        what,
        path: path.to_path_buf(),
        source,
    }
}
