//! The smoke test of every service: each service of the node manifest
//! (`nodes/default.toml`) whose image is a service crate of the workspace
//! is booted alone, on microvm and on virt, under the host's own node
//! machinery (its manifest stanza: devices, command line, volumes) and
//! connected to a real broker set up from the whole manifest, as
//! `eve-host run` does. It must say Hello on the bus and heartbeat.
//!
//! A service made with `cargo xtask new-service` is in the manifest, so it
//! is smoke-tested here without a test of its own.

#[path = "common/hostlog.rs"]
mod hostlog;

use hostlog::Lines;
use std::{
    path::Path,
    sync::{Arc, Mutex, atomic::AtomicBool, atomic::Ordering},
    thread,
    time::{Duration, Instant},
};

use eve_host::{
    manifest::Manifest,
    node::{Node, NodePaths, Seams},
    nodebus::{NodeBus, TpmChoice},
    qemu::QemuVmm,
    servicelog::ServiceLogs,
    targets::{ContentOptions, DomainsOptions},
    vfio::VfioRoots,
    volumes::StateDir,
};
use harness::provision::{OnboardIdentity, config_files, write_config_partition};
use harness::{Arch, Profile, build_service, layout, pki, workspace_root};

/// A guard against a service that never comes up, not a timing target:
/// under TCG a service boots in about a second.
const PATIENCE: Duration = Duration::from_secs(180);
/// Heartbeats after the Hello: more than one shows the service beats
/// on its own.
const BEATS: u64 = 3;

/// A CONFIG partition naming a controller on a loopback port nobody
/// listens on: services that need one start and keep trying.
fn config_partition(dir: &Path) -> std::path::PathBuf {
    let root = pki::root("Smoke Test Root").cert.pem();
    let identity = OnboardIdentity::generate("smoke-").expect("an onboarding identity");
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port();
    let path = dir.join("config.img");
    write_config_partition(&path, &config_files(unused, &root, &identity))
        .expect("the CONFIG partition");
    path
}

/// Boots `service` of `manifest` alone and waits for its Hello and
/// heartbeats on the broker.
fn says_hello_and_heartbeats(manifest: &Manifest, service: &str, images: &Path, config: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::create(dir.path()).unwrap();
    let lines = Arc::new(Lines::default());
    let tpm = TpmChoice::None;
    let bus = NodeBus::start(
        manifest,
        dir.path(),
        &tpm,
        ContentOptions::default(),
        &DomainsOptions::default(),
        None,
        ServiceLogs::new(&state.logs(), lines.clone()),
    )
    .expect("the node's bus");
    let alone = Manifest {
        node: manifest.node.clone(),
        services: vec![manifest.service(service).expect("in the manifest").clone()],
    };
    let accel = guest_arch::choose_accel(manifest.node.arch, None).expect("an accelerator");
    let paths = NodePaths {
        images: images.to_path_buf(),
        state_dir: dir.path().to_path_buf(),
        config_part: Some(config.to_path_buf()),
    };
    let node = Node::prepare(&alone, &paths, &accel, &VfioRoots::default()).expect("the node");
    let broker = bus.broker().clone();
    let seams = Seams {
        bus: Arc::new(broker.clone()),
        heartbeats: Arc::new(broker.clone()),
        log: lines.clone(),
        status: None,
    };
    let stop = AtomicBool::new(false);
    let states = Mutex::new(Vec::new());
    let heard = thread::scope(|scope| {
        scope.spawn(|| {
            node.run(QemuVmm, seams, &stop, Duration::from_secs(5), |status| {
                states.lock().unwrap().push(status.to_string());
            })
        });
        let deadline = Instant::now() + PATIENCE;
        let heard = loop {
            let status = broker.status(service);
            let beats = status.and_then(|s| s.last_heartbeat).map(|(_, seq)| seq);
            let ended = states
                .lock()
                .unwrap()
                .iter()
                .any(|s| s.contains("exited") || s.contains("panicked"));
            if beats.is_some_and(|seq| seq >= BEATS) || ended || Instant::now() >= deadline {
                break status;
            }
            thread::sleep(Duration::from_millis(100));
        };
        stop.store(true, Ordering::SeqCst);
        heard
    });
    let report = || {
        format!(
            "states: {:?}\nhost log:\n{}",
            states.lock().unwrap(),
            lines.snapshot().join("\n")
        )
    };
    let status = heard.unwrap_or_else(|| panic!("{service} never said Hello\n{}", report()));
    assert!(
        status.boot_counter.is_some(),
        "{service} was never welcomed\n{}",
        report()
    );
    let beats = status.last_heartbeat.map(|(_, seq)| seq);
    assert!(
        beats.is_some_and(|seq| seq >= BEATS),
        "{service} said Hello but beat {beats:?} times\n{}",
        report()
    );
    assert!(
        !states
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.contains("CRASH LOOP")),
        "{}",
        report()
    );
}

fn every_service_says_hello_and_heartbeats(arch: Arch) {
    let mut manifest =
        Manifest::load(&workspace_root().join("nodes/default.toml")).expect("the default manifest");
    manifest.node.arch = arch;
    let crates = layout::services();
    let services: Vec<(String, String)> = manifest
        .services
        .iter()
        .filter(|s| crates.contains(&s.image))
        .map(|s| (s.name.clone(), s.image.clone()))
        .collect();
    assert!(
        !services.is_empty(),
        "no service of the manifest is a crate"
    );
    let mut images = None;
    for (_, image) in &services {
        let built = build_service(image, arch, Profile::Release)
            .unwrap_or_else(|e| panic!("building {image}: {e}"));
        images = built.parent().map(Path::to_path_buf);
    }
    let images = images.expect("an image directory");
    let dir = tempfile::tempdir().unwrap();
    let config = config_partition(dir.path());
    for (name, _) in &services {
        says_hello_and_heartbeats(&manifest, name, &images, &config);
    }
}

#[test]
fn every_service_says_hello_and_heartbeats_on_microvm() {
    every_service_says_hello_and_heartbeats(Arch::X86_64);
}

#[test]
fn every_service_says_hello_and_heartbeats_on_virt() {
    every_service_says_hello_and_heartbeats(Arch::Aarch64);
}
