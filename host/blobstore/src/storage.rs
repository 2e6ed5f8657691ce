//! The file operations the store needs, behind a trait, so tests can run
//! the same store code over a simulated disk that loses power at any
//! operation ([`crate::sim::SimStorage`]).
//!
//! Paths are relative to the store's root. The contract is POSIX's:
//! written data is durable only after [`Storage::sync_file`], and a
//! create, rename or remove only after [`Storage::sync_dir`] of the
//! directory holding the name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File operations on one directory tree.
pub trait Storage: Send {
    /// The whole content of a small file; `NotFound` if missing.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Up to `buf.len()` bytes at `offset`; 0 at end of file.
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// The file's length, `None` if it does not exist.
    fn len(&self, path: &Path) -> io::Result<Option<u64>>;
    /// Writes `data` at `offset`, creating the file if needed.
    fn write_at(&mut self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn truncate(&mut self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the file's data durable.
    fn sync_file(&mut self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file; a missing file is not an error.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// Creates a directory (and its parents); existing is not an error.
    fn create_dir(&mut self, path: &Path) -> io::Result<()>;
    /// Makes the names in a directory durable.
    fn sync_dir(&mut self, path: &Path) -> io::Result<()>;
    /// Names of the files in a directory.
    fn list(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Marks a file read-only (verified blobs are immutable).
    fn set_read_only(&mut self, path: &Path) -> io::Result<()>;
    /// Bytes an unprivileged writer can still use on the filesystem.
    fn free_bytes(&self) -> io::Result<u64>;
    /// Where a file really is, for readers outside the store (volume
    /// builders open verified blobs read-only). `None` for simulations.
    fn real_path(&self, path: &Path) -> Option<PathBuf>;
}

/// The real filesystem under a root directory.
#[derive(Debug)]
pub struct OsStorage {
    root: PathBuf,
    /// The file last written, kept open: a download is thousands of writes
    /// to one staging file.
    open: Option<(PathBuf, File)>,
}

impl OsStorage {
    /// Storage rooted at `root` (created by [`Storage::create_dir`] of "").
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            open: None,
        }
    }

    fn full(&self, path: &Path) -> PathBuf {
        self.root.join(path)
    }

    fn writable(&mut self, path: &Path) -> io::Result<&File> {
        let stale = self.open.as_ref().is_none_or(|(p, _)| p != path);
        if stale {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.full(path))?;
            self.open = Some((path.to_path_buf(), file));
        }
        match &self.open {
            Some((_, file)) => Ok(file),
            None => Err(io::Error::other("no open file")),
        }
    }

    /// Drops the cached handle if it names `path` (before a rename or
    /// remove, so the cache never points at a file under another name).
    fn forget(&mut self, path: &Path) {
        if self.open.as_ref().is_some_and(|(p, _)| p == path) {
            self.open = None;
        }
    }
}

impl Storage for OsStorage {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(self.full(path))
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        File::open(self.full(path))?.read_at(buf, offset)
    }

    fn len(&self, path: &Path) -> io::Result<Option<u64>> {
        match fs::metadata(self.full(path)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_at(&mut self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.writable(path)?.write_all_at(data, offset)
    }

    fn truncate(&mut self, path: &Path, len: u64) -> io::Result<()> {
        self.writable(path)?.set_len(len)
    }

    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        self.writable(path)?.sync_data()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        fs::rename(self.full(from), self.full(to))
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.forget(path);
        match fs::remove_file(self.full(path)) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn create_dir(&mut self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(self.full(path))
    }

    fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        File::open(self.full(path))?.sync_all()
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.full(path))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }

    fn set_read_only(&mut self, path: &Path) -> io::Result<()> {
        self.forget(path);
        fs::set_permissions(self.full(path), fs::Permissions::from_mode(0o444))
    }

    fn free_bytes(&self) -> io::Result<u64> {
        let st = rustix::fs::statvfs(&self.root).map_err(io::Error::from)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    fn real_path(&self, path: &Path) -> Option<PathBuf> {
        Some(self.full(path))
    }
}
