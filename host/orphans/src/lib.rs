//! Processes a previous host left running. A host that is SIGKILLed (or
//! crashes) cannot stop its QEMUs and its swtpm: they keep running in their
//! own process groups, holding the state volumes' write locks and the TPM
//! state, and a new host's VMs would fail to start until they are gone. So
//! each of them writes a pid file, and a starting host stops whatever a pid
//! file names, but only if that process's command line still carries the
//! pid file's path: a pid reused by an unrelated process is left alone.
//!
//! The node host reaps its services' QEMUs and swtpm with it, and the app
//! domains (`host/domains`) reap their QEMUs with it.
#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// How long a killed process gets to disappear.
const GONE_WITHIN: Duration = Duration::from_secs(5);

/// A leftover process that was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    pub pid_file: PathBuf,
    pub pid: u32,
}

/// Why a leftover could not be dealt with.
#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("process {pid} (from {pid_file}) is still running after SIGKILL")]
    Survived { pid_file: PathBuf, pid: u32 },
}

/// Stops the process `pid_file` names if it is still the one that wrote
/// it, then removes the file. `None` when there was nothing to stop.
pub fn reap(pid_file: &Path) -> Result<Option<Reaped>, ReapError> {
    let io_error = |source| ReapError::Io {
        path: pid_file.to_path_buf(),
        source,
    };
    let text = match std::fs::read_to_string(pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e)),
    };
    let reaped = match text.trim().parse::<u32>() {
        Ok(pid) if names_pid_file(pid, pid_file) => {
            stop(pid, pid_file)?;
            Some(Reaped {
                pid_file: pid_file.to_path_buf(),
                pid,
            })
        }
        _ => None,
    };
    match std::fs::remove_file(pid_file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(e)),
        _ => Ok(reaped),
    }
}

/// Whether process `pid` runs with `pid_file` as one of its arguments (or
/// inside one, as swtpm's `file=PATH`).
fn names_pid_file(pid: u32, pid_file: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let wanted = pid_file.as_os_str().as_encoded_bytes();
    cmdline
        .split(|&b| b == 0)
        .any(|arg| arg.windows(wanted.len()).any(|w| w == wanted))
}

fn stop(pid: u32, pid_file: &Path) -> Result<(), ReapError> {
    let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(());
    };
    // Already gone between the check and now: nothing to do.
    if kill_process(target, Signal::KILL).is_err() {
        return Ok(());
    }
    let deadline = Instant::now() + GONE_WITHIN;
    while running(pid) {
        if Instant::now() >= deadline {
            return Err(ReapError::Survived {
                pid_file: pid_file.to_path_buf(),
                pid,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Alive and not a zombie waiting for its parent.
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("orphans-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_process_carrying_its_pid_file_is_stopped() {
        let dir = scratch("carrying");
        let pid_file = dir.join("svc.pid");
        std::fs::write(&pid_file, "").unwrap();
        // Follows the pid file, so the path is in its command line as it is
        // in QEMU's `-pidfile PATH`.
        let mut child = Command::new("tail")
            .args(["-f", "/dev/null"])
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Until it has exec'd, the child still shows our command line.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !names_pid_file(child.id(), &pid_file) {
            assert!(Instant::now() < deadline, "tail never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::write(&pid_file, format!("{}\n", child.id())).unwrap();
        let reaped = reap(&pid_file).unwrap();
        assert_eq!(
            reaped,
            Some(Reaped {
                pid_file: pid_file.clone(),
                pid: child.id()
            })
        );
        assert!(child.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(!pid_file.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reused_pid_is_left_alone() {
        let dir = scratch("reused");
        let pid_file = dir.join("svc.pid");
        let mut child = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        std::fs::write(&pid_file, child.id().to_string()).unwrap();
        assert_eq!(reap(&pid_file).unwrap(), None);
        assert!(child.try_wait().unwrap().is_none(), "still running");
        assert!(!pid_file.exists(), "the stale pid file is removed");
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_and_garbled_pid_files_are_nothing_to_do() {
        let dir = scratch("garbled");
        assert_eq!(reap(&dir.join("none.pid")).unwrap(), None);
        let garbled = dir.join("garbled.pid");
        std::fs::write(&garbled, "not a pid").unwrap();
        assert_eq!(reap(&garbled).unwrap(), None);
        assert!(!garbled.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
