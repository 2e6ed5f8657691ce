//! A software TPM (swtpm) owned by the host for one node, for development
//! and tests, with its state kept in the node's state directory.
//!
//! Layout under the node's state directory:
//!
//! | path | what |
//! |---|---|
//! | `tpm/` | swtpm's state: persistent keys and NV indices survive restarts here |
//! | `tpm-ca/` | the node's local CA that signed its EK certificate (swtpm_localca state) |
//! | `swtpm.sock`, `swtpm.ctrl` | the data and control sockets while it runs |
//! | `swtpm.log` | swtpm's log |
//!
//! A new state is made once, by `swtpm_setup` (when installed) into
//! `tpm.new/` and renamed to `tpm/` only when complete, so a crash during
//! manufacturing never leaves a half-made TPM behind: the next start
//! begins again. `swtpm_setup` creates the endorsement keys and signs EK
//! certificates with a per-node local CA, as a TPM vendor would. Without
//! `swtpm_setup`, or if it fails, the TPM is manufactured by swtpm itself
//! on first start and has no EK certificate.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::transport::{SocketTransport, TransportError};

/// How long swtpm may take to open its sockets.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long swtpm may take to exit after `CMD_SHUTDOWN` before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest Unix socket path (`sun_path` less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// swtpm control-channel commands (big-endian `u32`, see swtpm's
/// `tpm_ioctl.h`).
const CMD_GET_CAPABILITY: u32 = 1;
const CMD_SHUTDOWN: u32 = 3;

/// Why swtpm could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SwtpmError {
    /// A state directory or file could not be made.
    #[error("preparing swtpm state in {path}: {source}")]
    State {
        /// The directory or file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The node's state directory is too deep for a Unix socket path.
    #[error("socket path {0} is longer than {MAX_SOCKET_PATH} bytes")]
    SocketPathTooLong(PathBuf),
    /// The swtpm binary could not be run.
    #[error("cannot run swtpm: {0}")]
    Spawn(std::io::Error),
    /// swtpm exited before it was ready.
    #[error("swtpm exited with {status} before it was ready; see {log}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log file.
        log: PathBuf,
    },
    /// swtpm did not answer on its control socket in time.
    #[error("swtpm did not become ready within {START_TIMEOUT:?}; see {0}")]
    NotReady(PathBuf),
}

/// A running swtpm for one node; it is shut down (and killed if it will
/// not go) when dropped.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    server: PathBuf,
    ctrl: PathBuf,
    state: PathBuf,
}

impl Swtpm {
    /// Where swtpm writes its pid: a host started after one that died
    /// stops the swtpm it left before starting its own.
    pub fn pid_file(node_state_dir: &Path) -> PathBuf {
        node_state_dir.join("swtpm.pid")
    }

    /// Starts swtpm on the TPM state of the node whose state directory is
    /// `node_state_dir`, manufacturing a new TPM there on first use, and
    /// waits until it answers.
    pub fn start(node_state_dir: &Path) -> Result<Swtpm, SwtpmError> {
        let state_error = |path: &Path| {
            let path = path.to_owned();
            move |source| SwtpmError::State { path, source }
        };
        fs::create_dir_all(node_state_dir).map_err(state_error(node_state_dir))?;
        let state = node_state_dir.join("tpm");
        if !state.is_dir() {
            manufacture(node_state_dir, &state)?;
        }
        let server = node_state_dir.join("swtpm.sock");
        let ctrl = node_state_dir.join("swtpm.ctrl");
        for socket in [&server, &ctrl] {
            if socket.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(SwtpmError::SocketPathTooLong(socket.clone()));
            }
            // Left behind by an swtpm that did not exit cleanly.
            match fs::remove_file(socket) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(state_error(socket)(e));
                }
                _ => {}
            }
        }
        let log = node_state_dir.join("swtpm.log");
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(state_error(&log))?;
        let stderr = log_file.try_clone().map_err(state_error(&log))?;
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(option("dir=", &state))
            .arg("--server")
            .arg(option("type=unixio,path=", &server))
            .arg("--ctrl")
            .arg(option("type=unixio,path=", &ctrl))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .arg("--pid")
            .arg(option("file=", &Swtpm::pid_file(node_state_dir)))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            // Its own process group: a Ctrl-C in the host's terminal must
            // not reach swtpm before the host has shut it down in order.
            .process_group(0)
            .spawn()
            .map_err(SwtpmError::Spawn)?;
        let mut swtpm = Swtpm {
            child,
            server,
            ctrl,
            state,
        };
        swtpm.wait_ready(&log)?;
        Ok(swtpm)
    }

    /// Waits until swtpm answers a capability query on its control socket,
    /// which it opens after its data socket.
    fn wait_ready(&mut self, log: &Path) -> Result<(), SwtpmError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(SwtpmError::Exited {
                    status,
                    log: log.to_owned(),
                });
            }
            if control(&self.ctrl, CMD_GET_CAPABILITY, 8).is_ok() && self.server.exists() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SwtpmError::NotReady(log.to_owned()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A connection to the TPM. swtpm serves one connection at a time: keep
    /// one (the [`crate::Mediator`] does) rather than opening many.
    pub fn transport(&self) -> Result<SocketTransport, TransportError> {
        SocketTransport::connect(&self.server)
    }

    /// The data socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.server
    }

    /// The TPM state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        // CMD_SHUTDOWN makes swtpm shut the TPM down and exit on its own.
        if let Err(e) = control(&self.ctrl, CMD_SHUTDOWN, 4) {
            log::warn!("swtpm: shutdown over the control channel failed: {e}");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Ok(None) = self.child.try_wait() {
            log::warn!("swtpm: did not exit after shutdown; killing it");
            if let Err(e) = self.child.kill() {
                log::warn!("swtpm: kill failed: {e}");
            }
            let _ = self.child.wait();
        }
        for socket in [&self.server, &self.ctrl] {
            let _ = fs::remove_file(socket);
        }
    }
}

