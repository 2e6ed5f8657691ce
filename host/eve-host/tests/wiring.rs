//! The node's bus and TPM wiring in-process, without QEMU: the broker and
//! the host targets set up from a manifest exactly as `eve-host run` does
//! ([`NodeBus::start`]), with fake services speaking the bus over
//! `UnixStream::pair()` through the same attach seam the VMs' sockets use.

use std::{
    io::{ErrorKind, Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use eve_broker::Broker;
use eve_host::{
    Arch,
    bus::BusAttach,
    console::StderrLog,
    heartbeat::Heartbeats,
    manifest::Manifest,
    nodebus::{NodeBus, TpmChoice},
    servicelog::ServiceLogs,
    status::StatusFile,
    supervisor::{State, Status},
    targets::{ContentOptions, DomainsOptions, HostTarget, Refused, serve, tpm::TpmTarget},
    volumes::StateDir,
};
use evebus::{Call, Client, ClientConfig, DenyReason, Event, Level, Operation};
use hostops::Target;
use hostops::tpm::{
    self, Empty, PcrBank, PcrSelect, PcrSelection, QuoteRequest, SignRequest, TpmError,
    TpmErrorCode,
};
use p256::ecdsa::{Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
use prost::Message;
use sha2::{Digest, Sha256};
use topics::{DeviceFacts, OnboardStatus, Topic, facts::Facts};

/// How long a test waits for something that should happen; a guard
/// against hanging, not a timing target.
const PATIENCE: Duration = Duration::from_secs(20);

const NODE: &str = r#"[node]
name = "wired"
arch = "x86_64"

[[service]]
name = "zedagent"
image = "zedagent"
ram_mib = 64
bus.call.tpm = ["create-device-key", "sign", "read-pcrs", "quote", "read-ek-cert"]
bus.publish = ["onboard-status"]
bus.subscribe = ["diag-report", "@log", "@device-facts"]

[[service]]
name = "signer"
image = "selftest"
ram_mib = 32
bus.call.tpm = ["sign", "device-public-key"]

[[service]]
name = "diag"
image = "diag"
ram_mib = 32
bus.publish = ["diag-report"]
bus.subscribe = ["onboard-status"]
"#;

fn start(state: &Path, tpm: TpmChoice) -> NodeBus {
    let manifest = Manifest::parse(NODE).expect("the test manifest");
    let dir = StateDir::create(state).unwrap();
    let logs = ServiceLogs::new(&dir.logs(), Arc::new(StderrLog));
    NodeBus::start(
        &manifest,
        state,
        &tpm,
        ContentOptions::default(),
        &DomainsOptions::default(),
        None,
        logs,
    )
    .expect("starting the node's bus")
}

/// A fake service: its end of the socket pair and its bus client.
struct Service {
    stream: UnixStream,
    client: Client,
    start: Instant,
}

impl Service {
    /// Connects `name` the way a VM's accepted bus socket is.
    fn connect(broker: &Broker, name: &str) -> Service {
        let (ours, host_end) = UnixStream::pair().unwrap();
        BusAttach::attach(broker, name, host_end);
        ours.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut service = Service {
            stream: ours,
            client: Client::new(ClientConfig::new(name, 1)),
            start: Instant::now(),
        };
        service.client.connect().unwrap();
        service.wait_for(|e| matches!(e, Event::Connected { .. }));
        service
    }

    fn flush(&mut self) {
        let bytes = self.client.transmit().to_vec();
        self.stream.write_all(&bytes).unwrap();
        self.client.transmitted(bytes.len());
    }

    /// Reads and runs the client's timers once.
    fn turn(&mut self) {
        self.client.poll(self.start.elapsed());
        self.flush();
        let mut buf = [0; 16 << 10];
        match self.stream.read(&mut buf) {
            Ok(0) => panic!("the broker closed the connection"),
            Ok(n) => {
                let now = self.start.elapsed();
                self.client.receive(&buf[..n], now).unwrap();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }

    fn wait_for(&mut self, wanted: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + PATIENCE;
        loop {
            while let Some(event) = self.client.next_event() {
                if wanted(&event) {
                    return event;
                }
            }
            assert!(Instant::now() < deadline, "the event never came");
            self.turn();
        }
    }

    /// Calls a host operation and returns the response's status and
    /// payload.
    fn call(
        &mut self,
        target: &str,
        operation: &str,
        version: u16,
        payload: &[u8],
    ) -> (evebus::Status, Vec<u8>) {
        let id = self
            .client
            .request(
                &Call {
                    target,
                    operation,
                    version,
                    payload,
                    timeout: PATIENCE,
                },
                self.start.elapsed(),
            )
            .unwrap();
        match self.wait_for(|e| {
            matches!(e, Event::Response { id: got, .. } | Event::RequestFailed { id: got, .. } if *got == id)
        }) {
            Event::Response {
                status, payload, ..
            } => (status, payload),
            other => panic!("request {id} failed: {other:?}"),
        }
    }

    /// Calls operation `O` of the host with its typed request: the typed
    /// response, or the status and the target's typed error.
    fn op<O: hostops::Operation>(
        &mut self,
        request: &O::Request,
    ) -> Result<O::Response, (evebus::Status, Vec<u8>)> {
        let spec = <O::Target as Target>::SPEC;
        let (status, answer) =
            self.call(spec.name, O::NAME, spec.version, &request.encode_to_vec());
        if status == evebus::Status::Ok {
            Ok(O::Response::decode(answer.as_slice()).expect("a response of the operation"))
        } else {
            Err((status, answer))
        }
    }
}

/// The TPM error of a `Failed` answer.
fn tpm_error(answer: Result<impl std::fmt::Debug, (evebus::Status, Vec<u8>)>) -> TpmErrorCode {
    match answer {
        Err((evebus::Status::Failed, error)) => TpmError::decode(error.as_slice()).unwrap().code(),
        other => panic!("expected a TPM failure, got {other:?}"),
    }
}

/// Waits until `condition` holds.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn swtpm_installed() -> bool {
    let found = Command::new("swtpm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: the swtpm binary is not installed (cargo xtask deps installs it)");
    }
    found
}

#[test]
fn the_manifest_grants_are_enforced_and_the_tpm_signs_for_zedagent() {
    if !swtpm_installed() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    // A bare TPM: swtpm manufactures it on first start, skipping the
    // EK certificate that swtpm_setup takes seconds to make.
    std::fs::create_dir(state.path().join("tpm")).unwrap();
    let bus = start(state.path(), TpmChoice::Swtpm);
    assert!(bus.tpm().starts_with("swtpm ("), "{}", bus.tpm());
    let broker = bus.broker();

    let mut diag = Service::connect(broker, "diag");
    diag.client
        .publish(OnboardStatus::NAME, OnboardStatus::KEY, b"forged")
        .unwrap();
    let denied = diag.wait_for(|e| matches!(e, Event::Denied { .. }));
    assert_eq!(
        denied,
        Event::Denied {
            operation: Operation::Publish,
            topic: OnboardStatus::NAME.into(),
            reason: DenyReason::NotGranted,
        }
    );
    assert!(broker.table(OnboardStatus::NAME).is_empty());
    assert_eq!(
        diag.op::<tpm::CreateDeviceKey>(&Empty {}).unwrap_err().0,
        evebus::Status::Denied,
        "diag has no TPM grants"
    );

    let mut signer = Service::connect(broker, "signer");
    assert_eq!(
        signer.op::<tpm::CreateDeviceKey>(&Empty {}).unwrap_err().0,
        evebus::Status::Denied,
        "signer may only sign and read the public key"
    );
    assert_eq!(
        tpm_error(signer.op::<tpm::DevicePublicKey>(&Empty {})),
        TpmErrorCode::NotProvisioned
    );

    let mut zedagent = Service::connect(broker, "zedagent");
    let created = zedagent.op::<tpm::CreateDeviceKey>(&Empty {}).unwrap();
    let point = *created.point().expect("a P-256 point");
    let device_key = VerifyingKey::from_sec1_bytes(&point).expect("a P-256 point");
    assert_eq!(
        signer.op::<tpm::DevicePublicKey>(&Empty {}).unwrap(),
        created
    );
    let digest: [u8; 32] = Sha256::digest(b"an EVE AuthContainer payload").into();
    for service in [&mut zedagent, &mut signer] {
        let answer = service
            .op::<tpm::Sign>(&SignRequest {
                digest: digest.to_vec(),
            })
            .unwrap();
        let signature = Signature::from_slice(answer.raw().unwrap()).unwrap();
        device_key
            .verify_prehash(&digest, &signature)
            .expect("the signature verifies with the device key");
    }
    let select = PcrSelect::new(
        PcrBank::Sha256,
        PcrSelection::from_indices(&[0, 7]).unwrap(),
    );
    let pcrs = zedagent.op::<tpm::ReadPcrs>(&select).unwrap();
    assert_eq!(pcrs.values().unwrap().count(), 2);
    let quote = zedagent
        .op::<tpm::Quote>(&QuoteRequest {
            nonce: b"controller nonce".to_vec(),
            select: Some(select),
        })
        .unwrap();
    quote.check().expect("a well-formed quote");
    assert_eq!(
        tpm_error(zedagent.op::<tpm::ReadEkCert>(&Empty {})),
        TpmErrorCode::NotProvisioned,
        "a bare swtpm has no EK certificate"
    );
    // A request that is not one of the operation is answered as such.
    let (status, _) = zedagent.call(
        "tpm",
        <tpm::Sign as hostops::Operation>::NAME,
        1,
        &[0xff, 0xff],
    );
    assert_eq!(status, evebus::Status::BadRequest);
    let (status, _) = zedagent.call("tpm", <tpm::Sign as hostops::Operation>::NAME, 2, &[]);
    assert_eq!(status, evebus::Status::WrongVersion);

    let socket = state.path().join("swtpm.sock");
    assert!(socket.exists());
    drop(bus);
    assert!(!socket.exists(), "swtpm is stopped with the node's bus");
}

#[test]
fn logs_heartbeats_and_tables_reach_the_host() {
    let state = tempfile::tempdir().unwrap();
    let bus = start(state.path(), TpmChoice::None);
    assert_eq!(bus.tpm(), "none");
    let broker = bus.broker();
    let mut zedagent = Service::connect(broker, "zedagent");
    zedagent.client.subscribe(evebus::LOG_TOPIC).unwrap();
    zedagent.wait_for(|e| matches!(e, Event::Synchronized { .. }));
    let report = topics::onboard::Report {
        phase: topics::onboard::Phase::Running as i32,
        uuid: "u1".into(),
        ..Default::default()
    };
    zedagent
        .client
        .publish(
            OnboardStatus::NAME,
            OnboardStatus::KEY,
            &topics::encode::<OnboardStatus>(&report),
        )
        .unwrap();
    assert_eq!(
        tpm_error(zedagent.op::<tpm::CreateDeviceKey>(&Empty {})),
        TpmErrorCode::Unavailable,
        "--tpm none"
    );

    let mut diag = Service::connect(broker, "diag");
    diag.client.log(
        Level::Info,
        1_700_000_000_000_000_000,
        "diag",
        "uplink up\nforged",
    );
    diag.flush();
    let forwarded = zedagent.wait_for(|e| matches!(e, Event::LogRecord { .. }));
    assert!(
        matches!(&forwarded, Event::LogRecord { source, .. } if source == "diag"),
        "{forwarded:?}"
    );
    let log = state.path().join("logs/diag.log");
    eventually("diag's record reaches its log file", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("uplink up"))
    });
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "[1700000000.000000] INFO diag: uplink up\\nforged\n"
    );

    let deadline = Instant::now() + PATIENCE;
    while Heartbeats::last_heartbeat(broker, "zedagent").is_none() {
        assert!(
            Instant::now() < deadline,
            "zedagent's heartbeat never arrived"
        );
        zedagent.turn();
    }
    assert_eq!(Heartbeats::last_heartbeat(broker, "signer"), None);

    let path = StateDir::create(state.path()).unwrap().status_file();
    let mut status = StatusFile::new(
        &path,
        "wired",
        Arch::X86_64,
        &bus.tpm().to_string(),
        Arc::new(broker.clone()),
    );
    let running = |service: &str| Status {
        service: service.into(),
        state: State::Running { pid: None },
        restarts: 0,
        crash_loop: false,
        last_end: None,
    };
    status
        .update(
            Instant::now(),
            &[running("zedagent"), running("signer"), running("diag")],
        )
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["tpm"], "none");
    let shown: topics::onboard::Report =
        serde_json::from_value(doc["tables"][OnboardStatus::NAME][OnboardStatus::KEY].clone())
            .unwrap();
    assert_eq!(shown, report);
    let services = doc["services"].as_array().unwrap();
    assert_eq!(services[0]["bus_connected"], true);
    assert!(services[0]["last_heartbeat_age_ms"].is_u64());
    assert_eq!(
        services[1]["bus_connected"], false,
        "signer never connected"
    );
    assert!(services[1]["last_heartbeat_age_ms"].is_null());
}

