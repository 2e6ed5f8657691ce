//! The broker: one reader and one writer thread per connection around a
//! shared state of tables, connections and service records.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::io::{self, ErrorKind};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use evebus::name::{self, LOG_TOPIC};
use evebus::{
    Change, Decoder, DenyReason, Kind, Level, Limits, Message, Operation, PROTOCOL_VERSION,
    RefuseReason, Status, WireError,
};

use hostops::TargetSpec;

use crate::persist::{self, LoadError};
use crate::policy::Policy;
use crate::rpc::RpcHandler;
use crate::stream::BusStream;
use crate::table::{Table, TableFull};

/// How the broker runs.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub limits: Limits,
    /// Sent in Welcome: how often services beat.
    pub heartbeat_interval: Duration,
    /// Items one topic may hold.
    pub max_items_per_topic: usize,
    /// Frames (or whole table dumps) queued for one connection. A
    /// subscriber that lets its queue fill is disconnected: it gets the
    /// whole table again when it reconnects, which is cheaper and more
    /// honest than an unbounded queue. Log records are dropped instead.
    pub outgoing_queue_len: usize,
    /// Log records kept while no one subscribes to the log stream; the
    /// first subscriber gets them.
    pub log_backlog_len: usize,
    /// Where persistent topics are kept; `None` disables persistence.
    pub persist_dir: Option<PathBuf>,
    /// Topics written to `persist_dir` on every change and loaded at start.
    pub persistent_topics: BTreeSet<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            limits: Limits::DEFAULT,
            heartbeat_interval: Duration::from_secs(1),
            max_items_per_topic: 4096,
            outgoing_queue_len: 1024,
            log_backlog_len: 1024,
            persist_dir: None,
            persistent_topics: BTreeSet::new(),
        }
    }
}

/// A log record from a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub service: String,
    pub level: Level,
    pub unix_ns: u64,
    pub target: String,
    pub message: String,
}

/// Where the broker passes every log record (the host log).
pub trait LogSink: Send + Sync {
    fn log(&self, entry: &LogEntry);
}

impl<F: Fn(&LogEntry) + Send + Sync> LogSink for F {
    fn log(&self, entry: &LogEntry) {
        self(entry)
    }
}

/// The default sink: the host's `log` facade, target `bus`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostLog;

impl LogSink for HostLog {
    fn log(&self, entry: &LogEntry) {
        let level = match entry.level {
            Level::Error => log::Level::Error,
            Level::Warn => log::Level::Warn,
            Level::Info => log::Level::Info,
            Level::Debug => log::Level::Debug,
            Level::Trace => log::Level::Trace,
        };
        log::log!(target: "bus", level, "{} {}: {}", entry.service, entry.target, entry.message);
    }
}

/// What the broker knows about a service's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceStatus {
    /// A welcomed connection is up.
    pub connected: bool,
    /// From the latest Hello.
    pub boot_counter: Option<u64>,
    /// When the latest Hello was welcomed.
    pub connected_at: Option<Instant>,
    /// The latest heartbeat: when it arrived and its sequence number.
    pub last_heartbeat: Option<(Instant, u64)>,
}

/// Why [`Broker::new`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0:?} is not a valid topic to persist")]
    InvalidTopic(String),
    #[error("creating the persistence directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("loading a persisted table")]
    Load(#[from] LoadError),
}

/// Why [`Broker::publish_own`] refused an item.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OwnPublishError {
    #[error(
        "{0:?} is not a table of the broker: the host publishes only topics starting with @ (not the log stream)"
    )]
    NotABrokerTable(String),
    #[error("{0:?} is not a valid key")]
    InvalidKey(String),
    #[error("the item of {topic} under {key} would not fit an update frame")]
    TooLarge { topic: String, key: String },
    #[error("{0} holds as many items as the broker allows")]
    TableFull(String),
}

