//! The connection: sends requests, reads response heads, streams bodies and
//! decides whether the transport may carry the next request.
//!
//! All state that must survive a dropped [`Response`] (how much of the body
//! is left, whether the server allows reuse) lives in the [`Client`], so the
//! next [`Client::send`] can drain what the caller did not read, or refuse
//! to reuse a connection whose position in the byte stream is unknown.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::mem;

use embedded_io::{ErrorKind, ErrorType, Read, Write};

use crate::HttpError;
use crate::request::{Request, validate_host};
use crate::response::{Framing, Headers, ResponseHead};
use crate::wire::{ChunkSizeLine, HeaderLine, StatusLine};

/// Request bodies up to this size are appended to the head and written in
/// one call, so a small API POST leaves in one TCP segment (Nagle is off).
const COALESCE_BYTES: usize = 4096;

/// Smallest read buffer accepted, whatever [`Limits::read_buffer_bytes`]
/// says: a zero-length read would look like end of stream.
const MIN_READ_BUFFER: usize = 64;

/// Stack buffer used to discard an unread body.
const DRAIN_STEP: usize = 512;

/// Step by which [`Body::read_to_vec`] grows its vector.
const READ_TO_VEC_STEP: usize = 16 * 1024;

/// Bounds on everything the server controls apart from time (timeouts are
/// the transport's). Defaults suit the EVE API; raise [`Limits::body_limit`]
/// per request (with [`Request::body_limit`]) for image downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Status line plus header section, terminators included.
    pub max_head_bytes: usize,
    /// One line of the head or of the trailer section, terminator excluded.
    pub max_line_bytes: usize,
    /// Header fields in one head.
    pub max_headers: usize,
    /// 1xx responses skipped before the final one.
    pub max_interim_responses: usize,
    /// A chunk-size line with its extensions, terminator excluded.
    pub max_chunk_line_bytes: usize,
    /// The whole trailer section of a chunked body.
    pub max_trailer_bytes: usize,
    /// Body bytes discarded to reuse a connection whose previous body was
    /// not read to the end; beyond this, reconnecting is cheaper.
    pub max_drain_bytes: u64,
    /// Default response body limit of a request.
    pub body_limit: u64,
    /// Size of the receive buffer (at least 64 bytes are used).
    pub read_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_line_bytes: 8 * 1024,
            max_headers: 64,
            max_interim_responses: 8,
            max_chunk_line_bytes: 1024,
            max_trailer_bytes: 4 * 1024,
            max_drain_bytes: 64 * 1024,
            body_limit: 16 * 1024 * 1024,
            read_buffer_bytes: 4 * 1024,
        }
    }
}

/// Where the connection stands between and during exchanges.
#[derive(Debug)]
enum State {
    /// Ready for a request.
    Idle,
    /// A response body is being read (maybe already dropped unread).
    Body(BodyState),
    /// The last exchange ended cleanly but the connection cannot be reused.
    Closed,
    /// An exchange failed; the stream position is unknown.
    Broken(HttpError),
}

#[derive(Debug)]
struct BodyState {
    phase: Phase,
    delivered: u64,
    limit: u64,
    keep_alive: bool,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Length { remaining: u64 },
    ChunkSize,
    ChunkData { remaining: u64 },
    ChunkEnd,
    UntilClose,
    Done,
}

/// An HTTP/1.1 client over one transport connection to one host.
///
/// Requests are sequential: a [`Response`] borrows the client, so the next
/// request can only be sent once it is dropped. When the client reports
/// [`HttpError::MustReconnect`] (or [`Client::is_reusable`] is false), open
/// a new transport and hand it over with [`Client::reconnect`].
#[derive(Debug)]
pub struct Client<T> {
    io: T,
    host: String,
    limits: Limits,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    state: State,
    /// The line being parsed, kept to reuse its allocation.
    line: Vec<u8>,
}

impl<T: Read + Write> Client<T> {
    /// A client for `host` (`name` or `name:port`, sent as `Host`) over an
    /// established transport, with default limits.
    pub fn new(io: T, host: &str) -> Result<Self, HttpError> {
        Self::with_limits(io, host, Limits::default())
    }

