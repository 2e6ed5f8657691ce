//! Why a download failed.

use core::fmt;

use evehttp::HttpError;

use crate::download::SinkError;
use crate::transport::ConnectError;

/// Everything that can end a download attempt. `Copy` and allocation-free,
/// so a service can keep the last one in its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// Opening the connection failed.
    Connect(ConnectError),
    /// The HTTP exchange failed (transport error, truncated or malformed
    /// response, a body over its limit).
    Http(HttpError),
    /// The sink refused the bytes.
    Sink(SinkError),
    /// The URL or a `Location` is not a usable http(s) URL.
    BadUrl,
    /// More redirects than allowed (a loop, or a chain too long).
    TooManyRedirects,
    /// A redirect from https to plain http.
    InsecureRedirect,
    /// A redirect without a usable `Location`.
    BadRedirect,
    /// 401 or 407: credentials missing or refused.
    Unauthorized(u16),
    /// 403.
    Forbidden,
    /// 404 or 410.
    NotFound,
    /// 5xx or 429: the server is in trouble; worth retrying.
    Server(u16),
    /// Any other status.
    UnexpectedStatus(u16),
    /// A 206 whose `Content-Range` is missing, malformed or does not start
    /// where we asked.
    BadContentRange,
    /// The server's length disagrees with the expected size, with itself
    /// or with what it sent.
    LengthMismatch {
        /// The length we hold to (expected size or announced total).
        expected: u64,
        /// What the server said or sent.
        got: u64,
    },
    /// The blob is larger than allowed.
    TooLarge {
        /// The limit.
        limit: u64,
    },
}

impl FetchError {
    /// Whether trying again later can help: network trouble and server
    /// errors, not refusals or a sink that is full.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(e) => e.is_retryable(),
            Self::Http(e) => matches!(
                e,
                HttpError::Read(_)
                    | HttpError::Write(_)
                    | HttpError::NoResponse
                    | HttpError::ConnectionClosed
                    | HttpError::MustReconnect
            ),
            Self::Server(_) => true,
            Self::Sink(_)
            | Self::BadUrl
            | Self::TooManyRedirects
            | Self::InsecureRedirect
            | Self::BadRedirect
            | Self::Unauthorized(_)
            | Self::Forbidden
            | Self::NotFound
            | Self::UnexpectedStatus(_)
            | Self::BadContentRange
            | Self::LengthMismatch { .. }
            | Self::TooLarge { .. } => false,
        }
    }
}

impl From<HttpError> for FetchError {
    fn from(e: HttpError) -> Self {
        Self::Http(e)
    }
}

impl From<ConnectError> for FetchError {
    fn from(e: ConnectError) -> Self {
        Self::Connect(e)
    }
}

impl From<SinkError> for FetchError {
    fn from(e: SinkError) -> Self {
        Self::Sink(e)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Http(e) => write!(f, "http: {e}"),
            Self::Sink(e) => write!(f, "blob store: {e}"),
            Self::BadUrl => f.write_str("not an http(s) URL"),
            Self::TooManyRedirects => f.write_str("too many redirects (a loop?)"),
            Self::InsecureRedirect => f.write_str("refused a redirect from https to http"),
            Self::BadRedirect => f.write_str("redirect without a usable Location"),
            Self::Unauthorized(s) => write!(f, "{s}: credentials missing or refused"),
            Self::Forbidden => f.write_str("403 forbidden"),
            Self::NotFound => f.write_str("not found"),
            Self::Server(s) => write!(f, "server error {s}"),
            Self::UnexpectedStatus(s) => write!(f, "unexpected status {s}"),
            Self::BadContentRange => f.write_str("partial response does not match the range asked"),
            Self::LengthMismatch { expected, got } => {
                write!(
                    f,
                    "length mismatch: expected {expected} bytes, server has {got}"
                )
            }
            Self::TooLarge { limit } => write!(f, "larger than the {limit}-byte limit"),
        }
    }
}

impl core::error::Error for FetchError {}
