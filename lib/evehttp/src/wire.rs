//! HTTP/1.1 message framing lines (RFC 9112) as checked views.
//!
//! As with smoltcp's `Packet`/`Repr` split, each view wraps received bytes
//! and is only constructed through `new_checked`, which validates the whole
//! line; its accessors then read the validated fields. The parsed, owned
//! representation of a response head is [`crate::ResponseHead`]. Every
//! function here is total: slicing goes through `get`/`split_at_checked`,
//! arithmetic through checked operations, and loops run over the (bounded)
//! input, so hostile bytes produce an error, never a panic.
//!
//! Lines are handed over without their terminator. The reader accepts a bare
//! LF as a terminator, as RFC 9112 section 2.2 allows, but a CR anywhere else
//! is a control character and rejected, which closes the CR-only
//! response-splitting trick.

use crate::HttpError;

/// The protocol version of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: connections close unless the server says `keep-alive`.
    Http10,
    /// HTTP/1.1 (or a later 1.x minor, which must be treated as 1.1):
    /// connections persist unless the server says `close`.
    Http11,
}

/// `tchar` of RFC 9110 section 5.6.2: what header names are made of.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes allowed in a field value: visible ASCII, space, tab and obs-text.
/// Excludes every other control character, CR and LF in particular.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

fn is_ows(b: &u8) -> bool {
    *b == b' ' || *b == b'\t'
}

/// Strips optional whitespace (SP / HTAB) on both sides.
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i.saturating_add(1));
    s.get(start..end).unwrap_or(&[])
}

/// The non-empty elements of a comma-separated list field value
/// (RFC 9110 section 5.6.1), trimmed.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// A decimal `Content-Length` value: one or more digits, no sign, no
/// overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let digit = u64::from(char::from(b).to_digit(10)?);
        acc.checked_mul(10)?.checked_add(digit)
    })
}

/// A checked status line: `HTTP/1.x SP 3DIGIT [SP reason-phrase]`.
///
/// The reason phrase is optional because RFC 9112 lets servers omit it
/// and some do (including the trailing space).
#[derive(Debug, Clone, Copy)]
pub struct StatusLine<'a> {
    version: Version,
    code: u16,
    reason: &'a [u8],
}

impl<'a> StatusLine<'a> {
    /// Validates `line` (without its terminator).
    pub fn new_checked(line: &'a [u8]) -> Result<Self, HttpError> {
        let rest = line
            .strip_prefix(b"HTTP/")
            .ok_or(HttpError::MalformedStatusLine)?;
        let rest = rest
            .strip_prefix(b"1.")
            .ok_or(HttpError::UnsupportedVersion)?;
        let (&minor, rest) = rest.split_first().ok_or(HttpError::MalformedStatusLine)?;
        let version = match minor {
            b'0' => Version::Http10,
            b'1'..=b'9' => Version::Http11,
            _ => return Err(HttpError::MalformedStatusLine),
        };
        let rest = rest
            .strip_prefix(b" ")
            .ok_or(HttpError::MalformedStatusLine)?;
        let (digits, rest) = rest
            .split_at_checked(3)
            .ok_or(HttpError::MalformedStatusLine)?;
        let code = parse_decimal(digits)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (100..=599).contains(c))
            .ok_or(HttpError::MalformedStatusLine)?;
        let reason = match rest.split_first() {
            None => rest,
            Some((b' ', reason)) => reason,
            Some(_) => return Err(HttpError::MalformedStatusLine),
        };
        if !reason.iter().all(|&b| is_field_value_byte(b)) {
            return Err(HttpError::MalformedStatusLine);
        }
        Ok(Self {
            version,
            code,
            reason,
        })
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The status code, 100 to 599.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The reason phrase, possibly empty, possibly not UTF-8 (obs-text).
    pub fn reason(&self) -> &'a [u8] {
        self.reason
    }
}

/// A checked header (or trailer) field line: `token ":" OWS value OWS`.
///
/// Whitespace before the colon and obsolete line folding (a line starting
/// with whitespace) are rejected, as RFC 9112 sections 5.1 and 5.2 require
/// of a user agent that does not repair them: both are smuggling vectors.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLine<'a> {
    name: &'a [u8],
    value: &'a [u8],
}

impl<'a> HeaderLine<'a> {
    /// Validates `line` (without its terminator).
    pub fn new_checked(line: &'a [u8]) -> Result<Self, HttpError> {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HttpError::MalformedHeader)?;
        let (name, rest) = line
            .split_at_checked(colon)
            .ok_or(HttpError::MalformedHeader)?;
        let raw_value = rest.get(1..).ok_or(HttpError::MalformedHeader)?;
        if name.is_empty()
            || !name.iter().all(|&b| is_tchar(b))
            || !raw_value.iter().all(|&b| is_field_value_byte(b))
        {
            return Err(HttpError::MalformedHeader);
        }
        Ok(Self {
            name,
            value: trim_ows(raw_value),
        })
    }

