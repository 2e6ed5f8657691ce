//! `cargo xtask qemu` without a service: the whole node, as a device runs
//! it. Builds every service image of the manifest and the host, starts our
//! controller on loopback, makes the device's factory CONFIG partition (the
//! controller's address and root certificate, an onboarding certificate the
//! controller was told to expect, a soft serial), starts `eve-host` and
//! shows the node's status until Ctrl-C.
//!
//! The benchmarks start nodes the same way ([`Session`]).

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use eve_host::manifest::Manifest;
use guest_abi::{Marker, parse_marker};
use harness::provision::{OnboardIdentity, config_files, write_atomically, write_config_partition};
use harness::{Accel, Arch, Profile, build_service};

use crate::admin::AdminClient;
use crate::controller::{self, Group, LocalController};
use crate::status::NodeStatus;

/// How long `eve-host` gets to stop its VMs after SIGTERM (it gives each
/// VM 10 s itself) before it is killed.
const HOST_STOP_GRACE: Duration = Duration::from_secs(30);
/// Host notes (its own lines, not guest consoles) kept for the status view.
const NOTES_SHOWN: usize = 3;

/// The default node manifest.
pub fn default_manifest() -> PathBuf {
    harness::workspace_root().join("nodes/default.toml")
}

/// A node's service images and host, built.
pub struct BuiltNode {
    pub arch: Arch,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    /// The directory `eve-host --images` takes.
    pub images: PathBuf,
    /// Each service's name and image file.
    pub image_files: Vec<(String, PathBuf)>,
    pub host_binary: PathBuf,
}

impl BuiltNode {
    pub fn service_names(&self) -> impl Iterator<Item = &str> {
        self.manifest.services.iter().map(|s| s.name.as_str())
    }
}

/// Builds (release) every image `manifest_path` names for `arch` (the
/// manifest's own when `None`) and `eve-host`.
pub fn build(manifest_path: &Path, arch: Option<Arch>) -> Result<BuiltNode, String> {
    let manifest =
        Manifest::load(manifest_path).map_err(|e| format!("{}:\n{e}", manifest_path.display()))?;
    let arch = arch.unwrap_or(manifest.node.arch);
    let mut images: Option<PathBuf> = None;
    let mut image_files = Vec::new();
    for service in &manifest.services {
        let file =
            build_service(&service.image, arch, Profile::Release).map_err(|e| e.to_string())?;
        let dir = file
            .parent()
            .ok_or("image without a directory")?
            .to_path_buf();
        if eve_host::node::image_path(&dir, &service.image, arch) != file {
            return Err(format!(
                "{} is not where eve-host looks for image {}",
                file.display(),
                service.image
            ));
        }
        images.get_or_insert(dir);
        image_files.push((service.name.clone(), file));
    }
    crate::cargo(&[
        "build",
        "--quiet",
        "--release",
        "--package",
        "eve-host",
        "--bin",
        "eve-host",
    ])?;
    Ok(BuiltNode {
        arch,
        manifest_path: manifest_path.to_path_buf(),
        images: images.ok_or("the manifest has no services")?,
        image_files,
        manifest,
        host_binary: controller::release_binary("eve-host"),
    })
}

/// Where a node started by xtask keeps its files.
#[derive(Debug, Clone)]
pub struct NodeDirs {
    pub root: PathBuf,
}

