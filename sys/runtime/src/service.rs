//! Typed topics on the bus: what a service publishes and receives is a
//! value of its topic's type from the `topics` crate, never raw bytes.
//!
//! Values come from other services, so decoding can fail; a value that
//! does not decode is logged and counted ([`undecodable_values`], which a
//! service reports in its status) and otherwise ignored. Nothing panics.

use core::sync::atomic::{AtomicU64, Ordering};

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