    /// Like [`Client::new`] with explicit limits.
    pub fn with_limits(io: T, host: &str, limits: Limits) -> Result<Self, HttpError> {
        validate_host(host)?;
        Ok(Self {
            io,
            host: String::from(host),
            limits,
            rbuf: vec![0; limits.read_buffer_bytes.max(MIN_READ_BUFFER)],
            rpos: 0,
            rend: 0,
            state: State::Idle,
            line: Vec::new(),
        })
    }

    /// The `Host` this client sends.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The transport, e.g. to adjust its timeouts.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Whether the next request may go over this transport. True while an
    /// unread body is pending on a kept-alive connection: [`Client::send`]
    /// will try to drain it and may still answer
    /// [`HttpError::MustReconnect`].
    pub fn is_reusable(&self) -> bool {
        match &self.state {
            State::Idle => self.rpos == self.rend,
            State::Body(body) => body.keep_alive,
            State::Closed | State::Broken(_) => false,
        }
    }

    /// Replaces the transport with a fresh connection (to the same host)
    /// and returns the old one, for the caller to close.
    pub fn reconnect(&mut self, io: T) -> T {
        self.rpos = 0;
        self.rend = 0;
        self.state = State::Idle;
        mem::replace(&mut self.io, io)
    }

    /// Gives the transport back.
    pub fn into_inner(self) -> T {
        self.io
    }

