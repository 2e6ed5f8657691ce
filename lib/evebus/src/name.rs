//! The names that travel on the bus and the characters they may hold.
//!
//! Names are restricted to small ASCII alphabets so that the broker can log
//! them, compare them byte for byte and use them in file names (hex-encoded)
//! without escaping, and so that a hostile service cannot smuggle terminal
//! control sequences into the host's log through a topic or key.

/// Longest service name or RPC target.
pub const MAX_SERVICE_LEN: usize = 64;
/// Longest topic name.
pub const MAX_TOPIC_LEN: usize = 128;
/// Longest key within a topic.
pub const MAX_KEY_LEN: usize = 255;
/// Longest log target (the module that logged).
pub const MAX_LOG_TARGET_LEN: usize = 128;

/// The stream of log records: subscribing to it delivers
/// [`Message::LogRecord`](crate::Message::LogRecord)s from every service.
/// Topics starting with `@` belong to the broker; nobody publishes them.
pub const LOG_TOPIC: &str = "@log";

/// A service name or RPC target: 1 to [`MAX_SERVICE_LEN`] ASCII letters,
/// digits, `-`, `_` or `.`.
pub fn valid_service(name: &str) -> bool {
    (1..=MAX_SERVICE_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A topic: 1 to [`MAX_TOPIC_LEN`] ASCII letters, digits, `-`, `_`, `.`
/// or `/`, optionally after one leading `@` (a broker stream such as
/// [`LOG_TOPIC`]).
pub fn valid_topic(topic: &str) -> bool {
    let body = topic.strip_prefix('@').unwrap_or(topic);
    topic.len() <= MAX_TOPIC_LEN
        && !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

/// Whether a topic is one of the broker's own streams, which services may
/// subscribe to (if granted) but never publish.
pub fn is_broker_topic(topic: &str) -> bool {
    topic.starts_with('@')
}

/// A key: 1 to [`MAX_KEY_LEN`] visible ASCII characters (`!` to `~`), so
/// UUIDs, interface names and EVE's composite keys all fit.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// A log target: at most [`MAX_LOG_TARGET_LEN`] bytes without control
/// characters (it is printed in front of the message).
pub fn valid_log_target(target: &str) -> bool {
    target.len() <= MAX_LOG_TARGET_LEN && !target.chars().any(char::is_control)
}
