//! Our controller, started on loopback for `cargo xtask qemu` and the
//! benchmarks: built in release, run as its own process with a data
//! directory of its own, and stopped when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running controller.
pub struct LocalController {
    child: Child,
    /// The device API (`https://ADDR/api/v2/edgedevice/`).
    pub device_api: SocketAddr,
    /// The admin API (`http://ADDR/api/v1/`).
    pub admin_api: SocketAddr,
    /// The admin API's bearer token.
    pub token: String,
    /// The root of the controller's certificate chain, as devices pin it.
    pub root_pem: String,
}

impl Drop for LocalController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the controller and starts it on loopback (ports chosen by the
/// kernel) with its state in `data_dir`.
pub fn start(data_dir: &Path) -> Result<LocalController, String> {
    crate::bench::cargo_status(&[
        "build",
        "--quiet",
        "--release",
        "--package",
        "controller",
        "--bin",
        "controller",
    ])?;
    let binary = harness::workspace_root().join("target/release/controller");
    let mut child = Command::new(&binary)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
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
    let admin_api = address_after(&admin_line, "http://")?;
    let token_path = admin_line
        .split("token in ")
        .nth(1)
        .map(|p| PathBuf::from(p.trim_end_matches(')')))
        .ok_or_else(|| format!("no token path in {admin_line:?}"))?;
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    Ok(LocalController {
        token: read(&token_path)?.trim().to_owned(),
        root_pem: read(&data_dir.join("root-certificate.pem"))?,
        device_api,
        admin_api,
        child,
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
