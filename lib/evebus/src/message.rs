//! The messages and their body layouts.
//!
//! All integers are big-endian. Field types used below:
//!
//! - `u8`, `u16`, `u32`, `u64`: fixed-size integers.
//! - `str`: a `u16` byte length, then that many bytes of UTF-8; each use
//!   further restricts length and characters (see [`crate::name`]).
//! - `bytes`: a `u32` byte length, then that many opaque bytes (services
//!   put protobuf there); bounded by the frame limit.
//!
//! | kind | message | body |
//! |---|---|---|
//! | 1 | Hello | service `str`, protocol `u16`, boot counter `u64` |
//! | 2 | Welcome | protocol `u16`, heartbeat interval ms `u32` |
//! | 3 | Refused | reason `u8` ([`RefuseReason`]) |
//! | 4 | Subscribe | topic `str` |
//! | 5 | Publish | topic `str`, key `str`, value `bytes` |
//! | 6 | Delete | topic `str`, key `str` |
//! | 7 | Synchronized | topic `str` |
//! | 8 | Update | change `u8` ([`Change`]), topic `str`, key `str`, value `bytes` (empty for Deleted) |
//! | 9 | Heartbeat | sequence `u64` |
//! | 10 | Log | level `u8` ([`Level`]), unix time ns `u64`, target `str`, message `str` |
//! | 11 | LogRecord | source service `str`, level `u8`, unix time ns `u64`, target `str`, message `str` |
//! | 12 | Request | id `u32`, target `str`, operation `str`, target version `u16`, payload `bytes` |
//! | 13 | Response | id `u32`, status `u8` ([`Status`]), payload `bytes` |
//! | 14 | Denied | operation `u8` ([`Operation`]), topic `str`, reason `u8` ([`DenyReason`]) |
//!
//! A body must be consumed exactly: trailing bytes are an error, so two
//! implementations cannot silently disagree about a layout.

use alloc::string::String;
use alloc::vec::Vec;

use crate::frame::{self, Frame, HEADER_LEN, Limits};
use crate::name;
use crate::{Field, WireError};

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)*
        }

        impl $name {
            /// The byte on the wire.
            pub fn code(self) -> u8 {
                self as u8
            }

            /// The value for a wire byte, if it is one.
            pub fn from_code(code: u8) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

wire_enum! {
    /// Which message a frame carries (header byte 3).
    Kind {
        Hello = 1,
        Welcome = 2,
        Refused = 3,
        Subscribe = 4,
        Publish = 5,
        Delete = 6,
        Synchronized = 7,
        Update = 8,
        Heartbeat = 9,
        Log = 10,
        LogRecord = 11,
        Request = 12,
        Response = 13,
        Denied = 14,
    }
}

wire_enum! {
    /// Why the broker refused a Hello; it closes the connection after.
    RefuseReason {
        /// The broker does not speak the Hello's protocol version.
        UnsupportedVersion = 1,
        /// The Hello names another service than the one this connection
        /// belongs to.
        WrongService = 2,
        /// The first message was not a Hello.
        ExpectedHello = 3,
    }
}

wire_enum! {
    /// What happened to an item of a table.
    Change {
        Created = 1,
        Modified = 2,
        Deleted = 3,
    }
}

wire_enum! {
    /// Log severity, the `log` crate's levels.
    Level {
        Error = 1,
        Warn = 2,
        Info = 3,
        Debug = 4,
        Trace = 5,
    }
}

wire_enum! {
    /// How a request ended.
    Status {
        Ok = 0,
        /// The policy does not let the caller use this target or operation.
        Denied = 1,
        /// No handler is registered for the target.
        NoSuchTarget = 2,
        /// The handler could not understand the payload.
        BadRequest = 3,
        /// The operation ran and failed; the payload is the target's typed
        /// error.
        Failed = 4,
        /// The handler cannot take the request now; try again later.
        Busy = 5,
        /// The target has no operation of that name.
        NoSuchOperation = 6,
        /// The target is of another version than the caller was built for.
        WrongVersion = 7,
    }
}

wire_enum! {
    /// The table operation a Denied refers to.
    Operation {
        Publish = 1,
        Delete = 2,
        Subscribe = 3,
        Synchronized = 4,
    }
}

wire_enum! {
    /// Why an operation was denied.
    DenyReason {
        /// The manifest does not grant it to this service.
        NotGranted = 1,
        /// The topic holds as many items as the broker allows.
        TableFull = 2,
        /// The item would not fit an Update frame to subscribers.
        TooLarge = 3,
    }
}

/// One message, parsed. See the module documentation for the layouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Service to broker, first message of every connection.
    Hello {
        service: String,
        protocol: u16,
        /// Increments with every boot of the service, so the broker can
        /// tell a restart from a reconnection.
        boot_counter: u64,
    },
    /// Broker to service: the Hello was accepted.
    Welcome {
        protocol: u16,
        /// How often the broker expects a heartbeat.
        heartbeat_interval_ms: u32,
    },
    /// Broker to service: the Hello was refused; the connection closes.
    Refused { reason: RefuseReason },
    /// Service to broker: send me this topic's table, then its changes.
    Subscribe { topic: String },
    /// Service to broker: set an item of a topic I publish.
    Publish {
        topic: String,
        key: String,
        value: Vec<u8>,
    },
    /// Service to broker: remove an item of a topic I publish.
    Delete { topic: String, key: String },
    /// Broker to subscriber: the initial table of `topic` is complete.
    /// Publisher to broker: I have (re)published everything of `topic`;
    /// items I have not published since connecting are gone.
    Synchronized { topic: String },
    /// Broker to subscriber: an item changed.
    Update {
        change: Change,
        topic: String,
        key: String,
        value: Vec<u8>,
    },
    /// Service to broker: I am alive.
    Heartbeat { sequence: u64 },
    /// Service to broker: a log record of mine.
    Log {
        level: Level,
        unix_ns: u64,
        target: String,
        message: String,
    },
    /// Broker to subscribers of [`LOG_TOPIC`](crate::LOG_TOPIC): a log
    /// record of `source`.
    LogRecord {
        source: String,
        level: Level,
        unix_ns: u64,
        target: String,
        message: String,
    },
    /// Service to broker: call `operation` of host target `target` (e.g.
    /// `sign` of `tpm`), built against `version` of the target.
    Request {
        id: u32,
        target: String,
        operation: String,
        version: u16,
        payload: Vec<u8>,
    },
    /// Broker to service: the answer to request `id`.
    Response {
        id: u32,
        status: Status,
        payload: Vec<u8>,
    },
    /// Broker to service: a table operation was refused; the connection
    /// stays up.
    Denied {
        operation: Operation,
        topic: String,
        reason: DenyReason,
    },
}

