//! One download attempt: from where the sink is, to the end or the first
//! error, following redirects.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use core::fmt;

use embedded_io::Read;
use evehttp::{Client, Framing, Headers, Request, Scheme, Target};

use crate::error::FetchError;
use crate::transport::{Proxy, Transport, connect};

/// Bytes read per step.
const CHUNK: usize = 16 * 1024;

/// Why the sink refused bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkError {
    /// Writing would eat into the disk reserve.
    NoRoom,
    /// No slot expects this blob (any more).
    NotExpected,
    /// The sink refused the write (past the expected size, a gap).
    Rejected,
    /// The sink failed.
    Io,
    /// The sink takes no more bytes for now: the download's turn is over
    /// and it resumes from the staged bytes at its next.
    Paused,
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoRoom => "no room: the disk reserve would be used",
            Self::NotExpected => "no slot expects this blob",
            Self::Rejected => "write refused",
            Self::Io => "storage failed",
            Self::Paused => "paused",
        })
    }
}

/// Where downloaded bytes go: a slot of the host's blob store, which only
/// takes bytes and hashes them when told the blob is complete.
pub trait BlobSink {
    /// Bytes already staged: the download resumes there.
    fn staged(&mut self) -> Result<u64, SinkError>;
    /// Writes `data` at `offset`, which is at most the staged length (an
    /// offset below it discards what followed: a restart).
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError>;
}

/// What identifies the version of a file being resumed: its strong ETag
/// (sent as `If-Range`) and its total length. The caller keeps it with the
/// staged bytes, so a resume after a restart still checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validator {
    /// A strong ETag, as the server sent it.
    pub etag: Option<String>,
    /// The file's length.
    pub total: Option<u64>,
}

/// What to download.
#[derive(Debug, Clone)]
pub struct Download {
    /// The file.
    pub url: Target,
    /// `Authorization` value, sent only to the URL's own scheme, host and
    /// port (never to a storage host a redirect leads to).
    pub authorization: Option<String>,
    /// The size the signed config gives, if it does.
    pub expected_size: Option<u64>,
    /// The most bytes accepted when no size is expected.
    pub max_size: u64,
    /// Redirects followed at most.
    pub max_redirects: u8,
}

/// How an attempt ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The blob's length.
    pub total: u64,
    /// Where this attempt started (0 when it restarted).
    pub resumed_from: u64,
    /// Bytes this attempt fetched.
    pub fetched: u64,
}

