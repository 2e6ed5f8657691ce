//! The service side of the bus as a state machine without I/O.
//!
//! The caller owns the transport (the virtio-console port) and the clock:
//! it writes what [`Client::transmit`] returns, passes what it reads to
//! [`Client::receive`], calls [`Client::poll`] when [`Client::next_deadline`]
//! is reached, and takes [`Event`]s out with [`Client::next_event`]. When the
//! transport breaks, or `receive` reports an error, it reopens the transport
//! and calls [`Client::connect`]; everything the service published and
//! subscribed to is restored from the client's own state.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::frame::{HEADER_LEN, Limits};
use crate::message::{Change, DenyReason, Kind, Level, Operation, RefuseReason, Status};
use crate::name::{self, MAX_LOG_TARGET_LEN, MAX_NAME_LEN};
use crate::{Decoder, Message, PROTOCOL_VERSION, WireError};

/// Bytes of a LogRecord frame besides its target and message text: the
/// header, the longest source name, level, time and two string lengths.
/// Cutting a Log to fit this leaves room for the broker to forward it.
const LOG_RECORD_OVERHEAD: usize = HEADER_LEN + 2 + MAX_NAME_LEN + 1 + 8 + 2 + 2;

/// What a client is configured with.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// This service's name, as the host expects it on this connection.
    pub service: String,
    /// This boot's number (from persistent state), sent in Hello.
    pub boot_counter: u64,
    pub limits: Limits,
    /// Requests outstanding at once.
    pub max_pending_requests: usize,
    /// Log records held while the bus is down or slow; older ones are
    /// dropped first.
    pub log_queue_len: usize,
}

impl ClientConfig {
    /// Default limits, 16 pending requests, 256 queued log records.
    pub fn new(service: &str, boot_counter: u64) -> ClientConfig {
        ClientConfig {
            service: String::from(service),
            boot_counter,
            limits: Limits::DEFAULT,
            max_pending_requests: 16,
            log_queue_len: 256,
        }
    }
}

/// Why a client call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// A field breaks the wire rules, or the stream from the broker is
    /// corrupt (then the client is disconnected).
    Wire(WireError),
    /// Topics starting with `@` are the broker's; nobody publishes them.
    BrokerTopic,
    /// Requests need an established session.
    NotConnected,
    /// [`ClientConfig::max_pending_requests`] requests are outstanding.
    TooManyPending,
    /// The broker sent a message only services send, or sent something
    /// before Welcome; the client is disconnected.
    UnexpectedMessage(Kind),
}

impl From<WireError> for ClientError {
    fn from(error: WireError) -> Self {
        ClientError::Wire(error)
    }
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientError::Wire(e) => write!(f, "bus wire error: {e}"),
            ClientError::BrokerTopic => f.write_str("topics starting with @ belong to the broker"),
            ClientError::NotConnected => f.write_str("bus not connected"),
            ClientError::TooManyPending => f.write_str("too many bus requests pending"),
            ClientError::UnexpectedMessage(kind) => {
                write!(f, "unexpected {kind:?} message from the broker")
            }
        }
    }
}

impl core::error::Error for ClientError {}

/// A call of a host operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call<'a> {
    /// The host target (`tpm`).
    pub target: &'a str,
    /// Its operation (`sign`).
    pub operation: &'a str,
    /// The target's version the caller was built against.
    pub version: u16,
    /// The encoded request.
    pub payload: &'a [u8],
    /// How long to wait for the answer before [`RequestFailure::TimedOut`].
    pub timeout: Duration,
}

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    TimedOut,
    /// The connection ended first; the request may or may not have run.
    Disconnected,
}

