//! The one error type of the client.
//!
//! It is `Copy` and carries no heap data so that it can be stored in the
//! connection state (a broken connection keeps answering with the error that
//! broke it) and returned from `no_std` code without allocating.

use core::fmt;

use embedded_io::ErrorKind;

/// Everything that can go wrong in an exchange.
///
/// Transport failures keep the transport's [`ErrorKind`]; every protocol
/// violation has its own variant so that logs say which bound or rule the
/// peer broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The transport failed while reading (timeouts surface here).
    Read(ErrorKind),
    /// The transport failed while writing, or accepted zero bytes.
    Write(ErrorKind),
    /// The peer closed the connection before sending any byte of a
    /// response: typically a kept-alive connection the server had already
    /// given up on. Retrying an idempotent request on a new connection is
    /// reasonable.
    NoResponse,
    /// The peer closed the connection in the middle of a response head or a
    /// framed (`Content-Length` or chunked) body: the message is truncated.
    ConnectionClosed,
    /// The connection cannot carry another request (the server asked to
    /// close, the body was framed by closing, an unread body was too large
    /// to drain, or an earlier error broke the stream): reconnect.
    MustReconnect,
    /// The status line is not `HTTP/1.x NNN reason`.
    MalformedStatusLine,
    /// The response is not HTTP/1.x.
    UnsupportedVersion,
    /// A header line is not `token ":" OWS value OWS` (this includes
    /// obsolete line folding, whitespace before the colon and control
    /// characters in values).
    MalformedHeader,
    /// One line of the response head is longer than `Limits::max_line_bytes`.
    LineTooLong,
    /// The response head is larger than `Limits::max_head_bytes`.
    HeaderSectionTooLarge,
    /// The response head has more than `Limits::max_headers` fields.
    TooManyHeaders,
    /// More than `Limits::max_interim_responses` 1xx responses preceded the
    /// final one.
    TooManyInterimResponses,
    /// The server switched protocols (101) although we never asked it to.
    UnexpectedSwitchingProtocols,
    /// `Content-Length` is not a decimal number that fits in 64 bits, or
    /// several `Content-Length` values disagree.
    BadContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` are present: a
    /// request-smuggling / response-splitting signature, refused outright.
    ConflictingFraming,
    /// A transfer coding other than plain `chunked`, which we cannot decode.
    UnsupportedTransferEncoding,
    /// A chunk-size line is not hexadecimal, overflows 64 bits or has
    /// malformed extensions.
    BadChunkSize,
    /// A chunk-size line (with its extensions) exceeds
    /// `Limits::max_chunk_line_bytes`.
    ChunkLineTooLong,
    /// Chunk data is not followed by CRLF.
    MalformedChunk,
    /// The trailer section exceeds `Limits::max_trailer_bytes`.
    TrailerTooLarge,
    /// The body is larger than the limit set for this request (or given to
    /// `read_to_vec`).
    BodyTooLarge,
    /// The request path is empty, not in origin form (`/...`) or contains
    /// spaces, control characters or non-ASCII bytes.
    InvalidPath,
    /// A request header name is not a token, is one the client manages
    /// itself, or a value (or the host) contains CR, LF or other control
    /// characters.
    InvalidRequestHeader,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(kind) => write!(f, "transport read failed: {kind:?}"),
            Self::Write(kind) => write!(f, "transport write failed: {kind:?}"),
            Self::NoResponse => f.write_str("connection closed before any response"),
            Self::ConnectionClosed => f.write_str("connection closed in the middle of a response"),
            Self::MustReconnect => f.write_str("connection cannot be reused: reconnect"),
            Self::MalformedStatusLine => f.write_str("malformed status line"),
            Self::UnsupportedVersion => f.write_str("response is not HTTP/1.x"),
            Self::MalformedHeader => f.write_str("malformed header line"),
            Self::LineTooLong => f.write_str("response head line too long"),
            Self::HeaderSectionTooLarge => f.write_str("response header section too large"),
            Self::TooManyHeaders => f.write_str("too many response headers"),
            Self::TooManyInterimResponses => f.write_str("too many 1xx interim responses"),
            Self::UnexpectedSwitchingProtocols => f.write_str("unexpected 101 Switching Protocols"),
            Self::BadContentLength => f.write_str("invalid or conflicting Content-Length"),
            Self::ConflictingFraming => {
                f.write_str("both Content-Length and Transfer-Encoding present")
            }
            Self::UnsupportedTransferEncoding => f.write_str("unsupported Transfer-Encoding"),
            Self::BadChunkSize => f.write_str("invalid chunk-size line"),
            Self::ChunkLineTooLong => f.write_str("chunk-size line too long"),
            Self::MalformedChunk => f.write_str("chunk data not followed by CRLF"),
            Self::TrailerTooLarge => f.write_str("chunked trailer section too large"),
            Self::BodyTooLarge => f.write_str("response body exceeds the limit"),
            Self::InvalidPath => f.write_str("invalid request path"),
            Self::InvalidRequestHeader => f.write_str("invalid request header or host"),
        }
    }
}

impl core::error::Error for HttpError {}

/// Lets [`HttpError`] be the error of the body reader's `embedded_io::Read`
/// implementation, so bodies plug into anything that consumes a reader.
impl embedded_io::Error for HttpError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Read(kind) | Self::Write(kind) => *kind,
            Self::NoResponse | Self::ConnectionClosed => ErrorKind::ConnectionAborted,
            Self::MustReconnect => ErrorKind::NotConnected,
            Self::InvalidPath | Self::InvalidRequestHeader => ErrorKind::InvalidInput,
            Self::UnsupportedVersion | Self::UnsupportedTransferEncoding => ErrorKind::Unsupported,
            Self::BodyTooLarge => ErrorKind::OutOfMemory,
            _ => ErrorKind::InvalidData,
        }
    }
}

impl HttpError {
    /// Maps a transport read error, keeping its kind.
    pub fn from_read<E: embedded_io::Error>(err: E) -> Self {
        Self::Read(err.kind())
    }

    /// Maps a transport write error, keeping its kind.
    pub fn from_write<E: embedded_io::Error>(err: E) -> Self {
        Self::Write(err.kind())
    }
}
