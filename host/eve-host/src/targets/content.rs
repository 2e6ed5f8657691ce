//! What the `blobs` and `volumes` targets share: the node's content under
//! `<state-dir>/content/`, the blob store (`store/`) and the volumes built
//! from its verified blobs (`volumes/`).
//!
//! Both targets are opened separately (each is granted to its own
//! services), but there is one store per state directory: the first
//! target opened opens it and the second gets the same one. The store is
//! made durable (every staged byte synced) when the last target holding it
//! is dropped, at the host's clean stop.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use blobstore::{BlobStore, Config, OsStorage, SystemClock};

/// The host's content settings (`eve-host run --content-reserve-mib ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentOptions {
    /// Bytes that must stay free on the filesystem of the state directory:
    /// blob writes and volume builds that would leave less are refused, so
    /// a full disk never stops the node.
    pub reserve_bytes: u64,
    /// The most bytes the blob store may hold (its share of the disk);
    /// `None`: only the filesystem bounds it.
    pub capacity_bytes: Option<u64>,
}

impl Default for ContentOptions {
    fn default() -> Self {
        Self {
            reserve_bytes: Config::default().reserve_bytes,
            capacity_bytes: None,
        }
    }
}

/// Where the volumes of the node whose state is in `state_dir` are.
pub fn volumes_dir_in(state_dir: &Path) -> PathBuf {
    state_dir.join("content").join("volumes")
}

/// The node's content: the blob store and where volumes go.
pub struct Content {
    store: Mutex<BlobStore<OsStorage>>,
    volumes_dir: PathBuf,
    options: ContentOptions,
}

/// Stores open in this process, by directory: one per state directory.
static OPEN: Mutex<Vec<(PathBuf, Weak<Content>)>> = Mutex::new(Vec::new());

impl Content {
    /// The content of the node whose state is in `state_dir`: the one
    /// already open in this process, or opened now (with recovery after
    /// an unclean stop, which it logs).
    pub fn shared(
        state_dir: &Path,
        options: ContentOptions,
    ) -> Result<Arc<Content>, blobstore::OpenError> {
        let root = state_dir.join("content");
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(content) = open
            .iter()
            .find(|(dir, _)| *dir == root)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(content);
        }
        let config = Config {
            reserve_bytes: options.reserve_bytes,
            capacity_bytes: options.capacity_bytes,
            ..Config::default()
        };
        let store = BlobStore::open(
            OsStorage::new(root.join("store")),
            config,
            Box::new(SystemClock),
        )?;
        let recovery = store.recovery();
        if *recovery != blobstore::Recovery::default() {
            log::warn!(
                "content store: recovered after an unclean stop: {} staged bytes past the last durable point dropped, {} blobs adopted, {} files removed, {} records dropped",
                recovery.staged_bytes_dropped,
                recovery.blobs_adopted.len(),
                recovery.files_removed.len(),
                recovery.records_dropped.len()
            );
        }
        let content = Arc::new(Content {
            store: Mutex::new(store),
            volumes_dir: volumes_dir_in(state_dir),
            options,
        });
        open.push((root, Arc::downgrade(&content)));
        Ok(content)
    }

    /// The blob store, for one operation. A panic while it was held
    /// leaves it usable: every operation keeps its state consistent on
    /// disk before it changes memory.
    pub fn store(&self) -> MutexGuard<'_, BlobStore<OsStorage>> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where volume generations are built and kept.
    pub fn volumes_dir(&self) -> &Path {
        &self.volumes_dir
    }

    /// The settings it was opened with.
    pub fn options(&self) -> ContentOptions {
        self.options
    }
}

impl Drop for Content {
    fn drop(&mut self) {
        if let Err(e) = self.store().sync_all() {
            log::error!("content store: syncing staged bytes at stop: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_store_per_state_directory_while_someone_holds_it() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let options = ContentOptions::default();
        let first = Content::shared(a.path(), options).unwrap();
        let again = Content::shared(a.path(), options).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let other = Content::shared(b.path(), options).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        let weak = Arc::downgrade(&first);
        drop((first, again));
        assert!(weak.upgrade().is_none(), "the store outlived its targets");
        assert!(a.path().join("content/store/blobs/sha256").is_dir());
    }
}
