//! The parsed representation of a response head and how its body is framed.

use alloc::string::String;
use alloc::vec::Vec;

use crate::HttpError;
use crate::request::Method;
use crate::wire::{HeaderLine, Version, list_elements, parse_decimal, trim_ows};

/// Response header fields in arrival order, bounded by
/// [`crate::Limits::max_headers`] and [`crate::Limits::max_head_bytes`].
///
/// All names and values live in one buffer (one allocation instead of two
/// per field); lookups compare names case-insensitively, as field names are.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    bytes: Vec<u8>,
    /// Per field: where its name ends and its value ends in `bytes`; the
    /// name starts where the previous value ended.
    ends: Vec<(usize, usize)>,
}

impl Headers {
    pub(crate) fn push(&mut self, line: &HeaderLine<'_>) {
        self.bytes.extend_from_slice(line.name());
        let name_end = self.bytes.len();
        self.bytes.extend_from_slice(line.value());
        self.ends.push((name_end, self.bytes.len()));
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Every field as (name, value) in arrival order. Names are tokens,
    /// hence ASCII; values are raw bytes (they may carry obs-text).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let starts = core::iter::once(0).chain(self.ends.iter().map(|&(_, v)| v));
        starts
            .zip(&self.ends)
            .map(|(start, &(name_end, value_end))| {
                let name = self.bytes.get(start..name_end).unwrap_or(&[]);
                let value = self.bytes.get(name_end..value_end).unwrap_or(&[]);
                (core::str::from_utf8(name).unwrap_or(""), value)
            })
    }

    /// Values of every field named `name` (case-insensitive), in order.
    pub fn get_all<'h>(&'h self, name: &str) -> impl Iterator<Item = &'h [u8]> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The value of the first field named `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_all(name).next()
    }

    /// Like [`Headers::get`], but only if the value is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// Whether a comma-separated list field (such as `Connection`) holds
    /// `token`, case-insensitively, in any of its occurrences.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(list_elements)
            .any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
    }
}

/// Status line and headers of a final (non-1xx) response.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub(crate) version: Version,
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) headers: Headers,
}

impl ResponseHead {
    /// The version the server answered with.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The status code. 3xx are returned as is: redirects are not followed
    /// (the EVE API has none, and following one could leave the trusted
    /// controller).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase (non-UTF-8 bytes replaced); informative only.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Whether the server lets the connection carry another request:
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`.
    pub fn allows_keep_alive(&self) -> bool {
        let close = self.headers.has_token("connection", "close");
        match self.version {
            Version::Http11 => !close,
            Version::Http10 => !close && self.headers.has_token("connection", "keep-alive"),
        }
    }
}

/// How a response body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD responses, 204 and 304.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither length nor chunked: the body ends when the server closes the
    /// connection, which therefore cannot be reused.
    UntilClose,
}

impl Framing {
    /// Decides the framing of a final response to `method`.
    ///
    /// A response with both `Transfer-Encoding` and `Content-Length` is an
    /// error ([`HttpError::ConflictingFraming`]) rather than following RFC
    /// 9112's "chunked wins, then close": our peers are a known controller
    /// and image servers, for which such a message means an attack or a
    /// broken proxy, and refusing it is the simplest way to never
    /// desynchronise. Repeated `Content-Length` values must agree; the only
    /// transfer coding accepted is a lone `chunked` (we decode no
    /// compression).
    pub fn of(method: Method, head: &ResponseHead) -> Result<Self, HttpError> {
        if method == Method::Head || head.status == 204 || head.status == 304 {
            return Ok(Self::Empty);
        }
        let headers = &head.headers;
        let has_te = headers.get("transfer-encoding").is_some();
        let has_cl = headers.get("content-length").is_some();
        match (has_te, has_cl) {
            (true, true) => Err(HttpError::ConflictingFraming),
            (true, false) => {
                let mut codings = headers.get_all("transfer-encoding").flat_map(list_elements);
                match (codings.next(), codings.next()) {
                    (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(Self::Chunked),
                    _ => Err(HttpError::UnsupportedTransferEncoding),
                }
            }
            (false, true) => {
                let mut length = None;
                // `split` yields at least one (maybe empty) element per
                // value, and an empty element does not parse.
                let elements = headers
                    .get_all("content-length")
                    .flat_map(|v| v.split(|&b| b == b','))
                    .map(trim_ows);
                for element in elements {
                    let n = parse_decimal(element).ok_or(HttpError::BadContentLength)?;
                    if length.is_some_and(|l| l != n) {
                        return Err(HttpError::BadContentLength);
                    }
                    length = Some(n);
                }
                length.map(Self::Length).ok_or(HttpError::BadContentLength)
            }
            (false, false) => Ok(Self::UntilClose),
        }
    }
}
