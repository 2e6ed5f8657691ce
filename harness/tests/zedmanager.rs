//! zedmanager in QEMU, on microvm and on virt, on a real broker set up
//! from the default manifest: this test plays zedagent (the config's app,
//! volume and content tree tables), volumemgr (volume states) and
//! domainmgr (domain states) as bus peers in this process, and reads what
//! zedmanager publishes (`domain-config`, `app-status`).
//!
//! A good unikernel app and a hostile one (zero memory) are deployed: the
//! good one waits for its volume, gets its domain and is RUNNING once
//! domainmgr says so; the hostile one is ERROR with the reason while the
//! other runs; a bumped restart counter is passed on and shown as
//! RESTARTING; removing the app withdraws its domain and its report.

#[path = "common/hostlog.rs"]
mod hostlog;

use hostlog::Lines;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use eve_broker::Broker;
use eve_host::manifest::{Bus, Manifest, Service};
use eve_host::node::{Node, NodePaths, Seams};
use eve_host::nodebus::{NodeBus, TpmChoice};
use eve_host::qemu::QemuVmm;
use eve_host::servicelog::ServiceLogs;
use eve_host::targets::{ContentOptions, DomainsOptions};
use eve_host::vfio::VfioRoots;
use eve_host::volumes::StateDir;
use eve_proto::config::{
    AppInstanceConfig, ContentTree, Format, InstanceOpsCmd, UuiDandVersion, VmConfig, VmMode,
    Volume, VolumeContentOrigin, VolumeContentOriginType, VolumeRef,
};
use eve_proto::info::ZSwState;
use evebus::{Client, ClientConfig, Event};
use harness::{Arch, Profile, build_service, workspace_root};
use topics::apps::{Domain, DomainState};
use topics::content::VolumeState;
use topics::{
    AppInstanceConfig as AppTopic, AppNetworkStatus, AppStatus, ContentTreeConfig, DomainConfig,
    DomainStatus, NetworkInstanceConfig, Topic, VolumeConfig, VolumeStatus,
};

/// A guard against a zedmanager that never answers, not a timing target:
/// it boots in about a second under TCG and answers in milliseconds.
const PATIENCE: Duration = Duration::from_secs(120);

const APP: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const HOSTILE: &str = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";
const ROOT: &str = "a0000000-0000-4000-8000-000000000001";
const IMAGE: &str = "c0000000-0000-4000-8000-000000000001";

/// A service played by this test on the broker.
struct Peer {
    stream: UnixStream,
    client: Client,
    start: Instant,
}

impl Peer {
    fn connect(broker: &Broker, service: &str) -> Peer {
        let (ours, theirs) = UnixStream::pair().unwrap();
        broker.attach(service, theirs).unwrap();
        ours.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut peer = Peer {
            stream: ours,
            client: Client::new(ClientConfig::new(service, 1)),
            start: Instant::now(),
        };
        peer.client.connect().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !peer.client.is_connected() {
            assert!(Instant::now() < deadline, "{service} was not welcomed");
            peer.pump();
        }
        peer
    }