    /// The field name (a token, so ASCII).
    pub fn name(&self) -> &'a [u8] {
        self.name
    }

    /// The field value without surrounding whitespace.
    pub fn value(&self) -> &'a [u8] {
        self.value
    }
}

/// A checked chunk-size line: `1*HEXDIG [BWS ";" chunk-ext]`.
///
/// Extensions are checked for control characters and then ignored, as RFC
/// 9112 section 7.1.1 allows for extensions a recipient does not know.
#[derive(Debug, Clone, Copy)]
pub struct ChunkSizeLine<'a> {
    size: u64,
    extensions: &'a [u8],
}

impl<'a> ChunkSizeLine<'a> {
    /// Validates `line` (without its terminator); hex digits may be upper
    /// or lower case and the size must fit in 64 bits.
    pub fn new_checked(line: &'a [u8]) -> Result<Self, HttpError> {
        let digits_len = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let (digits, rest) = line
            .split_at_checked(digits_len)
            .ok_or(HttpError::BadChunkSize)?;
        if digits.is_empty() {
            return Err(HttpError::BadChunkSize);
        }
        let size = digits
            .iter()
            .try_fold(0u64, |acc, &b| {
                let digit = u64::from(char::from(b).to_digit(16)?);
                acc.checked_mul(16)?.checked_add(digit)
            })
            .ok_or(HttpError::BadChunkSize)?;
        let extensions = trim_ows(rest);
        let well_formed = match extensions.first() {
            None => true,
            Some(b';') => extensions.iter().all(|&b| is_field_value_byte(b)),
            Some(_) => false,
        };
        if !well_formed {
            return Err(HttpError::BadChunkSize);
        }
        Ok(Self { size, extensions })
    }

    /// The size of the chunk's data; 0 marks the last chunk.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The raw extensions, starting with `;`, or empty.
    pub fn extensions(&self) -> &'a [u8] {
        self.extensions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let s = StatusLine::new_checked(b"HTTP/1.1 200 OK").unwrap();
        assert_eq!(
            (s.version(), s.code(), s.reason()),
            (Version::Http11, 200, &b"OK"[..])
        );
        let s = StatusLine::new_checked(b"HTTP/1.0 404").unwrap();
        assert_eq!(
            (s.version(), s.code(), s.reason()),
            (Version::Http10, 404, &b""[..])
        );
        let s = StatusLine::new_checked(b"HTTP/1.1 204 ").unwrap();
        assert_eq!(s.reason(), b"");
        for bad in [
            &b""[..],
            b"HTTP/1.1",
            b"HTTP/1.1 20",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 099 X",
            b"HTTP/1.1 600 X",
            b"HTTP/1.1  200 OK",
            b"HTTP/1.1 200 O\rK",
            b"HTTP/1.x 200 OK",
            b"http/1.1 200 OK",
            b"HTTP/1.1 -20 OK",
        ] {
            assert_eq!(
                StatusLine::new_checked(bad).unwrap_err(),
                HttpError::MalformedStatusLine
            );
        }
        assert_eq!(
            StatusLine::new_checked(b"HTTP/2.0 200 OK").unwrap_err(),
            HttpError::UnsupportedVersion
        );
    }

    #[test]
    fn header_lines() {
        let h = HeaderLine::new_checked(b"Content-Type: \t text/plain \t").unwrap();
        assert_eq!(
            (h.name(), h.value()),
            (&b"Content-Type"[..], &b"text/plain"[..])
        );
        let h = HeaderLine::new_checked(b"X-Empty:").unwrap();
        assert_eq!(h.value(), b"");
        for bad in [
            &b"NoColon"[..],
            b": value",
            b"Name : value",
            b" folded: value",
            b"Na\0me: v",
            b"Name: v\ralue",
            b"Name: v\x7f",
        ] {
            assert_eq!(
                HeaderLine::new_checked(bad).unwrap_err(),
                HttpError::MalformedHeader
            );
        }
    }

    #[test]
    fn chunk_lines() {
        let c = ChunkSizeLine::new_checked(b"1aF").unwrap();
        assert_eq!(c.size(), 0x1af);
        let c = ChunkSizeLine::new_checked(b"10 ; name=\"v\"; x").unwrap();
        assert_eq!((c.size(), c.extensions()), (16, &b"; name=\"v\"; x"[..]));
        assert_eq!(
            ChunkSizeLine::new_checked(b"ffffffffffffffff")
                .unwrap()
                .size(),
            u64::MAX
        );
        for bad in [
            &b""[..],
            b"x",
            b"-1",
            b"1 2",
            b"10000000000000000",
            b"1;\x01",
        ] {
            assert_eq!(
                ChunkSizeLine::new_checked(bad).unwrap_err(),
                HttpError::BadChunkSize
            );
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"  "), b"");
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b"+1"), None);
        let v: alloc::vec::Vec<&[u8]> = list_elements(b" a, ,b ,").collect();
        assert_eq!(v, [&b"a"[..], b"b"]);
    }
}
