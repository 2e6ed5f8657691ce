//! zedagent in QEMU, on both arches, against our controller on loopback:
//! the device is shipped with nothing but its CONFIG partition and must
//! onboard, follow its config and report; it must refuse forged configs,
//! fall back on its checkpoint when the controller is down at boot, and a
//! second device with the same serial must be told 409 and keep trying.
//!
//! The controller runs in this process (its library on a tokio runtime)
//! behind a device-API front that can forge its config answers, and what
//! the device reported is read back through the admin API with the library
//! behind `evectl`, as an operator would see it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use controller::identity::Identity;
use controller::server::{self, Controller, Limits};
use controller::store::sqlite::SqliteStore;
use eve_proto::Message;
use eve_proto::auth::AuthContainer;
use eve_proto::common::HashAlgorithm;
use eve_proto::config::ConfigResponse;
use eve_proto::sign::{self, SenderIdentity};
use evectl::admin::{Admin, LogFilter, proto_json_u64};
use harness::provision::{OnboardIdentity, config_files, onboarded_uuid, write_config_partition};
use harness::{Device, Guest, Machine, Profile, Running, UserNet, build_service};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// Onboarding and the first config, under TCG with other guests running.
const ONBOARD: Duration = Duration::from_secs(120);
/// Anything that takes a few of the fast timers below.
const A_FEW_INTERVALS: Duration = Duration::from_secs(60);
/// `timer.config.interval` of the fast config: the lowest the agent takes.
const CONFIG_INTERVAL_S: u64 = 5;
/// A state volume as the node manifest gives zedagent.
const STATE_BYTES: u64 = 8 << 20;

/// How the device-API front alters the controller's `config` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forgery {
    /// Passed on untouched.
    None,
    /// A config item changed after signing.
    AlteredPayload,
    /// Properly signed, but for another device.
    WrongUuid,
    /// Properly signed, but older than the device's config.
    StaleTimestamp,
    /// Cut in half.
    Truncated,
}

impl Forgery {
    /// The device's metric item counting this rejection.
    fn metric_item(self) -> &'static str {
        match self {
            Forgery::None => "",
            Forgery::AlteredPayload => "zedagent.rejected.bad_signature",
            Forgery::WrongUuid => "zedagent.rejected.wrong_uuid",
            Forgery::StaleTimestamp => "zedagent.rejected.stale_timestamp",
            Forgery::Truncated => "zedagent.rejected.malformed",
        }
    }

    /// What the agent names the rejection in its log line.
    fn rejection(self) -> &'static str {
        match self {
            Forgery::None => "",
            Forgery::AlteredPayload => "BadSignature",
            Forgery::WrongUuid => "WrongUuid",
            Forgery::StaleTimestamp => "StaleTimestamp",
            Forgery::Truncated => "Malformed",
        }
    }
}

/// The front's switch and what it did.
struct Front {
    forgery: Mutex<Forgery>,
    forged: AtomicU64,
}

/// Our controller, in-process: device API on a loopback port that can be
/// closed and opened again, admin API for the CLI library.
struct LocalController {
    rt: tokio::runtime::Runtime,
    ctl: Arc<Controller>,
    dir: PathBuf,
    tls: Arc<rustls::ServerConfig>,
    port: u16,
    device_api: Option<tokio::task::JoinHandle<()>>,
    admin_api: tokio::task::JoinHandle<()>,
    admin_addr: SocketAddr,
    token_file: PathBuf,
    front: Arc<Front>,
}

