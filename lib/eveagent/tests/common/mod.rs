//! What every agent scenario needs: our controller in-process on loopback
//! TLS, transports that tamper with or lose its answers, and a simulated
//! node (fake clock, state volume in memory, platform facts) that can boot
//! the agent again over the same state.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use controller::identity::Identity;
use controller::server::{self, Controller, Limits};
use controller::store::LogQuery;
use controller::store::sqlite::SqliteStore;
use devicesim::device::self_signed;
use devicesim::http::Client;
use eve_proto::Message;
use eve_proto::common::HashAlgorithm;
use eve_proto::info::z_info_msg::InfoContent;
use eve_proto::info::{BootReason, ZInfoDevice, ZInfoMsg};
use eve_proto::metrics::z_metric_msg::MetricContent;
use eve_proto::metrics::{DeviceMetric, MetricItemType, ZMetricMsg, metric_item::MetricItemValue};
use eve_proto::p256::pkcs8::EncodePrivateKey;
use eve_proto::sign::{self, SenderIdentity, SoftwareSigner};
use eveagent::io::{
    Clock, DeviceFacts, DeviceMetrics, Http, InterfaceCounters, Method, Persist, PersistError,
    Platform, Request, Response, Rng, SoftwarePartition, TransportError,
};
use eveagent::{Agent, Bootstrap, DeviceKeySource, Level, LogRecord, Onboarding, Phase};

// ---------------------------------------------------------------- controller

