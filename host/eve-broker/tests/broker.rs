//! The broker over `UnixStream::pair()`, with `evebus::Client` as the
//! services' side.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eve_broker::{
    Broker, BrokerConfig, LogEntry, OpenError, OwnPublishError, Policy, PolicyError, RpcError,
};
use evebus::{
    Call, Client, ClientConfig, ClientError, DenyReason, Event, LOG_TOPIC, Level, Limits, Message,
    Operation, RefuseReason, Status,
};
use hostops::TargetSpec;

/// How long a test waits for something that should happen; a guard
/// against hanging, not a timing target.
const PATIENCE: Duration = Duration::from_secs(10);

fn policy() -> Policy {
    Policy::builder()
        .publish("nim", "nim-status")
        .call("nim", "safe", "open")
        .call("nim", "safe", "shred")
        .call("nim", "safe", "wait")
        .call("nim", "safe", "melt")
        .call("nim", "nosuch", "open")
        .call("zedagent", "safe", "shred")
        .subscribe("zedagent", "nim-status")
        .subscribe("zedagent", LOG_TOPIC)
        .subscribe("zedagent", "@device-facts")
        .publish("zedagent", "edge-config")
        .service("domainmgr")
        .build()
        .unwrap()
}

fn broker() -> Broker {
    Broker::new(policy(), BrokerConfig::default()).unwrap()
}

/// A service: its end of the socket pair and its bus client.
struct Peer {
    stream: UnixStream,
    client: Client,
    start: Instant,
}