/// Something that happened on the bus, for the service to handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The broker accepted our Hello; subscriptions and publications have
    /// been sent again.
    Connected { heartbeat_interval: Duration },
    /// The broker refused our Hello; the connection is unusable.
    Refused(RefuseReason),
    /// A new item in a subscribed table.
    Created {
        topic: String,
        key: String,
        value: Vec<u8>,
    },
    /// An item of a subscribed table has a new value.
    Modified {
        topic: String,
        key: String,
        value: Vec<u8>,
    },
    /// An item left a subscribed table; `last_value` is what it held.
    Deleted {
        topic: String,
        key: String,
        last_value: Vec<u8>,
    },
    /// The mirror of `topic` now holds the broker's whole table.
    Synchronized { topic: String },
    /// The answer to a request.
    Response {
        id: u32,
        status: Status,
        payload: Vec<u8>,
    },
    /// A request that will get no answer.
    RequestFailed { id: u32, reason: RequestFailure },
    /// The broker refused a table operation.
    Denied {
        operation: Operation,
        topic: String,
        reason: DenyReason,
    },
    /// A log record of another service (we subscribed to the log stream).
    LogRecord {
        source: String,
        level: Level,
        unix_ns: u64,
        target: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    Disconnected,
    AwaitingWelcome,
    Established {
        heartbeat_interval: Duration,
        next_heartbeat: Option<Duration>,
    },
}

/// Our copy of a subscribed table.
#[derive(Debug)]
struct Mirror {
    items: BTreeMap<String, Vec<u8>>,
    /// Keys the broker has sent since (re)subscribing, until its
    /// Synchronized; then items not among them are deleted. `None` once
    /// synchronized.
    seen: Option<BTreeSet<String>>,
}

/// A table we publish, kept so it can be sent again after reconnecting.
#[derive(Debug, Default)]
struct Publication {
    items: BTreeMap<String, Vec<u8>>,
    /// The service said it has published everything of this topic.
    synchronized: bool,
}

/// The bus client. See the module documentation.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    decoder: Decoder,
    session: Session,
    output: Vec<u8>,
    events: VecDeque<Event>,
    publications: BTreeMap<String, Publication>,
    mirrors: BTreeMap<String, Mirror>,
    /// Outstanding requests and their deadlines.
    pending: BTreeMap<u32, Duration>,
    next_request_id: u32,
    heartbeat_sequence: u64,
    logs: VecDeque<Message>,
    dropped_logs: u64,
}

impl Client {
    pub fn new(config: ClientConfig) -> Client {
        Client {
            decoder: Decoder::new(config.limits),
            config,
            session: Session::Disconnected,
            output: Vec::new(),
            events: VecDeque::new(),
            publications: BTreeMap::new(),
            mirrors: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_request_id: 1,
            heartbeat_sequence: 0,
            logs: VecDeque::new(),
            dropped_logs: 0,
        }
    }

    /// Starts a session on a fresh transport: forgets unsent bytes and
    /// partial input, fails outstanding requests, and queues Hello.
    pub fn connect(&mut self) -> Result<(), ClientError> {
        self.disconnected();
        let hello = Message::Hello {
            service: self.config.service.clone(),
            protocol: PROTOCOL_VERSION,
            boot_counter: self.config.boot_counter,
        };
        hello.encode(&self.config.limits, &mut self.output)?;
        self.session = Session::AwaitingWelcome;
        Ok(())
    }

    /// Records that the transport is gone. Mirrors keep their items (the
    /// service keeps working on the last known state) and are reconciled
    /// when the next session's dump arrives.
    pub fn disconnected(&mut self) {
        self.session = Session::Disconnected;
        self.decoder.reset();
        self.output.clear();
        for id in core::mem::take(&mut self.pending).into_keys() {
            self.events.push_back(Event::RequestFailed {
                id,
                reason: RequestFailure::Disconnected,
            });
        }
    }

    /// Whether the broker has welcomed us on the current transport.
    pub fn is_connected(&self) -> bool {
        matches!(self.session, Session::Established { .. })
    }

    /// Sets `key` of `topic` to `value`. Kept locally and sent now if
    /// connected, else after the next Welcome.
    pub fn publish(&mut self, topic: &str, key: &str, value: &[u8]) -> Result<(), ClientError> {
        if name::is_broker_topic(topic) {
            return Err(ClientError::BrokerTopic);
        }
        let message = Message::Publish {
            topic: String::from(topic),
            key: String::from(key),
            value: Vec::from(value),
        };
        message.validate(&self.config.limits)?;
        // Subscribers get the item in an Update, one byte (the change)
        // longer than the Publish.
        if message.buffer_len() + 1 > self.config.limits.frame_len() {
            return Err(ClientError::Wire(WireError::FrameTooLarge));
        }
        let publication = self.publications.entry(String::from(topic)).or_default();
        if publication.items.get(key).map(Vec::as_slice) == Some(value) {
            return Ok(());
        }
        publication
            .items
            .insert(String::from(key), Vec::from(value));
        self.send_if_connected(&message)
    }