/// Why [`Broker::attach`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("service {0} is not in the policy")]
    UnknownService(String),
    #[error("cloning the stream")]
    Clone(#[source] io::Error),
    #[error("starting a connection thread")]
    Spawn(#[source] io::Error),
}

/// The bus broker. Cheap to clone; all clones are the same broker.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("policy", &self.inner.policy)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A registered host target: what it serves and its handler.
type Served = (&'static TargetSpec, Arc<dyn RpcHandler>);

struct Inner {
    policy: Policy,
    config: BrokerConfig,
    state: Mutex<State>,
    handlers: RwLock<BTreeMap<String, Served>>,
    sink: RwLock<Arc<dyn LogSink>>,
}

#[derive(Default)]
struct State {
    tables: BTreeMap<String, Table>,
    /// The welcomed connection of each service.
    connections: BTreeMap<String, Connection>,
    services: BTreeMap<String, ServiceStatus>,
    log_backlog: VecDeque<Vec<u8>>,
    dropped_logs: u64,
    next_connection_id: u64,
}

type Closer = Arc<dyn Fn() + Send + Sync>;

struct Connection {
    id: u64,
    outgoing: SyncSender<Vec<u8>>,
    close: Closer,
    subscriptions: BTreeSet<String>,
    /// Closed for not reading; further sends are pointless.
    closing: bool,
}

impl Connection {
    /// Queues a frame the peer must get; a peer whose queue is full is
    /// disconnected (it resynchronises on reconnection).
    fn deliver(&mut self, service: &str, frame: Vec<u8>) {
        if self.closing {
            return;
        }
        if let Err(TrySendError::Full(_)) = self.outgoing.try_send(frame) {
            log::warn!("bus: {service} is not reading its messages; disconnecting it");
            self.closing = true;
            (self.close)();
        }
    }
}

impl Broker {
    /// A broker enforcing `policy`, with persisted tables loaded (their
    /// items retained until their publishers confirm them).
    pub fn new(policy: Policy, config: BrokerConfig) -> Result<Broker, OpenError> {
        let mut state = State::default();
        if let Some(dir) = &config.persist_dir {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
                path: dir.clone(),
                source,
            })?;
            for topic in &config.persistent_topics {
                if !name::valid_topic(topic) || name::is_broker_topic(topic) {
                    return Err(OpenError::InvalidTopic(topic.clone()));
                }
                if let Some(items) = persist::load(dir, topic, &config.limits)? {
                    state.tables.insert(topic.clone(), Table::retained(items));
                }
            }
        }
        Ok(Broker {
            inner: Arc::new(Inner {
                policy,
                config,
                state: Mutex::new(state),
                handlers: RwLock::new(BTreeMap::new()),
                sink: RwLock::new(Arc::new(HostLog)),
            }),
        })
    }

    /// Replaces the log sink ([`HostLog`] by default).
    pub fn set_log_sink(&self, sink: impl LogSink + 'static) {
        *self
            .inner
            .sink
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(sink);
    }

    /// Serves the target `spec` describes with `handler`, replacing any
    /// other handler of that target.
    pub fn register(&self, spec: &'static TargetSpec, handler: Arc<dyn RpcHandler>) {
        self.inner
            .handlers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec.name.to_owned(), (spec, handler));
    }

    /// Stops serving `target`: later calls are answered `NoSuchTarget`,
    /// and the broker no longer holds the handler (a call already running
    /// finishes).
    pub fn unregister(&self, target: &str) {
        self.inner
            .handlers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(target);
    }

    /// Serves `stream`, which belongs to `service` (the host knows which
    /// socket is whose VM); its Hello must name that service. A welcomed
    /// connection replaces the service's previous one.
    pub fn attach<S: BusStream>(&self, service: &str, stream: S) -> Result<(), AttachError> {
        if !self.inner.policy.knows(service) {
            return Err(AttachError::UnknownService(service.to_owned()));
        }
        let writer = stream.clone_stream().map_err(AttachError::Clone)?;
        let closer_stream = stream.clone_stream().map_err(AttachError::Clone)?;
        let close: Closer = Arc::new(move || closer_stream.close());
        let (outgoing, queue) = mpsc::sync_channel(self.inner.config.outgoing_queue_len.max(1));
        let id = {
            let mut state = self.inner.lock();
            state.next_connection_id += 1;
            state.next_connection_id
        };
        let session = Session {
            inner: Arc::clone(&self.inner),
            service: service.to_owned(),
            id,
            outgoing,
            close,
            welcomed: false,
        };
        let writer_close = Arc::clone(&session.close);
        thread::Builder::new()
            .name(format!("bus-tx-{service}"))
            .spawn(move || write_frames(writer, queue, writer_close))
            .map_err(AttachError::Spawn)?;
        thread::Builder::new()
            .name(format!("bus-rx-{service}"))
            .spawn(move || session.run(stream))
            .map_err(AttachError::Spawn)?;
        Ok(())
    }

    /// Closes the service's connection, if any (e.g. before restarting it).
    pub fn disconnect(&self, service: &str) {
        if let Some(connection) = self.inner.lock().connections.get(service) {
            (connection.close)();
        }
    }

    /// What the broker knows of `service`; `None` if it never said Hello.
    pub fn status(&self, service: &str) -> Option<ServiceStatus> {
        self.inner.lock().services.get(service).copied()
    }

    /// When `service`'s latest heartbeat arrived.
    pub fn last_heartbeat(&self, service: &str) -> Option<Instant> {
        self.status(service)?.last_heartbeat.map(|(at, _)| at)
    }

    /// Sets item `key` of one of the broker's own tables (a topic starting
    /// with `@`, which no service publishes: what the host itself tells
    /// the services, such as the device's facts); subscribers see the
    /// change as if a publisher had made it.
    pub fn publish_own(
        &self,
        topic: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), OwnPublishError> {
        if !name::is_broker_topic(topic) || !name::valid_topic(topic) || topic == LOG_TOPIC {
            return Err(OwnPublishError::NotABrokerTable(topic.to_owned()));
        }
        if !name::valid_key(key) {
            return Err(OwnPublishError::InvalidKey(key.to_owned()));
        }
        let empty_update = Message::Update {
            change: Change::Created,
            topic: topic.to_owned(),
            key: key.to_owned(),
            value: Vec::new(),
        };
        if empty_update.buffer_len() + value.len() > self.inner.config.limits.frame_len() {
            return Err(OwnPublishError::TooLarge {
                topic: topic.to_owned(),
                key: key.to_owned(),
            });
        }
        let mut state = self.inner.lock();
        let table = state.tables.entry(topic.to_owned()).or_default();
        match table.publish(key, value.clone(), self.inner.config.max_items_per_topic) {
            Err(TableFull) => Err(OwnPublishError::TableFull(topic.to_owned())),
            Ok(None) => Ok(()),
            Ok(Some(change)) => {
                let update = Message::Update {
                    change,
                    topic: topic.to_owned(),
                    key: key.to_owned(),
                    value,
                };
                fan_out(&self.inner, &mut state, topic, &update);
                Ok(())
            }
        }
    }

    /// The current items of `topic`.
    pub fn table(&self, topic: &str) -> BTreeMap<String, Vec<u8>> {
        self.inner
            .lock()
            .tables
            .get(topic)
            .map(|t| t.items().map(|(k, v)| (k.to_owned(), v.to_vec())).collect())
            .unwrap_or_default()
    }

    /// Log records not forwarded to log subscribers (backlog overflow or a
    /// subscriber's full queue); every record still reached the sink.
    pub fn dropped_logs(&self) -> u64 {
        self.inner.lock().dropped_logs
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn encode(&self, message: &Message) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(message.buffer_len());
        message.encode(&self.config.limits, &mut out)?;
        Ok(out)
    }

    fn persist(&self, state: &State, topic: &str) {
        let Some(dir) = &self.config.persist_dir else {
            return;
        };
        if !self.config.persistent_topics.contains(topic) {
            return;
        }
        let empty = Table::default();
        let table = state.tables.get(topic).unwrap_or(&empty);
        if let Err(e) = persist::save(dir, topic, table, &self.config.limits) {
            log::error!("bus: persisting {topic}: {e}");
        }
    }
}

