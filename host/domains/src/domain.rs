//! One running domain: its QEMU process, QMP session and files. Started
//! only once QMP answers (so a VMM that fails on its arguments is a start
//! failure, in QEMU's own words), stopped by the guest's power button with
//! a deadline and then powered off, and read for its end reason.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, SeekFrom},
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use guest_arch::Accel;
use qmp::{Qmp, QmpError};
use shim_init::{
    blobdisk::{BlobSource, WriteError, write_blob_disk},
    config::{Overrides, ShimConfig},
};

use crate::{
    atomic::write_atomically,
    dir::{DomainDir, MAX_SOCKET_PATH},
    end::{self, End, Evidence},
    firmware::{self, FirmwareError},
    qemu::{self, Launch},
    seed::{SeedError, write_seed},
    spec::{ContainerImage, ContainerOverrides, DomainSpec, Kind, SpecError, VmBoot},
    usage::{self, Usage, UsageError},
};

/// How long QEMU may take to open its QMP socket. Under TCG on a busy
/// machine QEMU itself starts in well under a second; this only bounds a
/// VMM that hangs before it runs anything.
const QMP_WITHIN: Duration = Duration::from_secs(30);
/// After QMP `quit`, how long before SIGKILL.
const QUIT_WITHIN: Duration = Duration::from_secs(5);
/// How much of the console's end a crash report reads.
const CONSOLE_TAIL_BYTES: u64 = 64 * 1024;

/// Why a domain did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Admission(#[from] crate::admission::AdmissionError),
    #[error("{name}: choosing the accelerator: {why}")]
    Accel { name: String, why: String },
    #[error(transparent)]
    Firmware(#[from] FirmwareError),
    #[error("cloud-init seed: {0}")]
    Seed(#[from] SeedError),
    #[error("{name}: writing the blob disk: {source}")]
    Blobs { name: String, source: WriteError },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path} is {len} bytes long; unix sockets allow {MAX_SOCKET_PATH}: use a shorter state directory"
    )]
    SocketPath { path: PathBuf, len: usize },
    #[error("{binary} not found: install QEMU (cargo xtask deps)")]
    VmmMissing { binary: &'static str },
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: &'static str,
        source: io::Error,
    },
    #[error("{name}: the VMM failed to start: {message}")]
    Vmm { name: String, message: String },
    #[error("{name}: {source}")]
    Qmp { name: String, source: QmpError },
}

/// Why a stop went wrong (the domain is gone either way, unless the
/// kernel refused to kill it).
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("no domain {0} is running")]
    NotRunning(String),
    #[error("{name}: waiting for QEMU: {source}")]
    Wait { name: String, source: io::Error },
    #[error("{name}: QEMU (pid {pid}) survived SIGKILL")]
    Survived { name: String, pid: u32 },
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopOutcome {
    /// The guest powered down before the timeout.
    pub graceful: bool,
    /// From the power button to QEMU's exit.
    pub took: Duration,
}

/// A domain that ended, with why and how long it was up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub name: String,
    pub end: End,
    pub up_for: Duration,
}

