//! The parts of DNS the instance's server needs: reading a query's
//! question, answering it from local names, and reading the answer an
//! upstream server relays to learn which addresses a name stands for.
//!
//! Everything here reads hostile bytes: names are at most 255 bytes,
//! compression pointers only point backwards and are followed at most 16
//! times, at most 64 records are read, and nothing panics.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use wirebytes::{Reader, be_u16_at, u8_at};

pub(crate) const HEADER_LEN: usize = 12;
pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_CNAME: u16 = 5;
pub(crate) const CLASS_IN: u16 = 1;
pub(crate) const RCODE_FORMERR: u8 = 1;
pub(crate) const RCODE_SERVFAIL: u8 = 2;
pub(crate) const RCODE_REFUSED: u8 = 5;

const MAX_NAME: usize = 255;
const MAX_POINTERS: usize = 16;
const MAX_RECORDS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DnsError {
    Truncated,
    BadName,
    NotAQuery,
    NotAnAnswer,
}

impl From<wirebytes::Error> for DnsError {
    fn from(_: wirebytes::Error) -> Self {
        DnsError::Truncated
    }
}

/// Reads the name at `at`: its text (lower case, no trailing dot) and
/// where the name ends in place (after its first pointer, if any).
pub(crate) fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut wire_len = 0usize;
    let mut pointers = 0;
    let mut end = None;
    loop {
        let len = u8_at(msg, at)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Ok((name, end.unwrap_or(at + 1)));
            }
            0x00 => {
                let len = usize::from(len);
                wire_len += len + 1;
                let label = msg.get(at + 1..at + 1 + len).ok_or(DnsError::Truncated)?;
                if wire_len > MAX_NAME || !label.iter().all(|b| (0x21..0x7f).contains(b)) {
                    return Err(DnsError::BadName);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
                at += 1 + len;
            }
            0xc0 => {
                let target = usize::from(be_u16_at(msg, at)? & 0x3fff);
                pointers += 1;
                if target >= at || pointers > MAX_POINTERS {
                    return Err(DnsError::BadName);
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err(DnsError::BadName),
        }
    }
}

/// A query's header and single question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub id: u16,
    pub flags: u16,
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question section as sent, for copying into an answer.
    pub question: Vec<u8>,
}

pub(crate) fn parse_query(msg: &[u8]) -> Result<Query, DnsError> {
    if msg.len() < HEADER_LEN {
        return Err(DnsError::Truncated);
    }
    let id = be_u16_at(msg, 0)?;
    let flags = be_u16_at(msg, 2)?;
    let questions = be_u16_at(msg, 4)?;
    let opcode = (flags >> 11) & 0xf;
    if flags & 0x8000 != 0 || opcode != 0 || questions != 1 {
        return Err(DnsError::NotAQuery);
    }
    let (name, end) = read_name(msg, HEADER_LEN)?;
    let qtype = be_u16_at(msg, end)?;
    let qclass = be_u16_at(msg, end + 2)?;
    Ok(Query {
        id,
        flags,
        name,
        qtype,
        qclass,
        question: msg[HEADER_LEN..end + 4].to_vec(),
    })
}

/// An answer from this server: the question echoed, `addrs` as A records
/// for it (TTL 0, as dnsmasq answers local names), authoritative.
pub(crate) fn answer(query: &Query, addrs: &[Ipv4Addr], rcode: u8) -> Vec<u8> {
    let mut msg = Vec::with_capacity(HEADER_LEN + query.question.len() + 16 * addrs.len());
    let rd = query.flags & 0x0100;
    let aa = if rcode == 0 { 0x0400 } else { 0 };
    let flags = 0x8000 | aa | rd | 0x0080 | u16::from(rcode & 0xf);
    msg.extend_from_slice(&query.id.to_be_bytes());
    msg.extend_from_slice(&flags.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    msg.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    msg.extend_from_slice(&[0, 0, 0, 0]);
    msg.extend_from_slice(&query.question);
    for addr in addrs {
        msg.extend_from_slice(&[0xc0, 0x0c]);
        msg.extend_from_slice(&TYPE_A.to_be_bytes());
        msg.extend_from_slice(&CLASS_IN.to_be_bytes());
        msg.extend_from_slice(&0u32.to_be_bytes());
        msg.extend_from_slice(&4u16.to_be_bytes());
        msg.extend_from_slice(&addr.octets());
    }
    msg
}

/// An error answer to a message whose question could not be read: the
/// header only.
pub(crate) fn header_only_error(msg: &[u8], rcode: u8) -> Option<Vec<u8>> {
    let id = be_u16_at(msg, 0).ok()?;
    let flags = be_u16_at(msg, 2).ok()?;
    if flags & 0x8000 != 0 {
        return None;
    }
    let flags = 0x8000 | (flags & 0x7900) | 0x0080 | u16::from(rcode & 0xf);
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Some(out)
}

/// What an upstream answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Learned {
    pub id: u16,
    pub rcode: u8,
    /// The question's name.
    pub qname: String,
    /// Every name the answer section speaks of: the question's, the
    /// records' owners and CNAME targets.
    pub names: Vec<String>,
    pub addrs: Vec<Ipv4Addr>,
}

pub(crate) fn parse_answer(msg: &[u8]) -> Result<Learned, DnsError> {
    if msg.len() < HEADER_LEN {
        return Err(DnsError::Truncated);
    }
    let id = be_u16_at(msg, 0)?;
    let flags = be_u16_at(msg, 2)?;
    let questions = be_u16_at(msg, 4)?;
    let answers = usize::from(be_u16_at(msg, 6)?);
    if flags & 0x8000 == 0 || questions != 1 {
        return Err(DnsError::NotAnAnswer);
    }
    let (qname, end) = read_name(msg, HEADER_LEN)?;
    let mut r = Reader::new(msg);
    r.skip(end + 4)?;
    let mut names = alloc::vec![qname.clone()];
    let mut addrs = Vec::new();
    for _ in 0..answers.min(MAX_RECORDS) {
        let (owner, end) = read_name(msg, r.position())?;
        r.skip(end - r.position())?;
        let rtype = r.be_u16()?;
        let class = r.be_u16()?;
        let _ttl = r.be_u32()?;
        let data_at = r.position() + 2;
        let data = r.be_u16_prefixed(usize::from(u16::MAX))?;
        if class != CLASS_IN {
            continue;
        }
        match rtype {
            TYPE_A => {
                let octets: [u8; 4] = data.try_into().map_err(|_| DnsError::Truncated)?;
                addrs.push(Ipv4Addr::from(octets));
            }
            TYPE_CNAME => {
                let (target, _) = read_name(msg, data_at)?;
                if !names.contains(&target) {
                    names.push(target);
                }
            }
            _ => {}
        }
        if !names.contains(&owner) {
            names.push(owner);
        }
    }
    Ok(Learned {
        id,
        rcode: (flags & 0xf) as u8,
        qname,
        names,
        addrs,
    })
}

/// Whether `answer` answers the question of `query` (both already read
/// far enough to have one): compared as sent, case-insensitively.
pub(crate) fn same_question(query: &Query, answer: &[u8]) -> bool {
    let Ok((name, end)) = read_name(answer, HEADER_LEN) else {
        return false;
    };
    name == query.name
        && be_u16_at(answer, end).ok() == Some(query.qtype)
        && be_u16_at(answer, end + 2).ok() == Some(query.qclass)
}

/// Replaces a message's ID in place.
pub(crate) fn set_id(msg: &mut [u8], id: u16) {
    if let Some(head) = msg.get_mut(..2) {
        head.copy_from_slice(&id.to_be_bytes());
    }
}
