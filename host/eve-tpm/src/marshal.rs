//! TPM 2.0 command and response marshalling (TPM 2.0 Library, part 1
//! section 18 and part 2), by hand: the few commands we send do not justify
//! a C library or a generated binding.
//!
//! Commands carry authorisations only as password sessions (`TPM_RS_PW`):
//! every object we use has an empty authorisation value, so there is
//! nothing an HMAC session would protect.

use std::fmt;

pub const TPM_ST_NO_SESSIONS: u16 = 0x8001;
pub const TPM_ST_SESSIONS: u16 = 0x8002;
pub const TPM_RS_PW: u32 = 0x4000_0009;

/// Command codes (part 2, 6.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum CommandCode {
    EvictControl = 0x120,
    CreatePrimary = 0x131,
    Startup = 0x144,
    NvRead = 0x14e,
    EcdhZgen = 0x154,
    Quote = 0x158,
    Sign = 0x15d,
    FlushContext = 0x165,
    NvReadPublic = 0x169,
    ReadPublic = 0x173,
    GetCapability = 0x17a,
    PcrRead = 0x17e,
}

impl fmt::Display for CommandCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TPM2_{self:?}")
    }
}

/// A command being marshalled: header, handles, authorisation area, then
/// parameters. The size field is filled in by [`Command::finish`].
pub struct Command {
    bytes: Vec<u8>,
}

impl Command {
    /// Starts a command. `passwords` holds one password per handle that
    /// needs authorisation, in handle order (those handles come first).
    pub fn new(code: CommandCode, handles: &[u32], passwords: &[&[u8]]) -> Self {
        let tag = if passwords.is_empty() {
            TPM_ST_NO_SESSIONS
        } else {
            TPM_ST_SESSIONS
        };
        let mut c = Command {
            bytes: Vec::with_capacity(128),
        };
        c.u16(tag);
        c.u32(0);
        c.u32(code as u32);
        for &handle in handles {
            c.u32(handle);
        }
        if !passwords.is_empty() {
            let area: usize = passwords.iter().map(|p| 4 + 2 + 1 + 2 + p.len()).sum();
            c.u32(area as u32);
            for password in passwords {
                c.u32(TPM_RS_PW);
                c.tpm2b(&[]); // nonceCaller
                c.u8(0); // sessionAttributes
                c.tpm2b(password);
            }
        }
        c
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(b);
        self
    }

    /// A `TPM2B_*`: a 16-bit size then the bytes. Callers pass only
    /// buffers bounded far below 64 KiB (digests, nonces, templates).
    pub fn tpm2b(&mut self, b: &[u8]) -> &mut Self {
        self.u16(b.len() as u16);
        self.bytes(b)
    }

    pub fn finish(mut self) -> Vec<u8> {
        let size = (self.bytes.len() as u32).to_be_bytes();
        self.bytes[2..6].copy_from_slice(&size);
        self.bytes
    }
}

/// Why a response could not be read; turned into
/// [`crate::TpmCommandError`] with the command's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// A field runs past the end of the response or of its enclosing size.
    Truncated,
    /// The response's size field disagrees with its length.
    SizeMismatch,
    /// The tag is neither `TPM_ST_SESSIONS` nor `TPM_ST_NO_SESSIONS`.
    BadTag,
    /// A field holds a value the command cannot have produced.
    Unexpected(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated => f.write_str("truncated"),
            ParseError::SizeMismatch => f.write_str("size field disagrees with length"),
            ParseError::BadTag => f.write_str("bad tag"),
            ParseError::Unexpected(what) => f.write_str(what),
        }
    }
}

/// Every failed read of a response is a truncation: the TPM's own sizes
/// are the only limits, and they are checked where they are read.
impl From<wirebytes::Error> for ParseError {
    fn from(_: wirebytes::Error) -> Self {
        ParseError::Truncated
    }
}

/// A bounds-checked reader over response bytes: the TPM's big-endian
/// fields over [`wirebytes::Reader`].
#[derive(Debug, Clone)]
pub struct Reader<'a>(wirebytes::Reader<'a>);

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader(wirebytes::Reader::new(bytes))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        Ok(self.0.take(n)?)
    }

    pub fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.0.u8()?)
    }

    pub fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(self.0.be_u16()?)
    }

    pub fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(self.0.be_u32()?)
    }

    /// A `TPM2B_*`'s bytes: a 16-bit size, so no limit beyond it.
    pub fn tpm2b(&mut self) -> Result<&'a [u8], ParseError> {
        Ok(self.0.be_u16_prefixed(usize::from(u16::MAX))?)
    }

    /// A `TPM2B_*` or parameter area read as its own reader.
    fn area(&mut self, n: usize) -> Result<Reader<'a>, ParseError> {
        Ok(Reader(self.0.sub(n)?))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A successful response, split into its handles and its parameters.