/// Why a connection ended.
enum End {
    PeerClosed,
    Read(io::Error),
    Malformed(WireError),
    Refused(RefuseReason),
    Violation(Kind),
    NotReading,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::PeerClosed => f.write_str("closed"),
            End::Read(e) => write!(f, "read error: {e}"),
            End::Malformed(e) => write!(f, "dropped for a malformed frame: {e}"),
            End::Refused(reason) => write!(f, "refused: {reason:?}"),
            End::Violation(kind) => write!(f, "dropped for sending {kind:?}"),
            End::NotReading => f.write_str("dropped for not reading"),
        }
    }
}

/// One connection, run by its reader thread.
struct Session {
    inner: Arc<Inner>,
    service: String,
    id: u64,
    outgoing: SyncSender<Vec<u8>>,
    close: Closer,
    welcomed: bool,
}

fn write_frames<S: BusStream>(mut stream: S, queue: Receiver<Vec<u8>>, close: Closer) {
    for frame in queue {
        if stream
            .write_all(&frame)
            .and_then(|()| stream.flush())
            .is_err()
        {
            break;
        }
    }
    close();
}

impl Session {
    fn run<S: BusStream>(mut self, mut stream: S) {
        let mut decoder = Decoder::new(self.inner.config.limits);
        let mut buf = vec![0; 16 << 10];
        let end = 'read: loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break End::PeerClosed,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => break End::Read(e),
            };
            // Frames before a corrupt one in the same chunk still count.
            let mut input = &buf[..n];
            while !input.is_empty() {
                let (consumed, message) = match decoder.decode(input) {
                    Ok(decoded) => decoded,
                    Err(e) => break 'read End::Malformed(e),
                };
                input = &input[consumed..];
                if let Some(message) = message
                    && let Err(end) = self.handle(message)
                {
                    break 'read end;
                }
            }
        };
        self.finish(end);
    }

    fn finish(self, end: End) {
        match &end {
            End::PeerClosed => log::info!("bus: {} {end}", self.service),
            _ => log::warn!("bus: {} {end}", self.service),
        }
        let mut state = self.inner.lock();
        if state
            .connections
            .get(&self.service)
            .is_some_and(|c| c.id == self.id)
        {
            state.connections.remove(&self.service);
            if let Some(status) = state.services.get_mut(&self.service) {
                status.connected = false;
            }
        }
        drop(state);
        // After a refusal or the peer's own close, the writer flushes what
        // is queued and closes the stream when the queue ends (a peer that
        // has gone entirely makes those writes fail at once); a broken or
        // hostile peer is cut off now.
        if !matches!(end, End::Refused(_) | End::PeerClosed) {
            (self.close)();
        }
    }

    /// Queues a frame for our own peer.
    fn reply(&self, message: &Message) -> Result<(), End> {
        let frame = match self.inner.encode(message) {
            Ok(frame) => frame,
            Err(e) => {
                log::error!("bus: cannot encode a reply to {}: {e}", self.service);
                return Ok(());
            }
        };
        match self.outgoing.try_send(frame) {
            Err(TrySendError::Full(_)) => Err(End::NotReading),
            _ => Ok(()),
        }
    }

    fn handle(&mut self, message: Message) -> Result<(), End> {
        if !self.welcomed {
            return match message {
                Message::Hello {
                    service,
                    protocol,
                    boot_counter,
                } => self.hello(&service, protocol, boot_counter),
                _ => self.refuse(RefuseReason::ExpectedHello),
            };
        }
        match message {
            Message::Subscribe { topic } => self.subscribe(topic),
            Message::Publish { topic, key, value } => self.publish(topic, key, value),
            Message::Delete { topic, key } => self.delete(topic, key),
            Message::Synchronized { topic } => self.synchronized(topic),
            Message::Heartbeat { sequence } => {
                let mut state = self.inner.lock();
                if let Some(status) = state.services.get_mut(&self.service) {
                    status.last_heartbeat = Some((Instant::now(), sequence));
                }
                Ok(())
            }
            Message::Log {
                level,
                unix_ns,
                target,
                message,
            } => {
                self.log(LogEntry {
                    service: self.service.clone(),
                    level,
                    unix_ns,
                    target,
                    message,
                });
                Ok(())
            }
            Message::Request {
                id,
                target,
                operation,
                version,
                payload,
            } => self.request(id, &target, &operation, version, &payload),
            other => Err(End::Violation(other.kind())),
        }
    }

    fn refuse(&self, reason: RefuseReason) -> Result<(), End> {
        self.reply(&Message::Refused { reason })?;
        Err(End::Refused(reason))
    }

    /// Welcomes the service: its connection replaces any older one, and
    /// its tables' items are retained until it confirms them.
    fn hello(&mut self, service: &str, protocol: u16, boot_counter: u64) -> Result<(), End> {
        if service != self.service {
            log::warn!("bus: connection of {} says it is {service}", self.service);
            return self.refuse(RefuseReason::WrongService);
        }
        if protocol != PROTOCOL_VERSION {
            return self.refuse(RefuseReason::UnsupportedVersion);
        }
        let interval_ms =
            u32::try_from(self.inner.config.heartbeat_interval.as_millis()).unwrap_or(u32::MAX);
        let mut state = self.inner.lock();
        let replaced = state.connections.insert(
            self.service.clone(),
            Connection {
                id: self.id,
                outgoing: self.outgoing.clone(),
                close: Arc::clone(&self.close),
                subscriptions: BTreeSet::new(),
                closing: false,
            },
        );
        if let Some(old) = replaced {
            (old.close)();
        }
        let status = state
            .services
            .entry(self.service.clone())
            .or_insert(ServiceStatus {
                connected: false,
                boot_counter: None,
                connected_at: None,
                last_heartbeat: None,
            });
        status.connected = true;
        status.boot_counter = Some(boot_counter);
        status.connected_at = Some(Instant::now());
        for topic in self.inner.policy.published_by(&self.service) {
            if let Some(table) = state.tables.get_mut(topic) {
                table.retain_all();
            }
        }
        drop(state);
        self.welcomed = true;
        log::info!("bus: {} connected (boot {boot_counter})", self.service);
        self.reply(&Message::Welcome {
            protocol: PROTOCOL_VERSION,
            heartbeat_interval_ms: interval_ms,
        })
    }

    fn deny(&self, operation: Operation, topic: String, reason: DenyReason) -> Result<(), End> {
        log::warn!(
            "bus: denied {operation:?} of {topic} to {}: {reason:?}",
            self.service
        );
        self.reply(&Message::Denied {
            operation,
            topic,
            reason,
        })
    }

    /// Sends the current table (or the log backlog), then Synchronized, as
    /// one queue entry so a large table cannot overflow the queue.
    fn subscribe(&self, topic: String) -> Result<(), End> {
        if !self.inner.policy.may_subscribe(&self.service, &topic) {
            return self.deny(Operation::Subscribe, topic, DenyReason::NotGranted);
        }
        let mut state = self.inner.lock();
        let mut dump = Vec::new();
        if topic == LOG_TOPIC {
            dump.extend(state.log_backlog.drain(..).flatten());
        } else if let Some(table) = state.tables.get(&topic) {
            for (key, value) in table.items() {
                let update = Message::Update {
                    change: Change::Created,
                    topic: topic.clone(),
                    key: key.to_owned(),
                    value: value.to_vec(),
                };
                // Publish admitted only items whose Update fits.
                if let Ok(frame) = self.inner.encode(&update) {
                    dump.extend(frame);
                }
            }
        }
        if let Ok(frame) = self.inner.encode(&Message::Synchronized {
            topic: topic.clone(),
        }) {
            dump.extend(frame);
        }
        let Some(connection) = state.connections.get_mut(&self.service) else {
            return Ok(());
        };
        connection.subscriptions.insert(topic);
        connection.deliver(&self.service, dump);
        Ok(())
    }

    fn publish(&self, topic: String, key: String, value: Vec<u8>) -> Result<(), End> {
        if !self.inner.policy.may_publish(&self.service, &topic) {
            return self.deny(Operation::Publish, topic, DenyReason::NotGranted);
        }
        let empty_update = Message::Update {
            change: Change::Created,
            topic: topic.clone(),
            key: key.clone(),
            value: Vec::new(),
        };
        if empty_update.buffer_len() + value.len() > self.inner.config.limits.frame_len() {
            return self.deny(Operation::Publish, topic, DenyReason::TooLarge);
        }
        let mut state = self.inner.lock();
        let max_items = self.inner.config.max_items_per_topic;
        let table = state.tables.entry(topic.clone()).or_default();
        match table.publish(&key, value.clone(), max_items) {
            Err(TableFull) => {
                drop(state);
                self.deny(Operation::Publish, topic, DenyReason::TableFull)
            }
            Ok(None) => Ok(()),
            Ok(Some(change)) => {
                self.inner.persist(&state, &topic);
                let update = Message::Update {
                    change,
                    topic: topic.clone(),
                    key,
                    value,
                };
                fan_out(&self.inner, &mut state, &topic, &update);
                Ok(())
            }
        }
    }

    fn delete(&self, topic: String, key: String) -> Result<(), End> {
        if !self.inner.policy.may_publish(&self.service, &topic) {
            return self.deny(Operation::Delete, topic, DenyReason::NotGranted);
        }
        let mut state = self.inner.lock();
        if state.tables.get_mut(&topic).is_some_and(|t| t.delete(&key)) {
            self.inner.persist(&state, &topic);
            let deleted = Message::Update {
                change: Change::Deleted,
                topic: topic.clone(),
                key,
                value: Vec::new(),
            };
            fan_out(&self.inner, &mut state, &topic, &deleted);
        }
        Ok(())
    }

    /// The publisher has published everything: items it did not confirm
    /// since connecting are deleted.
    fn synchronized(&self, topic: String) -> Result<(), End> {
        if !self.inner.policy.may_publish(&self.service, &topic) {
            return self.deny(Operation::Synchronized, topic, DenyReason::NotGranted);
        }
        let mut state = self.inner.lock();
        let gone = state
            .tables
            .get_mut(&topic)
            .map(Table::drop_retained)
            .unwrap_or_default();
        if gone.is_empty() {
            return Ok(());
        }
        self.inner.persist(&state, &topic);
        for key in gone {
            let deleted = Message::Update {
                change: Change::Deleted,
                topic: topic.clone(),
                key,
                value: Vec::new(),
            };
            fan_out(&self.inner, &mut state, &topic, &deleted);
        }
        Ok(())
    }

    /// Passes a record to the sink and to log subscribers, or to the
    /// backlog while there are none.
    fn log(&self, entry: LogEntry) {
        let sink = Arc::clone(
            &self
                .inner
                .sink
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        sink.log(&entry);
        let record = Message::LogRecord {
            source: entry.service,
            level: entry.level,
            unix_ns: entry.unix_ns,
            target: entry.target,
            message: entry.message,
        };
        let frame = match self.inner.encode(&record) {
            Ok(frame) => frame,
            Err(e) => {
                log::warn!("bus: log record of {} not forwarded: {e}", self.service);
                return;
            }
        };
        let mut state = self.inner.lock();
        let state = &mut *state;
        let mut subscribers = 0;
        for connection in state.connections.values_mut() {
            if connection.subscriptions.contains(LOG_TOPIC) {
                subscribers += 1;
                if connection.outgoing.try_send(frame.clone()).is_err() {
                    state.dropped_logs += 1;
                }
            }
        }
        if subscribers == 0 {
            if state.log_backlog.len() >= self.inner.config.log_backlog_len.max(1) {
                state.log_backlog.pop_front();
                state.dropped_logs += 1;
            }
            state.log_backlog.push_back(frame);
        }
    }

    /// Answers a call: the target must exist in the caller's version and
    /// serve the operation, and the manifest must grant it to the caller,
    /// before the target's handler runs. Each refusal has its own status.
    fn request(
        &self,
        id: u32,
        target: &str,
        operation: &str,
        version: u16,
        payload: &[u8],
    ) -> Result<(), End> {
        let refused = |status: Status, why: String| {
            log::warn!(
                "bus: {} called {target}.{operation}: {status:?}: {why}",
                self.service
            );
            (status, why.into_bytes())
        };
        // The handler's clone is dropped with this block, before the answer
        // goes out: whoever waits for the answer, then drops the target,
        // must be its last holder.
        let (status, payload) = {
            let handler = self
                .inner
                .handlers
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(target)
                .cloned();
            match handler {
                None => refused(
                    Status::NoSuchTarget,
                    format!("this host has no target {target}"),
                ),
                Some((spec, _)) if spec.version != version => refused(
                    Status::WrongVersion,
                    format!(
                        "the host's {target} is version {}, the caller's {version}",
                        spec.version
                    ),
                ),
                Some((spec, _)) if !spec.serves(operation) => refused(
                    Status::NoSuchOperation,
                    format!(
                        "{target} has no operation {operation} (it has {})",
                        spec.operations.join(", ")
                    ),
                ),
                Some(_) if !self.inner.policy.may_call(&self.service, target, operation) => {
                    refused(
                        Status::Denied,
                        format!("the manifest does not grant {target}.{operation}"),
                    )
                }
                Some((_, handler)) => match handler.call(&self.service, operation, payload) {
                    Ok(answer) => (Status::Ok, answer),
                    Err(e) => {
                        log::warn!("bus: {} called {target}.{operation}: {e}", self.service);
                        (e.status(), e.into_payload())
                    }
                },
            }
        };
        let response = Message::Response {
            id,
            status,
            payload,
        };
        if response.buffer_len() > self.inner.config.limits.frame_len() {
            log::warn!(
                "bus: answer of {target}.{operation} to {} is too large",
                self.service
            );
            return self.reply(&Message::Response {
                id,
                status: Status::Failed,
                payload: b"response too large".to_vec(),
            });
        }
        self.reply(&response)
    }
}

/// Sends a table change to every subscriber of `topic`.
fn fan_out(inner: &Inner, state: &mut State, topic: &str, update: &Message) {
    let frame = match inner.encode(update) {
        Ok(frame) => frame,
        Err(e) => {
            log::error!("bus: cannot encode an update of {topic}: {e}");
            return;
        }
    };
    for (service, connection) in &mut state.connections {
        if connection.subscriptions.contains(topic) {
            connection.deliver(service, frame.clone());
        }
    }
}
