//! DNS on the wire, just what a stub resolver needs: an A query for a name,
//! and the IPv4 addresses of the answer.
//!
//! Answers come from the network, so parsing treats them as hostile: every
//! read is bounded, compression pointers may only point backwards and are
//! followed at most [`MAX_POINTERS`] times, names are limited to 255 bytes,
//! and nothing panics. Following the wire-format convention of this project,
//! [`Header`] is a checked view of the fixed part and [`Answer`] the parsed
//! representation.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::net::Ipv4Addr;

use wirebytes::{Reader, Sink, Writer, be_u16_at, u8_at};

/// Most compression pointers followed while reading one name.
pub const MAX_POINTERS: usize = 16;
/// Longest name on the wire, length bytes included.
pub const MAX_NAME_WIRE: usize = 255;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 12;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

/// Why a query could not be built or an answer not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    /// The name is empty, too long, or has an empty, long or odd label.
    BadName,
    /// The output buffer is too small for the query.
    BufferTooSmall,
    /// The message ends before its counts say it should.
    Truncated,
    /// The server set TC: the answer did not fit a UDP datagram.
    TruncatedByServer,
    /// Not a response to our query (ID, QR or opcode do not match).
    NotOurResponse,
    /// The server says the name does not exist (NXDOMAIN).
    NameNotFound,
    /// The server failed or refused (any other non-zero RCODE).
    ServerFailure(u8),
    /// A compression pointer points forward, loops, or a name is too long.
    BadCompression,
    /// An A record whose data is not 4 bytes.
    BadRecord,
}

impl core::fmt::Display for DnsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DnsError::BadName => f.write_str("not a valid host name"),
            DnsError::BufferTooSmall => f.write_str("buffer too small for the query"),
            DnsError::Truncated => f.write_str("DNS message truncated"),
            DnsError::TruncatedByServer => f.write_str("DNS answer truncated by the server (TC)"),
            DnsError::NotOurResponse => f.write_str("DNS message is not a response to our query"),
            DnsError::NameNotFound => f.write_str("name not found (NXDOMAIN)"),
            DnsError::ServerFailure(code) => write!(f, "DNS server error (RCODE {code})"),
            DnsError::BadCompression => f.write_str("malformed name compression"),
            DnsError::BadRecord => f.write_str("malformed A record"),
        }
    }
}

impl core::error::Error for DnsError {}

/// Every failed read of an answer is a truncation: lengths are checked here
/// against DNS's own limits before they reach the reader.
impl From<wirebytes::Error> for DnsError {
    fn from(_: wirebytes::Error) -> Self {
        DnsError::Truncated
    }
}

/// Checks that `name` is a host name we can ask for: dot-separated labels
/// of 1 to 63 letters, digits, hyphens or underscores, 253 bytes at most
/// (a trailing dot is allowed).
pub fn valid_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Writes an A query for `name` with recursion desired into `buf`;
/// returns its length.
pub fn encode_query(id: u16, name: &str, buf: &mut [u8]) -> Result<usize, DnsError> {
    if !valid_name(name) {
        return Err(DnsError::BadName);
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut out = Writer::new(buf);
    emit_query(&mut out, id, name).map_err(|_| DnsError::BufferTooSmall)?;
    Ok(out.written())
}

fn emit_query(out: &mut Writer<'_>, id: u16, name: &str) -> Result<(), wirebytes::Error> {
    out.be_u16(id)?;
    out.be_u16(0x0100)?; // RD
    out.put(&[0, 1, 0, 0, 0, 0, 0, 0])?; // one question
    for label in name.split('.') {
        // valid_name bounds every label to 63 bytes.
        out.u8_prefixed(label.as_bytes())?;
    }
    out.u8(0)?;
    out.be_u16(TYPE_A)?;
    out.be_u16(CLASS_IN)
}

/// A checked view of a message's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub questions: u16,
    pub answers: u16,
}

impl Header {
    pub fn parse(bytes: &[u8]) -> Result<Header, DnsError> {
        if bytes.len() < HEADER_LEN {
            return Err(DnsError::Truncated);
        }
        Ok(Header {
            id: be_u16_at(bytes, 0)?,
            flags: be_u16_at(bytes, 2)?,
            questions: be_u16_at(bytes, 4)?,
            answers: be_u16_at(bytes, 6)?,
        })
    }

    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }

    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }
}

