//! zedagent in QEMU, on both arches, against a controller set up the way
//! the open controller Adam is by default: an RSA PKI (root, TLS server
//! and envelope-signing certificates; the ECDH certificate stays P-256) and
//! registration answered 409 for a serial registered before.
//!
//! The device, shipped with nothing but a CONFIG partition holding the RSA
//! root, must verify the RSA chain of `/certs`, the RSA-PSS handshakes and
//! the PKCS#1 v1.5 envelopes, onboard and take its config; then, powered
//! off and on, register again, be answered 409, fall back to `/uuid` with
//! its device certificate as EVE does, and come back under the same UUID.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::InProcessController;
use controller::domain::Reject;
use controller::identity::Identity;
use controller::pki::Pki;
use controller::server::{self, Controller};
use eve_proto::Message;
use eve_proto::auth::AuthContainer;
use eve_proto::register::ZRegisterMsg;
use harness::provision::{OnboardIdentity, config_files, onboarded_uuid, write_config_partition};
use harness::{Device, Guest, Machine, Profile, UserNet, build_service};
use http_body_util::{BodyExt, Full};

/// Onboarding and the first config, under TCG with other guests running.
const ONBOARD: Duration = Duration::from_secs(180);
/// A state volume as the node manifest gives zedagent.
const STATE_BYTES: u64 = 8 << 20;
/// Adam's default RSA size.
const PKI: Pki = Pki::Rsa { bits: 2048 };

/// Adam's registration: the serials registered so far, and how many
/// repeats it answered 409.
#[derive(Default)]
struct AdamRegister {
    serials: Mutex<BTreeSet<String>>,
    conflicts: AtomicU64,
}

/// Our controller, in-process, with an RSA identity, its device API
/// behind Adam's registration.
struct RsaController {
    /// Runs the device API's tasks for as long as the controller lives.
    _rt: tokio::runtime::Runtime,
    ctl: Arc<Controller>,
    dir: PathBuf,
    port: u16,
    adam: Arc<AdamRegister>,
    device_api: tokio::task::JoinHandle<()>,
}