impl NodeDirs {
    /// `target/<prefix>-<arch>`.
    pub fn new(prefix: &str, arch: Arch) -> NodeDirs {
        NodeDirs {
            root: harness::workspace_root().join(format!("target/{prefix}-{arch}")),
        }
    }
    pub fn controller(&self) -> PathBuf {
        self.root.join("controller")
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn config_part(&self) -> PathBuf {
        self.root.join("config.img")
    }
    pub fn host_log(&self) -> PathBuf {
        self.root.join("eve-host.log")
    }
    /// The root certificate of the controller the state belongs to.
    fn state_owner(&self) -> PathBuf {
        self.root.join("controller-root.pem")
    }
    fn identity_file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// Which controller a session talks to.
#[derive(Debug, Clone)]
pub enum ControllerDir {
    /// A new one (new CA, no devices) in the session's directory.
    Fresh,
    /// One whose data directory already exists or is to be kept.
    Reuse(PathBuf),
}

fn remove_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// A controller and a node host talking to it.
pub struct Session {
    /// Declared before the controller so it stops first.
    pub host: HostProcess,
    pub controller: LocalController,
    pub admin: AdminClient,
    pub identity: OnboardIdentity,
    pub controller_dir: PathBuf,
    pub state_dir: PathBuf,
}

impl Session {
    /// Starts the controller, prepares the device's CONFIG partition and
    /// onboarding and starts the host. The node's state is kept across runs
    /// only while the controller is the same one (same root certificate):
    /// a device's identity means nothing to another controller.
    pub fn start(
        built: &BuiltNode,
        dirs: &NodeDirs,
        controller_dir: ControllerDir,
        accel: Option<Accel>,
    ) -> Result<Session, String> {
        std::fs::create_dir_all(&dirs.root).map_err(|e| format!("{}: {e}", dirs.root.display()))?;
        let controller_dir = match controller_dir {
            ControllerDir::Fresh => {
                remove_dir(&dirs.controller())?;
                dirs.controller()
            }
            ControllerDir::Reuse(dir) => dir,
        };
        let controller = controller::start(&controller_dir, Group::Own)?;
        let admin = controller.admin_client();
        let owner = std::fs::read_to_string(dirs.state_owner()).ok();
        let same_controller = owner.as_deref() == Some(controller.root_pem.as_str());
        let kept = if same_controller {
            load_identity(dirs)
        } else {
            remove_dir(&dirs.state())?;
            None
        };
        let identity = match kept {
            Some(identity) => identity,
            None => {
                let identity = OnboardIdentity::generate("xtask-")?;
                save_identity(dirs, &identity)?;
                identity
            }
        };
        write_atomically(&dirs.state_owner(), controller.root_pem.as_bytes())?;
        admin.onboard(&identity.cert_pem, std::slice::from_ref(&identity.serial))?;
        write_config_partition(
            &dirs.config_part(),
            &config_files(
                controller.device_api.port(),
                &controller.root_pem,
                &identity,
            ),
        )?;
        let host = HostProcess::start(
            built,
            &dirs.state(),
            &dirs.config_part(),
            accel,
            &dirs.host_log(),
        )?;
        Ok(Session {
            host,
            controller,
            admin,
            identity,
            controller_dir,
            state_dir: dirs.state(),
        })
    }

    /// `<state-dir>/run/status.json`, parsed; `None` while the host has not
    /// written it (or is between writes).
    pub fn status_file(&self) -> Option<NodeStatus> {
        let text = std::fs::read_to_string(self.state_dir.join("run/status.json")).ok()?;
        NodeStatus::from_json(&text).ok()
    }

    /// Stops the host (its VMs first), then the controller.
    pub fn stop(mut self) {
        self.host.stop();
    }
}

const IDENTITY_FILES: [&str; 3] = ["onboard.cert.pem", "onboard.key.pem", "soft_serial"];

fn load_identity(dirs: &NodeDirs) -> Option<OnboardIdentity> {
    let [cert_pem, key_pem, serial] =
        IDENTITY_FILES.map(|n| std::fs::read_to_string(dirs.identity_file(n)).ok());
    Some(OnboardIdentity {
        cert_pem: cert_pem?,
        key_pem: key_pem?,
        serial: serial?,
    })
}

fn save_identity(dirs: &NodeDirs, identity: &OnboardIdentity) -> Result<(), String> {
    let texts = [&identity.cert_pem, &identity.key_pem, &identity.serial];
    for (name, text) in IDENTITY_FILES.iter().zip(texts) {
        write_atomically(&dirs.identity_file(name), text.as_bytes())?;
    }
    Ok(())
}

/// What the host says, as it says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// A status line (stdout): `service: state, restarts N...`.
    Status { line: String, at: Instant },
    /// A service's boot-timer stamp.
    Stamp {
        service: String,
        stage: String,
        at: Instant,
    },
    /// A service's measurement.
    Metric {
        service: String,
        name: String,
        value: u64,
        at: Instant,
    },
    /// A line of the host itself (not a guest console line).
    Note(String),
}

/// One line of the host's log (stderr), sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine<'a> {
    /// `[service] <marker>` from a guest console.
    Marker {
        service: &'a str,
        marker: Marker<'a>,
    },
    /// Any other guest console line.
    Console,
    /// The host's own words (`eve-host: ...`, `[service] host: ...`,
    /// `[service] vmm: ...`).
    Note,
}

/// Sorts one line of the host's log.
pub fn classify_log_line(line: &str) -> LogLine<'_> {
    let Some((service, text)) = line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    else {
        return LogLine::Note;
    };
    if text.starts_with("host: ") || text.starts_with("vmm: ") {
        return LogLine::Note;
    }
    match parse_marker(text) {
        Some(marker) => LogLine::Marker { service, marker },
        None => LogLine::Console,
    }
}

/// A running `eve-host`: its stdout and stderr are read by threads, its
/// log copied to a file, and what matters sent as [`HostEvent`]s.
pub struct HostProcess {
    child: Child,
    /// Just before the host was started.
    pub started: Instant,
    pub events: Receiver<HostEvent>,
    stopped: bool,
}