#[test]
fn the_device_s_facts_reach_granted_services_and_the_status_file() {
    let state = tempfile::tempdir().unwrap();
    let manifest = Manifest::parse(NODE).expect("the test manifest");
    let dir = StateDir::create(state.path()).unwrap();
    let facts = Facts {
        cpu_count: 12,
        memory_bytes: 64 << 30,
        storage_bytes: 512 << 30,
        product_name: "SYS-E100".into(),
        serial: "S1234".into(),
        ..Facts::default()
    };
    let bus = NodeBus::start_with(
        &manifest,
        ServiceLogs::new(&dir.logs(), Arc::new(StderrLog)),
        vec![Arc::new(TpmTarget::absent())],
        &facts,
    )
    .unwrap();
    let broker = bus.broker();
    let mut zedagent = Service::connect(broker, "zedagent");
    zedagent.client.subscribe(DeviceFacts::NAME).unwrap();
    let Event::Created { key, value, .. } = zedagent
        .wait_for(|e| matches!(e, Event::Created { topic, .. } if topic == DeviceFacts::NAME))
    else {
        panic!("not a Created event")
    };
    assert_eq!(key, DeviceFacts::KEY);
    assert_eq!(topics::decode::<DeviceFacts>(&value), Ok(facts.clone()));
    let mut diag = Service::connect(broker, "diag");
    diag.client.subscribe(DeviceFacts::NAME).unwrap();
    diag.wait_for(|e| matches!(e, Event::Denied { topic, .. } if topic == DeviceFacts::NAME));

    let path = dir.status_file();
    let mut status = StatusFile::new(
        &path,
        "wired",
        Arch::X86_64,
        "none",
        Arc::new(broker.clone()),
    );
    status.update(Instant::now(), &[]).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let shown: Facts =
        serde_json::from_value(doc["tables"][DeviceFacts::NAME][DeviceFacts::KEY].clone()).unwrap();
    assert_eq!(shown, facts);
}