impl Drop for RsaController {
    fn drop(&mut self) {
        self.device_api.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RsaController {
    fn start(name: &str) -> RsaController {
        let dir = std::env::temp_dir().join(format!("rsa-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let identity = Identity::load_or_create_with(&dir, Some(PKI)).expect("RSA identity");
        assert_eq!(identity.pki, PKI);
        let InProcessController {
            rt,
            ctl,
            tls,
            device_listener,
            port,
        } = InProcessController::new(identity, &dir.join("controller.db"));
        let adam = Arc::new(AdamRegister::default());
        let device_api = rt.spawn(serve_devices(
            ctl.clone(),
            device_listener,
            tls,
            adam.clone(),
        ));
        RsaController {
            _rt: rt,
            ctl,
            dir,
            port,
            adam,
            device_api,
        }
    }

    /// Requests on `route` answered with `status` by our controller.
    fn count(&self, route: &str, status: u16) -> u64 {
        self.ctl
            .counters()
            .iter()
            .filter(|c| c.route == route && c.status == status)
            .map(|c| c.count)
            .sum()
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
}

/// The serial a registration names.
fn registered_serial(body: &[u8]) -> Option<String> {
    let envelope = AuthContainer::decode(body).ok()?;
    let payload = envelope.protected_payload?.payload;
    let msg = ZRegisterMsg::decode(payload.as_slice()).ok()?;
    Some(if msg.serial.is_empty() {
        msg.soft_serial
    } else {
        msg.serial
    })
}

/// The device API; registration is Adam's: a serial seen before is
/// answered 409 before our controller sees it, others go to our
/// controller's `register`.
async fn serve_devices(
    ctl: Arc<Controller>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    adam: Arc<AdamRegister>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, ctl, adam) = (acceptor.clone(), ctl.clone(), adam.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let (ctl, adam) = (ctl.clone(), adam.clone());
                async move {
                    if !req.uri().path().ends_with("/register") {
                        return ctl.handle_device(req).await;
                    }
                    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
                        return Ok(respond(400, Bytes::from_static(b"body not read\n")));
                    };
                    let serial = registered_serial(&body).unwrap_or_default();
                    if adam.serials.lock().unwrap().contains(&serial) {
                        adam.conflicts.fetch_add(1, Ordering::SeqCst);
                        return Ok(respond(
                            409,
                            Bytes::from_static(b"device already registered\n"),
                        ));
                    }
                    let registered = {
                        let ctl = ctl.clone();
                        tokio::task::spawn_blocking(move || ctl.register(&body))
                            .await
                            .expect("register runs")
                    };
                    let (status, text) = match registered {
                        Ok((status, body)) => (status, body.unwrap_or_default()),
                        Err(Reject(status, reason)) => (status, Bytes::from(reason)),
                    };
                    ctl.count("register", status);
                    if status.is_success() {
                        adam.serials.lock().unwrap().insert(serial);
                    }
                    Ok(respond(status.as_u16(), text))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(status: u16, body: Bytes) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .body(Full::new(body))
        .expect("a valid status")
}

fn onboards_to_rsa_controller_and_comes_back_after_409(machine: Machine) {
    let ctl = RsaController::start(machine.name());
    let image =
        build_service("zedagent", machine.arch(), Profile::Release).expect("zedagent builds");
    let identity = OnboardIdentity::generate("rsa-test-").expect("onboarding identity");
    ctl.ctl
        .onboard_add(&identity.cert_pem, std::slice::from_ref(&identity.serial))
        .expect("onboarding certificate registered");
    let config_part = ctl.dir.join("config.img");
    let root_pem = &ctl.ctl.identity().root_pem;
    write_config_partition(&config_part, &config_files(ctl.port, root_pem, &identity))
        .expect("CONFIG partition");
    let state = ctl.dir.join("state.img");
    std::fs::File::create(&state)
        .and_then(|f| f.set_len(STATE_BYTES))
        .expect("state volume");
    let power_on = || {
        Guest::new(machine, image.clone())
            .device(Device::VirtioRng)
            .device(Device::UserNet(UserNet {
                open: true,
                ..UserNet::default()
            }))
            .device(Device::disk(&config_part, "config", true))
            .device(Device::disk(&state, "state", false))
            .cmdline(format!("serial={}", identity.serial))
            .timeout(Duration::from_secs(600))
            .spawn()
            .expect("QEMU starts")
    };

    // First boot: RSA chain, RSA-PSS handshakes, RSA envelopes.
    let mut first = power_on();
    let uuid = onboarded_uuid(&mut first, ONBOARD);
    let config = ctl.config_hash(&uuid);
    first.expect_line(&format!("config {config} accepted"), ONBOARD);
    assert_eq!(ctl.count("register", 201), 1);
    first.kill();

    // Second boot: registration answered 409, the UUID from /uuid.
    let uuids = ctl.count("uuid", 200);
    let mut second = power_on();
    second.expect_line(
        &format!("the controller knows this device as {uuid}"),
        ONBOARD,
    );
    assert_eq!(
        onboarded_uuid(&mut second, ONBOARD),
        uuid,
        "the UUID changed on reboot"
    );
    ctl.ctl
        .set_config(
            &uuid,
            "configItems:\n  - { key: timer.config.interval, value: \"5\" }\n",
        )
        .expect("config set");
    let next = ctl.config_hash(&uuid);
    second.expect_line(&format!("config {next} accepted"), ONBOARD);
    let outcome = second.kill();
    assert!(ctl.adam.conflicts.load(Ordering::SeqCst) >= 1, "{outcome}");
    assert!(ctl.count("uuid", 200) > uuids);
    assert_eq!(ctl.count("register", 201), 1, "registered twice");
    assert_eq!(ctl.ctl.store().devices().expect("store").len(), 1);
}

#[test]
fn onboards_to_an_rsa_controller_and_comes_back_after_409_on_microvm() {
    onboards_to_rsa_controller_and_comes_back_after_409(Machine::Microvm);
}

#[test]
fn onboards_to_an_rsa_controller_and_comes_back_after_409_on_virt() {
    onboards_to_rsa_controller_and_comes_back_after_409(Machine::Virt);
}