/// A started domain.
pub struct Domain {
    spec: DomainSpec,
    dir: DomainDir,
    accel: Accel,
    child: Child,
    qmp: Option<Qmp>,
    started: Instant,
    console_from: u64,
    vmm_log_from: u64,
    stopped: Option<bool>,
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain")
            .field("name", &self.spec.name)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StartError + '_ {
    move |source| StartError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Domain {
    /// Prepares the domain's files, starts QEMU and waits until QMP
    /// answers. Admission is the caller's ([`crate::Domains::start`]).
    pub fn launch(root: &Path, spec: DomainSpec) -> Result<Domain, StartError> {
        spec.check()?;
        let name = spec.name.clone();
        let accel = guest_arch::choose_accel(spec.arch, spec.accel)
            .map_err(|why| StartError::Accel {
                name: name.clone(),
                why,
            })?
            .accel;
        let dir = DomainDir::new(root, &name);
        std::fs::create_dir_all(dir.path()).map_err(io_error(dir.path()))?;
        let socket = dir.qmp_socket();
        let len = socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(StartError::SocketPath { path: socket, len });
        }
        remove_if_present(&socket)?;
        let launch = Launch {
            accel,
            firmware: prepare_firmware(&spec, &dir)?,
            seed: match &spec.cloud_init {
                Some(data) => {
                    write_seed(&dir.seed(), &name, data)?;
                    Some(dir.seed())
                }
                None => None,
            },
            blobs: match &spec.kind {
                Kind::Container {
                    image, overrides, ..
                } => {
                    write_blobs(&dir.blobs(), image, overrides).map_err(|source| {
                        StartError::Blobs {
                            name: name.clone(),
                            source,
                        }
                    })?;
                    Some(dir.blobs())
                }
                _ => None,
            },
        };
        let console_from = file_len(&dir.console());
        let vmm_log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.vmm_log())
            .map_err(io_error(&dir.vmm_log()))?;
        let vmm_log_from = file_len(&dir.vmm_log());
        let binary = spec.arch.qemu();
        let child = Command::new(binary)
            .args(qemu::qemu_args(&spec, &dir, &launch))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(vmm_log)
            // Its own process group: a Ctrl-C meant for the host does not
            // reach the VM; the host stops it in order.
            .process_group(0)
            .spawn()
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => StartError::VmmMissing { binary },
                _ => StartError::Spawn { binary, source },
            })?;
        let mut domain = Domain {
            spec,
            dir,
            accel,
            child,
            qmp: None,
            started: Instant::now(),
            console_from,
            vmm_log_from,
            stopped: None,
        };
        match domain.connect_qmp() {
            Ok(qmp) => {
                domain.qmp = Some(qmp);
                Ok(domain)
            }
            Err(e) => {
                let _ = domain.child.kill();
                let _ = domain.child.wait();
                Err(e)
            }
        }
    }

    fn connect_qmp(&mut self) -> Result<Qmp, StartError> {
        let name = self.spec.name.clone();
        let socket = self.dir.qmp_socket();
        let deadline = Instant::now() + QMP_WITHIN;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(StartError::Vmm {
                    name,
                    message: self.vmm_message(),
                });
            }
            if socket.exists()
                && let Ok(mut qmp) = Qmp::connect(&socket)
            {
                // The machine is built and running once this answers; a
                // VMM that dies on a bad device or file dies before it.
                return match qmp.execute("query-status") {
                    Ok(_) => Ok(qmp),
                    Err(source) => {
                        let _ = self.wait_exit(Duration::from_secs(2));
                        if self.child.try_wait().ok().flatten().is_some() {
                            Err(StartError::Vmm {
                                name,
                                message: self.vmm_message(),
                            })
                        } else {
                            Err(StartError::Qmp { name, source })
                        }
                    }
                };
            }
            if Instant::now() >= deadline {
                return Err(StartError::Qmp {
                    name,
                    source: QmpError::Timeout("the QMP socket".into()),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// QEMU's last words of this boot, or its exit status.
    fn vmm_message(&mut self) -> String {
        let log = read_from(&self.dir.vmm_log(), self.vmm_log_from);
        let last = log.lines().rev().find(|l| !l.trim().is_empty());
        match (last, self.child.try_wait().ok().flatten()) {
            (Some(line), _) => line.trim().to_string(),
            (None, Some(status)) => format!("QEMU exited ({status})"),
            (None, None) => "QEMU did not answer".into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &DomainSpec {
        &self.spec
    }

    pub fn dir(&self) -> &DomainDir {
        &self.dir
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When QEMU answered QMP.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// This boot's console so far.
    pub fn console(&self) -> String {
        read_from(&self.dir.console(), self.console_from)
    }

    pub fn usage(&self) -> Result<Usage, UsageError> {
        usage::read(self.pid(), u64::from(self.spec.memory_mib))
    }

    /// Presses the power button (ACPI on PCs and microvm, the GPIO key or
    /// ACPI GED on virt), waits up to `timeout` for the guest to power
    /// down, then powers the VM off (QMP `quit`, then SIGKILL).
    pub fn stop(&mut self, timeout: Duration) -> Result<StopOutcome, StopError> {
        let pressed = Instant::now();
        if self.exited()?.is_none() {
            if let Some(qmp) = &mut self.qmp {
                let _ = qmp.execute("system_powerdown");
            }
            let graceful = self.wait_exit(timeout)?;
            if !graceful {
                if let Some(qmp) = &mut self.qmp {
                    let _ = qmp.execute("quit");
                }
                if !self.wait_exit(QUIT_WITHIN)? {
                    let _ = self.child.kill();
                    if !self.wait_exit(QUIT_WITHIN)? {
                        return Err(StopError::Survived {
                            name: self.spec.name.clone(),
                            pid: self.pid(),
                        });
                    }
                }
            }
            self.stopped = Some(graceful);
        }
        Ok(StopOutcome {
            graceful: self.stopped.unwrap_or(true),
            took: pressed.elapsed(),
        })
    }

    /// Presses the power button without waiting (for stopping many at once).
    pub fn press_power_button(&mut self) {
        if let Some(qmp) = &mut self.qmp {
            let _ = qmp.execute("system_powerdown");
        }
    }

    fn exited(&mut self) -> Result<Option<std::process::ExitStatus>, StopError> {
        self.child.try_wait().map_err(|source| StopError::Wait {
            name: self.spec.name.clone(),
            source,
        })
    }

    /// Whether QEMU exited within `within`.
    fn wait_exit(&mut self, within: Duration) -> Result<bool, StopError> {
        let deadline = Instant::now() + within;
        loop {
            if self.exited()?.is_some() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// If QEMU has exited: how the domain ended. Never blocks for long:
    /// QMP's reader sees the socket close as QEMU exits.
    pub fn try_end(&mut self) -> Option<Ended> {
        let status = self.child.try_wait().ok().flatten()?;
        let events = self.qmp.take().map(Qmp::finish).unwrap_or_default();
        let console = self.console();
        let vmm_log = read_from(&self.dir.vmm_log(), self.vmm_log_from);
        let reason = qmp::shutdown_reason(&events);
        let evidence = Evidence {
            stop: self.stopped,
            debug_exit: qemu::has_debug_exit(&self.spec),
            exit_code: status.code(),
            signal: status.signal(),
            shutdown_reason: reason.as_deref(),
            guest_panicked: qmp::guest_panicked(&events),
            console: &console,
            vmm_log: &vmm_log,
        };
        let _ = std::fs::remove_file(self.dir.pid_file());
        Some(Ended {
            name: self.spec.name.clone(),
            end: end::classify(&evidence),
            up_for: self.started.elapsed(),
        })
    }
}

impl Drop for Domain {
    /// A domain nobody holds any more is powered off at once: a host that
    /// drops its domains (or unwinds from a panic) leaves no QEMU behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(self.dir.pid_file());
        }
    }
}

fn remove_if_present(path: &Path) -> Result<(), StartError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}

/// For a UEFI VM: the firmware, and this domain's variable store (copied
/// from the blank template on first boot, kept after).
fn prepare_firmware(
    spec: &DomainSpec,
    dir: &DomainDir,
) -> Result<Option<(firmware::Firmware, PathBuf)>, StartError> {
    if !matches!(spec.kind, Kind::LinuxVm { boot: VmBoot::Uefi }) {
        return Ok(None);
    }
    let firmware = firmware::find(spec.arch)?;
    let vars = dir.uefi_vars();
    if !vars.exists() {
        let template = &firmware.vars_template;
        write_atomically(&vars, |out| {
            io::copy(&mut File::open(template)?, out).map(drop)
        })
        .map_err(io_error(&vars))?;
    }
    Ok(Some((firmware, vars)))
}

fn write_blobs(
    path: &Path,
    image: &ContainerImage,
    overrides: &ContainerOverrides,
) -> Result<(), WriteError> {
    let config = ShimConfig {
        manifest: image.manifest.clone(),
        overrides: Overrides {
            entrypoint: overrides.entrypoint.clone(),
            cmd: overrides.cmd.clone(),
            env: overrides.env.clone(),
            working_dir: overrides.working_dir.clone(),
            user: overrides.user.clone(),
        },
    };
    let mut sources = Vec::new();
    for blob in &image.blobs {
        let open = || -> io::Result<(File, u64)> {
            let file = File::open(&blob.path)?;
            let size = file.metadata()?.len();
            Ok((file, size))
        };
        let (reader, size) = open().map_err(|source| WriteError::Blob {
            digest: blob.digest.clone(),
            source,
        })?;
        sources.push(BlobSource {
            digest: blob.digest.clone(),
            size,
            reader,
        });
    }
    let mut failure = None;
    let written = write_atomically(path, |out| {
        let mut buffered = io::BufWriter::new(out);
        if let Err(e) = write_blob_disk(&mut buffered, &config, sources) {
            failure = Some(e);
            return Err(io::Error::other("the blob disk is incomplete"));
        }
        io::Write::flush(&mut buffered)
    });
    match (failure, written) {
        (Some(e), _) => Err(e),
        (None, Err(io)) => Err(WriteError::Io(io)),
        (None, Ok(())) => Ok(()),
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The text of `path` from byte `from`, at most its last
/// [`CONSOLE_TAIL_BYTES`]; lossy, since a guest may print anything.
fn read_from(path: &Path, from: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = from.max(len.saturating_sub(CONSOLE_TAIL_BYTES)).min(len);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