/// What a new target's `hostops` module declares: its messages, its
/// typed error and its operations.
mod safe {
    use std::fmt;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Combination {
        #[prost(string, tag = "1")]
        pub digits: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Contents {
        #[prost(string, tag = "1")]
        pub items: String,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct SafeError {
        /// 1: wrong combination.
        #[prost(uint32, tag = "1")]
        pub code: u32,
    }

    impl fmt::Display for SafeError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "safe error {}", self.code)
        }
    }

    hostops::target! {
        /// A safe the host keeps.
        pub struct Safe = "safe", version 1, error SafeError;
        /// Opens it with a combination.
        Open = "open": Combination => Contents;
        /// Locks it.
        Lock = "lock": hostops::tpm::Empty => hostops::tpm::Empty;
    }
}

/// What a new target's host module implements.
struct SafeTarget;

impl eve_broker::RpcHandler for SafeTarget {
    fn call(
        &self,
        _caller: &str,
        operation: &str,
        request: &[u8],
    ) -> Result<Vec<u8>, eve_broker::RpcError> {
        use hostops::Operation as _;
        match operation {
            safe::Open::NAME => serve::<safe::Open>(request, |combination| {
                if combination.digits == "1234" {
                    Ok(safe::Contents {
                        items: "the crown jewels".into(),
                    })
                } else {
                    Err(Refused::Failed(safe::SafeError { code: 1 }))
                }
            }),
            safe::Lock::NAME => serve::<safe::Lock>(request, |_| Ok(Empty {})),
            other => Err(eve_broker::RpcError::BadRequest(format!("no {other}"))),
        }
    }
}

