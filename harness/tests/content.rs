//! Content on a whole node, on both arches: zedagent, the downloader and
//! volumemgr in QEMU under the host's own node code (broker, the `blobs`
//! and `volumes` targets over a real state directory), against our
//! controller in this process, with a real HTTPS file server, a plain HTTP
//! one that misbehaves on purpose, Debian's `docker-registry` holding an
//! image index of both arches, and a scripted hostile registry.
//!
//! The node attests with its software TPM: the attestation key's
//! certificate, a nonce and a quote, checked by the controller.
//!
//! One node per arch goes through every case in turn:
//! - a multi-MiB disk image over HTTPS (credentials sealed for the ECDH key
//!   in the node's software TPM, opened through the host's `tpm` target)
//!   verified and made a volume; a qcow2 image; a blank volume;
//! - a multi-layer OCI image by tag, resolved through the index for the
//!   node's arch, laid out as a container volume;
//! - a wrong sha256 never becomes a volume and shows ERROR with both
//!   digests, to the operator too;
//! - a connection cut mid-blob resumes, fetching less than the blob again;
//! - hostile servers (a lying Content-Length, an endless body, a manifest
//!   whose layer digest the registry lies about, a huge manifest, a
//!   redirect loop) give clear errors and no service panics;
//! - a purge builds the next generation while the old one stays untouched,
//!   and removes the old one only once the new one is ready;
//! - a node restart mid-blob resumes, fetching less than the blob again;
//! - a download the disk reserve refuses is reported, nothing else
//!   breaks, and removing it makes room for the next.

mod common;
#[path = "common/hostlog.rs"]
mod hostlog;
#[path = "common/images.rs"]
mod images;
#[path = "common/noderun.rs"]
mod noderun;
#[path = "common/tail.rs"]
mod tail;

use hostlog::Lines;
use images::service_images;
use noderun::NodeRun;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use tail::tail;

use base64::Engine as _;
use common::InProcessController;
use controller::identity::Identity;
use controller::server::{self, Controller};
use eve_host::manifest::Manifest;
use eve_host::targets::{ContentOptions, DomainsOptions};
use eve_proto::Message;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::info::{ZInfoMsg, ZSwState};
use evectl::admin::Admin;
use evectl::apps::{self, AppKind, AppSpec};
use harness::content::{
    FileServer, Misbehave, OCI_INDEX, OCI_MANIFEST, OciImage, Registry, Served, noise, oci_index,
    sha256_hex,
};
use harness::pki::{leaf, root};
use harness::provision::{OnboardIdentity, config_files, write_config_partition};
use harness::servers::tls_config;
use harness::{Arch, appassets, workspace_root};
use topics::content::{ContentTreeState, VolumeState};
use topics::{AppStatus, ContentTreeStatus, DomainStatus, VolumeStatus};

/// A guard against a node that never gets there, not a timing target:
/// under TCG on a shared 2-core machine.
const PATIENCE: Duration = Duration::from_secs(600);
/// The content store's share of the disk and its reserve: room for the
/// cases' content, then a download too large for what is left.
const CAPACITY: u64 = 64 << 20;
const RESERVE: u64 = 40 << 20;
const MIB: usize = 1 << 20;
/// The memory the node's host admits apps into.
const APPS_MEMORY_MIB: u64 = 512;

/// Our controller on loopback: device API and admin API.
struct LocalController {
    rt: tokio::runtime::Runtime,
    ctl: Arc<Controller>,
    dir: tempfile::TempDir,
    port: u16,
    admin: SocketAddr,
    token: PathBuf,
}

impl LocalController {
    fn start() -> LocalController {
        let dir = tempfile::tempdir().expect("controller directory");
        let identity = Identity::load_or_create(dir.path()).expect("controller identity");
        let InProcessController {
            rt,
            ctl,
            tls,
            device_listener,
            port,
        } = InProcessController::new(identity, &dir.path().join("c.db"));
        rt.spawn(server::serve_devices(ctl.clone(), device_listener, tls));
        let admin_listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("admin listener");
        let admin = admin_listener.local_addr().unwrap();
        let token = dir.path().join("admin-token");
        std::fs::write(&token, "content-test-token").unwrap();
        let serving = ctl.clone();
        rt.spawn(async move {
            let _ = controller::admin::serve_admin(
                serving,
                admin_listener,
                Arc::new(String::from("content-test-token")),
            )
            .await;
        });
        LocalController {
            rt,
            ctl,
            dir,
            port,
            admin,
            token,
        }
    }