impl Peer {
    fn connect(broker: &Broker, service: &str, boot_counter: u64) -> Peer {
        let (ours, theirs) = UnixStream::pair().unwrap();
        broker.attach(service, theirs).unwrap();
        ours.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut peer = Peer {
            stream: ours,
            client: Client::new(ClientConfig::new(service, boot_counter)),
            start: Instant::now(),
        };
        peer.client.connect().unwrap();
        peer.flush();
        peer.wait_for(|e| matches!(e, Event::Connected { .. }));
        peer
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn flush(&mut self) {
        let bytes = self.client.transmit().to_vec();
        self.stream.write_all(&bytes).unwrap();
        self.client.transmitted(bytes.len());
    }

    /// The next event, reading from the broker as needed.
    fn next_event(&mut self) -> Event {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.flush();
            if let Some(event) = self.client.next_event() {
                return event;
            }
            assert!(Instant::now() < deadline, "no event in time");
            let mut buf = [0; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("broker closed the connection"),
                Ok(n) => {
                    let now = self.now();
                    self.client.receive(&buf[..n], now).unwrap();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn wait_for(&mut self, wanted: impl Fn(&Event) -> bool) -> Event {
        loop {
            let event = self.next_event();
            if wanted(&event) {
                return event;
            }
        }
    }

    fn publish(&mut self, topic: &str, key: &str, value: &[u8]) {
        self.client.publish(topic, key, value).unwrap();
        self.flush();
    }
}

/// Waits until `condition` holds.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads raw frames until the broker closes the stream.
fn read_until_closed(stream: &mut UnixStream) -> Vec<Message> {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .expect("the broker closes the stream");
    let mut messages = Vec::new();
    evebus::Decoder::new(Limits::DEFAULT)
        .feed(&bytes, |m| messages.push(m))
        .unwrap();
    messages
}

fn only_welcome(messages: &[Message]) -> bool {
    messages.len() <= 1
        && messages
            .iter()
            .all(|m| matches!(m, Message::Welcome { .. }))
}

fn raw(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        m.encode(&Limits::DEFAULT, &mut out).unwrap();
    }
    out
}

fn call<'a>(target: &'a str, operation: &'a str, version: u16, payload: &'a [u8]) -> Call<'a> {
    Call {
        target,
        operation,
        version,
        payload,
        timeout: PATIENCE,
    }
}

fn hello(service: &str) -> Message {
    Message::Hello {
        service: service.into(),
        protocol: evebus::PROTOCOL_VERSION,
        boot_counter: 1,
    }
}

fn created(topic: &str, key: &str, value: &[u8]) -> Event {
    Event::Created {
        topic: topic.into(),
        key: key.into(),
        value: value.into(),
    }
}

fn synchronized(topic: &str) -> Event {
    Event::Synchronized {
        topic: topic.into(),
    }
}

#[test]
fn two_services_publish_and_subscribe() {
    let broker = broker();
    let mut nim = Peer::connect(&broker, "nim", 1);
    nim.publish("nim-status", "eth0", b"up");
    eventually("published", || broker.table("nim-status").len() == 1);

    let mut zedagent = Peer::connect(&broker, "zedagent", 1);
    zedagent.client.subscribe("nim-status").unwrap();
    assert_eq!(zedagent.next_event(), created("nim-status", "eth0", b"up"));
    assert_eq!(zedagent.next_event(), synchronized("nim-status"));

    nim.publish("nim-status", "eth0", b"down");
    nim.publish("nim-status", "eth1", b"up");
    nim.client.delete("nim-status", "eth0").unwrap();
    nim.flush();
    assert_eq!(
        zedagent.next_event(),
        Event::Modified {
            topic: "nim-status".into(),
            key: "eth0".into(),
            value: b"down".to_vec()
        }
    );
    assert_eq!(zedagent.next_event(), created("nim-status", "eth1", b"up"));
    assert_eq!(
        zedagent.next_event(),
        Event::Deleted {
            topic: "nim-status".into(),
            key: "eth0".into(),
            last_value: b"down".to_vec()
        }
    );
    assert_eq!(zedagent.client.table("nim-status").unwrap().len(), 1);
}

#[test]
fn the_host_fills_the_broker_s_own_tables_and_granted_services_mirror_them() {
    let broker = broker();
    broker
        .publish_own("@device-facts", "device", b"2 cpus".to_vec())
        .unwrap();
    let mut zedagent = Peer::connect(&broker, "zedagent", 1);
    zedagent.client.subscribe("@device-facts").unwrap();
    assert_eq!(
        zedagent.next_event(),
        created("@device-facts", "device", b"2 cpus")
    );
    assert_eq!(zedagent.next_event(), synchronized("@device-facts"));
    broker
        .publish_own("@device-facts", "device", b"4 cpus".to_vec())
        .unwrap();
    assert_eq!(
        zedagent.next_event(),
        Event::Modified {
            topic: "@device-facts".into(),
            key: "device".into(),
            value: b"4 cpus".to_vec(),
        }
    );
    // Services may read the broker's tables, never write them: the client
    // refuses, and the broker denies a hostile service that sends anyway.
    assert_eq!(
        zedagent
            .client
            .publish("@device-facts", "device", b"forged"),
        Err(ClientError::BrokerTopic)
    );
    let forged = Message::Publish {
        topic: "@device-facts".into(),
        key: "device".into(),
        value: b"forged".to_vec(),
    };
    zedagent.stream.write_all(&raw(&[forged])).unwrap();
    assert!(matches!(
        zedagent.next_event(),
        Event::Denied {
            operation: Operation::Publish,
            reason: DenyReason::NotGranted,
            ..
        }
    ));
    assert_eq!(broker.table("@device-facts")["device"], b"4 cpus");
    let mut nim = Peer::connect(&broker, "nim", 1);
    nim.client.subscribe("@device-facts").unwrap();
    assert!(matches!(
        nim.next_event(),
        Event::Denied {
            operation: Operation::Subscribe,
            reason: DenyReason::NotGranted,
            ..
        }
    ));
    for topic in ["nim-status", LOG_TOPIC, "@", "@Bad"] {
        assert_eq!(
            broker.publish_own(topic, "k", Vec::new()),
            Err(OwnPublishError::NotABrokerTable(topic.into()))
        );
    }
    assert!(matches!(
        broker.publish_own("@device-facts", "bad key", Vec::new()),
        Err(OwnPublishError::InvalidKey(_))
    ));
    assert!(matches!(
        broker.publish_own("@device-facts", "k", vec![0; Limits::DEFAULT.frame_len()]),
        Err(OwnPublishError::TooLarge { .. })
    ));
}

#[test]
fn denied_operations_are_answered_and_the_connection_stays_up() {
    let broker = broker();
    let mut zedagent = Peer::connect(&broker, "zedagent", 1);
    zedagent.publish("nim-status", "eth0", b"forged");
    assert_eq!(
        zedagent.next_event(),
        Event::Denied {
            operation: Operation::Publish,
            topic: "nim-status".into(),
            reason: DenyReason::NotGranted
        }
    );
    zedagent.client.subscribe("zedagent-secret").unwrap();
    assert_eq!(
        zedagent.next_event(),
        Event::Denied {
            operation: Operation::Subscribe,
            topic: "zedagent-secret".into(),
            reason: DenyReason::NotGranted
        }
    );
    zedagent.client.delete("nim-status", "eth0").unwrap();
    zedagent.client.signal_synchronized("nim-status").unwrap();
    assert!(matches!(
        zedagent.next_event(),
        Event::Denied {
            operation: Operation::Delete,
            ..
        }
    ));
    assert!(matches!(
        zedagent.next_event(),
        Event::Denied {
            operation: Operation::Synchronized,
            ..
        }
    ));
    zedagent.publish("edge-config", "k", b"v");
    eventually("own topic published", || {
        broker.table("edge-config").len() == 1
    });
    assert!(broker.table("nim-status").is_empty());
}

#[test]
fn items_that_would_not_fit_an_update_are_refused() {
    let broker = broker();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    broker.attach("nim", theirs).unwrap();
    let mut publish = Message::Publish {
        topic: "nim-status".into(),
        key: "k".into(),
        value: Vec::new(),
    };
    let room = Limits::DEFAULT.max_frame_len - publish.buffer_len();
    if let Message::Publish { value, .. } = &mut publish {
        value.resize(room, 0);
    }
    assert_eq!(publish.buffer_len(), Limits::DEFAULT.max_frame_len);
    ours.write_all(&raw(&[hello("nim"), publish])).unwrap();
    ours.shutdown(std::net::Shutdown::Write).unwrap();
    let replies = read_until_closed(&mut ours);
    assert_eq!(
        replies[1],
        Message::Denied {
            operation: Operation::Publish,
            topic: "nim-status".into(),
            reason: DenyReason::TooLarge
        }
    );
    assert!(broker.table("nim-status").is_empty());
}

#[test]
fn a_restarted_publisher_keeps_its_table_until_synchronized() {
    let broker = broker();
    let mut nim = Peer::connect(&broker, "nim", 1);
    nim.publish("nim-status", "eth0", b"up");
    nim.publish("nim-status", "eth1", b"up");
    let mut zedagent = Peer::connect(&broker, "zedagent", 1);
    zedagent.client.subscribe("nim-status").unwrap();
    zedagent.wait_for(|e| *e == synchronized("nim-status"));

    drop(nim);
    eventually("nim gone", || !broker.status("nim").unwrap().connected);
    assert_eq!(broker.table("nim-status").len(), 2, "retained while down");

    // The new boot publishes eth0 (same value) and eth2, then says it is
    // synchronized: eth1 goes, eth0 never looked changed.
    let mut nim = Peer::connect(&broker, "nim", 2);
    assert_eq!(broker.status("nim").unwrap().boot_counter, Some(2));
    nim.publish("nim-status", "eth0", b"up");
    nim.publish("nim-status", "eth2", b"up");
    assert_eq!(zedagent.next_event(), created("nim-status", "eth2", b"up"));
    nim.client.signal_synchronized("nim-status").unwrap();
    nim.flush();
    assert_eq!(
        zedagent.next_event(),
        Event::Deleted {
            topic: "nim-status".into(),
            key: "eth1".into(),
            last_value: b"up".to_vec()
        }
    );
    let keys: Vec<String> = broker.table("nim-status").into_keys().collect();
    assert_eq!(keys, ["eth0", "eth2"]);
}

#[test]
fn a_restarted_subscriber_gets_the_whole_table_then_synchronized() {
    let broker = broker();
    let mut nim = Peer::connect(&broker, "nim", 1);
    nim.publish("nim-status", "a", b"1");
    let mut zedagent = Peer::connect(&broker, "zedagent", 1);
    zedagent.client.subscribe("nim-status").unwrap();
    zedagent.wait_for(|e| *e == synchronized("nim-status"));
    drop(zedagent);

    nim.publish("nim-status", "b", b"2");
    eventually("b published", || broker.table("nim-status").len() == 2);
    let mut zedagent = Peer::connect(&broker, "zedagent", 2);
    zedagent.client.subscribe("nim-status").unwrap();
    assert_eq!(zedagent.next_event(), created("nim-status", "a", b"1"));
    assert_eq!(zedagent.next_event(), created("nim-status", "b", b"2"));
    assert_eq!(zedagent.next_event(), synchronized("nim-status"));
}

#[test]
fn a_reconnecting_client_reconciles_over_a_new_transport() {
    let broker = broker();
    let mut nim = Peer::connect(&broker, "nim", 1);
    nim.publish("nim-status", "a", b"1");
    nim.publish("nim-status", "b", b"1");
    let mut zedagent = Peer::connect(&broker, "zedagent", 1);
    zedagent.client.subscribe("nim-status").unwrap();
    zedagent.wait_for(|e| *e == synchronized("nim-status"));

    // The subscriber's transport breaks; meanwhile b changes and a goes.
    let (ours, theirs) = UnixStream::pair().unwrap();
    zedagent.stream = ours;
    zedagent
        .stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    nim.publish("nim-status", "b", b"2");
    nim.client.delete("nim-status", "a").unwrap();
    nim.flush();
    eventually("a deleted", || broker.table("nim-status").len() == 1);

    broker.attach("zedagent", theirs).unwrap();
    zedagent.client.connect().unwrap();
    zedagent.wait_for(|e| matches!(e, Event::Connected { .. }));
    assert_eq!(
        zedagent.next_event(),
        Event::Modified {
            topic: "nim-status".into(),
            key: "b".into(),
            value: b"2".to_vec()
        }
    );
    assert_eq!(
        zedagent.next_event(),
        Event::Deleted {
            topic: "nim-status".into(),
            key: "a".into(),
            last_value: b"1".to_vec()
        }
    );
    assert_eq!(zedagent.next_event(), synchronized("nim-status"));
}

#[test]
fn logs_reach_the_sink_and_log_subscribers() {
    let broker = broker();
    let sink: Arc<Mutex<Vec<LogEntry>>> = Arc::default();
    let sink_clone = Arc::clone(&sink);
    broker.set_log_sink(move |entry: &LogEntry| sink_clone.lock().unwrap().push(entry.clone()));

    let mut nim = Peer::connect(&broker, "nim", 1);
    nim.client.log(Level::Warn, 11, "nim::dhcp", "no lease yet");
    nim.flush();
    eventually("sink got the record", || sink.lock().unwrap().len() == 1);
    assert_eq!(
        sink.lock().unwrap()[0],
        LogEntry {
            service: "nim".into(),
            level: Level::Warn,
            unix_ns: 11,
            target: "nim::dhcp".into(),
            message: "no lease yet".into()
        }
    );

    // zedagent subscribes later: the backlog comes first, then live records.
    let mut zedagent = Peer::connect(&broker, "zedagent", 1);
    zedagent.client.subscribe(LOG_TOPIC).unwrap();
    assert_eq!(
        zedagent.next_event(),
        Event::LogRecord {
            source: "nim".into(),
            level: Level::Warn,
            unix_ns: 11,
            target: "nim::dhcp".into(),
            message: "no lease yet".into()
        }
    );
    assert_eq!(zedagent.next_event(), synchronized(LOG_TOPIC));
    nim.client.log(Level::Info, 12, "nim", "lease");
    nim.flush();
    assert!(matches!(
        zedagent.next_event(),
        Event::LogRecord { unix_ns: 12, .. }
    ));
    assert_eq!(broker.dropped_logs(), 0);
}

#[test]
fn log_backlog_is_bounded() {
    let config = BrokerConfig {
        log_backlog_len: 2,
        ..BrokerConfig::default()
    };
    let broker = Broker::new(policy(), config).unwrap();
    let sink: Arc<Mutex<Vec<LogEntry>>> = Arc::default();
    let sink_clone = Arc::clone(&sink);
    broker.set_log_sink(move |entry: &LogEntry| sink_clone.lock().unwrap().push(entry.clone()));
    let mut nim = Peer::connect(&broker, "nim", 1);
    for i in 0..5 {
        nim.client.log(Level::Info, i, "nim", "record");
    }
    nim.flush();
    eventually("all records in the sink", || {
        sink.lock().unwrap().len() == 5
    });
    assert_eq!(broker.dropped_logs(), 3);
    let mut zedagent = Peer::connect(&broker, "zedagent", 1);
    zedagent.client.subscribe(LOG_TOPIC).unwrap();
    assert!(matches!(
        zedagent.next_event(),
        Event::LogRecord { unix_ns: 3, .. }
    ));
    assert!(matches!(
        zedagent.next_event(),
        Event::LogRecord { unix_ns: 4, .. }
    ));
    assert_eq!(zedagent.next_event(), synchronized(LOG_TOPIC));
}

#[test]
fn requests_reach_handlers_after_version_operation_and_grant_checks() {
    let broker = broker();
    static SAFE: TargetSpec = TargetSpec {
        name: "safe",
        version: 3,
        operations: &["open", "shred", "wait"],
    };
    let handler = |caller: &str, operation: &str, payload: &[u8]| match operation {
        "open" if payload.is_empty() => Err(RpcError::BadRequest("no combination".into())),
        "open" => Ok([caller.as_bytes(), b":", payload].concat()),
        "shred" => Err(RpcError::Failed {
            error: vec![0x08, 0x02],
            message: "jammed".into(),
        }),
        _ => Err(RpcError::Busy),
    };
    broker.register(&SAFE, Arc::new(handler));
    let mut nim = Peer::connect(&broker, "nim", 1);
    let mut ask = |target: &str, operation: &str, version: u16, payload: &[u8]| {
        let now = nim.now();
        let id = nim
            .client
            .request(&call(target, operation, version, payload), now)
            .unwrap();
        let Event::Response {
            id: answered,
            status,
            payload,
        } = nim.next_event()
        else {
            panic!("no response to {target}.{operation}");
        };
        assert_eq!(answered, id);
        (status, payload)
    };
    assert_eq!(
        ask("safe", "open", 3, b"1234"),
        (Status::Ok, b"nim:1234".to_vec())
    );
    assert_eq!(
        ask("safe", "open", 3, b""),
        (Status::BadRequest, b"no combination".to_vec())
    );
    assert_eq!(
        ask("safe", "shred", 3, b""),
        (Status::Failed, vec![0x08, 0x02])
    );
    assert_eq!(ask("safe", "wait", 3, b"").0, Status::Busy);
    assert_eq!(ask("safe", "open", 2, b"1234").0, Status::WrongVersion);
    assert_eq!(ask("safe", "melt", 3, b"").0, Status::NoSuchOperation);
    assert_eq!(ask("nosuch", "open", 3, b"").0, Status::NoSuchTarget);

    // Granted shred and wait, but not open.
    let mut zedagent = Peer::connect(&broker, "zedagent", 1);
    let now = zedagent.now();
    let denied = zedagent
        .client
        .request(&call("safe", "open", 3, b"1234"), now)
        .unwrap();
    assert!(matches!(
        zedagent.next_event(),
        Event::Response { id, status: Status::Denied, .. } if id == denied
    ));

    broker.unregister("safe");
    let now = zedagent.now();
    let gone = zedagent
        .client
        .request(&call("safe", "shred", 3, b""), now)
        .unwrap();
    assert!(matches!(
        zedagent.next_event(),
        Event::Response { id, status: Status::NoSuchTarget, .. } if id == gone
    ));
}

#[test]
fn heartbeats_are_recorded() {
    let broker = broker();
    let mut nim = Peer::connect(&broker, "nim", 1);
    let status = broker.status("nim").unwrap();
    assert!(status.connected);
    assert!(status.connected_at.is_some());
    assert_eq!(status.last_heartbeat, None);
    assert_eq!(broker.last_heartbeat("nim"), None);
    let due = nim.client.next_deadline().unwrap();
    nim.client.poll(due);
    nim.flush();
    eventually("heartbeat recorded", || {
        broker.last_heartbeat("nim").is_some()
    });
    assert_eq!(broker.status("nim").unwrap().last_heartbeat.unwrap().1, 0);
    assert_eq!(broker.status("zedagent"), None);
}

#[test]
fn a_peer_sending_garbage_is_dropped_and_others_continue() {
    let broker = broker();
    let mut nim = Peer::connect(&broker, "nim", 1);
    let mut zedagent = Peer::connect(&broker, "zedagent", 1);
    zedagent.client.subscribe("nim-status").unwrap();
    zedagent.wait_for(|e| *e == synchronized("nim-status"));

    let (mut hostile, theirs) = UnixStream::pair().unwrap();
    broker.attach("domainmgr", theirs).unwrap();
    hostile.write_all(&raw(&[hello("domainmgr")])).unwrap();
    hostile
        .write_all(b"\x00garbage that is not a frame")
        .unwrap();
    // The broker cuts a hostile peer off at once, so its Welcome may or
    // may not have been written.
    let replies = read_until_closed(&mut hostile);
    assert!(only_welcome(&replies), "{replies:?}");
    eventually("domainmgr dropped", || {
        !broker.status("domainmgr").unwrap().connected
    });

    nim.publish("nim-status", "eth0", b"up");
    assert_eq!(zedagent.next_event(), created("nim-status", "eth0", b"up"));
}

#[test]
fn broker_only_messages_from_a_service_drop_it() {
    let broker = broker();
    let (mut peer, theirs) = UnixStream::pair().unwrap();
    broker.attach("nim", theirs).unwrap();
    let forged = Message::Update {
        change: evebus::Change::Created,
        topic: "edge-config".into(),
        key: "k".into(),
        value: b"v".to_vec(),
    };
    peer.write_all(&raw(&[hello("nim"), forged])).unwrap();
    let replies = read_until_closed(&mut peer);
    assert!(only_welcome(&replies), "{replies:?}");
}

#[test]
fn hello_must_come_first_and_name_the_connection_s_service() {
    let broker = broker();
    for (first, reason) in [
        (hello("zedagent"), RefuseReason::WrongService),
        (
            Message::Heartbeat { sequence: 0 },
            RefuseReason::ExpectedHello,
        ),
        (
            Message::Hello {
                service: "nim".into(),
                protocol: 99,
                boot_counter: 0,
            },
            RefuseReason::UnsupportedVersion,
        ),
    ] {
        let (mut peer, theirs) = UnixStream::pair().unwrap();
        broker.attach("nim", theirs).unwrap();
        peer.write_all(&raw(&[first])).unwrap();
        assert_eq!(read_until_closed(&mut peer), [Message::Refused { reason }]);
    }
    assert_eq!(broker.status("nim"), None);
}

#[test]
fn a_new_connection_replaces_the_old_one() {
    let broker = broker();
    let (mut old, theirs) = UnixStream::pair().unwrap();
    broker.attach("nim", theirs).unwrap();
    old.write_all(&raw(&[hello("nim")])).unwrap();
    // The old session must be established before the new one says Hello,
    // or the two Hellos race and the old one may win.
    eventually("the old connection welcomed", || {
        broker.status("nim").is_some_and(|s| s.connected)
    });
    let _nim = Peer::connect(&broker, "nim", 2);
    let replies = read_until_closed(&mut old);
    assert!(only_welcome(&replies), "{replies:?}");
    assert!(broker.status("nim").unwrap().connected);
}

#[test]
fn unknown_services_cannot_attach() {
    let broker = broker();
    let (_, theirs) = UnixStream::pair().unwrap();
    assert!(matches!(
        broker.attach("intruder", theirs),
        Err(eve_broker::AttachError::UnknownService(_))
    ));
}

#[test]
fn disconnect_closes_the_service_s_connection() {
    let broker = broker();
    let mut nim = Peer::connect(&broker, "nim", 1);
    broker.disconnect("nim");
    let mut buf = [0; 16];
    nim.stream.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(nim.stream.read(&mut buf).unwrap(), 0);
    eventually("nim disconnected", || {
        !broker.status("nim").unwrap().connected
    });
}

#[test]
fn persistent_topics_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        persist_dir: Some(dir.path().join("tables")),
        persistent_topics: BTreeSet::from(["nim-status".to_owned()]),
        ..BrokerConfig::default()
    };
    {
        let broker = Broker::new(policy(), config.clone()).unwrap();
        let mut nim = Peer::connect(&broker, "nim", 1);
        nim.publish("nim-status", "eth0", b"up");
        nim.publish("nim-status", "eth1", b"up");
        nim.client.delete("nim-status", "eth1").unwrap();
        nim.flush();
        let mut zedagent = Peer::connect(&broker, "zedagent", 1);
        zedagent.publish("edge-config", "k", b"not persistent");
        eventually("tables written", || {
            broker.table("nim-status").len() == 1 && broker.table("edge-config").len() == 1
        });
        broker.disconnect("nim");
    }
    // A crash during a later write leaves a temporary file behind; it
    // must not matter.
    let table_file = std::fs::read_dir(dir.path().join("tables"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "table"))
        .unwrap();
    std::fs::write(table_file.with_extension("tmp"), b"half-written").unwrap();

    let broker = Broker::new(policy(), config.clone()).unwrap();
    let table = broker.table("nim-status");
    assert_eq!(table.len(), 1);
    assert_eq!(table["eth0"], b"up");
    assert!(broker.table("edge-config").is_empty());

    // Loaded items are retained until the publisher confirms them.
    let mut zedagent = Peer::connect(&broker, "zedagent", 1);
    zedagent.client.subscribe("nim-status").unwrap();
    assert_eq!(zedagent.next_event(), created("nim-status", "eth0", b"up"));
    assert_eq!(zedagent.next_event(), synchronized("nim-status"));
    let mut nim = Peer::connect(&broker, "nim", 2);
    nim.client.signal_synchronized("nim-status").unwrap();
    nim.flush();
    assert!(matches!(zedagent.next_event(), Event::Deleted { .. }));
    drop(broker);
    let broker = Broker::new(policy(), config.clone()).unwrap();
    assert!(
        broker.table("nim-status").is_empty(),
        "the deletion was persisted"
    );

    std::fs::write(&table_file, b"EBgarbage").unwrap();
    assert!(matches!(
        Broker::new(policy(), config),
        Err(OpenError::Load(_))
    ));
}

