//! The one way a service runs: a [`Service`] is the runtime's poll loop
//! with the bus built in. Timers, pollers (a network stack, a disk), typed
//! subscriptions to bus topics ([`Service::on`]), the log stream
//! ([`Service::on_log`]), typed host calls ([`call`]) and publishing
//! ([`publish`]) all live here, so a service's `main` says what it reacts
//! to and then runs:
//!
//! ```ignore
//! fn main() -> i32 {
//!     let mut service = Service::new();
//!     service.every(Duration::from_secs(10), |_| log::info!("still here"));
//!     service.on::<topics::DeviceFacts>(|_, _key, change| {
//!         if let Change::Created(facts) | Change::Modified(facts) = change {
//!             log::info!("the device has {} CPUs", facts.cpu_count);
//!         }
//!     });
//!     service.run()
//! }
//! ```
//!
//! Heartbeats and log records flow by themselves. When nothing is due the
//! loop waits in one place, `hal::wait_until`, until its next timer or
//! the bus's next deadline, or a device interrupt; then it pumps the bus
//! and runs the pollers again. It never spins on its own.
//!
//! Topic values and call answers are never raw bytes: a topic's value is
//! its type from the `topics` crate, an operation's request and response
//! are its types from `hostops`. They come from elsewhere, so decoding can
//! fail; a value that does not decode is logged and counted
//! ([`undecodable_values`], which a service reports in its status) and
//! otherwise ignored, and an answer that does not decode is an error of
//! the call. Nothing panics.

use alloc::{boxed::Box, rc::Rc, string::String, vec::Vec};
use core::cell::Cell;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use evebus::{Event, Level, Status};
use hal::clock::Instant;
use hostops::{Operation, Target};
use prost::Message;
use topics::Topic;

use crate::bus::{self, BusError};
use crate::poll::{Control, PollLoop, TimerId};

/// What happened to an item of a subscribed topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<V> {
    Created(V),
    Modified(V),
    /// The item is gone; its last value.
    Deleted(V),
}

impl<V> Change<V> {
    /// The item's value now: none once it is deleted. What a handler that
    /// mirrors a topic into its own table wants.
    pub fn current(self) -> Option<V> {
        match self {
            Change::Created(v) | Change::Modified(v) => Some(v),
            Change::Deleted(_) => None,
        }
    }
}

/// A log record of another service (from the `@log` stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub source: String,
    pub level: Level,
    pub unix_ns: u64,
    pub target: String,
    pub message: String,
}

type TopicHandler<'a> = Box<dyn FnMut(&mut Control<'a>, &str, Change<&[u8]>) + 'a>;
type SyncHandler<'a> = Box<dyn FnMut(&mut Control<'a>) + 'a>;
type LogHandler<'a> = Box<dyn FnMut(&mut Control<'a>, LogRecord) + 'a>;

/// A service's loop. Build it, say what it reacts to, then
/// [`Service::run`].
pub struct Service<'a> {
    poll: PollLoop<'a>,
    topics: Vec<(&'static str, TopicHandler<'a>)>,
    synced: Vec<(&'static str, SyncHandler<'a>)>,
    log: Option<LogHandler<'a>>,
    /// How many topic changes and synchronizations handlers were given:
    /// what [`Service::repeat_on_change`] wakes on.
    changes: Rc<Cell<u64>>,
}

