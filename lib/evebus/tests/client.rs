//! The client state machine against a scripted broker.

mod common;

use std::time::Duration;

use evebus::{
    Call, Change, Client, ClientConfig, ClientError, Decoder, DenyReason, Event, Kind, LOG_TOPIC,
    Level, Limits, Message, Operation, PROTOCOL_VERSION, RefuseReason, RequestFailure, Status,
    WireError,
};

const T0: Duration = Duration::from_secs(100);

/// Everything the client wants to send, parsed.
fn sent(client: &mut Client) -> Vec<Message> {
    let bytes = client.transmit().to_vec();
    client.transmitted(bytes.len());
    let mut decoder = Decoder::new(Limits::DEFAULT);
    let mut out = Vec::new();
    decoder.feed(&bytes, |m| out.push(m)).unwrap();
    out
}

fn deliver(client: &mut Client, messages: &[Message], now: Duration) -> Result<(), ClientError> {
    let mut bytes = Vec::new();
    for m in messages {
        m.encode(&Limits::DEFAULT, &mut bytes).unwrap();
    }
    client.receive(&bytes, now)
}

/// A call of the TPM's `operation`, answered within 5 s.
fn call<'a>(operation: &'a str, payload: &'a [u8]) -> Call<'a> {
    Call {
        target: "tpm",
        operation,
        version: 1,
        payload,
        timeout: Duration::from_secs(5),
    }
}

fn events(client: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| client.next_event()).collect()
}

fn welcome(interval_ms: u32) -> Message {
    Message::Welcome {
        protocol: PROTOCOL_VERSION,
        heartbeat_interval_ms: interval_ms,
    }
}

fn update(change: Change, topic: &str, key: &str, value: &[u8]) -> Message {
    Message::Update {
        change,
        topic: topic.into(),
        key: key.into(),
        value: value.into(),
    }
}

fn synchronized(topic: &str) -> Message {
    Message::Synchronized {
        topic: topic.into(),
    }
}

fn publish(topic: &str, key: &str, value: &[u8]) -> Message {
    Message::Publish {
        topic: topic.into(),
        key: key.into(),
        value: value.into(),
    }
}

/// A client for `nim` that has been welcomed, with its output drained.
fn connected() -> Client {
    let mut client = Client::new(ClientConfig::new("nim", 3));
    client.connect().unwrap();
    assert_eq!(
        sent(&mut client),
        [Message::Hello {
            service: "nim".into(),
            protocol: PROTOCOL_VERSION,
            boot_counter: 3
        }]
    );
    deliver(&mut client, &[welcome(1000)], T0).unwrap();
    assert_eq!(
        events(&mut client),
        [Event::Connected {
            heartbeat_interval: Duration::from_secs(1)
        }]
    );
    client
}

#[test]
fn publications_made_offline_are_sent_after_welcome_and_again_after_reconnect() {
    let mut client = Client::new(ClientConfig::new("nim", 1));
    client.publish("nim-status", "eth0", b"up").unwrap();
    client.publish("nim-status", "eth1", b"down").unwrap();
    client.signal_synchronized("nim-status").unwrap();
    assert!(
        client.transmit().is_empty(),
        "nothing is sent before connect"
    );
    client.connect().unwrap();
    sent(&mut client);
    deliver(&mut client, &[welcome(1000)], T0).unwrap();
    let replay = vec![
        publish("nim-status", "eth0", b"up"),
        publish("nim-status", "eth1", b"down"),
        synchronized("nim-status"),
    ];
    assert_eq!(sent(&mut client), replay);

    // Live changes go out at once; an unchanged value is not resent.
    client.publish("nim-status", "eth0", b"up").unwrap();
    client.delete("nim-status", "eth1").unwrap();
    assert_eq!(
        sent(&mut client),
        [Message::Delete {
            topic: "nim-status".into(),
            key: "eth1".into()
        }]
    );

    // A broker restart: the same publications again, current state only.
    client.connect().unwrap();
    sent(&mut client);
    deliver(&mut client, &[welcome(1000)], T0).unwrap();
    assert_eq!(
        sent(&mut client),
        [
            publish("nim-status", "eth0", b"up"),
            synchronized("nim-status")
        ]
    );
    assert_eq!(client.published("nim-status").unwrap().len(), 1);
}

