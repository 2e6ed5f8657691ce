//! The frame: what delimits one message in the byte stream.
//!
//! ```text
//! offset  size  field
//! 0       2     magic 0x45 0x42 ("EB", EVE bus)
//! 2       1     frame version, 1
//! 3       1     message kind (see `Kind`)
//! 4       4     body length N, u32 big-endian
//! 8       N     body (layout per kind, see `Message`)
//! ```
//!
//! The magic and version sit in every frame, not only the first, so a
//! reader that lost its place (a bug, a corrupted stream) notices at the
//! next header instead of misreading bodies; it then reconnects, since a
//! length-prefixed stream cannot be resynchronised reliably in place.

use wirebytes::{Reader, Sink};

use crate::WireError;

/// The two magic bytes every frame starts with.
pub const MAGIC: [u8; 2] = *b"EB";
/// The frame layout version this crate reads and writes.
pub const FRAME_VERSION: u8 = 1;
/// Size of the frame header.
pub const HEADER_LEN: usize = 8;
/// Largest frame any configuration may allow (16 MiB).
pub const MAX_FRAME_LEN_CEILING: usize = 16 << 20;

/// Size limits both ends agree on; frames or fields beyond them are errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame, header included. Bounds the decoder's memory.
    pub max_frame_len: usize,
    /// Longest log message, in bytes. Clients truncate longer messages;
    /// decoders refuse them.
    pub max_log_message_len: usize,
}

impl Limits {
    /// 64 KiB frames, 4 KiB log messages.
    pub const DEFAULT: Limits = Limits {
        max_frame_len: 64 << 10,
        max_log_message_len: 4 << 10,
    };

    /// The frame limit, clamped to what the format can carry: at least a
    /// header and at most [`MAX_FRAME_LEN_CEILING`].
    pub fn frame_len(&self) -> usize {
        self.max_frame_len.clamp(HEADER_LEN, MAX_FRAME_LEN_CEILING)
    }

    /// The log message limit, clamped to what a `str` field can carry.
    pub fn log_message_len(&self) -> usize {
        self.max_log_message_len.min(usize::from(u16::MAX))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// A frame header, parsed: the representation of the first
/// [`HEADER_LEN`] bytes of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message kind byte (see [`Kind`](crate::Kind)); any value, since
    /// which kinds exist is the message layer's business.
    pub kind: u8,
    /// Bytes of body after the header.
    pub body_len: u32,
}

impl Header {
    /// The header of a frame whose body is `body_len` bytes;
    /// [`WireError::FrameTooLarge`] when the length field cannot say it.
    pub fn for_body(kind: u8, body_len: usize) -> Result<Header, WireError> {
        let body_len = u32::try_from(body_len).map_err(|_| WireError::FrameTooLarge)?;
        Ok(Header { kind, body_len })
    }

    /// Parses the header at the start of `bytes`, which may be the header
    /// alone: all eight bytes must be there, then the magic and the
    /// version must be ours.
    pub fn parse(bytes: &[u8]) -> Result<Header, WireError> {
        let mut fields = Reader::new(bytes).sub(HEADER_LEN)?;
        if fields.array()? != MAGIC {
            return Err(WireError::BadMagic);
        }
        let version = fields.u8()?;
        if version != FRAME_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let kind = fields.u8()?;
        let body_len = fields.be_u32()?;
        fields.finish()?;
        Ok(Header { kind, body_len })
    }

    /// Writes the header.
    pub fn emit(&self, out: &mut impl Sink) -> Result<(), WireError> {
        out.put(&MAGIC)?;
        out.u8(FRAME_VERSION)?;
        out.u8(self.kind)?;
        out.be_u32(self.body_len)?;
        Ok(())
    }

    /// Header plus body length.
    pub fn frame_len(&self) -> usize {
        usize::try_from(self.body_len).map_or(usize::MAX, |body| body.saturating_add(HEADER_LEN))
    }
}

/// A checked view of one frame at the start of a buffer: it exists only
/// once the header was parsed and the whole body is in the buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    header: Header,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` after checking the header (magic, version) and that
    /// the whole body is present. Bytes after the frame are ignored.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, WireError> {
        let bytes = buffer.as_ref();
        let header = Header::parse(bytes)?;
        if bytes.len() < header.frame_len() {
            return Err(WireError::Truncated);
        }
        Ok(Frame { buffer, header })
    }

    /// The parsed header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The message kind byte.
    pub fn kind(&self) -> u8 {
        self.header.kind
    }

    /// The body length from the header.
    pub fn body_len(&self) -> usize {
        self.frame_len() - HEADER_LEN
    }

    /// Header plus body length.
    pub fn frame_len(&self) -> usize {
        self.header.frame_len()
    }

    /// The body: [`WireError::Truncated`] only if the buffer shrank since
    /// the frame was checked, which a plain byte buffer never does.
    pub fn body(&self) -> Result<&[u8], WireError> {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.frame_len())
            .ok_or(WireError::Truncated)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}