    /// Removes `key` from `topic`. Sent even for keys this boot never
    /// published: the broker may still hold them from a previous boot.
    pub fn delete(&mut self, topic: &str, key: &str) -> Result<(), ClientError> {
        if name::is_broker_topic(topic) {
            return Err(ClientError::BrokerTopic);
        }
        let message = Message::Delete {
            topic: String::from(topic),
            key: String::from(key),
        };
        message.validate(&self.config.limits)?;
        if let Some(publication) = self.publications.get_mut(topic) {
            publication.items.remove(key);
        }
        self.send_if_connected(&message)
    }

    /// Says this service has published everything of `topic` it means to:
    /// the broker then drops items retained from before our connection that
    /// we have not published again. Repeated after every reconnection.
    pub fn signal_synchronized(&mut self, topic: &str) -> Result<(), ClientError> {
        if name::is_broker_topic(topic) {
            return Err(ClientError::BrokerTopic);
        }
        let message = Message::Synchronized {
            topic: String::from(topic),
        };
        message.validate(&self.config.limits)?;
        self.publications
            .entry(String::from(topic))
            .or_default()
            .synchronized = true;
        self.send_if_connected(&message)
    }

    /// Items of a topic we publish.
    pub fn published(&self, topic: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.publications.get(topic).map(|p| &p.items)
    }

    /// Mirrors `topic` (or receives the log stream for
    /// [`LOG_TOPIC`](crate::LOG_TOPIC)); lasts for the client's life.
    pub fn subscribe(&mut self, topic: &str) -> Result<(), ClientError> {
        let message = Message::Subscribe {
            topic: String::from(topic),
        };
        message.validate(&self.config.limits)?;
        if self.mirrors.contains_key(topic) {
            return Ok(());
        }
        self.mirrors.insert(
            String::from(topic),
            Mirror {
                items: BTreeMap::new(),
                seen: Some(BTreeSet::new()),
            },
        );
        self.send_if_connected(&message)
    }

    /// The mirror of a subscribed topic.
    pub fn table(&self, topic: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.mirrors.get(topic).map(|m| &m.items)
    }

    /// Whether the mirror of `topic` has been reconciled with the broker in
    /// the current session.
    pub fn is_synchronized(&self, topic: &str) -> bool {
        self.is_connected() && self.mirrors.get(topic).is_some_and(|m| m.seen.is_none())
    }

    /// Sends `call`; the answer comes as an [`Event::Response`] or
    /// [`Event::RequestFailed`] with the returned id.
    pub fn request(&mut self, call: &Call<'_>, now: Duration) -> Result<u32, ClientError> {
        if !self.is_connected() {
            return Err(ClientError::NotConnected);
        }
        if self.pending.len() >= self.config.max_pending_requests {
            return Err(ClientError::TooManyPending);
        }
        let mut id = self.next_request_id;
        while id == 0 || self.pending.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        let message = Message::Request {
            id,
            target: String::from(call.target),
            operation: String::from(call.operation),
            version: call.version,
            payload: Vec::from(call.payload),
        };
        message.encode(&self.config.limits, &mut self.output)?;
        self.next_request_id = id.wrapping_add(1);
        self.pending.insert(id, now.saturating_add(call.timeout));
        Ok(id)
    }

    /// Queues a log record. Never fails: the target is cleaned and both
    /// it and the message are cut to the limits; when the queue is full the
    /// oldest record is dropped and counted.
    pub fn log(&mut self, level: Level, unix_ns: u64, target: &str, message: &str) {
        let mut clean_target: String = target
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        truncate_at_char(&mut clean_target, MAX_LOG_TARGET_LEN);
        let frame_room = self
            .config
            .limits
            .frame_len()
            .saturating_sub(LOG_RECORD_OVERHEAD + clean_target.len());
        let mut message = String::from(message);
        truncate_at_char(
            &mut message,
            self.config.limits.log_message_len().min(frame_room),
        );
        if self.logs.len() >= self.config.log_queue_len.max(1) {
            self.logs.pop_front();
            self.dropped_logs += 1;
        }
        self.logs.push_back(Message::Log {
            level,
            unix_ns,
            target: clean_target,
            message,
        });
    }

