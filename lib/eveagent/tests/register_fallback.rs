//! EVE's register fallback: when registration is refused, whatever the
//! status, the agent asks `/uuid` with its device certificate at once, as
//! EVE's client does, and goes on onboarding if the controller knows it.
//!
//! The controller that needs it is Adam: it looks a registration's serial
//! up before it compares certificates, so a device that registers again
//! after a reboot is answered 409. [`AdamRegister`] answers registration
//! that way in front of our controller (which answers 200 to a repeat with
//! the same device certificate, as the API says, and serves everything
//! else).

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use common::*;
use eve_proto::Message;
use eve_proto::auth::AuthContainer;
use eve_proto::register::ZRegisterMsg;
use eveagent::io::{Http, Request, Response, TransportError};
use eveagent::{Event, Phase, RegisterStatus};

/// Registration as Adam answers it: 409 for a serial registered before,
/// whoever asks; the first registration of a serial, and every other
/// request, go to our controller.
struct AdamRegister<'a> {
    inner: &'a mut TlsHttp,
    registered: Rc<RefCell<BTreeSet<String>>>,
}

impl AdamRegister<'_> {
    fn serial(request: &Request) -> String {
        let envelope = AuthContainer::decode(request.body.as_slice()).expect("an envelope");
        let payload = envelope.protected_payload.expect("a payload").payload;
        let msg = ZRegisterMsg::decode(payload.as_slice()).expect("a ZRegisterMsg");
        msg.serial
    }
}

impl Http for AdamRegister<'_> {
    fn send(&mut self, request: &Request) -> Result<Response, TransportError> {
        if !request.path.ends_with("/register") {
            return self.inner.send(request);
        }
        let serial = Self::serial(request);
        if self.registered.borrow().contains(&serial) {
            return Ok(Response {
                status: 409,
                body: b"device already registered\n".to_vec(),
            });
        }
        let resp = self.inner.send(request)?;
        if matches!(resp.status, 200 | 201) {
            self.registered.borrow_mut().insert(serial);
        }
        Ok(resp)
    }
}

/// Our controller with Adam's register behaviour in front, and a node
/// pre-registered for `serial`.
fn adam_like(name: &str, serial: &str, seed: u8) -> (Ctl, Node) {
    let ctl = start_controller(name);
    let onboard = onboarding_identity(seed);
    ctl.ctl.onboard_add(&onboard.0, &[serial.into()]).unwrap();
    let node = Node::new(&ctl, serial, u64::from(seed) * 100, onboard);
    (ctl, node)
}

#[test]
fn rebooted_device_comes_back_through_uuid_when_register_answers_409() {
    let (ctl, mut node) = adam_like("adam-reboot", "SN-ADAM", 21);
    let registered = Rc::new(RefCell::new(BTreeSet::new()));
    let mut tls = ctl.http();
    let mut adam = AdamRegister {
        inner: &mut tls,
        registered: registered.clone(),
    };
    let mut agent = node.boot();
    let uuid = onboard_to_running(&node, &mut agent, &mut adam);
    assert_eq!(agent.status().register, RegisterStatus::Onboarded);
    assert_eq!(ctl.count("register", 201), 1);
    drop(agent);

    // Power cycle: registration is answered 409, the UUID comes from /uuid.
    let uuids = ctl.count("uuid", 200);
    let mut agent = node.boot();
    let again = onboard_to_running(&node, &mut agent, &mut adam);
    assert_eq!(again, uuid);
    let st = agent.status();
    assert_eq!(st.register, RegisterStatus::Recognized);
    assert_eq!(st.counters.register_conflicts, 1);
    assert_eq!(st.counters.register_fallbacks, 1);
    assert_eq!(st.counters.unexpected_status, 0);
    assert_eq!(ctl.count("uuid", 200), uuids + 1);
    assert_eq!(ctl.count("register", 201), 1);
    assert_eq!(ctl.count("register", 200), 0, "Adam's front answered it");
    assert!(
        agent
            .take_events()
            .contains(&Event::Onboarded(uuid.clone()))
    );
    assert_eq!(ctl.ctl.store().devices().unwrap().len(), 1);

    // And everything flows again: a config change, info, metrics, logs.
    let hash = agent.status().config_hash.to_owned();
    ctl.ctl
        .set_config(
            &uuid,
            "configItems:\n  - { key: timer.metric.interval, value: \"20\" }\n",
        )
        .unwrap();
    assert!(
        node.run(&mut agent, &mut adam, 30, |a| a.status().config_hash
            != hash)
    );
    let metrics = ctl.count("metrics", 201);
    agent.log(warning("uplink eth0 back after the reboot"));
    node.run_until_time(&mut agent, &mut adam, node.now() + 100_000);
    assert!(ctl.count("metrics", 201) > metrics);
    assert!(ctl.count("info", 201) >= 2);
    assert_eq!(
        stored_lines(&ctl, &uuid, "uplink eth0 back after the reboot").len(),
        1
    );
    assert_eq!(agent.status().phase, Phase::Running);
}