    /// What `evectl device show` prints.
    fn device_show(&self, uuid: &str) -> String {
        let mut admin =
            Admin::new(&format!("http://{}", self.admin), &self.token, false).expect("admin");
        self.rt
            .block_on(admin.device_show(uuid))
            .expect("device show")
    }

    /// What `evectl app logs NAME` prints.
    fn app_logs(&self, uuid: &str, name: &str) -> String {
        let mut admin =
            Admin::new(&format!("http://{}", self.admin), &self.token, false).expect("admin");
        self.rt
            .block_on(admin.app_logs(uuid, name, false, |_| true))
            .expect("app logs")
    }
}

/// Starts the node with the scenario's content reserve and capacity and
/// its memory for apps.
fn start_node(
    manifest: &Manifest,
    images: &Path,
    state: &Path,
    config_part: &Path,
    lines: &Arc<Lines>,
) -> NodeRun {
    NodeRun::start(
        manifest,
        images,
        state,
        config_part,
        ContentOptions {
            reserve_bytes: RESERVE,
            capacity_bytes: Some(CAPACITY),
        },
        &DomainsOptions {
            arch: manifest.node.arch,
            memory_mib: Some(APPS_MEMORY_MIB),
            ..DomainsOptions::default()
        },
        lines,
    )
}

/// Everything a scenario holds.
struct World {
    arch: Arch,
    ctl: LocalController,
    https: FileServer,
    http: FileServer,
    hostile: FileServer,
    registry: Registry,
    ca_pem: String,
    manifest: Manifest,
    images: PathBuf,
    state: tempfile::TempDir,
    config_part: PathBuf,
    lines: Arc<Lines>,
    node: Option<NodeRun>,
    uuid: String,
    /// The config description's sections, edited between steps.
    trees: BTreeMap<String, String>,
    volumes: BTreeMap<String, String>,
    /// What `evectl app deploy` adds to a config (datastores, content
    /// trees, volumes, apps), merged into the description.
    deployed: serde_json::Value,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

impl World {
    fn node(&self) -> &NodeRun {
        self.node.as_ref().expect("the node runs")
    }

    /// The config description from the current trees and volumes.
    fn description(&self) -> String {
        let ca = b64(self.ca_pem.as_bytes());
        let mut text = format!(
            "datastores:\n  - {{ id: https, dType: DsHttps, fqdn: \"10.0.2.2:{}\", dpath: images, apiKey: ops, password: s3cret, dsCertPEM: [\"{ca}\"] }}\n  - {{ id: http, dType: DsHttp, fqdn: \"10.0.2.2:{}\", dpath: images }}\n  - {{ id: registry, dType: DsContainerRegistry, fqdn: \"http://10.0.2.2:{}\" }}\n  - {{ id: hostile, dType: DsContainerRegistry, fqdn: \"http://10.0.2.2:{}\" }}\ncontentInfo:\n",
            self.https.port(),
            self.http.port(),
            self.registry.port(),
            self.hostile.port()
        );
        // JSON is YAML: what evectl deployed goes in as it wrote it.
        let deployed = |section: &str| {
            self.deployed[section]
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| format!("  - {item}\n"))
                .collect::<String>()
        };
        text = text.replace(
            "contentInfo:\n",
            &format!("{}contentInfo:\n", deployed("datastores")),
        );
        for line in self.trees.values() {
            text.push_str(&format!("  - {line}\n"));
        }
        text.push_str(&deployed("contentInfo"));
        text.push_str("volumes:\n");
        for line in self.volumes.values() {
            text.push_str(&format!("  - {line}\n"));
        }
        text.push_str(&deployed("volumes"));
        let apps = deployed("apps");
        if !apps.is_empty() {
            text.push_str("apps:\n");
            text.push_str(&apps);
        }
        text.push_str(
            "configItems:\n  - { key: timer.config.interval, value: \"5\" }\n  - { key: timer.gc.vdisk, value: \"0\" }\n  - { key: timer.download.retry, value: \"300\" }\n",
        );
        text
    }