    /// Log records dropped because the queue was full, since creation.
    pub fn dropped_logs(&self) -> u64 {
        self.dropped_logs
    }

    /// Log records waiting to be sent.
    pub fn queued_logs(&self) -> usize {
        self.logs.len()
    }

    /// Bytes to write to the transport; call [`Client::transmitted`] with
    /// how many were written. Queued log records are moved in while the
    /// unsent bytes are below one frame, so a stalled transport holds at
    /// most about one frame of logs outside the bounded queue.
    pub fn transmit(&mut self) -> &[u8] {
        if self.is_connected() {
            while self.output.len() < self.config.limits.frame_len() {
                let Some(record) = self.logs.pop_front() else {
                    break;
                };
                if record
                    .encode(&self.config.limits, &mut self.output)
                    .is_err()
                {
                    // `log` cut the record to the limits, so this cannot
                    // happen; the record is dropped rather than looping.
                    self.dropped_logs += 1;
                }
            }
        }
        &self.output
    }

    /// Forgets the first `count` bytes returned by [`Client::transmit`].
    pub fn transmitted(&mut self, count: usize) {
        self.output.drain(..count.min(self.output.len()));
    }

    /// Takes bytes read from the transport. On error the client is
    /// disconnected and the caller must reconnect.
    pub fn receive(&mut self, bytes: &[u8], now: Duration) -> Result<(), ClientError> {
        let mut messages = Vec::new();
        if let Err(error) = self.decoder.feed(bytes, |m| messages.push(m)) {
            self.disconnected();
            return Err(ClientError::Wire(error));
        }
        for message in messages {
            if let Err(error) = self.handle(message, now) {
                self.disconnected();
                return Err(error);
            }
        }
        Ok(())
    }

