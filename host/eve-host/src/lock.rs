//! One owner per directory. Two hosts on one state directory wipe each
//! other's bus sockets and swtpm state and stop each other's VMs as
//! orphans, so a host takes an exclusive `flock` on a file in its state
//! directory before it touches anything there and holds it for the node's
//! life. The kernel drops the lock when its holder ends, however it ends
//! (a SIGKILLed host leaves no stale lock; the VMs it left are reaped as
//! orphans by the next host). The holder writes its pid and command line
//! in the file, so one that is refused can name it.
//!
//! xtask guards its own directories the same way.

use std::{
    fmt,
    fs::{File, OpenOptions, TryLockError},
    io::{self, Read, Seek, Write},
    path::{Path, PathBuf},
};

/// The lock file a host holds in its state directory.
pub const HOST_LOCK_FILE: &str = "eve-host.lock";

/// Who holds a lock, as it wrote itself in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holder {
    pub pid: Option<u32>,
    pub command: Option<String>,
}

impl Holder {
    /// This process.
    fn this_process() -> Holder {
        let args: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        Holder {
            pid: Some(std::process::id()),
            command: Some(args.join(" ")),
        }
    }

    /// The lock file's text: the pid on the first line, the command on
    /// the second.
    fn to_text(&self) -> String {
        let pid = self.pid.map(|p| p.to_string()).unwrap_or_default();
        let command = self.command.as_deref().unwrap_or_default();
        format!("{pid}\n{command}\n")
    }

    /// Reads what [`Holder::to_text`] wrote; whatever is missing or
    /// garbled is unknown.
    fn from_text(text: &str) -> Holder {
        let mut lines = text.lines();
        let pid = lines.next().and_then(|l| l.trim().parse().ok());
        let command = lines
            .next()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        Holder { pid, command }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.pid, &self.command) {
            (Some(pid), Some(command)) => write!(f, "process {pid} ({command})"),
            (Some(pid), None) => write!(f, "process {pid}"),
            (None, _) => f.write_str("a process that has not written its name yet"),
        }
    }
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{dir} is in use by {holder}: stop that first, or use another directory")]
    Held { dir: PathBuf, holder: Holder },
    #[error("locking {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// An exclusive lock on a directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    /// The lock lives as long as this open file.
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` (creating it) through its lock file `name`, or names
    /// the process holding it. Never waits.
    pub fn acquire(dir: &Path, name: &str) -> Result<DirLock, LockError> {
        let path = dir.join(name);
        let io_error = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_error)?;
        // Not truncated on open: until we hold the lock, the text in it is
        // the holder's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // A holder between its lock and its write has said nothing
                // yet; that is reported as such.
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder: Holder::from_text(&text),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(Holder::this_process().to_text().as_bytes()))
            .map_err(io_error)?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_directory_is_refused_naming_its_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("state");
        let first = DirLock::acquire(&node, HOST_LOCK_FILE).unwrap();
        assert_eq!(first.path(), node.join(HOST_LOCK_FILE));
        let me = Holder::this_process();
        assert_eq!(std::fs::read_to_string(first.path()).unwrap(), me.to_text());
        // flock locks belong to open files, so a second open in this
        // process is refused as another process would be.
        match DirLock::acquire(&node, HOST_LOCK_FILE) {
            Err(LockError::Held { dir, holder }) => {
                assert_eq!(dir, node);
                assert_eq!(holder, me);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let err = DirLock::acquire(&node, HOST_LOCK_FILE)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("is in use by process {}", std::process::id())),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap(),
            me.to_text(),
            "a refused one leaves the holder's text alone"
        );
        drop(first);
        DirLock::acquire(&node, HOST_LOCK_FILE).expect("free once released");
    }

    #[test]
    fn a_lock_file_left_by_a_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x.lock"),
            "4000000\nsomething long gone and its long command line\n",
        )
        .unwrap();
        let lock = DirLock::acquire(dir.path(), "x.lock").unwrap();
        assert_eq!(
            std::fs::read_to_string(lock.path()).unwrap(),
            Holder::this_process().to_text()
        );
    }

    #[test]
    fn holders_read_what_they_can() {
        assert_eq!(Holder::from_text(""), Holder::default());
        assert_eq!(
            Holder::from_text("12\n").to_string(),
            "process 12",
            "no command yet"
        );
        assert_eq!(
            Holder::from_text("x\ny\n").to_string(),
            "a process that has not written its name yet"
        );
        assert_eq!(
            Holder::from_text("7\neve-host run\n").to_string(),
            "process 7 (eve-host run)"
        );
    }
}