    fn apply(&self) {
        self.ctl
            .ctl
            .set_config(&self.uuid, &self.description())
            .expect("the content config is accepted");
    }

    fn tree(&mut self, name: &str, line: &str) {
        self.trees
            .insert(name.into(), format!("{{ displayName: {name}, {line} }}"));
    }

    fn volume(&mut self, name: &str, line: &str) {
        self.volumes
            .insert(name.into(), format!("{{ displayName: {name}, {line} }}"));
    }

    /// Content tree states by display name.
    fn trees_now(&self) -> BTreeMap<String, ContentTreeState> {
        self.node()
            .table::<ContentTreeStatus>()
            .into_values()
            .map(|s| (s.display_name.clone(), s))
            .collect()
    }

    fn volumes_now(&self) -> BTreeMap<String, VolumeState> {
        self.node()
            .table::<VolumeStatus>()
            .into_values()
            .map(|s| (s.display_name.clone(), s))
            .collect()
    }

    /// Waits until `done` holds of the trees and volumes, and returns them
    /// as they were then; fails with what they were and the host's log.
    fn until(
        &self,
        what: &str,
        done: impl Fn(&BTreeMap<String, ContentTreeState>, &BTreeMap<String, VolumeState>) -> bool,
    ) -> (
        BTreeMap<String, ContentTreeState>,
        BTreeMap<String, VolumeState>,
    ) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (trees, volumes) = (self.trees_now(), self.volumes_now());
            if done(&trees, &volumes) {
                return (trees, volumes);
            }
            assert!(
                Instant::now() < deadline,
                "{}: {what} never happened\ntrees: {trees:#?}\nvolumes: {volumes:#?}\n{}",
                self.arch.name(),
                tail(&self.lines.snapshot())
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until `done` holds; fails with the apps' states and the
    /// host's log.
    fn until_answer(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{}: {what} never happened\napps: {:#?}\ndomains: {:#?}\n{}",
                self.arch.name(),
                self.node().table::<AppStatus>(),
                self.node().table::<DomainStatus>(),
                tail(&self.lines.snapshot())
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until zedmanager reports app `uuid` in `state`.
    fn until_app(&self, uuid: &str, what: &str, state: ZSwState) {
        self.until_answer(what, || {
            self.node()
                .table::<AppStatus>()
                .get(uuid)
                .is_some_and(|a| a.state == state as i32)
        });
    }

    /// The state of app `uuid` in the newest `ZInfoApp` the controller
    /// holds from the device.
    fn reported_app_state(&self, uuid: &str) -> Option<i32> {
        let key = format!("app/{uuid}");
        let records = self.ctl.ctl.store().latest_info(&self.uuid).ok()?;
        let record = records.into_iter().find(|r| r.key == key)?;
        match ZInfoMsg::decode(record.msg.as_slice()).ok()?.info_content? {
            InfoContent::Ainfo(app) => Some(app.state),
            _ => None,
        }
    }

    fn volume_dir(&self, state: &VolumeState) -> PathBuf {
        self.state
            .path()
            .join("content/volumes")
            .join(&state.host_volume)
    }
}

fn state_is(s: Option<&ContentTreeState>, state: ZSwState) -> bool {
    s.is_some_and(|s| s.state == state as i32)
}

fn created(v: Option<&VolumeState>) -> bool {
    v.is_some_and(|v| v.state == ZSwState::CreatedVolume as i32)
}

fn final_state(s: &ContentTreeState) -> bool {
    s.state == ZSwState::Loaded as i32 || s.state == ZSwState::Error as i32
}

fn content_on_a_node(arch: Arch) {
    let mut manifest =
        Manifest::load(&workspace_root().join("nodes/default.toml")).expect("the manifest");
    manifest.node.arch = arch;
    let images = service_images(&manifest);
    let ctl = LocalController::start();
    let identity = OnboardIdentity::generate("content-").expect("an onboarding identity");
    ctl.ctl
        .onboard_add(&identity.cert_pem, std::slice::from_ref(&identity.serial))
        .expect("pre-registered");
    let config_part = ctl.dir.path().join("config.img");
    write_config_partition(
        &config_part,
        &config_files(ctl.port, &ctl.ctl.identity().root_pem, &identity),
    )
    .expect("the CONFIG partition");
    let ca = root("content test datastore CA");
    let https = FileServer::start(Some(tls_config(&[&leaf(&["10.0.2.2"], &ca)]))).unwrap();
    https.require_basic("ops", "s3cret");
    let mut world = World {
        arch,
        ctl,
        https,
        http: FileServer::start(None).unwrap(),
        hostile: FileServer::start(None).unwrap(),
        registry: Registry::start().expect("docker-registry"),
        ca_pem: ca.cert.pem(),
        manifest,
        images,
        state: tempfile::tempdir().unwrap(),
        config_part,
        lines: Arc::new(Lines::default()),
        node: None,
        uuid: String::new(),
        trees: BTreeMap::new(),
        volumes: BTreeMap::new(),
        deployed: serde_json::json!({}),
    };
    world.node = Some(start_node(
        &world.manifest,
        &world.images,
        world.state.path(),
        &world.config_part,
        &world.lines,
    ));
    let deadline = Instant::now() + PATIENCE;
    world.uuid = loop {
        if let Some(d) = world.ctl.ctl.store().devices().unwrap().first() {
            break d.uuid.clone();
        }
        assert!(
            Instant::now() < deadline,
            "never onboarded\n{}",
            tail(&world.lines.snapshot())
        );
        thread::sleep(Duration::from_millis(250));
    };

    let oci_arch = match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    };
    first_content(&mut world, oci_arch);
    app(&mut world);
    // The config came with a token the node's TPM earned with a quote of
    // PCRs 0-15, whose values became the device's PCR policy.
    let shown = world.ctl.device_show(&world.uuid);
    assert!(
        shown.contains("attestation:  attested-tpm") && shown.contains("pcr policy:   0="),
        "{arch}: evectl shows\n{shown}"
    );
    purge(&mut world);
    node_restart_mid_blob(&mut world);
    reserve(&mut world);
    let troubles = world.node().troubles();
    assert!(
        troubles.is_empty(),
        "{troubles:?}\n{}",
        tail(&world.lines.snapshot())
    );
}

/// What answers on loopback `port`: an HTTP 200's text.
fn http_get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET / HTTP/1.0\r\nHost: app\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    (answer.starts_with("HTTP/1.") && answer.split(' ').nth(1) == Some("200")).then_some(answer)
}

/// An app through the whole node, as a user deploys one: `evectl app
/// deploy` of the hello-http unikernel from the plain HTTP datastore with
/// its port 80 on a loopback port; the config goes through zedagent,
/// volumemgr builds its volume, zedmanager its domain, domainmgr has the
/// host start it. It answers, the controller sees it RUNNING and its
/// console lines in its app logs (domainmgr's `app-logs`, uploaded by
/// zedagent to the app's `newlogs`), a stop halts it and a delete removes
/// it and its volume.
fn app(world: &mut World) {
    let image = appassets::app_unikernel(world.arch).expect("building hello-http");
    let bytes = std::fs::read(&image).expect("the hello-http image");
    let sha256 = sha256_hex(&bytes);
    world
        .http
        .put("/images/hello-http.img", Served::file(bytes));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let spec = AppSpec {
        name: "hello".into(),
        image: format!(
            "http://10.0.2.2:{}/images/hello-http.img",
            world.http.port()
        ),
        kind: Some(AppKind::Unikernel),
        memory_mib: 32,
        vcpus: 1,
        ports: vec![(port, 80)],
        user_data: None,
        network: None,
        sha256: Some(sha256),
        acls: Vec::new(),
    };
    world.deployed = apps::deploy(serde_json::json!({}), &spec).expect("evectl app deploy");
    world.apply();
    let app_uuid = apps::app_uuid(&world.deployed, "hello").expect("the app's UUID");
    world.until_app(&app_uuid, "RUNNING", ZSwState::Running);
    world.until_answer("an HTTP answer from the app", || http_get(port).is_some());
    world.until_answer("RUNNING in the controller's view", || {
        world.reported_app_state(&app_uuid) == Some(ZSwState::Running as i32)
    });
    world.until_answer("the app's console lines in its controller logs", || {
        let logs = world.ctl.app_logs(&world.uuid, "hello");
        logs.contains("hello-http: listening on port 80") && logs.contains(&app_uuid)
    });

    world.deployed = apps::set_active(world.deployed.clone(), "hello", false).expect("app stop");
    world.apply();
    world.until_app(&app_uuid, "HALTED", ZSwState::Halted);
    assert_eq!(http_get(port), None, "{}: a halted app answers", world.arch);

    world.deployed = apps::delete(world.deployed.clone(), "hello").expect("app delete");
    world.apply();
    world.until_answer("the app and its volume gone", || {
        world.node().table::<AppStatus>().is_empty()
            && world.node().table::<DomainStatus>().is_empty()
            && !world.volumes_now().contains_key("hello")
    });
}

/// Disk images, an OCI image, a wrong sha256, a cut connection, hostile
/// servers, a blank volume: all in one config.
fn first_content(world: &mut World, oci_arch: &str) {
    let disk = noise(4 * MIB, 1);
    world
        .https
        .put("/images/disk.raw", Served::file(disk.clone()));
    world.tree(
        "disk",
        &format!(
            "dsId: https, URL: disk.raw, iformat: RAW, sha256: {}",
            sha256_hex(&disk)
        ),
    );
    world.volume(
        "disk-vol",
        "origin: { type: VCOT_DOWNLOAD, downloadContentTreeID: disk }, maxsizebytes: 8388608",
    );
    let work = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(work.path().join("small.qcow2"))
        .arg("32M")
        .status()
        .expect("qemu-img");
    assert!(status.success());
    let qcow = std::fs::read(work.path().join("small.qcow2")).unwrap();
    world
        .http
        .put("/images/small.qcow2", Served::file(qcow.clone()));
    world.tree(
        "qcow",
        &format!(
            "dsId: http, URL: small.qcow2, iformat: QCOW2, sha256: {}",
            sha256_hex(&qcow)
        ),
    );
    world.volume(
        "qcow-vol",
        "origin: { type: VCOT_DOWNLOAD, downloadContentTreeID: qcow }",
    );
    world.volume(
        "scratch",
        "origin: { type: VCOT_BLANK }, maxsizebytes: 16777216",
    );
    // A connection cut mid-blob, once.
    let cut = noise(3 * MIB, 2);
    world.http.put(
        "/images/cut.raw",
        Served {
            misbehave: Misbehave::CutOnceAfter(MIB as u64),
            ..Served::file(cut.clone())
        },
    );
    world.tree(
        "cut",
        &format!(
            "dsId: http, URL: cut.raw, iformat: RAW, sha256: {}",
            sha256_hex(&cut)
        ),
    );
    // A wrong sha256: the server has other bytes.
    let served = noise(200_000, 3);
    let claimed = sha256_hex(&noise(200_000, 4));
    world
        .http
        .put("/images/bad.raw", Served::file(served.clone()));
    world.tree(
        "bad",
        &format!("dsId: http, URL: bad.raw, iformat: RAW, sha256: {claimed}"),
    );
    world.volume(
        "bad-vol",
        "origin: { type: VCOT_DOWNLOAD, downloadContentTreeID: bad }",
    );
    // A lying Content-Length, then an endless body.
    let lie = noise(300_000, 5);
    world.http.put(
        "/images/lie.raw",
        Served {
            misbehave: Misbehave::LongerThanItIs(5000),
            ..Served::file(lie.clone())
        },
    );
    world.tree(
        "lie",
        &format!(
            "dsId: http, URL: lie.raw, iformat: RAW, sha256: {}",
            sha256_hex(&lie)
        ),
    );
    world.http.put(
        "/images/endless.raw",
        Served {
            misbehave: Misbehave::Endless,
            headers: Vec::new(),
            ..Served::file(Vec::new())
        },
    );
    world.tree(
        "endless",
        &format!(
            "dsId: http, URL: endless.raw, iformat: RAW, sha256: {}, maxSizeBytes: 1048576",
            "ee".repeat(32)
        ),
    );
    // An OCI image index of both arches, by tag.
    let images = [
        (
            "amd64",
            OciImage::new("amd64", &[300_000, 200_000, 100_000], 10),
        ),
        (
            "arm64",
            OciImage::new("arm64", &[310_000, 210_000, 110_000], 20),
        ),
    ];
    for (_, image) in &images {
        world.registry.push_image("apps/web", image).unwrap();
    }
    let index = oci_index(&[("amd64", &images[0].1), ("arm64", &images[1].1)]);
    world
        .registry
        .push_manifest("apps/web", "1.0", OCI_INDEX, &index)
        .unwrap();
    world.tree(
        "app",
        "dsId: registry, URL: \"apps/web:1.0\", iformat: CONTAINER",
    );
    world.volume(
        "app-vol",
        "origin: { type: VCOT_DOWNLOAD, downloadContentTreeID: app }",
    );
    // A hostile registry: a manifest whose layer digest it lies about, a
    // huge manifest, a redirect loop.
    let honest = OciImage::new(oci_arch, &[50_000], 30);
    let layer = sha256_hex(&honest.layers[0]);
    let manifest = sha256_hex(&honest.manifest);
    let json = |data: &[u8], media_type: &str| Served {
        content_type: media_type.into(),
        headers: vec![(
            "Docker-Content-Digest".into(),
            format!("sha256:{}", sha256_hex(data)),
        )],
        ..Served::file(data.to_vec())
    };
    for reference in ["1.0".to_string(), format!("sha256:{manifest}")] {
        world.hostile.put(
            &format!("/v2/bad/liar/manifests/{reference}"),
            json(&honest.manifest, OCI_MANIFEST),
        );
    }
    world.hostile.put(
        &format!("/v2/bad/liar/blobs/sha256:{}", sha256_hex(&honest.config)),
        Served::file(honest.config.clone()),
    );
    world.hostile.put(
        &format!("/v2/bad/liar/blobs/sha256:{layer}"),
        Served::file(noise(50_000, 31)),
    );
    world.tree(
        "liar",
        "dsId: hostile, URL: \"bad/liar:1.0\", iformat: CONTAINER",
    );
    world.hostile.put(
        "/v2/bad/huge/manifests/1.0",
        Served {
            content_type: OCI_MANIFEST.into(),
            ..Served::file(vec![b' '; 5 * MIB])
        },
    );
    world.tree(
        "huge",
        "dsId: hostile, URL: \"bad/huge:1.0\", iformat: CONTAINER",
    );
    world.hostile.put(
        "/v2/bad/loop/manifests/1.0",
        Served {
            misbehave: Misbehave::RedirectLoop,
            ..Served::file(Vec::new())
        },
    );
    world.tree(
        "loop",
        "dsId: hostile, URL: \"bad/loop:1.0\", iformat: CONTAINER",
    );
    world.apply();

    let (trees, volumes) = world.until("every tree settled and the good volumes built", |t, v| {
        t.len() == 10
            && t.values().all(final_state)
            && ["disk-vol", "qcow-vol", "app-vol", "scratch"]
                .iter()
                .all(|n| created(v.get(*n)))
    });
    let arch = world.arch.name();
    // The disk image over HTTPS with sealed credentials, as a volume.
    assert!(
        state_is(trees.get("disk"), ZSwState::Loaded),
        "{arch}: {trees:#?}"
    );
    let disk_vol = &volumes["disk-vol"];
    let file = world.volume_dir(disk_vol).join("disk.raw");
    let written = std::fs::read(&file).unwrap();
    assert_eq!(written.len(), 8 * MIB, "{arch}");
    assert!(
        written[..disk.len()] == disk[..],
        "{arch}: the volume is not the image"
    );
    assert!(
        world
            .https
            .requests("/images/disk.raw")
            .iter()
            .all(|r| r.status != 401),
        "{arch}: the credentials were not opened"
    );
    assert!(
        world
            .volume_dir(&volumes["qcow-vol"])
            .join("disk.qcow2")
            .is_file()
    );
    assert!(
        world
            .volume_dir(&volumes["scratch"])
            .join("disk.raw")
            .is_file()
    );
    // The OCI image: the node's arch out of the index, laid out.
    let app = &trees["app"];
    assert_eq!(app.state, ZSwState::Loaded as i32, "{arch}: {app:?}");
    let mine = &images.iter().find(|(a, _)| *a == oci_arch).unwrap().1;
    let mut components = vec![sha256_hex(&index)];
    components.extend(mine.digests());
    assert_eq!(app.components, components, "{arch}");
    let layout = world.volume_dir(&volumes["app-vol"]);
    let index_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index_json["manifests"][0]["digest"],
        format!("sha256:{}", sha256_hex(&mine.manifest))
    );
    for layer in &mine.layers {
        assert_eq!(
            std::fs::read(layout.join("blobs/sha256").join(sha256_hex(layer))).unwrap(),
            *layer
        );
    }
    // The wrong sha256: ERROR with both digests, never a volume.
    let bad = &trees["bad"];
    assert_eq!(bad.state, ZSwState::Error as i32, "{arch}: {bad:?}");
    assert!(
        bad.error.contains(&claimed) && bad.error.contains(&sha256_hex(&served)),
        "{arch}: {}",
        bad.error
    );
    let bad_vol = &volumes["bad-vol"];
    assert_eq!(bad_vol.state, ZSwState::Error as i32, "{arch}");
    assert!(bad_vol.host_volume.is_empty() && bad_vol.host_generations.is_empty());
    // The operator sees it too.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let shown = world.ctl.device_show(&world.uuid);
        if shown.contains(&claimed) && shown.contains(&sha256_hex(&served)) {
            break;
        }
        assert!(Instant::now() < deadline, "{arch}: evectl shows\n{shown}");
        thread::sleep(Duration::from_millis(500));
    }
    // The cut connection resumed: after the cut, less than the blob again.
    assert!(state_is(trees.get("cut"), ZSwState::Loaded), "{arch}");
    let requests = world.http.requests("/images/cut.raw");
    assert_eq!(requests[0].bytes, MIB as u64, "{arch}: {requests:?}");
    let after: u64 = requests[1..].iter().map(|r| r.bytes).sum();
    assert!(
        requests[1].range_start.is_some() && after < cut.len() as u64,
        "{arch}: {requests:?}"
    );
    // Hostile servers: clear errors.
    for (name, words) in [
        ("endless", "limit"),
        ("liar", "sha256 mismatch"),
        ("huge", "larger than the limit"),
        ("loop", "redirect"),
    ] {
        let tree = &trees[name];
        assert_eq!(
            tree.state,
            ZSwState::Error as i32,
            "{arch} {name}: {tree:?}"
        );
        assert!(tree.error.contains(words), "{arch} {name}: {}", tree.error);
    }
    assert!(trees["liar"].error.contains(&layer), "{arch}");
    // The lying length costs a try, then the bytes verify.
    assert!(
        state_is(trees.get("lie"), ZSwState::Loaded),
        "{arch}: {:?}",
        trees["lie"]
    );
}