    /// Sends what is queued and takes what arrived.
    fn pump(&mut self) {
        let now = self.start.elapsed();
        self.client.poll(now);
        let bytes = self.client.transmit().to_vec();
        self.stream.write_all(&bytes).unwrap();
        self.client.transmitted(bytes.len());
        let mut buf = [0; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => panic!("the broker closed the connection"),
            Ok(n) => self.client.receive(&buf[..n], now).unwrap(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
        while let Some(event) = self.client.next_event() {
            if let Event::Refused(reason) = event {
                panic!("refused: {reason:?}");
            }
        }
    }

    fn publish<T: Topic>(&mut self, key: &str, value: &T::Value) {
        self.client
            .publish(T::NAME, key, &topics::encode::<T>(value))
            .unwrap();
        self.pump();
    }

    fn delete<T: Topic>(&mut self, key: &str) {
        self.client.delete(T::NAME, key).unwrap();
        self.pump();
    }

    fn synchronized<T: Topic>(&mut self) {
        self.client.signal_synchronized(T::NAME).unwrap();
        self.pump();
    }
}

/// The default manifest with the three services this test plays and
/// zedmanager subscribed to domainmgr's `domain-status`.
fn manifest(arch: Arch) -> Manifest {
    let mut manifest =
        Manifest::load(&workspace_root().join("nodes/default.toml")).expect("the default manifest");
    manifest.node.arch = arch;
    let zedmanager = manifest
        .service("zedmanager")
        .expect("zedmanager in the manifest")
        .clone();
    let template = zedmanager.clone();
    let played = |name: &str, publish: &[&str]| Service {
        name: name.into(),
        image: name.into(),
        bus: Bus {
            publish: publish.iter().map(|t| t.to_string()).collect(),
            subscribe: Vec::new(),
            call: Default::default(),
            heartbeat_timeout: None,
        },
        ..template.clone()
    };
    let mut zedmanager = zedmanager;
    if !zedmanager
        .bus
        .subscribe
        .iter()
        .any(|t| t == DomainStatus::NAME)
    {
        zedmanager.bus.subscribe.push(DomainStatus::NAME.into());
    }
    manifest.services = vec![
        played(
            "zedagent",
            &[
                AppTopic::NAME,
                ContentTreeConfig::NAME,
                VolumeConfig::NAME,
                NetworkInstanceConfig::NAME,
            ],
        ),
        played("zedrouter", &[AppNetworkStatus::NAME]),
        played("volumemgr", &[VolumeStatus::NAME]),
        played("domainmgr", &[DomainStatus::NAME]),
        zedmanager,
    ];
    manifest
}

fn app(uuid: &str, memory: u32, restart: u32) -> AppInstanceConfig {
    AppInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: uuid.into(),
            version: "1".into(),
        }),
        displayname: "hello".into(),
        fixedresources: Some(VmConfig {
            memory,
            vcpus: 1,
            virtualization_mode: VmMode::Pv as i32,
            ..Default::default()
        }),
        activate: true,
        volume_ref_list: vec![VolumeRef {
            uuid: ROOT.into(),
            ..Default::default()
        }],
        restart: Some(InstanceOpsCmd {
            counter: restart,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The services this test plays.
struct Peers {
    zedagent: Peer,
    volumemgr: Peer,
    domainmgr: Peer,
}

impl Peers {
    /// Pumps every peer until `done` holds for the broker's tables.
    fn until(
        &mut self,
        what: &str,
        broker: &Broker,
        lines: &Lines,
        done: impl Fn(&Broker) -> bool,
    ) {
        let deadline = Instant::now() + PATIENCE;
        while !done(broker) {
            assert!(
                Instant::now() < deadline,
                "never: {what}\nhost log:\n{}",
                lines.snapshot().join("\n")
            );
            self.zedagent.pump();
            self.volumemgr.pump();
            self.domainmgr.pump();
        }
    }
}

fn item<T: Topic>(broker: &Broker, key: &str) -> Option<T::Value> {
    broker
        .table(T::NAME)
        .get(key)
        .and_then(|bytes| topics::decode::<T>(bytes).ok())
}

fn state_is(broker: &Broker, key: &str, state: ZSwState) -> bool {
    item::<AppStatus>(broker, key).is_some_and(|s| s.state == state as i32)
}

fn zedmanager_runs_apps(arch: Arch) {
    let image = build_service("zedmanager", arch, Profile::Release).expect("zedmanager");
    let images = image.parent().unwrap().to_path_buf();
    let manifest = manifest(arch);
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::create(dir.path()).unwrap();
    let lines = Arc::new(Lines::default());
    let tpm = TpmChoice::None;
    let bus = NodeBus::start(
        &manifest,
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
        services: vec![manifest.service("zedmanager").unwrap().clone()],
    };
    let accel = guest_arch::choose_accel(arch, None).expect("an accelerator");
    let paths = NodePaths {
        images: images.clone(),
        state_dir: dir.path().to_path_buf(),
        config_part: None,
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
    thread::scope(|scope| {
        scope.spawn(|| {
            node.run(QemuVmm, seams, &stop, Duration::from_secs(5), |status| {
                states.lock().unwrap().push(status.to_string());
            })
        });
        scenario(&broker, &lines);
        stop.store(true, Ordering::SeqCst);
    });
    let states = states.lock().unwrap();
    assert!(
        !states
            .iter()
            .any(|s| s.contains("panic") || s.contains("CRASH")),
        "{states:?}"
    );
}

fn scenario(broker: &Broker, lines: &Lines) {
    let mut p = Peers {
        zedagent: Peer::connect(broker, "zedagent"),
        volumemgr: Peer::connect(broker, "volumemgr"),
        domainmgr: Peer::connect(broker, "domainmgr"),
    };
    p.zedagent.publish::<ContentTreeConfig>(
        IMAGE,
        &ContentTree {
            uuid: IMAGE.into(),
            iformat: Format::Raw as i32,
            ..Default::default()
        },
    );
    p.zedagent.publish::<VolumeConfig>(
        ROOT,
        &Volume {
            uuid: ROOT.into(),
            origin: Some(VolumeContentOrigin {
                r#type: VolumeContentOriginType::VcotDownload as i32,
                download_content_tree_id: IMAGE.into(),
            }),
            ..Default::default()
        },
    );
    p.zedagent.publish::<AppTopic>(APP, &app(APP, 65536, 0));
    p.zedagent.publish::<AppTopic>(HOSTILE, &app(HOSTILE, 0, 0));
    p.zedagent.synchronized::<ContentTreeConfig>();
    p.zedagent.synchronized::<VolumeConfig>();
    p.zedagent.synchronized::<AppTopic>();
    // No network instances: the apps are on none.
    p.zedagent.synchronized::<NetworkInstanceConfig>();
    p.volumemgr.publish::<VolumeStatus>(
        ROOT,
        &VolumeState {
            uuid: ROOT.into(),
            state: ZSwState::CreatingVolume as i32,
            ..Default::default()
        },
    );
    p.until("the app waits for its volume", broker, lines, |b| {
        state_is(b, APP, ZSwState::CreatingVolume)
    });
    assert!(item::<DomainConfig>(broker, APP).is_none());
    let hostile = item::<AppStatus>(broker, HOSTILE).expect("the hostile app's report");
    assert_eq!(hostile.state, ZSwState::Error as i32);
    assert!(
        hostile.app_err[0].description.contains("memory 0 KiB"),
        "{hostile:?}"
    );

    p.volumemgr.publish::<VolumeStatus>(
        ROOT,
        &VolumeState {
            uuid: ROOT.into(),
            state: ZSwState::CreatedVolume as i32,
            host_volume: format!("{ROOT}.0"),
            ..Default::default()
        },
    );
    p.until("a domain for the app", broker, lines, |b| {
        item::<DomainConfig>(b, APP).is_some()
    });
    let domain: Domain = item::<DomainConfig>(broker, APP).unwrap();
    assert!(domain.activate);
    assert_eq!(domain.memory_kib, 65536);
    assert_eq!(domain.disks[0].host_volume, format!("{ROOT}.0"));
    assert!(item::<DomainConfig>(broker, HOSTILE).is_none());
    assert!(state_is(broker, APP, ZSwState::Booting));

    let running = |domain: &Domain| DomainState {
        uuid: domain.uuid.clone(),
        state: ZSwState::Running as i32,
        restart_counter: domain.restart_counter,
        boot_unix: 1_800_000_000,
        disks: vec![format!("{ROOT}.0")],
        ..Default::default()
    };
    p.domainmgr.publish::<DomainStatus>(APP, &running(&domain));
    p.until("the app RUNNING", broker, lines, |b| {
        state_is(b, APP, ZSwState::Running)
    });
    let status = item::<AppStatus>(broker, APP).unwrap();
    assert_eq!(status.boot_time.unwrap().seconds, 1_800_000_000);
    assert!(state_is(broker, HOSTILE, ZSwState::Error));

    p.zedagent.publish::<AppTopic>(APP, &app(APP, 65536, 1));
    p.until("RESTARTING", broker, lines, |b| {
        state_is(b, APP, ZSwState::Restarting)
            && item::<DomainConfig>(b, APP).is_some_and(|d| d.restart_counter == 1)
    });
    let restarted = item::<DomainConfig>(broker, APP).unwrap();
    p.domainmgr
        .publish::<DomainStatus>(APP, &running(&restarted));
    p.until("RUNNING after the restart", broker, lines, |b| {
        state_is(b, APP, ZSwState::Running)
    });

    p.zedagent.delete::<AppTopic>(APP);
    p.until("the removed app's domain withdrawn", broker, lines, |b| {
        item::<DomainConfig>(b, APP).is_none() && item::<AppStatus>(b, APP).is_none()
    });
    assert!(state_is(broker, HOSTILE, ZSwState::Error));
}

#[test]
fn zedmanager_runs_apps_on_microvm() {
    zedmanager_runs_apps(Arch::X86_64);
}

#[test]
fn zedmanager_runs_apps_on_virt() {
    zedmanager_runs_apps(Arch::Aarch64);
}
