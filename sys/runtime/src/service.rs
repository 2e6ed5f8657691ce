//! Typed topics and host calls on the bus: what a service publishes and
//! receives is a value of its topic's type from the `topics` crate, and
//! what it asks the host is an operation of `hostops` with its request and
//! response types, never raw bytes.
//!
//! Values and answers come from elsewhere, so decoding can fail; a value
//! that does not decode is logged and counted ([`undecodable_values`],
//! which a service reports in its status) and otherwise ignored, and an
//! answer that does not decode is an error of the call. Nothing panics.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use evebus::Status;
use hostops::{Operation, Target};
use prost::Message;
use topics::Topic;

use crate::bus::{self, BusError};

/// Values received since boot that did not decode as their topic's type.
static UNDECODABLE: AtomicU64 = AtomicU64::new(0);

/// Sets item `key` of topic `T` (kept and sent again after a reconnect).
pub fn publish<T: Topic>(key: &str, value: &T::Value) -> Result<(), BusError> {
    bus::publish(T::NAME, key, &topics::encode::<T>(value))
}

/// Mirrors topic `T`; its items arrive as bus events.
pub fn subscribe<T: Topic>() -> Result<(), BusError> {
    bus::subscribe(T::NAME)
}

/// Decodes item `key` of topic `T`; logs and counts a value that does not
/// decode.
pub fn decode<T: Topic>(key: &str, bytes: &[u8]) -> Option<T::Value> {
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