#[test]
fn broker_topics_cannot_be_published() {
    let mut client = connected();
    assert_eq!(
        client.publish(LOG_TOPIC, "k", b""),
        Err(ClientError::BrokerTopic)
    );
    assert_eq!(client.delete(LOG_TOPIC, "k"), Err(ClientError::BrokerTopic));
    assert_eq!(
        client.signal_synchronized(LOG_TOPIC),
        Err(ClientError::BrokerTopic)
    );
    assert_eq!(
        client.publish("bad topic", "k", b""),
        Err(ClientError::Wire(WireError::InvalidField(
            evebus::Field::Topic
        )))
    );
}

#[test]
fn mirror_yields_created_modified_deleted_and_synchronized() {
    let mut client = connected();
    client.subscribe("edge-config").unwrap();
    assert_eq!(
        sent(&mut client),
        [Message::Subscribe {
            topic: "edge-config".into()
        }]
    );
    assert!(!client.is_synchronized("edge-config"));
    deliver(
        &mut client,
        &[
            update(Change::Created, "edge-config", "a", b"1"),
            update(Change::Created, "edge-config", "b", b"2"),
            synchronized("edge-config"),
            update(Change::Modified, "edge-config", "a", b"3"),
            update(Change::Deleted, "edge-config", "b", b""),
            update(Change::Deleted, "edge-config", "never-there", b""),
        ],
        T0,
    )
    .unwrap();
    assert_eq!(
        events(&mut client),
        [
            Event::Created {
                topic: "edge-config".into(),
                key: "a".into(),
                value: b"1".to_vec()
            },
            Event::Created {
                topic: "edge-config".into(),
                key: "b".into(),
                value: b"2".to_vec()
            },
            Event::Synchronized {
                topic: "edge-config".into()
            },
            Event::Modified {
                topic: "edge-config".into(),
                key: "a".into(),
                value: b"3".to_vec()
            },
            Event::Deleted {
                topic: "edge-config".into(),
                key: "b".into(),
                last_value: b"2".to_vec()
            },
        ]
    );
    assert!(client.is_synchronized("edge-config"));
    let table = client.table("edge-config").unwrap();
    assert_eq!(table.len(), 1);
    assert_eq!(table["a"], b"3");
}

#[test]
fn resubscription_after_reconnect_reports_only_real_changes() {
    let mut client = connected();
    client.subscribe("t").unwrap();
    deliver(
        &mut client,
        &[
            update(Change::Created, "t", "same", b"1"),
            update(Change::Created, "t", "changes", b"1"),
            update(Change::Created, "t", "vanishes", b"1"),
            synchronized("t"),
        ],
        T0,
    )
    .unwrap();
    events(&mut client);

    client.connect().unwrap();
    assert!(!client.is_synchronized("t"));
    assert_eq!(client.table("t").unwrap().len(), 3, "kept while offline");
    sent(&mut client);
    deliver(&mut client, &[welcome(1000)], T0).unwrap();
    assert_eq!(
        sent(&mut client),
        [Message::Subscribe { topic: "t".into() }]
    );
    deliver(
        &mut client,
        &[
            update(Change::Created, "t", "same", b"1"),
            update(Change::Created, "t", "changes", b"2"),
            update(Change::Created, "t", "new", b"1"),
            synchronized("t"),
        ],
        T0,
    )
    .unwrap();
    assert_eq!(
        events(&mut client),
        [
            Event::Connected {
                heartbeat_interval: Duration::from_secs(1)
            },
            Event::Modified {
                topic: "t".into(),
                key: "changes".into(),
                value: b"2".to_vec()
            },
            Event::Created {
                topic: "t".into(),
                key: "new".into(),
                value: b"1".to_vec()
            },
            Event::Deleted {
                topic: "t".into(),
                key: "vanishes".into(),
                last_value: b"1".to_vec()
            },
            Event::Synchronized { topic: "t".into() },
        ]
    );
    assert!(client.is_synchronized("t"));
}

#[test]
fn updates_for_unsubscribed_topics_are_ignored() {
    let mut client = connected();
    deliver(
        &mut client,
        &[update(Change::Created, "other", "k", b"v")],
        T0,
    )
    .unwrap();
    assert_eq!(events(&mut client), []);
    assert!(client.table("other").is_none());
}