    /// Sends `req` and reads the response head, skipping 1xx interim
    /// responses; the body is then read from [`Response::body`].
    ///
    /// An invalid request is refused before anything is written and leaves
    /// the connection as it was. Any other error leaves it unusable.
    pub fn send(&mut self, req: &Request<'_>) -> Result<Response<'_, T>, HttpError> {
        let mut out = Vec::new();
        req.encode_head(&self.host, &mut out)?;
        self.make_ready()?;
        let head = self.exchange(req, out).map_err(|e| self.fail(e))?;
        let framing = Framing::of(req.method(), &head).map_err(|e| self.fail(e))?;
        let phase = match framing {
            Framing::Empty | Framing::Length(0) => Phase::Done,
            Framing::Length(remaining) => Phase::Length { remaining },
            Framing::Chunked => Phase::ChunkSize,
            Framing::UntilClose => Phase::UntilClose,
        };
        let body = BodyState {
            phase,
            delivered: 0,
            limit: req.response_body_limit().unwrap_or(self.limits.body_limit),
            keep_alive: head.allows_keep_alive()
                && !req.wants_close()
                && framing != Framing::UntilClose,
        };
        self.state = settle(body);
        Ok(Response {
            head,
            body: Body {
                client: self,
                framing,
            },
        })
    }

    fn fail(&mut self, err: HttpError) -> HttpError {
        self.state = State::Broken(err);
        err
    }

    /// Writes the request and reads the final response head.
    fn exchange(&mut self, req: &Request<'_>, mut out: Vec<u8>) -> Result<ResponseHead, HttpError> {
        let body = req.body_bytes();
        if body.len() <= COALESCE_BYTES {
            out.extend_from_slice(body);
            self.write_all(&out)?;
        } else {
            self.write_all(&out)?;
            self.write_all(body)?;
        }
        self.io.flush().map_err(HttpError::from_write)?;
        if self.rpos >= self.rend && self.fill()? == 0 {
            return Err(HttpError::NoResponse);
        }
        for _ in 0..=self.limits.max_interim_responses {
            let head = self.read_head()?;
            match head.status {
                101 => return Err(HttpError::UnexpectedSwitchingProtocols),
                100..=199 => {}
                _ => return Ok(head),
            }
        }
        Err(HttpError::TooManyInterimResponses)
    }

    /// Gets the connection to a request boundary: drains a pending body
    /// within [`Limits::max_drain_bytes`], and refuses connections that
    /// cannot be reused. Bytes already received while idle were never
    /// asked for (a response to nothing); a connection carrying them is
    /// desynchronised and refused too.
    fn make_ready(&mut self) -> Result<(), HttpError> {
        if matches!(self.state, State::Body(_)) {
            self.drain();
        }
        match self.state {
            State::Idle if self.rpos == self.rend => Ok(()),
            State::Idle => {
                self.state = State::Closed;
                Err(HttpError::MustReconnect)
            }
            _ => Err(HttpError::MustReconnect),
        }
    }

    fn drain(&mut self) {
        if let State::Body(body) = &self.state
            && !body.keep_alive
        {
            self.state = State::Closed;
            return;
        }
        let mut budget = self.limits.max_drain_bytes;
        let mut sink = [0u8; DRAIN_STEP];
        // Each pass reads at least one byte off the budget, ends the body
        // or breaks the connection, so the loop is bounded by the budget.
        while matches!(self.state, State::Body(_)) {
            let want = usize::try_from(budget.saturating_add(1))
                .unwrap_or(usize::MAX)
                .min(sink.len());
            let Some(dst) = sink.get_mut(..want) else {
                return;
            };
            if let Ok(n) = self.read_body(dst) {
                match budget.checked_sub(n as u64) {
                    Some(left) => budget = left,
                    None => self.state = State::Closed,
                }
            }
        }
    }

    fn write_all(&mut self, mut data: &[u8]) -> Result<(), HttpError> {
        // `embedded_io::Write::write_all` panics on `Ok(0)`; this reports it.
        while !data.is_empty() {
            let n = self.io.write(data).map_err(HttpError::from_write)?;
            if n == 0 {
                return Err(HttpError::Write(ErrorKind::WriteZero));
            }
            data = data.get(n..).unwrap_or(&[]);
        }
        Ok(())
    }

    /// Refills the empty receive buffer; returns the bytes now buffered,
    /// 0 at end of stream.
    fn fill(&mut self) -> Result<usize, HttpError> {
        self.rpos = 0;
        self.rend = 0;
        let n = self.io.read(&mut self.rbuf).map_err(HttpError::from_read)?;
        self.rend = n.min(self.rbuf.len());
        Ok(self.rend)
    }

    /// Reads one line into `self.line`, without its LF or CRLF terminator.
    /// The bytes consumed (terminator included) are taken from `budget`.
    fn read_line(
        &mut self,
        max_line: usize,
        budget: &mut usize,
        too_long: HttpError,
        too_large: HttpError,
    ) -> Result<(), HttpError> {
        self.line.clear();
        // Each pass consumes at least one buffered byte (a refill that
        // yields none is end of stream) and takes it off the budget.
        loop {
            if self.rpos >= self.rend && self.fill()? == 0 {
                return Err(HttpError::ConnectionClosed);
            }
            let avail = self.rbuf.get(self.rpos..self.rend).unwrap_or(&[]);
            let newline = avail.iter().position(|&b| b == b'\n');
            let take = newline.map_or(avail.len(), |i| i.saturating_add(1));
            *budget = budget.checked_sub(take).ok_or(too_large)?;
            self.line
                .extend_from_slice(avail.get(..take).unwrap_or(&[]));
            self.rpos = self.rpos.saturating_add(take);
            if newline.is_none() {
                // One byte of slack: a CR may be waiting for its LF.
                if self.line.len() > max_line.saturating_add(1) {
                    return Err(too_long);
                }
                continue;
            }
            self.line.pop();
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            return if self.line.len() > max_line {
                Err(too_long)
            } else {
                Ok(())
            };
        }
    }

    fn read_head(&mut self) -> Result<ResponseHead, HttpError> {
        let max_line = self.limits.max_line_bytes;
        let mut budget = self.limits.max_head_bytes;
        let (too_long, too_large) = (HttpError::LineTooLong, HttpError::HeaderSectionTooLarge);
        self.read_line(max_line, &mut budget, too_long, too_large)?;
        let status = StatusLine::new_checked(&self.line)?;
        let (version, code) = (status.version(), status.code());
        let reason = String::from_utf8_lossy(status.reason()).into_owned();
        let mut headers = Headers::default();
        // Bounded: every line takes at least its terminator off the budget.
        loop {
            self.read_line(max_line, &mut budget, too_long, too_large)?;
            if self.line.is_empty() {
                break;
            }
            if headers.len() >= self.limits.max_headers {
                return Err(HttpError::TooManyHeaders);
            }
            headers.push(&HeaderLine::new_checked(&self.line)?);
        }
        Ok(ResponseHead {
            version,
            status: code,
            reason,
            headers,
        })
    }

    /// Reads and validates the trailer section, then discards it: nothing
    /// in the EVE API or image downloads uses trailers.
    fn skip_trailers(&mut self) -> Result<(), HttpError> {
        let mut budget = self.limits.max_trailer_bytes;
        let max_line = self.limits.max_line_bytes;
        let too_large = HttpError::TrailerTooLarge;
        // Bounded: every line takes at least its terminator off the budget.
        loop {
            self.read_line(max_line, &mut budget, too_large, too_large)?;
            if self.line.is_empty() {
                return Ok(());
            }
            HeaderLine::new_checked(&self.line)?;
        }
    }

    /// Body bytes into `buf`; 0 only once the body is complete.
    fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, HttpError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut body = match mem::replace(&mut self.state, State::Closed) {
            State::Body(body) => body,
            State::Broken(err) => return Err(self.fail(err)),
            other => {
                self.state = other;
                return Ok(0);
            }
        };
        match self.step_body(&mut body, buf) {
            Ok(n) => {
                self.state = settle(body);
                Ok(n)
            }
            Err(err) => Err(self.fail(err)),
        }
    }