impl Message {
    /// The kind byte of this message.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello { .. } => Kind::Hello,
            Message::Welcome { .. } => Kind::Welcome,
            Message::Refused { .. } => Kind::Refused,
            Message::Subscribe { .. } => Kind::Subscribe,
            Message::Publish { .. } => Kind::Publish,
            Message::Delete { .. } => Kind::Delete,
            Message::Synchronized { .. } => Kind::Synchronized,
            Message::Update { .. } => Kind::Update,
            Message::Heartbeat { .. } => Kind::Heartbeat,
            Message::Log { .. } => Kind::Log,
            Message::LogRecord { .. } => Kind::LogRecord,
            Message::Request { .. } => Kind::Request,
            Message::Response { .. } => Kind::Response,
            Message::Denied { .. } => Kind::Denied,
        }
    }

    /// Parses the message in a checked frame, enforcing `limits` and every
    /// field's rules.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>, limits: &Limits) -> Result<Message, WireError> {
        frame.check()?;
        if frame.frame_len() > limits.frame_len() {
            return Err(WireError::FrameTooLarge);
        }
        let kind = Kind::from_code(frame.kind()).ok_or(WireError::UnknownKind(frame.kind()))?;
        let mut r = Reader { rest: frame.body() };
        let message = match kind {
            Kind::Hello => Message::Hello {
                service: r.str()?,
                protocol: r.u16()?,
                boot_counter: r.u64()?,
            },
            Kind::Welcome => Message::Welcome {
                protocol: r.u16()?,
                heartbeat_interval_ms: r.u32()?,
            },
            Kind::Refused => Message::Refused {
                reason: r.code(RefuseReason::from_code, Field::RefuseReason)?,
            },
            Kind::Subscribe => Message::Subscribe { topic: r.str()? },
            Kind::Publish => Message::Publish {
                topic: r.str()?,
                key: r.str()?,
                value: r.bytes()?,
            },
            Kind::Delete => Message::Delete {
                topic: r.str()?,
                key: r.str()?,
            },
            Kind::Synchronized => Message::Synchronized { topic: r.str()? },
            Kind::Update => Message::Update {
                change: r.code(Change::from_code, Field::Change)?,
                topic: r.str()?,
                key: r.str()?,
                value: r.bytes()?,
            },
            Kind::Heartbeat => Message::Heartbeat { sequence: r.u64()? },
            Kind::Log => Message::Log {
                level: r.code(Level::from_code, Field::Level)?,
                unix_ns: r.u64()?,
                target: r.str()?,
                message: r.str()?,
            },
            Kind::LogRecord => Message::LogRecord {
                source: r.str()?,
                level: r.code(Level::from_code, Field::Level)?,
                unix_ns: r.u64()?,
                target: r.str()?,
                message: r.str()?,
            },
            Kind::Request => Message::Request {
                id: r.u32()?,
                target: r.str()?,
                operation: r.str()?,
                version: r.u16()?,
                payload: r.bytes()?,
            },
            Kind::Response => Message::Response {
                id: r.u32()?,
                status: r.code(Status::from_code, Field::Status)?,
                payload: r.bytes()?,
            },
            Kind::Denied => Message::Denied {
                operation: r.code(Operation::from_code, Field::Operation)?,
                topic: r.str()?,
                reason: r.code(DenyReason::from_code, Field::DenyReason)?,
            },
        };
        if !r.rest.is_empty() {
            return Err(WireError::TrailingBytes);
        }
        message.validate(limits)?;
        Ok(message)
    }

    /// Checks every field against its rules and the log limit. Parsing and
    /// emitting both call this, so neither side sends what the other would
    /// refuse.
    pub fn validate(&self, limits: &Limits) -> Result<(), WireError> {
        let check = |ok: bool, field: Field| {
            if ok {
                Ok(())
            } else {
                Err(WireError::InvalidField(field))
            }
        };
        let topic = |t: &str| check(name::valid_topic(t), Field::Topic);
        let key = |k: &str| check(name::valid_key(k), Field::Key);
        let log = |target: &str, message: &str| {
            check(name::valid_log_target(target), Field::LogTarget)?;
            check(message.len() <= limits.log_message_len(), Field::LogMessage)
        };
        match self {
            Message::Hello { service, .. } => check(name::valid_name(service), Field::Service),
            Message::Welcome { .. }
            | Message::Refused { .. }
            | Message::Heartbeat { .. }
            | Message::Response { .. } => Ok(()),
            Message::Subscribe { topic: t }
            | Message::Synchronized { topic: t }
            | Message::Denied { topic: t, .. } => topic(t),
            Message::Publish {
                topic: t, key: k, ..
            }
            | Message::Delete { topic: t, key: k } => {
                topic(t)?;
                key(k)
            }
            Message::Update {
                change,
                topic: t,
                key: k,
                value,
            } => {
                topic(t)?;
                key(k)?;
                check(*change != Change::Deleted || value.is_empty(), Field::Value)
            }
            Message::Log {
                target, message, ..
            } => log(target, message),
            Message::LogRecord {
                source,
                target,
                message,
                ..
            } => {
                check(name::valid_name(source), Field::Service)?;
                log(target, message)
            }
            Message::Request {
                target, operation, ..
            } => {
                check(name::valid_name(target), Field::Target)?;
                check(name::valid_name(operation), Field::OperationName)
            }
        }
    }

    /// Length of the whole frame this message encodes to.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    fn body_len(&self) -> usize {
        let s = |s: &String| 2 + s.len();
        let b = |b: &Vec<u8>| 4 + b.len();
        match self {
            Message::Hello { service, .. } => s(service) + 2 + 8,
            Message::Welcome { .. } => 2 + 4,
            Message::Refused { .. } => 1,
            Message::Subscribe { topic } | Message::Synchronized { topic } => s(topic),
            Message::Publish { topic, key, value } => s(topic) + s(key) + b(value),
            Message::Delete { topic, key } => s(topic) + s(key),
            Message::Update {
                topic, key, value, ..
            } => 1 + s(topic) + s(key) + b(value),
            Message::Heartbeat { .. } => 8,
            Message::Log {
                target, message, ..
            } => 1 + 8 + s(target) + s(message),
            Message::LogRecord {
                source,
                target,
                message,
                ..
            } => s(source) + 1 + 8 + s(target) + s(message),
            Message::Request {
                target,
                operation,
                payload,
                ..
            } => 4 + s(target) + s(operation) + 2 + b(payload),
            Message::Response { payload, .. } => 4 + 1 + b(payload),
            Message::Denied { topic, .. } => 1 + s(topic) + 1,
        }
    }

    /// Writes the frame into the start of `buf` after validating the
    /// message against `limits`; returns the frame length.
    pub fn emit(&self, limits: &Limits, buf: &mut [u8]) -> Result<usize, WireError> {
        self.validate(limits)?;
        let len = self.buffer_len();
        if len > limits.frame_len() {
            return Err(WireError::FrameTooLarge);
        }
        let buf = buf.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        frame::emit_header(self.kind().code(), len - HEADER_LEN, buf)?;
        let mut w = Writer {
            buf: &mut buf[HEADER_LEN..],
        };
        match self {
            Message::Hello {
                service,
                protocol,
                boot_counter,
            } => {
                w.str(service);
                w.put(&protocol.to_be_bytes());
                w.put(&boot_counter.to_be_bytes());
            }
            Message::Welcome {
                protocol,
                heartbeat_interval_ms,
            } => {
                w.put(&protocol.to_be_bytes());
                w.put(&heartbeat_interval_ms.to_be_bytes());
            }
            Message::Refused { reason } => w.put(&[reason.code()]),
            Message::Subscribe { topic } | Message::Synchronized { topic } => w.str(topic),
            Message::Publish { topic, key, value } => {
                w.str(topic);
                w.str(key);
                w.bytes(value);
            }
            Message::Delete { topic, key } => {
                w.str(topic);
                w.str(key);
            }
            Message::Update {
                change,
                topic,
                key,
                value,
            } => {
                w.put(&[change.code()]);
                w.str(topic);
                w.str(key);
                w.bytes(value);
            }
            Message::Heartbeat { sequence } => w.put(&sequence.to_be_bytes()),
            Message::Log {
                level,
                unix_ns,
                target,
                message,
            } => {
                w.put(&[level.code()]);
                w.put(&unix_ns.to_be_bytes());
                w.str(target);
                w.str(message);
            }
            Message::LogRecord {
                source,
                level,
                unix_ns,
                target,
                message,
            } => {
                w.str(source);
                w.put(&[level.code()]);
                w.put(&unix_ns.to_be_bytes());
                w.str(target);
                w.str(message);
            }
            Message::Request {
                id,
                target,
                operation,
                version,
                payload,
            } => {
                w.put(&id.to_be_bytes());
                w.str(target);
                w.str(operation);
                w.put(&version.to_be_bytes());
                w.bytes(payload);
            }
            Message::Response {
                id,
                status,
                payload,
            } => {
                w.put(&id.to_be_bytes());
                w.put(&[status.code()]);
                w.bytes(payload);
            }
            Message::Denied {
                operation,
                topic,
                reason,
            } => {
                w.put(&[operation.code()]);
                w.str(topic);
                w.put(&[reason.code()]);
            }
        }
        Ok(len)
    }

    /// Appends the frame to `out` (see [`Message::emit`]); `out` is left
    /// unchanged on error.
    pub fn encode(&self, limits: &Limits, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        out.resize(start + self.buffer_len(), 0);
        match self.emit(limits, &mut out[start..]) {
            Ok(_) => Ok(()),
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }
}

/// Sequential writes into a slice sized by `body_len`; `validate` bounded
/// every string to fit its `u16` prefix, and the frame limit (at most
/// [`frame::MAX_FRAME_LEN_CEILING`]) every byte field to fit its `u32`.
struct Writer<'a> {
    buf: &'a mut [u8],
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let (head, tail) = core::mem::take(&mut self.buf).split_at_mut(bytes.len());
        head.copy_from_slice(bytes);
        self.buf = tail;
    }

    fn str(&mut self, s: &str) {
        self.put(&(s.len() as u16).to_be_bytes());
        self.put(s.as_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.put(&(b.len() as u32).to_be_bytes());
        self.put(b);
    }
}

/// Sequential bounded reads from a body.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    fn code<T>(&mut self, from_code: fn(u8) -> Option<T>, field: Field) -> Result<T, WireError> {
        from_code(self.u8()?).ok_or(WireError::InvalidField(field))
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn str(&mut self) -> Result<String, WireError> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        core::str::from_utf8(bytes)
            .map(String::from)
            .map_err(|_| WireError::BadUtf8)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, WireError> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }
}
