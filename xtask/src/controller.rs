//! Our controller, started on loopback for `cargo xtask qemu` and the
//! benchmarks: built in release, run as its own process with a data
//! directory of its own, and stopped when dropped (SIGTERM, so it writes
//! its last-seen times, then SIGKILL if it lingers).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long the controller gets to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running controller.
pub struct LocalController {
    child: Child,
    /// The device API (`https://ADDR/api/v2/edgedevice/`).
    pub device_api: SocketAddr,
    /// The admin API (`https://ADDR/api/v1/`).
    pub admin_api: SocketAddr,
    /// The admin API's bearer token.
    pub token: String,
    /// The root of the controller's certificate chain, as devices pin it.
    pub root_pem: String,
}

impl LocalController {
    /// The controller's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client of this controller's admin API.
    pub fn admin_client(&self) -> crate::admin::AdminClient {
        crate::admin::AdminClient {
            addr: self.admin_api,
            token: self.token.clone(),
            root_pem: self.root_pem.clone(),
        }
    }
}

impl Drop for LocalController {
    fn drop(&mut self) {
        stop_child(&mut self.child, STOP_GRACE);
    }
}

/// Sends SIGTERM to `child` and waits up to `grace` for it to exit, then
/// kills it. Returns whether it stopped on its own.
pub fn stop_child(child: &mut Child, grace: Duration) -> bool {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return true;
    }
    let terminated = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|pid| {
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
        });
    let deadline = std::time::Instant::now() + grace;
    while terminated && std::time::Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Where cargo puts the workspace's builds: `$CARGO_TARGET_DIR` (relative
/// to the workspace root) when set, else `target/`.
pub fn target_dir() -> PathBuf {
    let root = harness::workspace_root();
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// Where cargo puts release binaries of the workspace.
pub fn release_binary(name: &str) -> PathBuf {
    target_dir().join("release").join(name)
}

/// A host program of the workspace that xtask runs as a process
/// (`package`'s binary `bin`): the one `cargo xtask test` built beside the
/// tests when it names their directory in
/// [`harness::appassets::HOST_BIN_DIR_ENV`] (a scenario then needs no
/// second, release build of the host's dependencies), else built here in
/// release.
pub fn host_binary(package: &str, bin: &str) -> Result<PathBuf, String> {
    if let Some(path) = harness::appassets::prebuilt_host_program(bin) {
        return Ok(path);
    }
    crate::cargo(&[
        "build",
        "--quiet",
        "--release",
        "--package",
        package,
        "--bin",
        bin,
    ])?;
    Ok(release_binary(bin))
}

/// How the controller process relates to our terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// In our process group: a Ctrl-C at the terminal reaches it too.
    Shared,
    /// In a process group of its own, so that a Ctrl-C reaches only us and
    /// we stop it after the node that uses it.
    Own,
}

/// Builds the controller and starts it on loopback (ports chosen by the
/// kernel) with its state in `data_dir`.
pub fn start(data_dir: &Path, group: Group) -> Result<LocalController, String> {
    start_with(data_dir, group, &[])
}

/// As [`start`], with `extra` arguments (`--database URL`).
pub fn start_with(
    data_dir: &Path,
    group: Group,
    extra: &[&str],
) -> Result<LocalController, String> {
    let binary = host_binary("controller", "controller")?;
    let mut command = Command::new(&binary);
    if group == Group::Own {
        command.process_group(0);
    }
    let mut child = command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    match announced(&mut child, data_dir) {
        Ok(announced) => Ok(LocalController {
            device_api: announced.device_api,
            admin_api: announced.admin_api,
            token: announced.token,
            root_pem: announced.root_pem,
            child,
        }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// What a starting controller prints and writes: its addresses, token and
/// root certificate.
struct Announced {
    device_api: SocketAddr,
    admin_api: SocketAddr,
    token: String,
    root_pem: String,
}

fn announced(child: &mut Child, data_dir: &Path) -> Result<Announced, String> {
    let stdout = child.stdout.take().ok_or("controller stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut next = || -> Result<String, String> {
        lines
            .next()
            .ok_or("the controller exited before printing its addresses")?
            .map_err(|e| format!("controller output: {e}"))
    };
    let _root_line = next()?;
    let device_line = next()?;
    let admin_line = next()?;
    let device_api = address_after(&device_line, "https://")?;
    let admin_api = address_after(&admin_line, "https://")?;
    let token_path = admin_line
        .split("token in ")
        .nth(1)
        .map(|p| PathBuf::from(p.trim_end_matches(')')))
        .ok_or_else(|| format!("no token path in {admin_line:?}"))?;
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    Ok(Announced {
        token: read(&token_path)?.trim().to_owned(),
        root_pem: read(&data_dir.join("root-certificate.pem"))?,
        device_api,
        admin_api,
    })
}

/// The socket address in `line` after `scheme`, up to the next `/`.
fn address_after(line: &str, scheme: &str) -> Result<SocketAddr, String> {
    line.split(scheme)
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .ok_or_else(|| format!("no {scheme} address in {line:?}"))
}