/// Fetches `req` into `sink` from where the sink is, reporting
/// `(staged, total)` to `progress` after every write. `validator` comes
/// from the previous attempt and is updated as the server answers (keep
/// it even when this fails).
pub fn download<T: Transport, S: BlobSink>(
    transport: &mut T,
    proxy: Option<&Proxy>,
    sink: &mut S,
    req: &Download,
    validator: &mut Validator,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Outcome, FetchError> {
    let limit = match req.expected_size {
        Some(size) if size > req.max_size => {
            return Err(FetchError::TooLarge {
                limit: req.max_size,
            });
        }
        Some(size) => size,
        None => req.max_size,
    };
    let mut offset = sink.staged()?;
    if offset > limit {
        offset = restart(sink, validator)?;
    }
    if req.expected_size == Some(offset) {
        return Ok(Outcome {
            total: offset,
            resumed_from: offset,
            fetched: 0,
        });
    }
    let mut url = req.url.clone();
    let mut redirects = 0u8;
    // At most one restart when the file turns out to have changed, so a
    // server that keeps changing cannot keep us looping.
    let mut restarted = false;
    loop {
        let conn = connect(&mut *transport, proxy, url.scheme, &url.host, url.port)?;
        let mut client = Client::new(conn, &url.authority())?;
        let range = format!("bytes={offset}-");
        let mut request = Request::get(&url.path)
            .header("Accept-Encoding", "identity")
            .body_limit(limit)
            .close();
        if offset > 0 {
            request = request.header("Range", &range);
            if let Some(etag) = validator.etag.as_deref().filter(|e| !e.starts_with("W/")) {
                request = request.header("If-Range", etag);
            }
        }
        let same_origin =
            url.scheme == req.url.scheme && url.host == req.url.host && url.port == req.url.port;
        if let Some(auth) = req.authorization.as_deref().filter(|_| same_origin) {
            request = request.header("Authorization", auth);
        }
        let mut resp = client.send(&request)?;
        let status = resp.status();
        let headers = resp.head.headers();
        match status {
            301 | 302 | 303 | 307 | 308 => {
                let next = follow(&url, headers)?;
                redirects = redirects.saturating_add(1);
                if redirects > req.max_redirects {
                    return Err(FetchError::TooManyRedirects);
                }
                url = next;
                continue;
            }
            206 if offset > 0 => {
                let (start, total) = content_range(headers).ok_or(FetchError::BadContentRange)?;
                if start != Some(offset) {
                    return Err(FetchError::BadContentRange);
                }
                let changed = match (total, validator.total) {
                    (Some(now), Some(before)) => now != before,
                    _ => false,
                };
                if changed && validator.etag.is_none() && !restarted {
                    restarted = true;
                    offset = restart(sink, validator)?;
                    continue;
                }
                check_total(total, req.expected_size)?;
                validator.total = total.or(validator.total);
                remember_etag(validator, headers);
                let resumed_from = offset;
                let end = stream(&mut resp.body, sink, offset, limit, total, progress)?;
                return finish(end, total, req.expected_size, resumed_from);
            }
            200 => {
                if offset > 0 {
                    restart(sink, validator)?;
                }
                let total = match resp.body.framing() {
                    Framing::Length(n) => Some(n),
                    _ => None,
                };
                check_total(total, req.expected_size)?;
                if let Some(t) = total.filter(|&t| t > limit) {
                    return Err(FetchError::LengthMismatch {
                        expected: limit,
                        got: t,
                    });
                }
                validator.total = total;
                validator.etag = None;
                remember_etag(validator, headers);
                let end = stream(&mut resp.body, sink, 0, limit, total, progress)?;
                return finish(end, total, req.expected_size, 0);
            }
            416 if offset > 0 => {
                let total = content_range(headers).and_then(|(_, t)| t);
                if total == Some(offset) && req.expected_size.is_none_or(|e| e == offset) {
                    return Ok(Outcome {
                        total: offset,
                        resumed_from: offset,
                        fetched: 0,
                    });
                }
                if restarted {
                    return Err(FetchError::BadContentRange);
                }
                restarted = true;
                offset = restart(sink, validator)?;
            }
            401 | 407 => return Err(FetchError::Unauthorized(status)),
            403 => return Err(FetchError::Forbidden),
            404 | 410 => return Err(FetchError::NotFound),
            429 | 500..=599 => return Err(FetchError::Server(status)),
            _ => return Err(FetchError::UnexpectedStatus(status)),
        }
    }
}

/// Starts the blob over: the sink drops its staged bytes.
fn restart<S: BlobSink>(sink: &mut S, validator: &mut Validator) -> Result<u64, FetchError> {
    sink.write(0, &[])?;
    *validator = Validator::default();
    Ok(0)
}

fn remember_etag(validator: &mut Validator, headers: &Headers) {
    if let Some(etag) = headers.get_str("etag") {
        validator.etag = Some(String::from(etag));
    }
}

/// The server's total must be the expected size.
fn check_total(total: Option<u64>, expected: Option<u64>) -> Result<(), FetchError> {
    match (total, expected) {
        (Some(got), Some(expected)) if got != expected => {
            Err(FetchError::LengthMismatch { expected, got })
        }
        _ => Ok(()),
    }
}

fn finish(
    end: u64,
    total: Option<u64>,
    expected: Option<u64>,
    resumed_from: u64,
) -> Result<Outcome, FetchError> {
    if let Some(expected) = total.or(expected).filter(|&t| t != end) {
        return Err(FetchError::LengthMismatch { expected, got: end });
    }
    Ok(Outcome {
        total: end,
        resumed_from,
        fetched: end - resumed_from,
    })
}

/// Copies the body into the sink from `offset`; returns the end offset.
fn stream<R: Read<Error = evehttp::HttpError>, S: BlobSink>(
    body: &mut R,
    sink: &mut S,
    mut offset: u64,
    limit: u64,
    total: Option<u64>,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<u64, FetchError> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        // The client's own body limit is the same bound, met first by a
        // body with no length.
        let n = body.read(&mut buf).map_err(|e| match e {
            evehttp::HttpError::BodyTooLarge => FetchError::TooLarge { limit },
            other => FetchError::Http(other),
        })?;
        if n == 0 {
            return Ok(offset);
        }
        let end = offset.saturating_add(n as u64);
        if end > limit {
            return Err(FetchError::TooLarge { limit });
        }
        sink.write(offset, buf.get(..n).unwrap_or(&[]))?;
        offset = end;
        progress(offset, total);
    }
}

/// The target of a redirect: an absolute http(s) URL, or an absolute path
/// on the same server. https never leads to http.
fn follow(from: &Target, headers: &Headers) -> Result<Target, FetchError> {
    let location = headers
        .get_str("location")
        .ok_or(FetchError::BadRedirect)?
        .trim();
    let next = if location.starts_with('/') && !location.starts_with("//") {
        if !location.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FetchError::BadRedirect);
        }
        Target {
            path: String::from(location),
            ..from.clone()
        }
    } else {
        Target::parse_url(location).map_err(|_| FetchError::BadRedirect)?
    };
    if from.scheme == Scheme::Https && next.scheme == Scheme::Http {
        return Err(FetchError::InsecureRedirect);
    }
    Ok(next)
}

/// `Content-Range: bytes a-b/total` as (a, total), `bytes */total` as
/// (None, total); a total of `*` is unknown.
fn content_range(headers: &Headers) -> Option<(Option<u64>, Option<u64>)> {
    let value = headers.get_str("content-range")?.trim();
    let rest = value.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(parse_u64(t)?),
    };
    if range.trim() == "*" {
        return Some((None, total));
    }
    let (a, b) = range.split_once('-')?;
    let (a, b) = (parse_u64(a.trim())?, parse_u64(b.trim())?);
    if b < a || total.is_some_and(|t| b >= t) {
        return None;
    }
    Some((Some(a), total))
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