impl Default for Service<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Service<'a> {
    pub fn new() -> Self {
        Service {
            poll: PollLoop::new(),
            topics: Vec::new(),
            synced: Vec::new(),
            log: None,
            changes: Rc::new(Cell::new(0)),
        }
    }

    /// Calls `f` once, `delay` from now.
    pub fn after(&mut self, delay: Duration, f: impl FnMut(&mut Control<'a>) + 'a) -> TimerId {
        self.poll.after(delay, f)
    }

    /// Calls `f` every `period`, first `period` from now.
    pub fn every(&mut self, period: Duration, f: impl FnMut(&mut Control<'a>) + 'a) -> TimerId {
        self.poll.every(period, f)
    }

    /// Calls `f` after `delay`, then again after each delay it returns:
    /// for work that knows when it is next due.
    pub fn repeat(
        &mut self,
        delay: Duration,
        f: impl FnMut(&mut Control<'a>) -> Duration + 'a,
    ) -> TimerId {
        let mut f = Some(f);
        self.poll.after(delay, move |ctl| {
            if let Some(f) = f.take() {
                rearm(ctl, f);
            }
        })
    }

    /// As [`Service::repeat`], and also as soon as a topic handler has
    /// been called (a change or a table synchronized): for a service whose
    /// handlers only note what changed and whose `f` acts on it, so a
    /// change is acted on at once rather than at the next idle round.
    pub fn repeat_on_change(
        &mut self,
        delay: Duration,
        mut f: impl FnMut(&mut Control<'a>) -> Duration + 'a,
    ) {
        let changes = Rc::clone(&self.changes);
        let mut seen = changes.get();
        let mut due = None;
        self.poll.poller(move |ctl| {
            let deadline = *due.get_or_insert_with(|| ctl.now().saturating_add(delay));
            if changes.get() == seen && ctl.now() < deadline {
                ctl.wake_by(deadline);
                return false;
            }
            seen = changes.get();
            let next = ctl.now().saturating_add(f(ctl));
            due = Some(next);
            ctl.wake_by(next);
            true
        });
    }

    /// Adds a poller (a network stack, a disk queue), called on every turn;
    /// it returns whether it made progress, and the loop waits only when
    /// none did and no timer is due.
    pub fn poller(&mut self, f: impl FnMut(&mut Control<'a>) -> bool + 'a) {
        self.poll.poller(f);
    }

    /// Subscribes to topic `T` (the manifest must grant it) and calls `f`
    /// with each change of its table, the key and the typed value. Values
    /// that do not decode are logged, counted and skipped.
    pub fn on<T: Topic>(&mut self, mut f: impl FnMut(&mut Control<'a>, &str, Change<T::Value>) + 'a)
    where
        T::Value: 'a,
    {
        match subscribe::<T>() {
            // A VM booted alone has no bus; nothing will arrive.
            Ok(()) | Err(BusError::NoBus) => {}
            Err(e) => log::warn!("subscribing to {}: {e}", T::NAME),
        }
        self.topics.push((
            T::NAME,
            Box::new(move |ctl, key, change| {
                let typed = match change {
                    Change::Created(bytes) => decode::<T>(key, bytes).map(Change::Created),
                    Change::Modified(bytes) => decode::<T>(key, bytes).map(Change::Modified),
                    Change::Deleted(bytes) => decode::<T>(key, bytes).map(Change::Deleted),
                };
                if let Some(change) = typed {
                    f(ctl, key, change);
                }
            }),
        ));
    }

    /// Calls `f` each time the table of topic `T` (subscribed with
    /// [`Service::on`]) is complete: after the items a subscription
    /// delivers first, and again after every reconnection. Until then a
    /// subscriber must not take a missing item for a deleted one.
    pub fn on_synchronized<T: Topic>(&mut self, f: impl FnMut(&mut Control<'a>) + 'a) {
        self.synced.push((T::NAME, Box::new(f)));
    }

    /// Subscribes to the node's log stream (`@log`; the manifest must
    /// grant it) and calls `f` with each record of another service.
    pub fn on_log(&mut self, f: impl FnMut(&mut Control<'a>, LogRecord) + 'a) {
        match bus::subscribe(evebus::LOG_TOPIC) {
            Ok(()) | Err(BusError::NoBus) => {}
            Err(e) => log::warn!("subscribing to {}: {e}", evebus::LOG_TOPIC),
        }
        self.log = Some(Box::new(f));
    }

    /// Runs until a callback calls [`Control::stop`]; returns its status.
    pub fn run(mut self) -> i32 {
        let mut handlers = Handlers {
            topics: core::mem::take(&mut self.topics),
            synced: core::mem::take(&mut self.synced),
            log: self.log.take(),
            changes: Rc::clone(&self.changes),
        };
        self.poll.poller(move |ctl| dispatch(ctl, &mut handlers));
        loop {
            let step = self.poll.step();
            if let Some(status) = step.stopped {
                return status;
            }
            if !step.progress {
                let wake = match (self.poll.next_deadline(), bus::next_deadline()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                hal::wait_until(wake);
            }
        }
    }
}

/// Runs `f` and arms the next run after the delay it returns.
fn rearm<'a, F>(ctl: &mut Control<'a>, mut f: F)
where
    F: FnMut(&mut Control<'a>) -> Duration + 'a,
{
    let delay = f(ctl);
    let mut f = Some(f);
    ctl.after(delay, move |ctl| {
        if let Some(f) = f.take() {
            rearm(ctl, f);
        }
    });
}

/// What a running service reacts to.
struct Handlers<'a> {
    topics: Vec<(&'static str, TopicHandler<'a>)>,
    synced: Vec<(&'static str, SyncHandler<'a>)>,
    log: Option<LogHandler<'a>>,
    changes: Rc<Cell<u64>>,
}

/// Services the bus and hands its events to the handlers; whether there
/// were any.
fn dispatch<'a>(ctl: &mut Control<'a>, handlers: &mut Handlers<'a>) -> bool {
    bus::pump();
    let mut any = false;
    let Handlers {
        topics,
        synced,
        log,
        changes,
    } = handlers;
    while let Some(event) = bus::next_event() {
        any = true;
        let mut to_topic =
            |ctl: &mut Control<'a>, topic: &str, key: &str, change: Change<&[u8]>| {
                if let Some((_, handler)) = topics.iter_mut().find(|(name, _)| *name == topic) {
                    handler(ctl, key, change);
                    changes.set(changes.get().wrapping_add(1));
                }
            };
        match event {
            Event::Created { topic, key, value } => {
                to_topic(ctl, &topic, &key, Change::Created(&value))
            }
            Event::Modified { topic, key, value } => {
                to_topic(ctl, &topic, &key, Change::Modified(&value))
            }
            Event::Deleted {
                topic,
                key,
                last_value,
            } => to_topic(ctl, &topic, &key, Change::Deleted(&last_value)),
            Event::Synchronized { topic } => {
                for (_, handler) in synced.iter_mut().filter(|(name, _)| *name == topic) {
                    handler(ctl);
                    changes.set(changes.get().wrapping_add(1));
                }
            }
            Event::LogRecord {
                source,
                level,
                unix_ns,
                target,
                message,
            } => {
                if let Some(log) = log.as_mut() {
                    log(
                        ctl,
                        LogRecord {
                            source,
                            level,
                            unix_ns,
                            target,
                            message,
                        },
                    );
                }
            }
            Event::Denied {
                operation,
                topic,
                reason,
            } => log::warn!("bus: {operation:?} of {topic} refused: {reason:?}"),
            Event::Refused(reason) => log::error!("bus: the host refused this service: {reason:?}"),
            Event::Connected { .. } | Event::Response { .. } | Event::RequestFailed { .. } => {}
        }
    }
    any
}

/// The monotonic instant of a time since boot.
pub(crate) fn instant(since_boot: Duration) -> Instant {
    Instant::default().saturating_add(since_boot)
}

/// Values received since boot that did not decode as their topic's type.
static UNDECODABLE: AtomicU64 = AtomicU64::new(0);

/// Sets item `key` of topic `T` (kept and sent again after a reconnect);
/// the manifest must make this service `T`'s publisher.
pub fn publish<T: Topic>(key: &str, value: &T::Value) -> Result<(), BusError> {
    bus::publish(T::NAME, key, &topics::encode::<T>(value))
}

/// Removes item `key` of topic `T`, which this service publishes.
pub fn unpublish<T: Topic>(key: &str) -> Result<(), BusError> {
    bus::delete(T::NAME, key)
}

/// Brings the items of topic `T` this service publishes from `published`
/// (as last published) to `now`: withdraws what went first (so what it
/// held, memory or a port, is free before anything new claims it), then
/// publishes what is new or changed. What fails is logged and stays as it
/// was in `published`, so the next call tries it again; returns whether
/// everything went out.
pub fn sync_table<T: Topic>(
    published: &mut alloc::collections::BTreeMap<String, T::Value>,
    now: &alloc::collections::BTreeMap<String, T::Value>,
) -> bool
where
    T::Value: Clone + PartialEq,
{
    let mut complete = true;
    let gone: Vec<String> = published
        .keys()
        .filter(|k| !now.contains_key(*k))
        .cloned()
        .collect();
    for key in gone {
        match unpublish::<T>(&key) {
            Ok(()) => {
                published.remove(&key);
            }
            Err(e) => {
                log::warn!("withdrawing {} {key}: {e}", T::NAME);
                complete = false;
            }
        }
    }
    for (key, value) in now {
        if published.get(key) == Some(value) {
            continue;
        }
        match publish::<T>(key, value) {
            Ok(()) => {
                published.insert(key.clone(), value.clone());
            }
            Err(e) => {
                log::warn!("publishing {} {key}: {e}", T::NAME);
                complete = false;
            }
        }
    }
    complete
}

/// Says this service has published every item of topic `T` it means to:
/// items an earlier boot of it published and this one did not are
/// dropped from the table. Call it once the topic is complete after a
/// start.
pub fn synchronized<T: Topic>() -> Result<(), BusError> {
    bus::signal_synchronized(T::NAME)
}

fn subscribe<T: Topic>() -> Result<(), BusError> {
    bus::subscribe(T::NAME)
}

/// Decodes item `key` of topic `T`; logs and counts a value that does not
/// decode.
fn decode<T: Topic>(key: &str, bytes: &[u8]) -> Option<T::Value> {
    match topics::decode::<T>(bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            UNDECODABLE.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "{} item {key}: {} bytes that are not a {} value ({e}); ignored",
                T::NAME,
                bytes.len(),
                T::NAME
            );
            None
        }
    }
}

/// Values received since boot that did not decode as their topic's type.
pub fn undecodable_values() -> u64 {
    UNDECODABLE.load(Ordering::Relaxed)
}

/// Why a call of a host operation returned no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError<E> {
    /// No bus, or no answer in time.
    Bus(BusError),
    /// Refused before the operation ran, or the target could not take it:
    /// not granted by the manifest, no such target or operation, another
    /// version of the target, a malformed request, busy (the host's reason
    /// is logged).
    Refused(Status),
    /// The operation ran and failed: the target's error.
    Failed(E),
    /// The answer is not the operation's response (or error).
    BadAnswer,
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Bus(e) => write!(f, "bus: {e}"),
            CallError::Refused(status) => write!(f, "refused by the host: {status:?}"),
            CallError::Failed(e) => write!(f, "{e}"),
            CallError::BadAnswer => f.write_str("the host's answer is not the operation's"),
        }
    }
}

