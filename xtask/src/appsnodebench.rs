//! `cargo xtask bench apps`, through the whole node: a node as `cargo
//! xtask qemu` starts it (our controller, `eve-host` with the shim VM),
//! each kind of app deployed in turn with evectl's library, as a user
//! deploys it (the unikernel and the Linux VM's qcow2 disk from a plain
//! HTTP datastore, busybox httpd from Debian's `docker-registry`), and
//! timed from the device accepting the config (its config hash changes in
//! `status.json`, which the host rewrites at most every 250 ms) to RUNNING
//! in the controller's view (its apps API) and to the first HTTP answer
//! on the app's loopback port map. Each app is deleted, and gone from the
//! node, before the next is deployed. Beside the direct numbers these
//! include the download, the volume build and the services' decisions.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use evectl::apps::{self, AppKind, AppSpec};
use harness::appassets::{self, oci};
use harness::content::{FileServer, Registry, Served, sha256_hex};
use harness::{Arch, workspace_root};
use serde_json::{Value, json};

use crate::appsbench::{answers, free_port};
use crate::appsnodestages::{HostLog, Stages};
use crate::contentbench::{onboard, status};
use crate::node::{ControllerDir, NodeDirs, Session};

/// How often the node's state and the controller are read.
const POLL: Duration = Duration::from_millis(50);
/// The registry repository of the container image.
const REPOSITORY: &str = "bench/busybox-httpd";
/// The kinds, in the order they are deployed.
pub const KINDS: [AppKind; 3] = [AppKind::Unikernel, AppKind::Vm, AppKind::Container];

/// What one deployment measured, from the config accepted.
pub struct NodeRun {
    pub running: Duration,
    pub answer: Duration,
    /// Where the time to RUNNING went (`appsnodestages::STAGES`, then
    /// domain started to RUNNING in the controller's view).
    pub stages: Vec<Option<Duration>>,
}

/// The apps' images on the bench's servers.
struct Servers {
    http: FileServer,
    registry: Registry,
    unikernel_sha256: String,
    vm_sha256: String,
}

impl Servers {
    fn start(arch: Arch) -> Result<Servers, String> {
        let http = FileServer::start(None).map_err(|e| format!("HTTP datastore: {e}"))?;
        let unikernel = appassets::app_unikernel(arch).map_err(|e| e.to_string())?;
        let disk = appassets::linux_vm_disk(arch).map_err(|e| e.to_string())?;
        let mut digests = Vec::new();
        for (path, file) in [
            ("/bench/hello-http.img", unikernel),
            ("/bench/linux-vm.qcow2", disk.qcow2),
        ] {
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            digests.push(sha256_hex(&bytes));
            http.put(path, Served::file(bytes));
        }
        let registry = Registry::start().map_err(|e| e.to_string())?;
        let dir = workspace_root().join(format!("target/app-bench/node-image-{arch}"));
        let image = oci::busybox_httpd_image(arch, &dir).map_err(|e| e.to_string())?;
        image
            .push_tagged(&registry, REPOSITORY, "latest")
            .map_err(|e| e.to_string())?;
        let vm_sha256 = digests.pop().unwrap_or_default();
        let unikernel_sha256 = digests.pop().unwrap_or_default();
        Ok(Servers {
            http,
            registry,
            unikernel_sha256,
            vm_sha256,
        })
    }

    /// The operator's plain-HTTP registry datastore, which `docker://`
    /// images from it go through.
    fn base_config(&self) -> Value {
        json!({"datastores": [{
            "id": "bench-registry",
            "dType": "DsContainerRegistry",
            "fqdn": format!("http://10.0.2.2:{}", self.registry.port()),
        }]})
    }

    /// The app of `kind` as `evectl app deploy` is asked for it.
    fn spec(&self, kind: AppKind, port: u16) -> AppSpec {
        let http = |file: &str| format!("http://10.0.2.2:{}/bench/{file}", self.http.port());
        let (name, image, memory_mib, app_port, sha256) = match kind {
            AppKind::Unikernel => (
                "bench-unikernel",
                http("hello-http.img"),
                32,
                80,
                Some(self.unikernel_sha256.clone()),
            ),
            AppKind::Vm => (
                "bench-vm",
                http("linux-vm.qcow2"),
                256,
                80,
                Some(self.vm_sha256.clone()),
            ),
            AppKind::Container => (
                "bench-container",
                format!(
                    "docker://10.0.2.2:{}/{REPOSITORY}:latest",
                    self.registry.port()
                ),
                128,
                oci::HTTPD_PORT,
                None,
            ),
        };
        AppSpec {
            name: name.into(),
            image,
            kind: Some(kind),
            memory_mib,
            vcpus: 1,
            ports: vec![(port, app_port)],
            user_data: None,
            sha256,
            network: None,
            acls: Vec::new(),
        }
    }
}

/// The kind as the direct table names it.
pub fn kind_name(kind: AppKind) -> &'static str {
    match kind {
        AppKind::Unikernel => "unikernel",
        AppKind::Vm => "linux-vm",
        AppKind::Container => "container",
    }
}

/// The node's session and what it deploys from.
struct Bench<'a> {
    session: &'a Session,
    dirs: &'a NodeDirs,
    servers: Servers,
    device: String,
    /// The device's config hash as last seen.
    hash: String,
    timeout: Duration,
}