/// Steps the reader over the name at its position (a pointer ends a name
/// in place). Pointers are checked, not followed: only their target's
/// sanity matters for skipping. Label bytes are stepped over without being
/// read: [`check_name`] has checked that they are there.
fn skip_name(r: &mut Reader<'_>) -> Result<(), DnsError> {
    let mut wire_len = 0usize;
    loop {
        let at = r.position();
        let len = r.peek_u8()?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(r.skip(1)?),
            0x00 => {
                wire_len = wire_len.saturating_add(usize::from(len) + 1);
                if wire_len > MAX_NAME_WIRE {
                    return Err(DnsError::BadCompression);
                }
                r.skip(usize::from(len) + 1)?;
            }
            0xc0 => {
                let target = usize::from(r.be_u16()? & 0x3fff);
                if target >= at {
                    return Err(DnsError::BadCompression);
                }
                return Ok(());
            }
            _ => return Err(DnsError::BadCompression),
        }
    }
}

/// Checks that the name at `at` resolves within bounds: labels fit, the
/// total stays under 255 bytes, pointers go backwards, at most
/// [`MAX_POINTERS`] of them.
fn check_name(msg: &[u8], mut at: usize) -> Result<(), DnsError> {
    let mut wire_len = 0usize;
    let mut pointers = 0;
    loop {
        let len = u8_at(msg, at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(()),
            0x00 => {
                wire_len = wire_len.saturating_add(usize::from(len) + 1);
                let end = at
                    .checked_add(usize::from(len) + 1)
                    .ok_or(DnsError::Truncated)?;
                if wire_len > MAX_NAME_WIRE || end > msg.len() {
                    return Err(if wire_len > MAX_NAME_WIRE {
                        DnsError::BadCompression
                    } else {
                        DnsError::Truncated
                    });
                }
                at = end;
            }
            0xc0 => {
                let target = usize::from(be_u16_at(msg, at)? & 0x3fff);
                pointers += 1;
                if target >= at || pointers > MAX_POINTERS {
                    return Err(DnsError::BadCompression);
                }
                at = target;
            }
            _ => return Err(DnsError::BadCompression),
        }
    }
}

/// The parsed answer: every A record in the answer section, in order
/// (CNAME records on the way are skipped: a recursive server puts the
/// addresses of the chain's end after them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub addresses: Vec<Ipv4Addr>,
    /// The smallest TTL among the A records, in seconds.
    pub ttl: u32,
}

/// Parses the response to query `id`.
pub fn parse_response(msg: &[u8], id: u16) -> Result<Answer, DnsError> {
    let header = Header::parse(msg)?;
    if header.id != id || !header.is_response() || header.opcode() != 0 {
        return Err(DnsError::NotOurResponse);
    }
    if header.truncated() {
        return Err(DnsError::TruncatedByServer);
    }
    match header.rcode() {
        0 => {}
        3 => return Err(DnsError::NameNotFound),
        code => return Err(DnsError::ServerFailure(code)),
    }
    let mut r = Reader::new(msg);
    r.skip(HEADER_LEN)?;
    for _ in 0..header.questions {
        check_name(msg, r.position())?;
        skip_name(&mut r)?;
        r.skip(4)?; // type, class
    }
    let mut answer = Answer {
        addresses: Vec::new(),
        ttl: u32::MAX,
    };
    for _ in 0..header.answers {
        check_name(msg, r.position())?;
        skip_name(&mut r)?;
        let rtype = r.be_u16()?;
        let class = r.be_u16()?;
        let ttl = r.be_u32()?;
        let data = r.be_u16_prefixed(usize::from(u16::MAX))?;
        if rtype == TYPE_A && class == CLASS_IN {
            let octets: [u8; 4] = data.try_into().map_err(|_| DnsError::BadRecord)?;
            answer.addresses.push(Ipv4Addr::from(octets));
            answer.ttl = answer.ttl.min(ttl);
        }
    }
    if answer.addresses.is_empty() {
        answer.ttl = 0;
    }
    Ok(answer)
}

#[cfg(test)]
mod tests;