    fn step_body(&mut self, body: &mut BodyState, buf: &mut [u8]) -> Result<usize, HttpError> {
        // Each pass returns or moves the chunk state machine forward along
        // ChunkEnd -> ChunkSize -> ChunkData (which returns) or Done, so
        // there are at most three passes.
        loop {
            match body.phase {
                Phase::Done => return Ok(0),
                Phase::Length { remaining } => {
                    if body
                        .delivered
                        .checked_add(remaining)
                        .is_none_or(|t| t > body.limit)
                    {
                        return Err(HttpError::BodyTooLarge);
                    }
                    let n = self.read_framed(body, buf, remaining)?;
                    body.phase = match remaining.checked_sub(n as u64) {
                        Some(0) | None => Phase::Done,
                        Some(remaining) => Phase::Length { remaining },
                    };
                    return Ok(n);
                }
                Phase::ChunkData { remaining } => {
                    let n = self.read_framed(body, buf, remaining)?;
                    body.phase = match remaining.checked_sub(n as u64) {
                        Some(0) | None => Phase::ChunkEnd,
                        Some(remaining) => Phase::ChunkData { remaining },
                    };
                    return Ok(n);
                }
                Phase::ChunkEnd => {
                    let mut budget = 2;
                    let err = HttpError::MalformedChunk;
                    self.read_line(0, &mut budget, err, err)?;
                    body.phase = Phase::ChunkSize;
                }
                Phase::ChunkSize => {
                    let max = self.limits.max_chunk_line_bytes;
                    let mut budget = max.saturating_add(2);
                    let err = HttpError::ChunkLineTooLong;
                    self.read_line(max, &mut budget, err, err)?;
                    let size = ChunkSizeLine::new_checked(&self.line)?.size();
                    if size == 0 {
                        self.skip_trailers()?;
                        body.phase = Phase::Done;
                        return Ok(0);
                    }
                    if body
                        .delivered
                        .checked_add(size)
                        .is_none_or(|t| t > body.limit)
                    {
                        return Err(HttpError::BodyTooLarge);
                    }
                    body.phase = Phase::ChunkData { remaining: size };
                }
                Phase::UntilClose => {
                    // Ask for one byte more than the limit allows, to tell
                    // "exactly at the limit" from "over it".
                    let allowance = body.limit.saturating_sub(body.delivered).saturating_add(1);
                    let n = self.read_some(buf, allowance)?;
                    if n == 0 {
                        body.phase = Phase::Done;
                        return Ok(0);
                    }
                    body.delivered = body
                        .delivered
                        .checked_add(n as u64)
                        .filter(|&t| t <= body.limit)
                        .ok_or(HttpError::BodyTooLarge)?;
                    return Ok(n);
                }
            }
        }
    }