#[test]
fn policies_keep_one_publisher_per_topic_and_valid_names() {
    assert_eq!(
        Policy::builder()
            .publish("a", "t")
            .publish("b", "t")
            .build(),
        Err(PolicyError::TwoPublishers {
            topic: "t".into(),
            first: "a".into(),
            second: "b".into()
        })
    );
    assert!(matches!(
        Policy::builder().publish("a", LOG_TOPIC).build(),
        Err(PolicyError::BrokerTopic { .. })
    ));
    assert!(matches!(
        Policy::builder().service("bad name").build(),
        Err(PolicyError::InvalidService { .. })
    ));
    assert!(matches!(
        Policy::builder().subscribe("a", "bad topic").build(),
        Err(PolicyError::InvalidTopic { .. })
    ));
    assert!(matches!(
        Policy::builder().call("a", "tpm/x", "sign").build(),
        Err(PolicyError::InvalidTarget { .. })
    ));
    assert!(matches!(
        Policy::builder().call("a", "tpm", "Sign").build(),
        Err(PolicyError::InvalidOperation { .. })
    ));
    let policy = policy();
    assert!(policy.may_publish("nim", "nim-status"));
    assert!(!policy.may_publish("zedagent", "nim-status"));
    assert!(policy.may_subscribe("zedagent", LOG_TOPIC));
    assert!(policy.may_call("nim", "safe", "open"));
    assert!(!policy.may_call("zedagent", "safe", "open"));
    assert!(policy.may_call("zedagent", "safe", "shred"));
    assert!(!policy.may_call("zedagent", "nosuch", "shred"));
    assert_eq!(policy.publisher_of("edge-config"), Some("zedagent"));
}