impl HostProcess {
    pub fn start(
        built: &BuiltNode,
        state_dir: &Path,
        config_part: &Path,
        accel: Option<Accel>,
        log: &Path,
    ) -> Result<HostProcess, String> {
        let log_file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new(&built.host_binary);
        command
            .arg("run")
            .arg("--manifest")
            .arg(&built.manifest_path)
            .args(["--arch", built.arch.name()])
            .arg("--images")
            .arg(&built.images)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--config-part")
            .arg(config_part);
        if let Some(accel) = accel {
            command.args(["--accel", accel.name()]);
        }
        // Its own process group: a Ctrl-C reaches only xtask, which stops
        // the host and then the controller, in that order.
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("{}: {e}", built.host_binary.display()))?;
        let (tx, events) = mpsc::channel();
        let stdout = child.stdout.take().ok_or("eve-host stdout")?;
        let stderr = child.stderr.take().ok_or("eve-host stderr")?;
        let status_tx = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = Instant::now();
                if status_tx.send(HostEvent::Status { line, at }).is_err() {
                    break;
                }
            }
        });
        let log_file = Mutex::new(log_file);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let at = Instant::now();
                if let Ok(mut file) = log_file.lock() {
                    let _ = writeln!(file, "{line}");
                }
                let event = match classify_log_line(&line) {
                    LogLine::Marker {
                        service,
                        marker: Marker::BootTimer { stage, .. },
                    } => HostEvent::Stamp {
                        service: service.to_owned(),
                        stage: stage.to_owned(),
                        at,
                    },
                    LogLine::Marker {
                        service,
                        marker: Marker::Metric { name, value },
                    } => HostEvent::Metric {
                        service: service.to_owned(),
                        name: name.to_owned(),
                        value,
                        at,
                    },
                    LogLine::Marker { .. } | LogLine::Console => continue,
                    LogLine::Note => HostEvent::Note(line),
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Ok(HostProcess {
            child,
            started,
            events,
            stopped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The host's exit status if it has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then wait for the host to stop its VMs (killing it if it
    /// takes too long). Returns whether it stopped on its own.
    pub fn stop(&mut self) -> bool {
        if self.stopped {
            return true;
        }
        self.stopped = true;
        controller::stop_child(&mut self.child, HOST_STOP_GRACE)
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The service a host note says joined the bus (`[name] host: bus
/// connected`).
pub fn bus_connected_note(line: &str) -> Option<&str> {
    line.strip_prefix('[')?
        .strip_suffix("] host: bus connected")
}

/// The service a status line is about.
pub fn status_line_service(line: &str) -> Option<&str> {
    line.split_once(": ").map(|(name, _)| name)
}

/// Options of `cargo xtask qemu` for the whole node.
pub struct NodeOptions {
    pub arch: Option<Arch>,
    pub accel: Option<Accel>,
    pub manifest: PathBuf,
    /// Reuse this controller data directory instead of a fresh one.
    pub controller: Option<PathBuf>,
}

/// Runs the node until SIGINT or SIGTERM.
pub fn run(options: NodeOptions) -> Result<(), String> {
    crate::deps::ensure()?;
    let built = build(&options.manifest, options.arch)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("installing the handler for signal {signal}: {e}"))?;
    }
    let dirs = NodeDirs::new("node", built.arch);
    let controller_dir = options
        .controller
        .clone()
        .map_or(ControllerDir::Fresh, ControllerDir::Reuse);
    let mut session = Session::start(&built, &dirs, controller_dir, options.accel)?;
    println!(
        "node {} ({}), manifest {}",
        built.manifest.node.name,
        built.arch,
        built.manifest_path.display()
    );
    println!(
        "controller: device API https://{}, admin API https://{} (token {}), data in {}",
        session.controller.device_api,
        session.controller.admin_api,
        session.controller.token,
        session.controller_dir.display()
    );
    println!(
        "device: soft serial {}, CONFIG partition {}, state in {}",
        session.identity.serial,
        dirs.config_part().display(),
        session.state_dir.display()
    );
    println!(
        "logs: host {}, consoles {}/logs/; Ctrl-C stops the node",
        dirs.host_log().display(),
        session.state_dir.display()
    );
    let result = watch(&mut session, &built, &dirs.host_log(), &stop);
    println!("stopping the node...");
    let host_clean = session.host.stop();
    drop(session);
    println!(
        "node and controller stopped{}",
        if host_clean {
            ""
        } else {
            " (eve-host had to be killed)"
        }
    );
    result
}

/// Shows the node's status until `stop` is set or the host ends.
fn watch(
    session: &mut Session,
    built: &BuiltNode,
    log: &Path,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut view = View::new(std::io::stdout().is_terminal());
    let mut host_lines: BTreeMap<String, String> = BTreeMap::new();
    let mut notes: VecDeque<String> = VecDeque::new();
    let mut next_draw = Instant::now();
    let mut changed = true;
    while !stop.load(Ordering::SeqCst) {
        match session.host.events.recv_timeout(Duration::from_millis(100)) {
            Ok(HostEvent::Status { line, .. }) => {
                if let Some(service) = status_line_service(&line) {
                    host_lines.insert(service.to_owned(), line.clone());
                }
                changed = true;
            }
            Ok(HostEvent::Note(line)) => {
                view.note(&line);
                notes.push_back(line);
                if notes.len() > NOTES_SHOWN {
                    notes.pop_front();
                }
                changed = true;
            }
            Ok(HostEvent::Stamp { .. } | HostEvent::Metric { .. })
            | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                thread::sleep(Duration::from_millis(100));
            }
        }
        if let Some(status) = session.host.exited() {
            return Err(format!(
                "eve-host ended by itself ({status}); its log: {}",
                log.display()
            ));
        }
        let now = Instant::now();
        if now >= next_draw || (changed && !view.live) {
            let status = session
                .status_file()
                .unwrap_or_else(|| NodeStatus::from_host_lines(&host_lines));
            let mut lines = Vec::new();
            if view.live {
                lines.push(format!(
                    "node {} up {} s",
                    built.manifest.node.name,
                    session.host.started.elapsed().as_secs()
                ));
            }
            lines.extend(crate::status::render(&status, view.live));
            if view.live {
                lines.extend(notes.iter().map(|n| format!("| {n}")));
            }
            view.show(&lines);
            next_draw = now + Duration::from_secs(1);
            changed = false;
        }
    }
    Ok(())
}

/// The status block on the terminal: redrawn in place (the cursor moves up
/// over the previous block only, so the scroll-back above stays), or, when
/// stdout is not a terminal, only the lines that changed.
struct View {
    live: bool,
    drawn: usize,
    previous: Vec<String>,
}

impl View {
    fn new(live: bool) -> View {
        View {
            live,
            drawn: 0,
            previous: Vec::new(),
        }
    }

    /// A host note: part of the block on a terminal, a line of its own
    /// otherwise.
    fn note(&mut self, line: &str) {
        if !self.live {
            println!("{line}");
        }
    }

    fn show(&mut self, lines: &[String]) {
        let mut out = std::io::stdout().lock();
        if self.live {
            let width = rustix::termios::tcgetwinsize(std::io::stdout())
                .map_or(100, |w| usize::from(w.ws_col).max(20));
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}F\x1b[J", self.drawn);
            }
            for line in lines {
                let cut: String = line.chars().take(width - 1).collect();
                let _ = writeln!(out, "{cut}");
            }
            self.drawn = lines.len();
        } else {
            for line in changed_lines(&self.previous, lines) {
                let _ = writeln!(out, "{line}");
            }
            self.previous = lines.to_vec();
        }
        let _ = out.flush();
    }
}