#[derive(Debug)]
pub struct Reply<'a> {
    pub handles: Reader<'a>,
    pub params: Reader<'a>,
}

/// Checks a response's header (tag, and size against its length) and
/// returns its response code.
pub fn response_code(bytes: &[u8]) -> Result<u32, ParseError> {
    let tag = wirebytes::be_u16_at(bytes, 0)?;
    let size = wirebytes::be_u32_at(bytes, 2)?;
    let rc = wirebytes::be_u32_at(bytes, 6)?;
    if tag != TPM_ST_SESSIONS && tag != TPM_ST_NO_SESSIONS {
        return Err(ParseError::BadTag);
    }
    if usize::try_from(size).ok() != Some(bytes.len()) {
        return Err(ParseError::SizeMismatch);
    }
    Ok(rc)
}

/// Splits a successful response to a command that returns `handle_count`
/// handles. With `TPM_ST_SESSIONS` the parameter area is bounded by its
/// size field and the session area after it is ignored: password sessions
/// answer with nothing to check.
pub fn split_response(bytes: &[u8], handle_count: usize) -> Result<Reply<'_>, ParseError> {
    if response_code(bytes)? != 0 {
        return Err(ParseError::Unexpected("not a successful response"));
    }
    let mut r = Reader::new(bytes);
    let tag = r.u16()?;
    r.take(8)?; // size and response code, checked above
    let handles = r.area(4 * handle_count)?;
    let params = if tag == TPM_ST_SESSIONS {
        let n = r.u32()? as usize;
        r.area(n)?
    } else {
        r
    };
    Ok(Reply { handles, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_header_and_password_session() {
        let mut c = Command::new(CommandCode::Sign, &[0x8100_0001], &[b"pw"]);
        c.u16(0xabcd);
        let bytes = c.finish();
        assert_eq!(
            bytes,
            [
                0x80, 0x02, 0, 0, 0, 0x1f, 0, 0, 0x01, 0x5d, // header
                0x81, 0, 0, 1, // handle
                0, 0, 0, 11, // authorisation size
                0x40, 0, 0, 9, 0, 0, 0, 0, 2, b'p', b'w', // TPM_RS_PW
                0xab, 0xcd,
            ]
        );
        let bare = Command::new(CommandCode::Startup, &[], &[]).finish();
        assert_eq!(bare, [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x44]);
    }

    #[test]
    fn responses_are_split_and_bounded() {
        let ok = [
            0x80, 0x02, 0, 0, 0, 25, 0, 0, 0, 0, // header
            0x80, 0, 0, 1, // handle
            0, 0, 0, 2, 0xaa, 0xbb, // parameters
            0, 0, 1, 0, 0, // session
        ];
        let mut reply = split_response(&ok, 1).unwrap();
        assert_eq!(reply.handles.u32(), Ok(0x8000_0001));
        assert_eq!(reply.params.u16(), Ok(0xaabb));
        assert!(reply.params.is_empty());

        let failed = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x8b];
        assert_eq!(response_code(&failed), Ok(0x18b));
        assert!(split_response(&failed, 0).is_err());
        let mut wrong_size = failed;
        wrong_size[5] = 11;
        assert_eq!(
            response_code(&wrong_size).unwrap_err(),
            ParseError::SizeMismatch
        );
        let mut bad_tag = failed;
        bad_tag[1] = 0xc4;
        assert_eq!(response_code(&bad_tag).unwrap_err(), ParseError::BadTag);
        // A parameter size larger than what follows.
        let mut long_params = ok;
        long_params[17] = 200;
        assert_eq!(
            split_response(&long_params, 1).unwrap_err(),
            ParseError::Truncated
        );
    }

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[0, 5, 1, 2]);
        assert_eq!(r.tpm2b(), Err(ParseError::Truncated));
        let mut r = Reader::new(&[1]);
        assert_eq!(r.u16(), Err(ParseError::Truncated));
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u8(), Err(ParseError::Truncated));
    }
}