/// `prefix` followed by `path`, for swtpm's `key=value` options.
fn option(prefix: &str, path: &Path) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(prefix);
    s.push(path);
    s
}

/// Sends one control command and reads its `response_len`-byte answer,
/// which starts with a big-endian result code (0 is success).
fn control(ctrl: &Path, command: u32, response_len: usize) -> std::io::Result<()> {
    let mut stream = UnixStream::connect(ctrl)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(&command.to_be_bytes())?;
    let mut response = vec![0u8; response_len];
    stream.read_exact(&mut response)?;
    match response[..4] {
        [0, 0, 0, 0] => Ok(()),
        _ => Err(std::io::Error::other(format!(
            "control command {command} failed: {:02x?}",
            &response[..4]
        ))),
    }
}

/// Makes a new TPM state at `state` with `swtpm_setup`: EKs, EK
/// certificates from the node's own local CA, and the SHA-256 PCR bank.
/// A state is made without it (swtpm manufactures one on first start, with
/// no EK certificate) when the tool is missing or fails.
fn manufacture(node_state_dir: &Path, state: &Path) -> Result<(), SwtpmError> {
    let state_error = |path: &Path| {
        let path = path.to_owned();
        move |source| SwtpmError::State { path, source }
    };
    let staging = node_state_dir.join("tpm.new");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(state_error(&staging))?;
    }
    fs::create_dir(&staging).map_err(state_error(&staging))?;
    if let Err(reason) = run_swtpm_setup(node_state_dir, &staging) {
        log::warn!("swtpm: manufacturing without an EK certificate: {reason}");
        fs::remove_dir_all(&staging).map_err(state_error(&staging))?;
        fs::create_dir(&staging).map_err(state_error(&staging))?;
    }
    fs::rename(&staging, state).map_err(state_error(state))?;
    fs::File::open(node_state_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(state_error(node_state_dir))
}

/// Runs `swtpm_setup` with configuration files pointing at the node's CA
/// directory, so nothing is written outside the node's state.
fn run_swtpm_setup(node_state_dir: &Path, staging: &Path) -> Result<(), String> {
    let ca = node_state_dir.join("tpm-ca");
    fs::create_dir_all(&ca).map_err(|e| format!("creating {}: {e}", ca.display()))?;
    let localca_conf = ca.join("swtpm-localca.conf");
    let localca_options = ca.join("swtpm-localca.options");
    let setup_conf = ca.join("swtpm_setup.conf");
    let files = [
        (
            &localca_conf,
            format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = ca.display()
            ),
        ),
        (
            &localca_options,
            "--platform-manufacturer EVE-rs\n--platform-version 2.1\n--platform-model swtpm\n"
                .to_owned(),
        ),
        (
            &setup_conf,
            format!(
                "create_certs_tool = swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
                localca_conf.display(),
                localca_options.display()
            ),
        ),
    ];
    for (path, text) in files {
        fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let output = Command::new("swtpm_setup")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(staging)
        .arg("--create-ek-cert")
        .arg("--pcr-banks")
        .arg("sha256")
        .arg("--overwrite")
        .arg("--config")
        .arg(&setup_conf)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run swtpm_setup: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "swtpm_setup exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