/// A purge: the next generation is built while the old one stays
/// untouched, and the old one goes only once the new one is ready.
fn purge(world: &mut World) {
    let before = world.volumes_now()["disk-vol"].clone();
    let old_dir = world.volume_dir(&before);
    let old_file = old_dir.join("disk.raw");
    let meta = std::fs::metadata(&old_file).unwrap();
    let stamp = (meta.len(), meta.modified().unwrap());
    world.volume(
        "disk-vol",
        "origin: { type: VCOT_DOWNLOAD, downloadContentTreeID: disk }, maxsizebytes: 8388608, generationCount: 1",
    );
    world.apply();
    let new_dir = old_dir.with_file_name(before.host_volume.replace(".0", ".1"));
    let deadline = Instant::now() + PATIENCE;
    let mut overlap = false;
    loop {
        let (old, new) = (old_file.exists(), new_dir.join("volume.json").exists());
        assert!(old || new, "a moment with no disk-vol at all");
        if old {
            let m = std::fs::metadata(&old_file).unwrap();
            assert_eq!(
                (m.len(), m.modified().unwrap()),
                stamp,
                "the old generation changed"
            );
        }
        let current = world.volumes_now()["disk-vol"].clone();
        if !new {
            assert_eq!(
                current.host_volume, before.host_volume,
                "switched before ready"
            );
        }
        overlap |= old && new;
        if !old && new && current.host_volume.ends_with(".1") {
            assert!(created(Some(&current)), "{current:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{current:?}\n{}",
            tail(&world.lines.snapshot())
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        overlap,
        "the new generation was never ready beside the old one"
    );
}

/// A node restart mid-blob resumes where the store's bytes are.
fn node_restart_mid_blob(world: &mut World) {
    let big = noise(12 * MIB, 6);
    let held = 5 * MIB as u64;
    world.http.put(
        "/images/big.raw",
        Served {
            misbehave: Misbehave::HoldAfter(held),
            ..Served::file(big.clone())
        },
    );
    world.tree(
        "big",
        &format!(
            "dsId: http, URL: big.raw, iformat: RAW, sha256: {}",
            sha256_hex(&big)
        ),
    );
    world.apply();
    // The transfer is caught with part of the blob sent, and staged past
    // the store's first durable point or not: the restart is clean, so
    // every byte the downloader wrote is kept.
    world.until("part of the big blob staged", |t, _| {
        t.get("big").is_some_and(|s| s.size_bytes >= held / 2)
    });
    world.node.as_mut().unwrap().stop();
    world.node = None;
    world.http.release();
    let restarted = Instant::now();
    world.node = Some(start_node(
        &world.manifest,
        &world.images,
        world.state.path(),
        &world.config_part,
        &world.lines,
    ));
    world.until("the big blob loaded after the restart", |t, _| {
        state_is(t.get("big"), ZSwState::Loaded)
    });
    let after: Vec<_> = world
        .http
        .requests("/images/big.raw")
        .into_iter()
        .filter(|r| r.at > restarted)
        .collect();
    let fetched: u64 = after.iter().map(|r| r.bytes).sum();
    assert!(
        after
            .first()
            .is_some_and(|r| r.range_start.is_some_and(|s| s > 0))
            && fetched < big.len() as u64,
        "{}: after the restart {after:?}",
        world.arch.name()
    );
    // The rest of the node came back as it was.
    world.until("the volumes back", |_, v| {
        ["disk-vol", "qcow-vol", "app-vol", "scratch"]
            .iter()
            .all(|n| created(v.get(*n)))
    });
}

/// A download larger than the room above the reserve is refused and
/// reported; what the node holds keeps working; once the refused tree is
/// removed, its bytes are collected and the next download fits.
fn reserve(world: &mut World) {
    let huge = noise(10 * MIB, 7);
    world
        .http
        .put("/images/huge.raw", Served::file(huge.clone()));
    world.tree(
        "too-big",
        &format!(
            "dsId: http, URL: huge.raw, iformat: RAW, sha256: {}",
            sha256_hex(&huge)
        ),
    );
    world.apply();
    // Refused and reported (the downloader tries again with backoff, in
    // case collection makes room, so the tree may still be retrying).
    let (trees, volumes) = world.until("the reserve refused the download", |t, _| {
        t.get("too-big")
            .is_some_and(|s| s.state != ZSwState::Loaded as i32 && s.error.contains("disk reserve"))
    });
    for name in ["disk", "app", "big"] {
        assert!(
            state_is(trees.get(name), ZSwState::Loaded),
            "{name}: {trees:#?}"
        );
    }
    assert!(created(volumes.get("disk-vol")) && created(volumes.get("app-vol")));
    world.trees.remove("too-big");
    let small = noise(MIB, 8);
    world
        .http
        .put("/images/after.raw", Served::file(small.clone()));
    world.tree(
        "after",
        &format!(
            "dsId: http, URL: after.raw, iformat: RAW, sha256: {}",
            sha256_hex(&small)
        ),
    );
    world.apply();
    world.until(
        "the next download after the refused one was removed",
        |t, _| !t.contains_key("too-big") && state_is(t.get("after"), ZSwState::Loaded),
    );
}

#[test]
fn content_on_an_x86_64_node() {
    content_on_a_node(Arch::X86_64);
}

#[test]
fn content_on_an_aarch64_node() {
    content_on_a_node(Arch::Aarch64);
}