/// Registration answered with `status` by a front that lets everything
/// else through.
fn register_answered(status: u16) -> impl FnMut(&Request, Response) -> Response {
    move |req: &Request, resp: Response| {
        if req.path.ends_with("/register") {
            Response {
                status,
                body: Vec::new(),
            }
        } else {
            resp
        }
    }
}

#[test]
fn any_refused_registration_falls_back_to_uuid() {
    let (ctl, mut node) = adam_like("refusals", "SN-REFUSED", 22);
    let mut http = ctl.http();
    let mut agent = node.boot();
    let uuid = onboard_to_running(&node, &mut agent, &mut http);
    drop(agent);

    // The operator took the onboarding certificate off the allow-list: our
    // controller answers the reboot's registration 403, yet knows the
    // device certificate.
    let onboard = ctl.ctl.store().onboard_list().unwrap();
    assert_eq!(onboard.len(), 1);
    assert!(ctl.ctl.store().onboard_remove(onboard[0].id).unwrap());
    let mut agent = node.boot();
    assert_eq!(onboard_to_running(&node, &mut agent, &mut http), uuid);
    assert_eq!(ctl.count("register", 403), 1);
    assert_eq!(agent.status().register, RegisterStatus::Recognized);
    drop(agent);

    // Statuses EVE's client has no case for: the same.
    for status in [500, 400, 304] {
        let mut front = Tamper {
            inner: &mut http,
            rewrite: Box::new(register_answered(status)),
        };
        let mut agent = node.boot();
        assert_eq!(onboard_to_running(&node, &mut agent, &mut front), uuid);
        let st = agent.status();
        assert_eq!(st.register, RegisterStatus::Recognized, "{status}");
        assert_eq!(st.counters.register_fallbacks, 1, "{status}");
    }
}

#[test]
fn failed_fallback_backs_off_once_per_round_and_registers_again() {
    // Not pre-registered, and unknown: register 403, /uuid 401, backoff;
    // once the operator adds the certificate, the next round registers.
    let ctl = start_controller("fallback-fails");
    let onboard = onboarding_identity(23);
    let mut node = Node::new(&ctl, "SN-LATE", 2300, onboard);
    let mut http = ctl.http();
    let mut agent = node.boot();
    let mut rounds = Vec::new();
    for _ in 0..30 {
        let before = agent.status().counters.register_fallbacks;
        let at = node.now();
        let wake = agent.poll(&mut http);
        if agent.status().counters.register_fallbacks > before {
            rounds.push(at);
        }
        if rounds.len() == 6 {
            break;
        }
        node.clock.mono.set(wake.max(node.now()));
    }
    assert_eq!(rounds.len(), 6);
    let st = agent.status();
    assert_eq!(st.phase, Phase::Register);
    assert_eq!(st.register, RegisterStatus::NotPreRegistered);
    assert_eq!(ctl.count("register", 403), 6);
    assert_eq!(ctl.count("uuid", 401), 6);
    assert!(st.uuid.is_none());
    // One backoff step per round (register and /uuid), doubling from 1 s.
    for (i, d) in rounds.windows(2).map(|w| w[1] - w[0]).enumerate() {
        let nominal = 1000u64 << i;
        assert!(d >= nominal / 2 && d <= nominal, "round {i}: {d} ms");
    }
    ctl.ctl
        .onboard_add(&node.onboard.0, &["SN-LATE".into()])
        .unwrap();
    onboard_to_running(&node, &mut agent, &mut http);
    assert_eq!(agent.status().register, RegisterStatus::Onboarded);
    assert_eq!(ctl.count("register", 201), 1);
}

/// Registration that never gets an answer; everything else does.
struct RegisterUnreachable<'a>(&'a mut TlsHttp);

impl Http for RegisterUnreachable<'_> {
    fn send(&mut self, request: &Request) -> Result<Response, TransportError> {
        if request.path.ends_with("/register") {
            return Err(TransportError::Connect);
        }
        self.0.send(request)
    }
}

#[test]
fn unanswered_registration_does_not_fall_back() {
    // No answer means no controller to ask: the round just backs off.
    let (ctl, mut node) = adam_like("no-answer", "SN-SILENT", 24);
    let mut tls = ctl.http();
    let mut agent = node.boot();
    node.run(&mut agent, &mut RegisterUnreachable(&mut tls), 6, |_| false);
    let st = agent.status();
    assert_eq!(st.phase, Phase::Register);
    assert_eq!(st.register, RegisterStatus::Failed);
    assert_eq!(st.counters.register_fallbacks, 0);
    assert_eq!(ctl.count("uuid", 401) + ctl.count("uuid", 200), 0);
    assert!(st.counters.transport_errors >= 3);
}