#[test]
fn heartbeats_follow_the_welcome_interval_without_bursts() {
    let mut client = connected();
    assert_eq!(client.next_deadline(), Some(T0 + Duration::from_secs(1)));
    client.poll(T0 + Duration::from_millis(999));
    assert_eq!(sent(&mut client), []);
    client.poll(T0 + Duration::from_secs(1));
    assert_eq!(sent(&mut client), [Message::Heartbeat { sequence: 0 }]);
    assert_eq!(client.next_deadline(), Some(T0 + Duration::from_secs(2)));
    // A long stall gives one beat, then the schedule restarts from now.
    client.poll(T0 + Duration::from_secs(10));
    assert_eq!(sent(&mut client), [Message::Heartbeat { sequence: 1 }]);
    assert_eq!(client.next_deadline(), Some(T0 + Duration::from_secs(11)));
}

#[test]
fn zero_interval_means_no_heartbeats() {
    let mut client = Client::new(ClientConfig::new("nim", 1));
    client.connect().unwrap();
    sent(&mut client);
    deliver(&mut client, &[welcome(0)], T0).unwrap();
    assert_eq!(client.next_deadline(), None);
    client.poll(T0 + Duration::from_secs(3600));
    assert_eq!(sent(&mut client), []);
}

#[test]
fn requests_are_matched_time_out_and_fail_on_disconnect() {
    let mut client = Client::new(ClientConfig::new("nim", 1));
    assert_eq!(
        client.request(&call("quote", b"x"), T0),
        Err(ClientError::NotConnected)
    );
    let mut client = connected();
    let a = client.request(&call("quote", b"nonce"), T0).unwrap();
    let b = client.request(&call("sign", b"digest"), T0).unwrap();
    assert_ne!(a, b);
    assert_eq!(
        sent(&mut client),
        [
            Message::Request {
                id: a,
                target: "tpm".into(),
                operation: "quote".into(),
                version: 1,
                payload: b"nonce".to_vec()
            },
            Message::Request {
                id: b,
                target: "tpm".into(),
                operation: "sign".into(),
                version: 1,
                payload: b"digest".to_vec()
            },
        ]
    );
    let answer = Message::Response {
        id: b,
        status: Status::Ok,
        payload: b"4".to_vec(),
    };
    deliver(&mut client, std::slice::from_ref(&answer), T0).unwrap();
    assert_eq!(
        events(&mut client),
        [Event::Response {
            id: b,
            status: Status::Ok,
            payload: b"4".to_vec()
        }]
    );
    // A duplicate or late response is ignored.
    deliver(&mut client, &[answer], T0).unwrap();
    assert_eq!(events(&mut client), []);

    assert_eq!(
        client.next_deadline(),
        Some(T0 + Duration::from_secs(1)),
        "heartbeat first"
    );
    client.poll(T0 + Duration::from_secs(5));
    assert!(events(&mut client).contains(&Event::RequestFailed {
        id: a,
        reason: RequestFailure::TimedOut
    }));

    let c = client.request(&call("sign", b""), T0).unwrap();
    client.connect().unwrap();
    assert_eq!(
        events(&mut client),
        [Event::RequestFailed {
            id: c,
            reason: RequestFailure::Disconnected
        }]
    );
}

#[test]
fn pending_requests_are_bounded() {
    let mut client = connected();
    for _ in 0..16 {
        client.request(&call("sign", b""), T0).unwrap();
    }
    assert_eq!(
        client.request(&call("sign", b""), T0),
        Err(ClientError::TooManyPending)
    );
}

