//! The service's end of the node bus: the `evebus` client over the virtio
//! console port, kept alive from every blocking wait (heartbeats, queued
//! log records) through the HAL's idle hook. Services use it through
//! [`crate::service`], which types every value and call.
//!
//! The Hello names the service as the host knows it (`service=` on the
//! command line, which the host sets from the manifest), else by the
//! image's name; one image can run as several services.
//!
//! A service without a console port (a test guest booted on its own) has
//! no bus: [`present`] is false, publishing fails with
//! [`BusError::NoBus`], and logs go to the serial console only.

use alloc::{collections::VecDeque, string::ToString, vec::Vec};
use core::time::Duration;

use evebus::{Call, Client, ClientConfig, ClientError, Event, Level, Status};
use hal::{busport::BusPort, clock::Instant};
use spin::Mutex;

use crate::service::instant;

/// Events held for a service that has not taken them; the oldest go first,
/// so a service that ignores a busy topic cannot exhaust its heap.
const MAX_QUEUED_EVENTS: usize = 1024;

struct Link {
    client: Client,
    port: BusPort,
    received: Vec<u8>,
    events: VecDeque<Event>,
    broken: bool,
}

static LINK: Mutex<Option<Link>> = Mutex::new(None);

/// Why a bus operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusError {
    /// The machine has no bus port.
    NoBus,
    /// The console device failed; the bus is gone for this boot.
    Port,
    /// The client refused the operation (bad name, not connected...).
    Client(ClientError),
    /// A request got no answer in time, or the connection dropped.
    NoAnswer,
}

impl core::fmt::Display for BusError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BusError::NoBus => f.write_str("no bus port on this machine"),
            BusError::Port => f.write_str("bus port failed"),
            BusError::Client(e) => write!(f, "{e}"),
            BusError::NoAnswer => f.write_str("request got no answer"),
        }
    }
}

/// Opens the bus port, if the machine has one, and says Hello.
pub(crate) fn start(service: &str) {
    let Ok(port) = BusPort::open() else { return };
    let mut client = Client::new(ClientConfig::new(service, 0));
    if client.connect().is_err() {
        return;
    }
    *LINK.lock() = Some(Link {
        client,
        port,
        received: Vec::new(),
        events: VecDeque::new(),
        broken: false,
    });
    hal::set_idle_hook(pump_from_idle);
}

/// Whether this service has a bus.
pub fn present() -> bool {
    LINK.lock().is_some()
}

/// Whether the broker has welcomed us.
pub fn connected() -> bool {
    LINK.lock()
        .as_ref()
        .is_some_and(|l| l.client.is_connected())
}

fn now() -> Duration {
    Duration::from_nanos(Instant::now().as_nanos())
}

fn with<R>(f: impl FnOnce(&mut Link) -> Result<R, BusError>) -> Result<R, BusError> {
    let mut guard = LINK.lock();
    let link = guard.as_mut().ok_or(BusError::NoBus)?;
    if link.broken {
        return Err(BusError::Port);
    }
    f(link)
}

impl Link {
    /// Writes what the client has to send, reads what arrived, runs timers
    /// and moves the client's events to our queue.
    fn pump(&mut self) {
        if self.broken {
            return;
        }
        let now = now();
        self.client.poll(now);
        let pending = self.client.transmit().len();
        if pending > 0 {
            if self.port.write(self.client.transmit()).is_err() {
                self.broken = true;
                return;
            }
            self.client.transmitted(pending);
        }
        self.received.clear();
        if self.port.read_available(&mut self.received).is_err() {
            self.broken = true;
            return;
        }
        if !self.received.is_empty() && self.client.receive(&self.received, now).is_err() {
            // A corrupt stream: start over with a fresh Hello. The broker
            // sees the new Hello replace the session.
            let _ = self.client.connect();
        }
        while let Some(event) = self.client.next_event() {
            if self.events.len() >= MAX_QUEUED_EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(event);
        }
    }
}

/// The idle hook: the HAL runs it after every sleep, and at most every
/// few milliseconds in a wait that does not sleep.
fn pump_from_idle() {
    // try_lock: the hook can run inside a bus call's own wait.
    if let Some(mut guard) = LINK.try_lock()
        && let Some(link) = guard.as_mut()
    {
        link.pump();
    }
}

