//! The node bus: how services talk to each other and to the host.
//!
//! # Transport
//!
//! Port 0 of each unikernel's virtio-console is a reliable byte stream to a
//! unix socket on the host; the host knows which socket belongs to which
//! service, so the broker behind it can hold every message against what the
//! node manifest grants that service. This crate is both ends' wire format
//! and the service side's client; the broker is the host crate
//! `eve-broker`.
//!
//! # Wire format
//!
//! A stream of frames: an 8-byte header (magic `EB`, version, kind, body
//! length) and a body whose layout the kind fixes ([`frame`], [`message`]).
//! Integers are big-endian; strings are length-prefixed UTF-8 with per-field
//! rules ([`name`]); values are opaque bytes (services put protobuf there).
//! [`Frame`] is a checked view, [`Message`] the parsed representation;
//! [`Decoder`] turns arbitrary chunks into messages with memory bounded by
//! [`Limits::max_frame_len`]. A corrupt stream is never repaired in place:
//! the reader drops the connection and the peer reconnects.
//!
//! # Publish/subscribe (EVE's pubsub)
//!
//! A topic is a keyed table of values, published by exactly one service
//! (the manifest says which) and mirrored by any number of subscribers.
//!
//! - A publisher sends Publish and Delete; the broker keeps the table and
//!   fans the changes out as Update (Created, Modified, Deleted).
//! - A subscriber sends Subscribe and receives the whole current table as
//!   Updates, then Synchronized for that topic, then live changes.
//! - Restart survival: the broker's tables outlive connections. When a
//!   publisher connects (after its own restart or a broken transport) its
//!   items become *retained*: still visible, but on probation. Each item it
//!   publishes again is confirmed; when it sends Synchronized for the topic,
//!   retained items it did not confirm are deleted. A publisher that never
//!   says Synchronized keeps its old items, which errs toward last known
//!   state, as EVE's checkpointed publications do. [`Client`] keeps its own
//!   publications and replays them, with Synchronized where the service
//!   signalled it, on every reconnection, so a broker restart needs nothing
//!   from the service.
//! - A subscriber that reconnects gets the full table again; [`Client`]
//!   compares it with its mirror, so the service sees only real changes,
//!   plus Deleted for items that vanished meanwhile, then Synchronized.
//!
//! # Beyond tables
//!
//! - Heartbeat: services beat at the interval the broker's Welcome names;
//!   the host restarts a service whose beats stop.
//! - Log: services send log records; the broker passes them to the host
//!   log and to subscribers of [`LOG_TOPIC`] (zedagent). [`Client`] queues
//!   them in a bounded queue that drops the oldest first and counts drops.
//! - Request/Response: calls of host operations (`hostops`: `sign` of the
//!   target `tpm`, ...), matched by id; the broker checks the caller's grant
//!   for the target and operation against the manifest, and the target's
//!   version, before the host's module for the target sees the request.
//! - Denied: a refused table operation; the connection stays up.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod client;
pub mod decoder;
pub mod frame;
pub mod message;
pub mod name;

pub use client::{Call, Client, ClientConfig, ClientError, Event, RequestFailure};
pub use decoder::Decoder;
pub use frame::{Frame, Limits};
pub use message::{Change, DenyReason, Kind, Level, Message, Operation, RefuseReason, Status};
pub use name::LOG_TOPIC;

/// The protocol version sent in Hello and Welcome. Independent of the frame
/// version: new messages need a new protocol version, a new frame layout a
/// new frame version.
///
/// 2: a Request names the target's operation and the target's version, so
/// the broker checks grants per operation.
pub const PROTOCOL_VERSION: u16 = 2;

/// A field whose value breaks its rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Service,
    Topic,
    Key,
    Target,
    LogTarget,
    LogMessage,
    /// A Deleted update that carries a value.
    Value,
    RefuseReason,
    Change,
    Level,
    Status,
    /// The table operation of a Denied.
    Operation,
    DenyReason,
    /// The operation a Request calls.
    OperationName,
}

/// Why bytes are not a valid frame or a message cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the header or a field needs.
    Truncated,
    /// The frame does not start with [`frame::MAGIC`].
    BadMagic,
    /// A frame version this crate does not read.
    UnsupportedVersion(u8),
    /// A kind byte no message has.
    UnknownKind(u8),
    /// The frame is longer than [`Limits::max_frame_len`].
    FrameTooLarge,
    /// The body continues after its last field.
    TrailingBytes,
    /// A string field is not UTF-8.
    BadUtf8,
    /// A field breaks its rules (characters, length, enum value).
    InvalidField(Field),
    /// The output buffer is shorter than [`Message::buffer_len`].
    BufferTooSmall,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("frame truncated"),
            WireError::BadMagic => f.write_str("not a bus frame (bad magic)"),
            WireError::UnsupportedVersion(v) => write!(f, "unsupported frame version {v}"),
            WireError::UnknownKind(k) => write!(f, "unknown message kind {k}"),
            WireError::FrameTooLarge => f.write_str("frame exceeds the size limit"),
            WireError::TrailingBytes => f.write_str("bytes after the last field"),
            WireError::BadUtf8 => f.write_str("string is not UTF-8"),
            WireError::InvalidField(field) => write!(f, "invalid {field:?} field"),
            WireError::BufferTooSmall => f.write_str("buffer too small for the frame"),
        }
    }
}

impl core::error::Error for WireError {}
