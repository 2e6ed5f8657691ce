//! `cargo xtask bench content`: a whole node (the host and our controller
//! as `cargo xtask qemu` starts them) downloading a blob over HTTP, over
//! HTTPS and from Debian's `docker-registry` on loopback, each beside
//! `curl` fetching the same bytes from the same server in the same run;
//! and the time from the device accepting the config to the volume ready.
//!
//! Guest throughput is the blob's size over the time the server spent
//! sending it (HTTP, HTTPS: our file server times every request), or over
//! the time between the downloader reporting the blob downloading and done
//! (the registry, which we do not instrument; read from `status.json`,
//! which the host rewrites at most every 250 ms). Each case has its own
//! bytes, so no case finds the previous one's blob in the store.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use harness::content::{FileServer, OciImage, Registry, Served, noise, sha256_hex};
use harness::pki::{leaf, root};
use harness::servers::tls_config;
use serde_json::Value;

use crate::node::{ControllerDir, NodeDirs, Session};

/// How often `status.json` is read.
const POLL: Duration = Duration::from_millis(50);
const MIB: f64 = 1024.0 * 1024.0;
/// `ZSwState` values read here.
const CREATED_VOLUME: i64 = 15;
/// `DownloadState` values read here.
const DOWNLOADING: i64 = 2;
const DONE: i64 = 4;

/// The benchmark's cases.
#[derive(Clone, Copy)]
enum Case {
    Http,
    Https,
    Registry,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Http => "HTTP",
            Case::Https => "HTTPS",
            Case::Registry => "registry",
        }
    }
}

/// What one case measured.
struct Measured {
    guest_mib_s: f64,
    curl_mib_s: f64,
    accepted_to_ready: Duration,
}

/// The status file's JSON.
pub(crate) fn status(state_dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(state_dir.join("run/status.json")).ok()?;
    serde_json::from_str(&text).ok()
}

pub(crate) fn onboard(status: &Value) -> Option<(String, String)> {
    let report = status
        .get("tables")?
        .get("onboard-status")?
        .get("zedagent")?;
    let uuid = report.get("uuid")?.as_str()?.to_owned();
    let hash = report.get("config_hash")?.as_str()?.to_owned();
    (report.get("phase")?.as_i64()? == 5 && !uuid.is_empty()).then_some((uuid, hash))
}

fn table_item<'a>(status: &'a Value, topic: &str, key: &str) -> Option<&'a Value> {
    status.get("tables")?.get(topic)?.get(key)
}

/// `curl`'s throughput for `url`, MiB/s.
fn curl(url: &str, ca: Option<&Path>, bytes: usize) -> Result<f64, String> {
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{time_total} %{size_download}",
    ]);
    if let Some(ca) = ca {
        command.arg("--cacert").arg(ca);
    }
    let out = command
        .arg(url)
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let seconds: f64 = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
    let size: usize = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    if !out.status.success() || size != bytes || seconds <= 0.0 {
        return Err(format!(
            "curl {url}: {} {}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(bytes as f64 / MIB / seconds)
}

pub fn run(
    arch: Option<harness::Arch>,
    manifest: &Path,
    mib: usize,
    timeout: Duration,
) -> Result<(), String> {
    let built = crate::node::build(manifest, arch)?;
    let dirs = NodeDirs::new("bench-content", built.arch);
    let session = Session::start(&built, &dirs, ControllerDir::Fresh, None)?;
    let result = measure(&session, &dirs, built.arch, mib, timeout);
    session.stop();
    let rows = result?;
    println!(
        "content, {} node, {} MiB blob, TCG; guest vs curl on the same server",
        built.arch.name(),
        mib
    );
    println!(
        "| source | guest MiB/s | curl MiB/s | guest/curl | config accepted to volume ready |"
    );
    println!("|---|---|---|---|---|");
    for (case, m) in rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.2} % | {:.1} s |",
            case.name(),
            m.guest_mib_s,
            m.curl_mib_s,
            100.0 * m.guest_mib_s / m.curl_mib_s,
            m.accepted_to_ready.as_secs_f64()
        );
    }
    Ok(())
}