impl Bench<'_> {
    fn put(&self, config: &Value) -> Result<(), String> {
        let mut config = config.clone();
        config["configItems"] = json!([{"key": "timer.config.interval", "value": "5"}]);
        self.session
            .admin
            .put_config(&self.device, &config.to_string())
    }

    /// The app's state in the controller's view: `None` before the device
    /// reported it, `""` once the device reported it deleted.
    fn controller_state(&self, app: &str) -> Result<Option<String>, String> {
        let listed = self
            .session
            .admin
            .get(&format!("/api/v1/devices/{}/apps", self.device))?;
        Ok(listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["uuid"] == app)
            .filter(|a| !a["info"].is_null())
            .map(|a| a["info"]["state"].as_str().unwrap_or("").to_owned()))
    }

    /// Whether a newer config than the last one seen was accepted.
    fn accepted(&mut self) -> bool {
        match status(&self.dirs.state()).as_ref().and_then(onboard) {
            Some((_, hash)) if hash != self.hash => {
                self.hash = hash;
                true
            }
            _ => false,
        }
    }

    /// Deploys `kind`, times it, deletes it and waits until it is gone.
    fn one(&mut self, kind: AppKind) -> Result<NodeRun, String> {
        let port = free_port()?;
        let spec = self.servers.spec(kind, port);
        let config = apps::deploy(self.servers.base_config(), &spec).map_err(|e| e.to_string())?;
        let app = apps::app_uuid(&config, &spec.name).ok_or("the app has no UUID")?;
        let deadline = Instant::now() + self.timeout;
        let mut log = HostLog::follow(&self.dirs.host_log());
        let mut stages = Stages::new(&spec.name, &app);
        self.put(&config)?;
        let (tx, rx) = mpsc::channel();
        let (mut accepted, mut running, mut answer) = (None, None, None);
        let mut probed: Option<Instant> = None;
        loop {
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: accepted {:?}, RUNNING {:?}, answered {:?} within {:?}",
                    spec.name,
                    accepted.is_some(),
                    running.is_some(),
                    answer.is_some(),
                    self.timeout
                ));
            }
            // One probe at a time would measure QEMU's SYN backoff, not
            // the app (see the direct bench): a new one every 100 ms.
            if answer.is_none() && probed.is_none_or(|p| p.elapsed() >= 2 * POLL) {
                probed = Some(Instant::now());
                let tx = tx.clone();
                thread::spawn(move || {
                    if answers(port) {
                        let _ = tx.send(Instant::now());
                    }
                });
            }
            if let Ok(at) = rx.try_recv() {
                answer.get_or_insert(at);
            }
            let read = Instant::now();
            for line in log.new_lines() {
                stages.observe(&line, read);
            }
            if accepted.is_none() && self.accepted() {
                accepted = Some(Instant::now());
            }
            if running.is_none() && self.controller_state(&app)?.as_deref() == Some("RUNNING") {
                running = Some(Instant::now());
            }
            if let (Some(accepted), Some(running), Some(answer)) = (accepted, running, answer) {
                self.delete(&config, &spec.name, &app, deadline)?;
                return Ok(NodeRun {
                    running: running.saturating_duration_since(accepted),
                    answer: answer.saturating_duration_since(accepted),
                    stages: stages.breakdown(accepted, running),
                });
            }
            thread::sleep(POLL);
        }
    }

    /// Deletes the app and waits for the device to report it gone.
    fn delete(
        &mut self,
        config: &Value,
        name: &str,
        app: &str,
        deadline: Instant,
    ) -> Result<(), String> {
        let config = apps::delete(config.clone(), name).map_err(|e| e.to_string())?;
        self.put(&config)?;
        while self.controller_state(app)?.as_deref() != Some("") {
            if Instant::now() > deadline {
                return Err(format!("{name} was never reported deleted"));
            }
            thread::sleep(POLL);
        }
        self.accepted();
        Ok(())
    }
}

/// Each kind through an `arch` node, `runs` times (a later run may find
/// the image still in the node's blob store).
pub fn run(
    arch: Arch,
    runs: usize,
    timeout: Duration,
) -> Result<Vec<(AppKind, Vec<NodeRun>)>, String> {
    let mut built = crate::node::build(&crate::node::default_manifest(), Some(arch))?;
    built.add_shim()?;
    let servers = Servers::start(arch)?;
    let dirs = NodeDirs::new("bench-apps", arch);
    let session = Session::start(&built, &dirs, ControllerDir::Fresh, None)?;
    let result = measure(&session, &dirs, servers, runs, timeout);
    session.stop();
    result
}

fn measure(
    session: &Session,
    dirs: &NodeDirs,
    servers: Servers,
    runs: usize,
    timeout: Duration,
) -> Result<Vec<(AppKind, Vec<NodeRun>)>, String> {
    let deadline = Instant::now() + timeout;
    let (device, hash) = loop {
        if let Some(found) = status(&dirs.state()).as_ref().and_then(onboard) {
            break found;
        }
        if Instant::now() > deadline {
            return Err(String::from("the node never onboarded"));
        }
        thread::sleep(Duration::from_millis(250));
    };
    let mut bench = Bench {
        session,
        dirs,
        servers,
        device,
        hash,
        timeout,
    };
    let mut rows = Vec::new();
    for kind in KINDS {
        let mut measured = Vec::new();
        for _ in 0..runs.max(1) {
            measured.push(bench.one(kind)?);
        }
        rows.push((kind, measured));
    }
    Ok(rows)
}