pub struct Ctl {
    pub rt: tokio::runtime::Runtime,
    pub ctl: Arc<Controller>,
    pub addr: SocketAddr,
    pub root_pem: String,
    pub dir: PathBuf,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Ctl {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn start_controller(name: &str) -> Ctl {
    let dir = std::env::temp_dir().join(format!("eveagent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let identity = Identity::load_or_create(&dir).expect("controller identity");
    let root_pem = identity.root_pem.clone();
    let store = Arc::new(SqliteStore::open(&dir.join("controller.db")).expect("store"));
    let tls = server::tls_config(&identity).expect("tls config");
    let ctl = Arc::new(Controller::new(store, identity, Limits::default()).expect("controller"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let serving = ctl.clone();
    let task = rt.spawn(async move {
        let _ = server::serve_devices(serving, listener, tls).await;
    });
    Ctl {
        rt,
        ctl,
        addr,
        root_pem,
        dir,
        task,
    }
}

impl Ctl {
    pub fn http(&self) -> TlsHttp {
        TlsHttp {
            handle: self.rt.handle().clone(),
            client: Client::tls(self.addr, &self.root_pem, &[]).expect("tls client"),
        }
    }

    pub fn count(&self, route: &str, status: u16) -> u64 {
        self.ctl
            .counters()
            .iter()
            .find(|c| c.route == route && c.status == status)
            .map_or(0, |c| c.count)
    }

    /// Signs `payload` as the controller does (to forge well-signed but
    /// semantically wrong answers).
    pub fn controller_envelope(&self, payload: Vec<u8>) -> Vec<u8> {
        let id = self.ctl.identity();
        sign::sign_auth_container(
            payload,
            &id.signer,
            &SenderIdentity {
                cert_hash: id.signing_cert_hash,
                algo: HashAlgorithm::Sha25632bytes,
                embed_cert_pem: None,
            },
        )
        .expect("sign")
        .encode_to_vec()
    }
}

/// `Http` over TLS to the controller.
pub struct TlsHttp {
    pub handle: tokio::runtime::Handle,
    pub client: Client,
}

impl Http for TlsHttp {
    fn send(&mut self, request: &Request) -> Result<Response, TransportError> {
        let method = match request.method {
            Method::Get => hyper::Method::GET,
            Method::Post => hyper::Method::POST,
        };
        let body = Bytes::from(request.body.clone());
        let (status, body) = self
            .handle
            .block_on(self.client.request(method, &request.path, body))
            .map_err(|_| TransportError::Connect)?;
        if body.len() > request.max_response {
            return Err(TransportError::TooLarge);
        }
        Ok(Response {
            status: status.as_u16(),
            body: body.to_vec(),
        })
    }
}

/// No controller at all.
pub struct Down;

impl Http for Down {
    fn send(&mut self, _: &Request) -> Result<Response, TransportError> {
        Err(TransportError::Connect)
    }
}

pub type Rewrite = Box<dyn FnMut(&Request, Response) -> Response>;

/// A man in the middle (or a hostile controller): rewrites answers.
pub struct Tamper<'a> {
    pub inner: &'a mut TlsHttp,
    pub rewrite: Rewrite,
}

impl Http for Tamper<'_> {
    fn send(&mut self, request: &Request) -> Result<Response, TransportError> {
        let resp = self.inner.send(request)?;
        Ok((self.rewrite)(request, resp))
    }
}

// ---------------------------------------------------------------- the node

#[derive(Clone)]
pub struct FakeClock {
    pub mono: Rc<Cell<u64>>,
    pub wall_base_ms: u64,
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.mono.get()
    }
    fn unix_ms(&self) -> u64 {
        self.wall_base_ms + self.mono.get()
    }
}

#[derive(Clone, Default)]
pub struct MemVolume {
    pub records: Rc<RefCell<BTreeMap<String, Vec<u8>>>>,
    pub fail_writes: Rc<Cell<bool>>,
}

impl Persist for MemVolume {
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, PersistError> {
        Ok(self.records.borrow().get(name).cloned())
    }
    /// A failing write leaves the old record as it was, as the contract says.
    fn write(&mut self, name: &str, data: &[u8]) -> Result<(), PersistError> {
        if self.fail_writes.get() {
            return Err(PersistError::Write);
        }
        self.records.borrow_mut().insert(name.into(), data.to_vec());
        Ok(())
    }
    fn remove(&mut self, name: &str) -> Result<(), PersistError> {
        self.records.borrow_mut().remove(name);
        Ok(())
    }
}

impl MemVolume {
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        self.records.borrow().get(name).cloned()
    }
}

pub struct XorShift(pub u64);

impl Rng for XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

#[derive(Clone)]
pub struct FakePlatform {
    pub serial: String,
    pub facts: Rc<RefCell<DeviceFacts>>,
    pub rx_bytes: Rc<Cell<u64>>,
}

impl Platform for FakePlatform {
    fn hardware_serial(&self) -> String {
        self.serial.clone()
    }
    fn device_facts(&self) -> DeviceFacts {
        self.facts.borrow().clone()
    }
    fn device_metrics(&self) -> DeviceMetrics {
        DeviceMetrics {
            memory_mb: 512,
            used_eve_mb: 40,
            allocated_apps_mb: 0,
            cpu_total_ns: 3_000_000_000,
            management_interface: "eth0".into(),
            interfaces: vec![InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: self.rx_bytes.get(),
                tx_bytes: 2000,
                ..Default::default()
            }],
            disks: Vec::new(),
        }
    }
}

/// Everything one simulated node keeps across agent restarts.
pub struct Node {
    pub clock: FakeClock,
    pub volume: MemVolume,
    pub platform: FakePlatform,
    pub seed: u64,
    pub onboard: (String, String),
    pub root_pem: String,
}

pub fn onboarding_identity(seed: u8) -> (String, String) {
    let mut scalar = [seed; 32];
    scalar[0] = 0x42;
    let secret = eve_proto::p256::SecretKey::from_slice(&scalar).expect("scalar");
    let key_pem = secret
        .to_pkcs8_pem(Default::default())
        .expect("pkcs8")
        .to_string();
    let signer = SoftwareSigner::new(&secret);
    let (cert_pem, _) = self_signed(&signer, "onboarding").expect("cert");
    (cert_pem, key_pem)
}

pub fn wall_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Node {
    pub fn new(ctl: &Ctl, serial: &str, seed: u64, onboard: (String, String)) -> Self {
        Self {
            clock: FakeClock {
                mono: Rc::new(Cell::new(1_000)),
                wall_base_ms: wall_now_ms(),
            },
            volume: MemVolume::default(),
            platform: FakePlatform {
                serial: serial.into(),
                facts: Rc::new(RefCell::new(DeviceFacts {
                    machine_arch: "x86_64".into(),
                    cpu_arch: "x86_64".into(),
                    platform: "qemu-microvm".into(),
                    ncpu: 1,
                    memory_mb: 512,
                    storage_mb: 1024,
                    boot_unix_ms: wall_now_ms(),
                    last_reboot_reason: "power on".into(),
                    boot_reason: BootReason::PowerFail,
                    restart_counter: 3,
                    partitions: vec![SoftwarePartition {
                        label: "IMGA".into(),
                        state: "active".into(),
                        activated: true,
                        short_version: "0.1.0".into(),
                        long_version: "0.1.0-test".into(),
                    }],
                    ..Default::default()
                })),
                rx_bytes: Rc::new(Cell::new(1000)),
            },
            seed,
            onboard,
            root_pem: ctl.root_pem.clone(),
        }
    }

    /// A fresh agent (a boot) over this node's state volume.
    pub fn boot(&mut self) -> Agent {
        self.boot_with(DeviceKeySource::Software)
    }

    /// A boot with the device key from `key`.
    pub fn boot_with(&mut self, key: DeviceKeySource) -> Agent {
        self.seed += 1;
        let onboarding = Onboarding::from_pem(self.onboard.0.as_bytes(), self.onboard.1.as_bytes())
            .expect("onboarding identity");
        Agent::new(
            Bootstrap {
                root_cert_pem: self.root_pem.clone().into_bytes(),
                onboarding: Some(onboarding),
                soft_serial: String::new(),
            },
            key,
            eveagent::Deps {
                clock: Box::new(self.clock.clone()),
                rng: Box::new(XorShift(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)),
                persist: Box::new(self.volume.clone()),
                platform: Box::new(self.platform.clone()),
            },
        )
        .expect("agent")
    }

    pub fn now(&self) -> u64 {
        self.clock.mono.get()
    }

    /// Polls, jumping the clock to each wake-up, until `done` or `limit`
    /// polls. Returns whether `done` held.
    pub fn run(
        &self,
        agent: &mut Agent,
        http: &mut dyn Http,
        limit: usize,
        mut done: impl FnMut(&Agent) -> bool,
    ) -> bool {
        for _ in 0..limit {
            let wake = agent.poll(http);
            if done(agent) {
                return true;
            }
            self.clock.mono.set(wake.max(self.now()));
        }
        false
    }

    /// Polls until the clock passed `until` (monotonic ms).
    pub fn run_until_time(&self, agent: &mut Agent, http: &mut dyn Http, until: u64) {
        while self.now() < until {
            let wake = agent.poll(http);
            self.clock.mono.set(wake.max(self.now()).min(until));
            if self.now() == until {
                agent.poll(http);
                return;
            }
        }
    }
}

/// The latest device info the controller stored for `uuid`.
pub fn stored_device_info(ctl: &Ctl, uuid: &str) -> ZInfoDevice {
    let info = ctl.ctl.store().latest_info(uuid).unwrap();
    let rec = info
        .iter()
        .find(|r| r.key == "device")
        .expect("device info");
    match ZInfoMsg::decode(rec.msg.as_slice()).unwrap().info_content {
        Some(InfoContent::Dinfo(d)) => d,
        other => panic!("not device info: {other:?}"),
    }
}

/// The device part of the newest metrics the controller stored.
pub fn stored_device_metrics(ctl: &Ctl, uuid: &str) -> DeviceMetric {
    let metrics = ctl.ctl.store().metrics(uuid, 1).unwrap();
    let m = ZMetricMsg::decode(metrics[0].msg.as_slice()).unwrap();
    match m.metric_content {
        Some(MetricContent::Dm(dm)) => dm,
        None => panic!("no device metrics"),
    }
}

/// A counter from `metricItems`.
pub fn metric_counter(dm: &DeviceMetric, key: &str) -> u64 {
    let item = dm
        .metric_items
        .iter()
        .find(|i| i.key == key)
        .unwrap_or_else(|| panic!("no metric item {key}: {:?}", dm.metric_items));
    assert_eq!(item.r#type(), MetricItemType::MetricItemCounter);
    match item.metric_item_value {
        Some(MetricItemValue::Uint64Value(n)) => n,
        ref other => panic!("{key}: {other:?}"),
    }
}

/// Log lines the controller stored for `uuid` whose content is `content`.
pub fn stored_lines(ctl: &Ctl, uuid: &str, content: &str) -> Vec<controller::store::LogRecord> {
    ctl.ctl
        .store()
        .query_logs(&LogQuery {
            device: uuid.to_owned(),
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .filter(|l| l.content == content)
        .collect()
}

pub fn warning(content: &str) -> LogRecord {
    LogRecord {
        level: Level::Warning,
        source: "nim".into(),
        content: content.into(),
        unix_ms: wall_now_ms(),
        filename: String::new(),
        function: String::new(),
    }
}

pub fn onboard_to_running(node: &Node, agent: &mut Agent, http: &mut dyn Http) -> String {
    assert!(
        node.run(agent, http, 50, |a| a.status().phase == Phase::Running
            && !a.status().config_hash.is_empty()),
        "did not reach Running: {:?}",
        agent.status()
    );
    agent.status().uuid.expect("uuid").to_owned()
}