    /// Reads framed body bytes (at most `remaining`, which is non-zero);
    /// end of stream here means a truncated body.
    fn read_framed(
        &mut self,
        body: &mut BodyState,
        buf: &mut [u8],
        remaining: u64,
    ) -> Result<usize, HttpError> {
        let n = self.read_some(buf, remaining)?;
        if n == 0 {
            return Err(HttpError::ConnectionClosed);
        }
        body.delivered = body
            .delivered
            .checked_add(n as u64)
            .ok_or(HttpError::BodyTooLarge)?;
        Ok(n)
    }

    /// Up to `max` bytes into `buf`: first from the receive buffer, else
    /// straight from the transport into `buf` (no copy for large reads,
    /// and never past `max`, so nothing beyond the body is consumed).
    fn read_some(&mut self, buf: &mut [u8], max: u64) -> Result<usize, HttpError> {
        let want = usize::try_from(max).unwrap_or(usize::MAX).min(buf.len());
        let Some(dst) = buf.get_mut(..want) else {
            return Ok(0);
        };
        if self.rpos < self.rend {
            let avail = self.rbuf.get(self.rpos..self.rend).unwrap_or(&[]);
            let n = avail.len().min(dst.len());
            if let (Some(to), Some(from)) = (dst.get_mut(..n), avail.get(..n)) {
                to.copy_from_slice(from);
            }
            self.rpos = self.rpos.saturating_add(n);
            Ok(n)
        } else {
            let n = self.io.read(dst).map_err(HttpError::from_read)?;
            Ok(n.min(dst.len()))
        }
    }
}

/// The state after a step: a finished body returns the connection to
/// idle, or closed when it cannot be reused.
fn settle(body: BodyState) -> State {
    match body.phase {
        Phase::Done if body.keep_alive => State::Idle,
        Phase::Done => State::Closed,
        _ => State::Body(body),
    }
}

/// A final response: its head, and its body to stream.
#[derive(Debug)]
pub struct Response<'c, T> {
    /// Status line and headers.
    pub head: ResponseHead,
    /// The body reader (a separate field, so the head stays readable
    /// while the body is borrowed mutably).
    pub body: Body<'c, T>,
}

impl<T> Response<'_, T> {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status()
    }
}

/// A response body as an `embedded_io::Read`: yields the payload (chunk
/// framing removed) and then `Ok(0)`. It holds no more than the client's
/// receive buffer, so arbitrarily large bodies stream in constant memory.
#[derive(Debug)]
pub struct Body<'c, T> {
    client: &'c mut Client<T>,
    framing: Framing,
}

impl<T: Read + Write> Body<'_, T> {
    /// How the body is delimited (for a `Content-Length`, the total size).
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// True once the body has been read to its end.
    pub fn is_complete(&self) -> bool {
        matches!(self.client.state, State::Idle | State::Closed)
    }

    /// Reads the rest of the body into memory, failing with
    /// [`HttpError::BodyTooLarge`] if it exceeds `limit` bytes (or the
    /// request's body limit). A declared length over `limit` fails before
    /// anything is read.
    pub fn read_to_vec(&mut self, limit: usize) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        if let Framing::Length(n) = self.framing {
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= limit)
                .ok_or(HttpError::BodyTooLarge)?;
            out.reserve_exact(n);
        }
        // Each pass reads at least one byte or returns; past `limit` it
        // returns, so the loop is bounded by `limit`.
        loop {
            let len = out.len();
            let room = limit.checked_sub(len).ok_or(HttpError::BodyTooLarge)?;
            let want = room.saturating_add(1).min(READ_TO_VEC_STEP);
            let end = len.checked_add(want).ok_or(HttpError::BodyTooLarge)?;
            out.resize(end, 0);
            let n = match out.get_mut(len..) {
                Some(dst) => self.read(dst)?,
                None => 0,
            };
            out.truncate(len.saturating_add(n.min(want)));
            if n == 0 {
                return Ok(out);
            }
            if out.len() > limit {
                return Err(HttpError::BodyTooLarge);
            }
        }
    }
}

impl<T> ErrorType for Body<'_, T> {
    type Error = HttpError;
}

impl<T: Read + Write> Read for Body<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, HttpError> {
        self.client.read_body(buf)
    }
}