fn measure(
    session: &Session,
    dirs: &NodeDirs,
    arch: harness::Arch,
    mib: usize,
    timeout: Duration,
) -> Result<Vec<(Case, Measured)>, String> {
    let state = dirs.state();
    let deadline = Instant::now() + timeout;
    let (uuid, mut hash) = loop {
        if let Some(found) = status(&state).as_ref().and_then(onboard) {
            break found;
        }
        if Instant::now() > deadline {
            return Err(String::from("the node never onboarded"));
        }
        thread::sleep(Duration::from_millis(250));
    };
    let ca = root("bench datastore CA");
    let ca_file = dirs.controller().join("bench-datastore-ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).map_err(|e| e.to_string())?;
    let tls = tls_config(&[&leaf(&["10.0.2.2", "127.0.0.1"], &ca)]);
    let http = FileServer::start(None).map_err(|e| e.to_string())?;
    let https = FileServer::start(Some(tls)).map_err(|e| e.to_string())?;
    let registry = Registry::start().map_err(|e| e.to_string())?;
    let size = mib << 20;
    let ca_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(ca.cert.pem())
    };
    let datastores = format!(
        "datastores:\n  - {{ id: http, dType: DsHttp, fqdn: \"10.0.2.2:{}\", dpath: bench }}\n  - {{ id: https, dType: DsHttps, fqdn: \"10.0.2.2:{}\", dpath: bench, dsCertPEM: [\"{ca_b64}\"] }}\n  - {{ id: registry, dType: DsContainerRegistry, fqdn: \"http://10.0.2.2:{}\" }}\n",
        http.port(),
        https.port(),
        registry.port()
    );
    let oci_arch = match arch {
        harness::Arch::X86_64 => "amd64",
        harness::Arch::Aarch64 => "arm64",
    };
    let mut rows = Vec::new();
    for (i, case) in [Case::Http, Case::Https, Case::Registry]
        .into_iter()
        .enumerate()
    {
        let data = noise(size, 100 + i as u64);
        let digest = sha256_hex(&data);
        let name = format!("bench-{}", case.name().to_ascii_lowercase());
        let (tree, curl_url, curl_ca) = match case {
            Case::Http | Case::Https => {
                let (server, ds, scheme, ca) = match case {
                    Case::Http => (&http, "http", "http", None),
                    _ => (&https, "https", "https", Some(ca_file.as_path())),
                };
                server.put("/bench/blob.raw", Served::file(data.clone()));
                (
                    format!(
                        "{{ displayName: {name}, dsId: {ds}, URL: blob.raw, iformat: RAW, sha256: {digest} }}"
                    ),
                    format!("{scheme}://127.0.0.1:{}/bench/blob.raw", server.port()),
                    ca,
                )
            }
            Case::Registry => {
                let image = OciImage::with_layers(oci_arch, vec![data.clone()]);
                registry
                    .push_image("bench/blob", &image)
                    .map_err(|e| e.to_string())?;
                registry
                    .push_manifest(
                        "bench/blob",
                        "1.0",
                        harness::content::OCI_MANIFEST,
                        &image.manifest,
                    )
                    .map_err(|e| e.to_string())?;
                (
                    format!(
                        "{{ displayName: {name}, dsId: registry, URL: \"bench/blob:1.0\", iformat: CONTAINER }}"
                    ),
                    format!(
                        "http://127.0.0.1:{}/v2/bench/blob/blobs/sha256:{digest}",
                        registry.port()
                    ),
                    None,
                )
            }
        };
        let description = format!(
            "{datastores}contentInfo:\n  - {tree}\nvolumes:\n  - {{ displayName: {name}-vol, origin: {{ type: VCOT_DOWNLOAD, downloadContentTreeID: {name} }} }}\nconfigItems:\n  - {{ key: timer.config.interval, value: \"5\" }}\n"
        );
        session.admin.put_config(&uuid, &description)?;
        let volume = session
            .admin
            .get(&format!("/api/v1/devices/{uuid}/config"))?
            .pointer("/config/volumes/0/uuid")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or("the config has no volume")?;
        let mut accepted = None;
        let mut started = None;
        let mut done = None;
        let ready = loop {
            if Instant::now() > deadline {
                return Err(format!("{}: the volume was never ready", case.name()));
            }
            thread::sleep(POLL);
            let Some(now) = status(&state) else { continue };
            let at = Instant::now();
            if accepted.is_none()
                && let Some((_, h)) = onboard(&now)
                && h != hash
            {
                hash = h;
                accepted = Some(at);
            }
            if let Some(d) = table_item(&now, "download-status", &digest) {
                let state = d.get("state").and_then(Value::as_i64);
                if state == Some(DOWNLOADING) {
                    started.get_or_insert(at);
                }
                if state == Some(DONE) {
                    done.get_or_insert(at);
                }
            }
            let created = table_item(&now, "volume-status", &volume)
                .and_then(|v| v.get("state"))
                .and_then(Value::as_i64)
                == Some(CREATED_VOLUME);
            if created {
                break at;
            }
        };
        let guest_seconds = match case {
            Case::Http | Case::Https => {
                let server = if matches!(case, Case::Http) {
                    &http
                } else {
                    &https
                };
                let served = server.requests("/bench/blob.raw");
                let first = served.first().ok_or("no request reached the server")?;
                let last = served.last().ok_or("no request reached the server")?;
                last.done.duration_since(first.at).as_secs_f64()
            }
            Case::Registry => match (started, done) {
                (Some(s), Some(d)) => d.duration_since(s).as_secs_f64(),
                _ => return Err(String::from("the registry download was never seen moving")),
            },
        };
        let accepted = accepted.ok_or("the device never reported the new config")?;
        rows.push((
            case,
            Measured {
                guest_mib_s: size as f64 / MIB / guest_seconds.max(f64::EPSILON),
                curl_mib_s: curl(&curl_url, curl_ca, size)?,
                accepted_to_ready: ready.duration_since(accepted),
            },
        ));
    }
    Ok(rows)
}