    /// The next event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Runs what is due at `now`: heartbeats and request timeouts.
    pub fn poll(&mut self, now: Duration) {
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|&(_, deadline)| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.pending.remove(&id);
            self.events.push_back(Event::RequestFailed {
                id,
                reason: RequestFailure::TimedOut,
            });
        }
        if let Session::Established {
            heartbeat_interval,
            next_heartbeat: Some(due),
        } = self.session
            && due <= now
        {
            let heartbeat = Message::Heartbeat {
                sequence: self.heartbeat_sequence,
            };
            if heartbeat
                .encode(&self.config.limits, &mut self.output)
                .is_ok()
            {
                self.heartbeat_sequence += 1;
            }
            // Fixed rate, but after a long stall the next one is a full
            // interval away instead of a burst of catch-up beats.
            let mut next = due.saturating_add(heartbeat_interval);
            if next <= now {
                next = now.saturating_add(heartbeat_interval);
            }
            self.session = Session::Established {
                heartbeat_interval,
                next_heartbeat: Some(next),
            };
        }
    }

    /// When [`Client::poll`] next has something to do.
    pub fn next_deadline(&self) -> Option<Duration> {
        let heartbeat = match self.session {
            Session::Established { next_heartbeat, .. } => next_heartbeat,
            _ => None,
        };
        let request = self.pending.values().min().copied();
        match (heartbeat, request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn send_if_connected(&mut self, message: &Message) -> Result<(), ClientError> {
        if self.is_connected() {
            message.encode(&self.config.limits, &mut self.output)?;
        }
        Ok(())
    }

    fn handle(&mut self, message: Message, now: Duration) -> Result<(), ClientError> {
        if self.session == Session::AwaitingWelcome {
            return match message {
                Message::Welcome {
                    heartbeat_interval_ms,
                    ..
                } => self.welcomed(Duration::from_millis(heartbeat_interval_ms.into()), now),
                Message::Refused { reason } => {
                    self.disconnected();
                    self.events.push_back(Event::Refused(reason));
                    Ok(())
                }
                other => Err(ClientError::UnexpectedMessage(other.kind())),
            };
        }
        if !self.is_connected() {
            // Bytes that arrive after we gave up on the transport.
            return Ok(());
        }
        match message {
            Message::Update {
                change,
                topic,
                key,
                value,
            } => {
                self.apply_update(change, topic, key, value);
                Ok(())
            }
            Message::Synchronized { topic } => {
                self.apply_synchronized(topic);
                Ok(())
            }
            Message::Response {
                id,
                status,
                payload,
            } => {
                if self.pending.remove(&id).is_some() {
                    self.events.push_back(Event::Response {
                        id,
                        status,
                        payload,
                    });
                }
                Ok(())
            }
            Message::Denied {
                operation,
                topic,
                reason,
            } => {
                self.events.push_back(Event::Denied {
                    operation,
                    topic,
                    reason,
                });
                Ok(())
            }
            Message::LogRecord {
                source,
                level,
                unix_ns,
                target,
                message,
            } => {
                self.events.push_back(Event::LogRecord {
                    source,
                    level,
                    unix_ns,
                    target,
                    message,
                });
                Ok(())
            }
            other => Err(ClientError::UnexpectedMessage(other.kind())),
        }
    }

    /// Sends again everything the broker must know about us: our
    /// subscriptions (each mirror starts reconciling) and our publications.
    fn welcomed(&mut self, heartbeat_interval: Duration, now: Duration) -> Result<(), ClientError> {
        self.session = Session::Established {
            heartbeat_interval,
            next_heartbeat: (!heartbeat_interval.is_zero())
                .then(|| now.saturating_add(heartbeat_interval)),
        };
        let limits = self.config.limits;
        for (topic, mirror) in &mut self.mirrors {
            mirror.seen = Some(BTreeSet::new());
            Message::Subscribe {
                topic: topic.clone(),
            }
            .encode(&limits, &mut self.output)?;
        }
        for (topic, publication) in &self.publications {
            for (key, value) in &publication.items {
                Message::Publish {
                    topic: topic.clone(),
                    key: key.clone(),
                    value: value.clone(),
                }
                .encode(&limits, &mut self.output)?;
            }
            if publication.synchronized {
                Message::Synchronized {
                    topic: topic.clone(),
                }
                .encode(&limits, &mut self.output)?;
            }
        }
        self.events
            .push_back(Event::Connected { heartbeat_interval });
        Ok(())
    }

    /// The mirror decides which event an update is: the broker replays a
    /// whole table as Created after a reconnection, and items we already
    /// hold must not look new to the service.
    fn apply_update(&mut self, change: Change, topic: String, key: String, value: Vec<u8>) {
        let Some(mirror) = self.mirrors.get_mut(&topic) else {
            return;
        };
        if change == Change::Deleted {
            if let Some(seen) = &mut mirror.seen {
                seen.remove(&key);
            }
            if let Some(last_value) = mirror.items.remove(&key) {
                self.events.push_back(Event::Deleted {
                    topic,
                    key,
                    last_value,
                });
            }
            return;
        }
        if let Some(seen) = &mut mirror.seen {
            seen.insert(key.clone());
        }
        match mirror.items.get_mut(&key) {
            Some(held) if *held == value => {}
            Some(held) => {
                held.clone_from(&value);
                self.events.push_back(Event::Modified { topic, key, value });
            }
            None => {
                mirror.items.insert(key.clone(), value.clone());
                self.events.push_back(Event::Created { topic, key, value });
            }
        }
    }

    fn apply_synchronized(&mut self, topic: String) {
        let Some(mirror) = self.mirrors.get_mut(&topic) else {
            return;
        };
        if let Some(seen) = mirror.seen.take() {
            let gone: Vec<String> = mirror
                .items
                .keys()
                .filter(|k| !seen.contains(*k))
                .cloned()
                .collect();
            for key in gone {
                if let Some(last_value) = mirror.items.remove(&key) {
                    self.events.push_back(Event::Deleted {
                        topic: topic.clone(),
                        key,
                        last_value,
                    });
                }
            }
        }
        self.events.push_back(Event::Synchronized { topic });
    }
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
