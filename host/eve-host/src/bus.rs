//! The host end of each service's bus channel: a unix socket per service,
//! bound before its VM starts, which the VMM connects the guest's bus port
//! to. Accepted connections go to a [`BusAttach`]: the node's bus broker
//! (see [`crate::nodebus`]).

use std::{
    io,
    os::unix::{
        fs::FileTypeExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
};

/// Takes the bus connection of a service's VM (a new one on every start).
pub trait BusAttach: Send + Sync {
    fn attach(&self, service: &str, stream: UnixStream);
}

/// Linux's limit on a unix socket path (`sun_path`, with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Why the bus sockets could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(
        "bus socket path {path} is longer than {MAX_SOCKET_PATH} bytes: use a shorter --state-dir"
    )]
    PathTooLong { path: PathBuf },
    #[error("{path} exists and is not a socket: refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("binding the bus socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
}

struct BusSocket {
    service: String,
    path: PathBuf,
    listener: UnixListener,
}

/// The listening bus sockets of a node; removed when dropped.
pub struct BusSockets {
    sockets: Vec<BusSocket>,
}

impl BusSockets {
    /// Binds `<dir>/<service>.bus` for each service, replacing sockets a
    /// previous run left behind.
    pub fn bind<'a>(
        dir: &Path,
        services: impl IntoIterator<Item = &'a str>,
    ) -> Result<BusSockets, BusError> {
        let mut sockets = Vec::new();
        for service in services {
            let path = dir.join(format!("{service}.bus"));
            if path.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(BusError::PathTooLong { path });
            }
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_socket() => {
                    std::fs::remove_file(&path).map_err(|source| BusError::Bind {
                        path: path.clone(),
                        source,
                    })?;
                }
                Ok(_) => return Err(BusError::NotASocket { path }),
                Err(_) => {}
            }
            let bind = |path: &Path| {
                let listener = UnixListener::bind(path)?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            };
            let listener = bind(&path).map_err(|source| BusError::Bind {
                path: path.clone(),
                source,
            })?;
            sockets.push(BusSocket {
                service: service.to_string(),
                path,
                listener,
            });
        }
        Ok(BusSockets { sockets })
    }

    /// The socket of `service`.
    pub fn path(&self, service: &str) -> Option<&Path> {
        self.sockets
            .iter()
            .find(|s| s.service == service)
            .map(|s| s.path.as_path())
    }

    /// Hands every connection waiting on any socket to `attach`, without
    /// blocking. Returns the services that connected.
    pub fn accept_pending(&self, attach: &dyn BusAttach) -> io::Result<Vec<String>> {
        let mut accepted = Vec::new();
        for socket in &self.sockets {
            loop {
                match socket.listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false)?;
                        attach.attach(&socket.service, stream);
                        accepted.push(socket.service.clone());
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(accepted)
    }
}

impl Drop for BusSockets {
    fn drop(&mut self) {
        for socket in &self.sockets {
            let _ = std::fs::remove_file(&socket.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        io::{Read, Write},
        sync::Mutex,
    };

    use super::*;

    /// Keeps the connections it is given, by service.
    #[derive(Default)]
    struct Collect {
        held: Mutex<HashMap<String, UnixStream>>,
    }

    impl BusAttach for Collect {
        fn attach(&self, service: &str, stream: UnixStream) {
            self.held
                .lock()
                .unwrap()
                .insert(service.to_string(), stream);
        }
    }

    #[test]
    fn connections_reach_the_attach_seam_per_service() {
        let dir = tempfile::tempdir().unwrap();
        let sockets = BusSockets::bind(dir.path(), ["a", "b"]).expect("bind");
        let hold = Collect::default();
        assert!(sockets.accept_pending(&hold).unwrap().is_empty());
        let path = sockets.path("b").expect("b's socket").to_path_buf();
        assert_eq!(path, dir.path().join("b.bus"));
        let mut guest = UnixStream::connect(&path).unwrap();
        assert_eq!(sockets.accept_pending(&hold).unwrap(), ["b"]);
        assert!(!hold.held.lock().unwrap().contains_key("a"));
        guest.write_all(b"x").unwrap();
        let mut host_end = hold.held.lock().unwrap().remove("b").unwrap();
        let mut byte = [0u8; 1];
        host_end.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        drop(sockets);
        assert!(!path.exists(), "sockets are removed on drop");
    }

    #[test]
    fn stale_sockets_are_replaced_but_other_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let stale = UnixListener::bind(dir.path().join("a.bus")).unwrap();
        drop(stale);
        assert!(BusSockets::bind(dir.path(), ["a"]).is_ok());
        std::fs::write(dir.path().join("c.bus"), b"data").unwrap();
        assert!(matches!(
            BusSockets::bind(dir.path(), ["c"]),
            Err(BusError::NotASocket { .. })
        ));
        let deep = dir.path().join("x".repeat(120));
        assert!(matches!(
            BusSockets::bind(&deep, ["a"]),
            Err(BusError::PathTooLong { .. })
        ));
    }
}