/// Calls host operation `O` and waits for its answer (at most
/// `O::TIMEOUT`), servicing the bus meanwhile.
pub fn call<O: Operation>(
    request: &O::Request,
) -> Result<O::Response, CallError<<O::Target as Target>::Error>> {
    let spec = <O::Target as Target>::SPEC;
    let answer = bus::call(
        spec.name,
        O::NAME,
        spec.version,
        &request.encode_to_vec(),
        O::TIMEOUT,
    )
    .map_err(CallError::Bus)?;
    match answer.status {
        Status::Ok => O::Response::decode(answer.payload.as_slice()).map_err(|e| {
            log::warn!("{}.{}: undecodable response: {e}", spec.name, O::NAME);
            CallError::BadAnswer
        }),
        Status::Failed => match <<O::Target as Target>::Error>::decode(answer.payload.as_slice()) {
            Ok(error) => Err(CallError::Failed(error)),
            Err(_) => {
                log::warn!(
                    "{}.{} failed: {}",
                    spec.name,
                    O::NAME,
                    alloc::string::String::from_utf8_lossy(&answer.payload)
                );
                Err(CallError::Refused(Status::Failed))
            }
        },
        refused => {
            log::warn!(
                "{}.{}: {refused:?}: {}",
                spec.name,
                O::NAME,
                alloc::string::String::from_utf8_lossy(&answer.payload)
            );
            Err(CallError::Refused(refused))
        }
    }
}