impl HostTarget for SafeTarget {
    fn spec(&self) -> &'static hostops::TargetSpec {
        &<safe::Safe as Target>::SPEC
    }

    fn describe(&self) -> String {
        "a safe in the test".into()
    }
}

/// A new service with a new host operation takes its own crate, its
/// operation module and a manifest stanza: here the target is defined in
/// this test, registered through the host's public API, granted by a
/// manifest stanza, and called by services over the bus. The broker, the
/// manifest parser and xtask know nothing of it.
#[test]
fn a_new_target_takes_its_module_and_a_manifest_stanza() {
    const NODE: &str = r#"[node]
name = "vault"
arch = "x86_64"

[[service]]
name = "keeper"
image = "keeper"
ram_mib = 32
bus.call = { safe = ["open"] }

[[service]]
name = "cleaner"
image = "cleaner"
ram_mib = 32
bus.call = { safe = ["lock"] }
"#;
    let err = Manifest::parse(NODE).unwrap_err().to_string();
    assert!(
        err.contains("calls target `safe` that this host does not have"),
        "{err}"
    );
    let catalogue = [&<safe::Safe as Target>::SPEC];
    let manifest = Manifest::parse_with(NODE, &catalogue).expect("the stanzas");
    let state = tempfile::tempdir().unwrap();
    let dir = StateDir::create(state.path()).unwrap();
    let bus = NodeBus::start_with(
        &manifest,
        ServiceLogs::new(&dir.logs(), Arc::new(StderrLog)),
        vec![Arc::new(SafeTarget)],
        &Facts::default(),
    )
    .unwrap();
    let broker = bus.broker();

    let mut keeper = Service::connect(broker, "keeper");
    let opened = keeper
        .op::<safe::Open>(&safe::Combination {
            digits: "1234".into(),
        })
        .unwrap();
    assert_eq!(opened.items, "the crown jewels");
    let (status, error) = keeper
        .op::<safe::Open>(&safe::Combination {
            digits: "0000".into(),
        })
        .unwrap_err();
    assert_eq!(status, evebus::Status::Failed);
    assert_eq!(
        safe::SafeError::decode(error.as_slice()).unwrap(),
        safe::SafeError { code: 1 },
        "the target's typed error reaches the caller"
    );
    let (status, why) = keeper.op::<safe::Lock>(&Empty {}).unwrap_err();
    assert_eq!(status, evebus::Status::Denied, "keeper may only open");
    assert!(String::from_utf8_lossy(&why).contains("safe.lock"));
    let (status, why) = keeper.call("safe", "drill", 1, &[]);
    assert_eq!(status, evebus::Status::NoSuchOperation);
    assert!(String::from_utf8_lossy(&why).contains("open, lock"));
    let (status, _) = keeper.call("safe", "open", 2, &[]);
    assert_eq!(status, evebus::Status::WrongVersion);
    let (status, _) = keeper.call("vault", "open", 1, &[]);
    assert_eq!(status, evebus::Status::NoSuchTarget);

    let mut cleaner = Service::connect(broker, "cleaner");
    assert_eq!(cleaner.op::<safe::Lock>(&Empty {}), Ok(Empty {}));
    assert_eq!(
        cleaner
            .op::<safe::Open>(&safe::Combination {
                digits: "1234".into()
            })
            .unwrap_err()
            .0,
        evebus::Status::Denied
    );
}
