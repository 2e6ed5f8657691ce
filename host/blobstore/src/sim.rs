//! A simulated disk for power-cut tests: every mutating operation is
//! counted, the one chosen fails and "cuts the power", and [`SimStorage::crash`]
//! then gives the disk as it would be found at the next boot.
//!
//! What survives a cut follows the POSIX contract the store relies on:
//! names (create, rename, remove) only once their directory was synced,
//! file data only up to its last sync. Data written but not synced comes
//! back damaged (a random length of it, with bytes flipped), because real
//! disks can reorder, tear and lose such writes.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use crate::storage::Storage;

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

/// The simulated disk.
#[derive(Debug, Clone)]
pub struct SimStorage {
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    next_inode: u64,
    /// Mutating operations done so far.
    ops: u64,
    /// The operation that fails and cuts the power.
    cut_at: Option<u64>,
    dead: bool,
    capacity: u64,
    rng: u64,
}

impl SimStorage {
    /// An empty disk of `capacity` bytes; `seed` drives the damage done to
    /// unsynced data at a crash.
    pub fn new(capacity: u64, seed: u64) -> Self {
        Self {
            inodes: HashMap::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            next_inode: 1,
            ops: 0,
            cut_at: None,
            dead: false,
            capacity,
            rng: seed | 1,
        }
    }

    /// Makes mutating operation number `op` (counting from 0, from now)
    /// fail and cut the power.
    pub fn cut_power_at(&mut self, op: u64) {
        self.cut_at = Some(self.ops.saturating_add(op));
    }

    /// Mutating operations done so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Whether the power was cut.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// The disk as found after a power cut now.
    pub fn crash(&self) -> Self {
        let mut next = self.clone();
        next.dead = false;
        next.cut_at = None;
        next.names = self.durable_names.clone();
        let mut ids: Vec<u64> = next.inodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let r1 = next.random();
            let r2 = next.random();
            if let Some(inode) = next.inodes.get_mut(&id) {
                let synced = inode.durable.len();
                let extra = inode.data.len().saturating_sub(synced);
                if inode.data != inode.durable && extra > 0 {
                    // Unsynced tail: some of it, some bytes wrong.
                    let keep = synced + (r1 as usize) % (extra + 1);
                    let mut data = inode.data.clone();
                    data.truncate(keep);
                    if keep > synced {
                        let at = synced + (r2 as usize) % (keep - synced);
                        data[at] ^= 0x5a;
                    }
                    inode.durable = data;
                } else if inode.data != inode.durable && r1.is_multiple_of(2) {
                    // Unsynced overwrite or truncation: sometimes landed.
                    inode.durable = inode.data.clone();
                }
                inode.data = inode.durable.clone();
            }
        }
        next
    }

    fn random(&mut self) -> u64 {
        // xorshift64: deterministic per seed.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn mutate(&mut self) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::other("power is off"));
        }
        if self.cut_at == Some(self.ops) {
            self.dead = true;
            return Err(io::Error::other("power cut"));
        }
        self.ops += 1;
        Ok(())
    }

    fn alive(&self) -> io::Result<()> {
        if self.dead {
            Err(io::Error::other("power is off"))
        } else {
            Ok(())
        }
    }

    fn inode(&self, path: &Path) -> io::Result<&Inode> {
        self.names
            .get(path)
            .and_then(|id| self.inodes.get(id))
            .ok_or_else(|| io::Error::from(ErrorKind::NotFound))
    }

    fn inode_mut_or_create(&mut self, path: &Path) -> &mut Inode {
        let id = match self.names.get(path) {
            Some(id) => *id,
            None => {
                let id = self.next_inode;
                self.next_inode += 1;
                self.names.insert(path.to_path_buf(), id);
                id
            }
        };
        self.inodes.entry(id).or_default()
    }

    fn used(&self) -> u64 {
        self.inodes.values().map(|i| i.data.len() as u64).sum()
    }

    /// Drops inodes no name refers to any more.
    fn collect_inodes(&mut self) {
        let live: std::collections::HashSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .copied()
            .collect();
        self.inodes.retain(|id, _| live.contains(id));
    }
}

impl Storage for SimStorage {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.alive()?;
        Ok(self.inode(path)?.data.clone())
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.alive()?;
        let data = &self.inode(path)?.data;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = (data.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn len(&self, path: &Path) -> io::Result<Option<u64>> {
        self.alive()?;
        Ok(self.inode(path).ok().map(|i| i.data.len() as u64))
    }

    fn write_at(&mut self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.mutate()?;
        let offset = usize::try_from(offset).map_err(io::Error::other)?;
        let end = offset + data.len();
        let grow = end.saturating_sub(self.inode(path).map_or(0, |i| i.data.len())) as u64;
        if self.used() + grow > self.capacity {
            return Err(io::Error::from(ErrorKind::StorageFull));
        }
        let inode = self.inode_mut_or_create(path);
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        inode.data[offset..end].copy_from_slice(data);
        Ok(())
    }

    fn truncate(&mut self, path: &Path, len: u64) -> io::Result<()> {
        self.mutate()?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        self.inode_mut_or_create(path).data.resize(len, 0);
        Ok(())
    }

    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        self.mutate()?;
        let id = *self
            .names
            .get(path)
            .ok_or_else(|| io::Error::from(ErrorKind::NotFound))?;
        if let Some(inode) = self.inodes.get_mut(&id) {
            inode.durable = inode.data.clone();
        }
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.mutate()?;
        let id = self
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(ErrorKind::NotFound))?;
        self.names.insert(to.to_path_buf(), id);
        self.collect_inodes();
        Ok(())
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.mutate()?;
        self.names.remove(path);
        self.collect_inodes();
        Ok(())
    }

    fn create_dir(&mut self, _path: &Path) -> io::Result<()> {
        // Directories are implicit and durable: the store creates its
        // directories once, before any content exists.
        self.mutate()
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.mutate()?;
        let in_dir = |p: &Path| p.parent() == Some(dir);
        self.durable_names.retain(|p, _| !in_dir(p));
        for (p, id) in &self.names {
            if in_dir(p) {
                self.durable_names.insert(p.clone(), *id);
            }
        }
        self.collect_inodes();
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.alive()?;
        Ok(self
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn set_read_only(&mut self, _path: &Path) -> io::Result<()> {
        self.mutate()
    }

    fn free_bytes(&self) -> io::Result<u64> {
        self.alive()?;
        Ok(self.capacity.saturating_sub(self.used()))
    }

    fn real_path(&self, _path: &Path) -> Option<PathBuf> {
        None
    }
}