/// Services the bus now: sends, receives, heartbeats.
pub(crate) fn pump() {
    if let Some(link) = LINK.lock().as_mut() {
        link.pump();
    }
}

/// The next event (table changes, log records of others...).
pub(crate) fn next_event() -> Option<Event> {
    LINK.lock().as_mut()?.events.pop_front()
}

/// When the bus next has something to do (a heartbeat, a request's
/// timeout).
pub(crate) fn next_deadline() -> Option<Instant> {
    LINK.lock()
        .as_ref()
        .and_then(|l| l.client.next_deadline())
        .map(instant)
}

/// Publishes `value` under `key` in `topic` (kept and re-sent after a
/// reconnect).
pub(crate) fn publish(topic: &str, key: &str, value: &[u8]) -> Result<(), BusError> {
    with(|link| {
        link.client
            .publish(topic, key, value)
            .map_err(BusError::Client)?;
        link.pump();
        Ok(())
    })
}

/// Removes `key` from `topic`, which this service publishes.
pub(crate) fn delete(topic: &str, key: &str) -> Result<(), BusError> {
    with(|link| {
        link.client.delete(topic, key).map_err(BusError::Client)?;
        link.pump();
        Ok(())
    })
}

/// Says this service has published all of `topic` it means to: items a
/// previous boot published and this one did not go.
pub(crate) fn signal_synchronized(topic: &str) -> Result<(), BusError> {
    with(|link| {
        link.client
            .signal_synchronized(topic)
            .map_err(BusError::Client)?;
        link.pump();
        Ok(())
    })
}

/// Subscribes to `topic`; its items arrive as events.
pub(crate) fn subscribe(topic: &str) -> Result<(), BusError> {
    with(|link| link.client.subscribe(topic).map_err(BusError::Client))
}

/// An answer to a call: how it ended and what came back (the response,
/// the target's typed error, or the host's reason for a refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: Status,
    pub payload: Vec<u8>,
}

/// Calls `operation` of host target `target` (built against `version` of
/// it) and waits for the answer, servicing the bus meanwhile. Other events
/// are kept for [`next_event`]. The typed form is
/// [`crate::service::call`].
pub(crate) fn call(
    target: &str,
    operation: &str,
    version: u16,
    payload: &[u8],
    timeout: Duration,
) -> Result<Answer, BusError> {
    let deadline = Instant::now().saturating_add(timeout);
    // The session may still be opening right after boot.
    while !connected() {
        if Instant::now() >= deadline {
            return Err(BusError::NoAnswer);
        }
        let wake = with(|link| {
            link.pump();
            Ok(link.client.next_deadline().map(instant))
        })?;
        hal::wait_until(Some(wake.map_or(deadline, |w| w.min(deadline))));
    }
    let call = Call {
        target,
        operation,
        version,
        payload,
        timeout,
    };
    let id = with(|link| {
        let id = link
            .client
            .request(&call, now())
            .map_err(BusError::Client)?;
        link.pump();
        Ok(id)
    })?;
    loop {
        let (answer, wake) = with(|link| {
            link.pump();
            let found = link.events.iter().position(|e| match e {
                Event::Response { id: got, .. } | Event::RequestFailed { id: got, .. } => {
                    *got == id
                }
                _ => false,
            });
            Ok((
                found.and_then(|i| link.events.remove(i)),
                link.client.next_deadline().map(instant),
            ))
        })?;
        match answer {
            Some(Event::Response {
                status, payload, ..
            }) => return Ok(Answer { status, payload }),
            Some(_) => return Err(BusError::NoAnswer),
            // The client times the request out at its own deadline.
            None => hal::wait_until(wake),
        }
    }
}

/// Queues a log record for the host (dropped, oldest first, when the
/// queue is full). Never blocks: skipped if the bus is busy right now.
pub(crate) fn log(level: log::Level, target: &str, message: &core::fmt::Arguments<'_>) {
    if let Some(mut guard) = LINK.try_lock()
        && let Some(link) = guard.as_mut()
    {
        let level = match level {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warn,
            log::Level::Info => Level::Info,
            log::Level::Debug => Level::Debug,
            log::Level::Trace => Level::Trace,
        };
        let unix_ns = hal::clock::unix_nanos().unwrap_or(0);
        link.client
            .log(level, unix_ns, target, &message.to_string());
    }
}