/// The lines of `new` that `old` did not have.
pub fn changed_lines<'a>(old: &[String], new: &'a [String]) -> Vec<&'a String> {
    new.iter().filter(|l| !old.contains(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_log_lines_are_sorted() {
        assert_eq!(
            classify_log_line("[zedagent] @@ boot-timer registered 123"),
            LogLine::Marker {
                service: "zedagent",
                marker: Marker::BootTimer {
                    stage: "registered",
                    guest_ns: 123
                }
            }
        );
        assert_eq!(
            classify_log_line("[zedagent] @@ metric heap_high_water 4096"),
            LogLine::Marker {
                service: "zedagent",
                marker: Marker::Metric {
                    name: "heap_high_water",
                    value: 4096
                }
            }
        );
        assert_eq!(
            classify_log_line("[diag] [1.000] diag INFO: hello"),
            LogLine::Console
        );
        assert_eq!(
            classify_log_line("[diag] host: bus connected"),
            LogLine::Note
        );
        assert_eq!(classify_log_line("[diag] vmm: qemu: error"), LogLine::Note);
        assert_eq!(classify_log_line("eve-host: node default"), LogLine::Note);
        assert_eq!(
            status_line_service("diag: running, restarts 0"),
            Some("diag")
        );
    }

    #[test]
    fn only_changed_lines_are_printed_to_a_log() {
        let old = vec!["a".to_owned(), "b".to_owned()];
        let new = vec!["a".to_owned(), "c".to_owned()];
        assert_eq!(changed_lines(&old, &new), [&"c".to_owned()]);
        assert!(changed_lines(&new, &new).is_empty());
    }
}