#[test]
fn log_queue_drops_oldest_and_waits_for_the_connection() {
    let mut config = ClientConfig::new("nim", 1);
    config.log_queue_len = 3;
    let mut client = Client::new(config);
    for i in 0..5 {
        client.log(Level::Info, i, "nim", &format!("record {i}"));
    }
    assert_eq!(client.dropped_logs(), 2);
    assert_eq!(client.queued_logs(), 3);
    assert!(client.transmit().is_empty(), "not before Welcome");
    client.connect().unwrap();
    sent(&mut client);
    deliver(&mut client, &[welcome(1000)], T0).unwrap();
    let logs: Vec<u64> = sent(&mut client)
        .into_iter()
        .map(|m| match m {
            Message::Log { unix_ns, .. } => unix_ns,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(logs, [2, 3, 4]);
    assert_eq!(client.queued_logs(), 0);
}

#[test]
fn log_records_are_cleaned_and_cut_to_the_limits() {
    let mut client = connected();
    let long = "\u{e9}".repeat(3000); // 6000 bytes of two-byte characters
    client.log(Level::Warn, 1, "bad\u{1b}target", &long);
    let sent = sent(&mut client);
    let Message::Log {
        target, message, ..
    } = &sent[0]
    else {
        panic!("not a log: {sent:?}");
    };
    assert_eq!(target, "bad?target");
    assert_eq!(message.len(), 4096);
}

#[test]
fn stalled_transport_holds_logs_in_the_bounded_queue() {
    let mut client = connected();
    for i in 0..200 {
        client.log(Level::Info, i, "t", &"x".repeat(1000));
    }
    let pending = client.transmit().len();
    assert!(pending < 2 * Limits::DEFAULT.max_frame_len);
    assert!(client.queued_logs() > 0);
}

#[test]
fn denials_and_log_records_become_events() {
    let mut client = connected();
    let denied = Message::Denied {
        operation: Operation::Subscribe,
        topic: "secret".into(),
        reason: DenyReason::NotGranted,
    };
    let record = Message::LogRecord {
        source: "nim".into(),
        level: Level::Error,
        unix_ns: 9,
        target: "dhcp".into(),
        message: "no lease".into(),
    };
    deliver(&mut client, &[denied, record], T0).unwrap();
    assert_eq!(
        events(&mut client),
        [
            Event::Denied {
                operation: Operation::Subscribe,
                topic: "secret".into(),
                reason: DenyReason::NotGranted
            },
            Event::LogRecord {
                source: "nim".into(),
                level: Level::Error,
                unix_ns: 9,
                target: "dhcp".into(),
                message: "no lease".into()
            },
        ]
    );
}

#[test]
fn refusal_ends_the_session() {
    let mut client = Client::new(ClientConfig::new("nim", 1));
    client.connect().unwrap();
    sent(&mut client);
    deliver(
        &mut client,
        &[Message::Refused {
            reason: RefuseReason::WrongService,
        }],
        T0,
    )
    .unwrap();
    assert_eq!(
        events(&mut client),
        [Event::Refused(RefuseReason::WrongService)]
    );
    assert!(!client.is_connected());
}

#[test]
fn protocol_violations_and_garbage_disconnect() {
    let mut client = Client::new(ClientConfig::new("nim", 1));
    client.connect().unwrap();
    assert_eq!(
        deliver(&mut client, &[synchronized("t")], T0),
        Err(ClientError::UnexpectedMessage(Kind::Synchronized)),
        "only Welcome or Refused before Welcome"
    );
    let mut client = connected();
    assert_eq!(
        deliver(&mut client, &[Message::Heartbeat { sequence: 1 }], T0),
        Err(ClientError::UnexpectedMessage(Kind::Heartbeat))
    );
    assert!(!client.is_connected());
    let mut client = connected();
    assert_eq!(
        client.receive(b"garbage!", T0),
        Err(ClientError::Wire(WireError::BadMagic))
    );
    assert!(!client.is_connected());
    assert!(client.transmit().is_empty());
}

#[test]
fn random_input_never_panics_the_client() {
    let mut rng = common::Prng::new(5);
    let stream = common::sample_stream();
    for _ in 0..2000 {
        let mut client = connected();
        client.subscribe("a").unwrap();
        let mut bytes = stream.clone();
        let i = rng.below(bytes.len());
        bytes[i] = rng.next_u64() as u8;
        let _ = client.receive(&bytes, T0);
        client.poll(T0 + Duration::from_secs(60));
        while client.next_event().is_some() {}
    }
}

#[test]
fn requests_need_valid_target_and_operation_names() {
    let mut client = connected();
    for (target, operation) in [("tpm", "Sign"), ("tpm/x", "sign"), ("tpm", "")] {
        assert!(
            matches!(
                client.request(
                    &Call {
                        target,
                        operation,
                        ..call("sign", b"")
                    },
                    T0
                ),
                Err(ClientError::Wire(WireError::InvalidField(_)))
            ),
            "{target}.{operation}"
        );
    }
    assert_eq!(sent(&mut client), []);
}

#[test]
fn each_request_times_out_after_its_own_timeout() {
    let mut client = connected();
    let slow = client
        .request(
            &Call {
                timeout: Duration::from_secs(30),
                ..call("create-device-key", b"")
            },
            T0,
        )
        .unwrap();
    let quick = client.request(&call("sign", b""), T0).unwrap();
    client.poll(T0 + Duration::from_secs(5));
    assert_eq!(
        events(&mut client),
        [Event::RequestFailed {
            id: quick,
            reason: RequestFailure::TimedOut
        }]
    );
    client.poll(T0 + Duration::from_secs(30));
    assert_eq!(
        events(&mut client),
        [Event::RequestFailed {
            id: slow,
            reason: RequestFailure::TimedOut
        }]
    );
}
