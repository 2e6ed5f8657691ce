//! The names that travel on the bus and the characters they may hold.
//!
//! One rule, [`NAME_RULE`], covers every name a node is wired with:
//! services, topics, host operation targets and their operations. The node
//! manifest is checked against it when it is loaded and the broker and the
//! client check every message against it, so a name the manifest accepts
//! is a name the bus carries, and the other way round. Topics that belong
//! to the broker (the host) are the same rule after one leading `@`.
//!
//! The alphabet is small so that names can be logged, compared byte for
//! byte and used in file and socket names without escaping, and so that a
//! hostile service cannot smuggle terminal control sequences into the
//! host's log through a topic or key.

use core::fmt;

/// Longest service, topic, target or operation name (the `@` of a broker
/// topic not counted). Service names end up in socket paths, which Linux
/// caps at 108 bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Longest topic on the wire: a name, or `@` and a name.
pub const MAX_TOPIC_LEN: usize = 1 + MAX_NAME_LEN;
/// Longest key within a topic.
pub const MAX_KEY_LEN: usize = 255;
/// Longest log target (the module that logged).
pub const MAX_LOG_TARGET_LEN: usize = 128;

/// The rule as people read it, for error messages.
pub const NAME_RULE: &str = "[a-z][a-z0-9-]{0,31}";

/// What starts a topic that belongs to the broker.
pub const BROKER_PREFIX: char = '@';

/// The stream of log records: subscribing to it delivers
/// [`Message::LogRecord`](crate::Message::LogRecord)s from every service.
/// It is part of the bus protocol itself, not a table; the broker's tables
/// (named like it, with the `@` prefix) are listed in the `topics` crate.
pub const LOG_TOPIC: &str = "@log";

/// Why a name breaks [`NAME_RULE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    /// Longer than [`MAX_NAME_LEN`] (the length it has).
    TooLong(usize),
    /// The first character is not a lowercase ASCII letter.
    BadStart(char),
    /// A character outside `a-z`, `0-9` and `-`.
    BadChar(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "is empty (names follow {NAME_RULE})"),
            NameError::TooLong(len) => write!(
                f,
                "is {len} characters, at most {MAX_NAME_LEN} (names follow {NAME_RULE})"
            ),
            NameError::BadStart(c) => write!(
                f,
                "starts with {c:?}, not a letter a-z (names follow {NAME_RULE})"
            ),
            NameError::BadChar(c) => write!(
                f,
                "holds {c:?}: only a-z, 0-9 and - are allowed (names follow {NAME_RULE})"
            ),
        }
    }
}

impl core::error::Error for NameError {}

/// Checks a service, topic, target or operation name against
/// [`NAME_RULE`].
pub fn check_name(name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let first = chars.next().ok_or(NameError::Empty)?;
    if !first.is_ascii_lowercase() {
        return Err(NameError::BadStart(first));
    }
    if let Some(bad) = chars.find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-')) {
        return Err(NameError::BadChar(bad));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    Ok(())
}

/// Whether `name` follows [`NAME_RULE`].
pub fn valid_name(name: &str) -> bool {
    check_name(name).is_ok()
}

/// Checks a topic: a name, or [`BROKER_PREFIX`] and a name.
pub fn check_topic(topic: &str) -> Result<(), NameError> {
    check_name(topic.strip_prefix(BROKER_PREFIX).unwrap_or(topic))
}

/// Whether `topic` is a valid topic (see [`check_topic`]).
pub fn valid_topic(topic: &str) -> bool {
    check_topic(topic).is_ok()
}

/// Whether a topic is one of the broker's own, which services may
/// subscribe to (if granted) but never publish.
pub fn is_broker_topic(topic: &str) -> bool {
    topic.starts_with(BROKER_PREFIX)
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

#[cfg(test)]
mod tests {
    use alloc::format;

    use super::*;

    #[test]
    fn names_follow_the_one_rule() {
        for good in [
            "a",
            "zedagent",
            "edge-config",
            "a1-",
            "x".repeat(32).as_str(),
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name("1a"), Err(NameError::BadStart('1')));
        assert_eq!(check_name("-a"), Err(NameError::BadStart('-')));
        assert_eq!(check_name("Zed"), Err(NameError::BadStart('Z')));
        assert_eq!(check_name("zed_agent"), Err(NameError::BadChar('_')));
        assert_eq!(check_name("nim/status"), Err(NameError::BadChar('/')));
        assert_eq!(check_name("a.b"), Err(NameError::BadChar('.')));
        assert_eq!(check_name("aé"), Err(NameError::BadChar('é')));
        assert_eq!(check_name(&"x".repeat(33)), Err(NameError::TooLong(33)));
    }

    #[test]
    fn broker_topics_are_a_name_after_one_at() {
        assert!(valid_topic("@log") && is_broker_topic("@log"));
        assert!(valid_topic("onboard-status") && !is_broker_topic("onboard-status"));
        assert!(!valid_topic("@"));
        assert!(!valid_topic("@@log"));
        assert!(valid_topic(&format!("@{}", "x".repeat(32))));
        assert_eq!(MAX_TOPIC_LEN, 33);
    }
}