impl Drop for LocalController {
    fn drop(&mut self) {
        if let Some(task) = self.device_api.take() {
            task.abort();
        }
        self.admin_api.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl LocalController {
    fn start(name: &str) -> LocalController {
        let dir = std::env::temp_dir().join(format!("zedagent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("controller directory");
        let identity = Identity::load_or_create(&dir).expect("controller identity");
        let tls = server::tls_config(&identity).expect("TLS config");
        let store = Arc::new(SqliteStore::open(&dir.join("controller.db")).expect("store"));
        let ctl =
            Arc::new(Controller::new(store, identity, Limits::default()).expect("controller"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let token = String::from("zedagent-test-token");
        let token_file = dir.join("admin-token");
        std::fs::write(&token_file, &token).expect("token file");
        let admin = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("admin listener");
        let admin_addr = admin.local_addr().expect("admin address");
        let admin_api = rt.spawn({
            let ctl = ctl.clone();
            async move {
                let _ = controller::admin::serve_admin(ctl, admin, Arc::new(token)).await;
            }
        });
        let mut local = LocalController {
            rt,
            ctl,
            dir,
            tls,
            port: 0,
            device_api: None,
            admin_api,
            admin_addr,
            token_file,
            front: Arc::new(Front {
                forgery: Mutex::new(Forgery::None),
                forged: AtomicU64::new(0),
            }),
        };
        local.open_device_api();
        local
    }

    /// Listens for devices, on the same port as before if it was open once.
    fn open_device_api(&mut self) {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port)))
            .expect("device API listener");
        self.port = listener.local_addr().expect("device API address").port();
        let (ctl, tls, front) = (self.ctl.clone(), self.tls.clone(), self.front.clone());
        self.device_api = Some(self.rt.spawn(serve_devices(ctl, listener, tls, front)));
    }

    /// Closes the device API: devices get their connections refused.
    fn close_device_api(&mut self) {
        if let Some(task) = self.device_api.take() {
            task.abort();
            let _ = self.rt.block_on(task);
        }
    }

    fn forge(&self, forgery: Forgery) {
        *self.front.forgery.lock().unwrap() = forgery;
    }

    fn forged(&self) -> u64 {
        self.front.forged.load(Ordering::SeqCst)
    }

    /// Requests on `route` answered with `status`.
    fn count(&self, route: &str, status: u16) -> u64 {
        self.ctl
            .counters()
            .iter()
            .filter(|c| c.route == route && c.status == status)
            .map(|c| c.count)
            .sum()
    }

    /// Sets a device's config from its description; returns the hash the
    /// device reports once it applied it.
    fn set_config(&self, uuid: &str, description: &str) -> String {
        self.ctl.set_config(uuid, description).expect("config set");
        self.config_hash(uuid)
    }

    fn config_hash(&self, uuid: &str) -> String {
        let stored = self
            .ctl
            .store()
            .latest_config(uuid)
            .expect("store")
            .expect("a config");
        server::config_hash(&stored.config)
    }

    fn devices(&self) -> usize {
        self.ctl.store().devices().expect("store").len()
    }

    /// What `evectl` prints for `command` (`--json` when `json`).
    fn cli(&self, json: bool, command: impl AsyncFnOnce(&mut Admin) -> String) -> String {
        let server = format!("http://{}", self.admin_addr);
        let mut admin = Admin::new(&server, &self.token_file, json).expect("admin client");
        self.rt.block_on(command(&mut admin))
    }

    fn info(&self, uuid: &str) -> String {
        self.cli(false, async |a| a.info_show(uuid).await.expect("info"))
    }

    fn latest_metrics(&self, uuid: &str) -> Option<Value> {
        let text = self.cli(true, async |a| {
            a.metrics_show(uuid, 1).await.expect("metrics")
        });
        let all: Value = serde_json::from_str(&text).expect("metrics JSON");
        all.as_array()?.first().map(|m| m["metrics"].clone())
    }

    fn logs(&self, uuid: &str, contains: &str) -> String {
        let filter = LogFilter {
            contains: Some(contains.to_owned()),
            limit: 1000,
            ..LogFilter::default()
        };
        self.cli(false, async |a| {
            a.logs_show(uuid, &filter).await.expect("logs")
        })
    }
}

/// The controller's device API, with config answers passed through the
/// front's forgery.
async fn serve_devices(
    ctl: Arc<Controller>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    front: Arc<Front>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, ctl, front) = (acceptor.clone(), ctl.clone(), front.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let (ctl, front) = (ctl.clone(), front.clone());
                async move {
                    let is_config = req.uri().path().ends_with("/config");
                    let answer = ctl.clone().handle_device(req).await?;
                    let forgery = *front.forgery.lock().unwrap();
                    if !is_config || answer.status() != 200 || forgery == Forgery::None {
                        return Ok::<_, std::convert::Infallible>(answer);
                    }
                    let (parts, body) = answer.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let forged = forge(&ctl, forgery, &body);
                    front.forged.fetch_add(1, Ordering::SeqCst);
                    Ok(hyper::Response::from_parts(parts, Full::new(forged)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A config answer altered the way `forgery` says.
fn forge(ctl: &Controller, forgery: Forgery, envelope: &[u8]) -> Bytes {
    if forgery == Forgery::Truncated {
        return Bytes::copy_from_slice(&envelope[..envelope.len() / 2]);
    }
    let container = AuthContainer::decode(envelope).expect("the controller's envelope");
    let payload = container
        .protected_payload
        .as_ref()
        .map(|p| p.payload.clone())
        .unwrap_or_default();
    let mut answer = ConfigResponse::decode(payload.as_slice()).expect("a config answer");
    let config = answer.config.as_mut().expect("a config");
    match forgery {
        Forgery::AlteredPayload => {
            for item in &mut config.config_items {
                item.value = String::from("3600");
            }
            let mut container = container;
            container
                .protected_payload
                .as_mut()
                .expect("payload")
                .payload = answer.encode_to_vec();
            return Bytes::from(container.encode_to_vec());
        }
        Forgery::WrongUuid => {
            config.id.as_mut().expect("config id").uuid =
                String::from("00000000-0000-4000-8000-000000000001");
        }
        Forgery::StaleTimestamp => {
            config.config_timestamp = Some(eve_proto::prost_types::Timestamp {
                seconds: 1,
                nanos: 0,
            });
        }
        Forgery::None | Forgery::Truncated => unreachable!("handled above"),
    }
    let id = ctl.identity();
    let signed = sign::sign_auth_container(
        answer.encode_to_vec(),
        &id.signer,
        &SenderIdentity {
            cert_hash: id.signing_cert_hash,
            algo: HashAlgorithm::Sha25632bytes,
            embed_cert_pem: None,
        },
    )
    .expect("signing");
    Bytes::from(signed.encode_to_vec())
}

/// A device: its factory CONFIG partition, its state volume and its
/// hardware serial.
struct Shipped {
    machine: Machine,
    image: PathBuf,
    config_part: PathBuf,
    state: PathBuf,
    serial: String,
}

impl Shipped {
    /// A new device of `ctl` whose onboarding certificate the controller
    /// was told to expect for its serial.
    fn ship(machine: Machine, ctl: &LocalController, name: &str) -> Shipped {
        let image =
            build_service("zedagent", machine.arch(), Profile::Release).expect("zedagent builds");
        let identity = OnboardIdentity::generate("zedagent-test-").expect("onboarding identity");
        ctl.ctl
            .onboard_add(&identity.cert_pem, std::slice::from_ref(&identity.serial))
            .expect("onboarding certificate registered");
        let config_part = ctl.dir.join(format!("{name}-config.img"));
        let root_pem = &ctl.ctl.identity().root_pem;
        write_config_partition(&config_part, &config_files(ctl.port, root_pem, &identity))
            .expect("CONFIG partition");
        let mut device = Shipped {
            machine,
            image,
            config_part,
            state: PathBuf::new(),
            serial: identity.serial,
        };
        device.state = device.fresh_state(ctl, name);
        device
    }

    /// Another device built from the same factory image: same CONFIG
    /// partition and serial, its own blank state volume (so its own key).
    fn twin(&self, ctl: &LocalController, name: &str) -> Shipped {
        Shipped {
            machine: self.machine,
            image: self.image.clone(),
            config_part: self.config_part.clone(),
            state: self.fresh_state(ctl, name),
            serial: self.serial.clone(),
        }
    }

    fn fresh_state(&self, ctl: &LocalController, name: &str) -> PathBuf {
        let path = ctl.dir.join(format!("{name}-state.img"));
        let file = std::fs::File::create(&path).expect("state volume");
        file.set_len(STATE_BYTES).expect("state volume size");
        path
    }

    fn power_on(&self) -> Running {
        Guest::new(self.machine, self.image.clone())
            .device(Device::VirtioRng)
            .device(Device::UserNet(UserNet {
                open: true,
                ..UserNet::default()
            }))
            .device(Device::disk(&self.config_part, "config", true))
            .device(Device::disk(&self.state, "state", false))
            .cmdline(format!("serial={}", self.serial))
            .timeout(Duration::from_secs(600))
            .spawn()
            .expect("QEMU starts")
    }
}

/// Polls `probe` until it yields something or `timeout` passes.
fn eventually<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The config the tests give devices: every timer as fast as the agent
/// allows and logs uploaded at once, so that a test sees a few rounds of
/// everything within seconds.
fn fast_config(metric_interval_s: u64) -> String {
    format!(
        r#"{{"configItems": [
            {{"key": "timer.config.interval", "value": "{CONFIG_INTERVAL_S}"}},
            {{"key": "timer.metric.interval", "value": "{metric_interval_s}"}},
            {{"key": "newlog.allow.fastupload", "value": "true"}}
        ]}}"#
    )
}

/// Ships a device, lets it onboard and take the fast config, then cuts its
/// power and boots it again: on every boot it registers again, keeps its
/// UUID and starts from its checkpointed config.
fn fast_device(machine: Machine, ctl: &LocalController, name: &str) -> (Shipped, Running, String) {
    let device = Shipped::ship(machine, ctl, name);
    let mut first = device.power_on();
    let uuid = onboarded_uuid(&mut first, ONBOARD);
    let initial = ctl.config_hash(&uuid);
    first.expect_line(&format!("config {initial} accepted"), ONBOARD);
    let fast = ctl.set_config(&uuid, &fast_config(CONFIG_INTERVAL_S));
    let registered = ctl.count("register", 201) + ctl.count("register", 200);
    first.kill();
    let mut second = device.power_on();
    assert_eq!(
        onboarded_uuid(&mut second, ONBOARD),
        uuid,
        "the UUID changed on reboot"
    );
    let registered_again = ctl.count("register", 201) + ctl.count("register", 200);
    assert_eq!(
        registered_again,
        registered + 1,
        "the device did not register again on boot"
    );
    second.expect_line(&format!("config {fast} accepted"), ONBOARD);
    (device, second, uuid)
}

fn onboards_reports_and_follows_its_config(machine: Machine) {
    let ctl = LocalController::start(&format!("follow-{}", machine.name()));
    let (_device, mut guest, uuid) = fast_device(machine, &ctl, "device");

    let arch = machine.arch().name();
    eventually("info shown by the CLI", A_FEW_INTERVALS, || {
        let info = ctl.info(&uuid);
        (info.contains(&format!("\"machineArch\": \"{arch}\""))
            && info.contains("ATTESTATION_STATE_COMPLETE"))
        .then_some(())
    });
    let metrics = eventually("metrics shown by the CLI", A_FEW_INTERVALS, || {
        ctl.latest_metrics(&uuid)
    });
    assert_eq!(metrics["devID"], uuid.as_str(), "{metrics}");
    eventually(
        "the device's logs shown by the CLI",
        A_FEW_INTERVALS,
        || {
            let logs = ctl.logs(&uuid, "accepted config");
            logs.contains("zedagent").then_some(())
        },
    );

    // Unchanged config: the controller answers 304 and nothing changes.
    let unchanged = ctl.count("config", 304);
    eventually("two 304 answers", A_FEW_INTERVALS, || {
        (ctl.count("config", 304) >= unchanged + 2).then_some(())
    });

    // A change is taken by the next poll: no 304 between the change and
    // its acceptance but the one that may have been in flight.
    let before = ctl.count("config", 304);
    let changed = ctl.set_config(&uuid, &fast_config(CONFIG_INTERVAL_S + 1));
    guest.expect_line(&format!("config {changed} accepted"), A_FEW_INTERVALS);
    let between = ctl.count("config", 304) - before;
    assert!(
        between <= 1,
        "{between} polls answered 304 before the change was taken"
    );
    guest.kill();
}

fn refuses_forged_configs(machine: Machine) {
    let ctl = LocalController::start(&format!("forged-{}", machine.name()));
    let (_device, mut guest, uuid) = fast_device(machine, &ctl, "device");
    let next = ctl.set_config(&uuid, &fast_config(CONFIG_INTERVAL_S + 2));
    let forgeries = [
        Forgery::AlteredPayload,
        Forgery::WrongUuid,
        Forgery::StaleTimestamp,
        Forgery::Truncated,
    ];
    for forgery in forgeries {
        ctl.forge(forgery);
        let forged = ctl.forged();
        eventually(
            &format!("a {forgery:?} answer taken by the device"),
            A_FEW_INTERVALS,
            || (ctl.forged() > forged).then_some(()),
        );
    }
    eventually(
        "every rejection logged to the controller",
        A_FEW_INTERVALS,
        || {
            forgeries
                .iter()
                .all(|f| {
                    !ctl.logs(&uuid, &format!("rejected config answer: {}", f.rejection()))
                        .is_empty()
                })
                .then_some(())
        },
    );
    // Counted in the metrics, EVE's way: `authVerifyFailure` of the
    // controller connection, and one counter item per reason.
    let metrics = eventually(
        "the rejections counted in the metrics",
        A_FEW_INTERVALS,
        || {
            let metrics = ctl.latest_metrics(&uuid)?;
            let dm = &metrics["dm"];
            let counted =
                proto_json_u64(&dm["zedcloud"][0]["authVerifyFailure"]) >= forgeries.len() as u64;
            counted.then_some(metrics)
        },
    );
    let items = metrics["dm"]["metricItems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for forgery in forgeries {
        let item = items
            .iter()
            .find(|i| i["key"] == forgery.metric_item())
            .unwrap_or_else(|| panic!("no {} item in {metrics}", forgery.metric_item()));
        assert!(proto_json_u64(&item["uint64Value"]) >= 1, "{item}");
    }
    ctl.forge(Forgery::None);
    guest.expect_line(&format!("config {next} accepted"), A_FEW_INTERVALS);
    let outcome = guest.kill();
    let accepted = outcome
        .console
        .matches(&format!("config {next} accepted"))
        .count();
    assert_eq!(
        accepted, 1,
        "the config was applied more than once:\n{outcome}"
    );
}

fn uses_its_checkpoint_when_the_controller_is_down(machine: Machine) {
    let mut ctl = LocalController::start(&format!("down-{}", machine.name()));
    let device = Shipped::ship(machine, &ctl, "device");
    let mut first = device.power_on();
    let uuid = onboarded_uuid(&mut first, ONBOARD);
    let config = ctl.config_hash(&uuid);
    first.expect_line(&format!("config {config} accepted"), ONBOARD);
    first.kill();

    ctl.close_device_api();
    let registered = ctl.count("register", 200) + ctl.count("register", 201);
    let mut second = device.power_on();
    second.expect_line(
        &format!("config {config} accepted from the checkpoint"),
        ONBOARD,
    );
    ctl.open_device_api();
    eventually(
        "the device registering once the controller is back",
        A_FEW_INTERVALS,
        || (ctl.count("register", 200) + ctl.count("register", 201) > registered).then_some(()),
    );
    assert_eq!(onboarded_uuid(&mut second, ONBOARD), uuid);
    assert_eq!(ctl.devices(), 1);
    second.kill();
}

fn a_second_device_with_the_same_serial_gets_409(machine: Machine) {
    let ctl = LocalController::start(&format!("conflict-{}", machine.name()));
    let original = Shipped::ship(machine, &ctl, "original");
    let mut first = original.power_on();
    let uuid = onboarded_uuid(&mut first, ONBOARD);
    let twin = original.twin(&ctl, "twin");
    let second = twin.power_on();
    eventually("two 409 answers to the twin", A_FEW_INTERVALS, || {
        (ctl.count("register", 409) >= 2).then_some(())
    });
    assert_eq!(ctl.devices(), 1, "the twin was onboarded");
    let first_outcome = first.kill();
    let second_outcome = second.kill();
    assert!(first_outcome.console.contains(&uuid));
    assert!(
        !second_outcome.console.contains("onboarded as"),
        "{second_outcome}"
    );
}

#[test]
fn onboards_reports_and_follows_its_config_on_microvm() {
    onboards_reports_and_follows_its_config(Machine::Microvm);
}

#[test]
fn onboards_reports_and_follows_its_config_on_virt() {
    onboards_reports_and_follows_its_config(Machine::Virt);
}

#[test]
fn refuses_forged_configs_on_microvm() {
    refuses_forged_configs(Machine::Microvm);
}

#[test]
fn refuses_forged_configs_on_virt() {
    refuses_forged_configs(Machine::Virt);
}

#[test]
fn uses_its_checkpoint_when_the_controller_is_down_on_microvm() {
    uses_its_checkpoint_when_the_controller_is_down(Machine::Microvm);
}

#[test]
fn uses_its_checkpoint_when_the_controller_is_down_on_virt() {
    uses_its_checkpoint_when_the_controller_is_down(Machine::Virt);
}

#[test]
fn a_second_device_with_the_same_serial_gets_409_on_microvm() {
    a_second_device_with_the_same_serial_gets_409(Machine::Microvm);
}

#[test]
fn a_second_device_with_the_same_serial_gets_409_on_virt() {
    a_second_device_with_the_same_serial_gets_409(Machine::Virt);
}
