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

/// A checked view of one frame at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking anything; accessors may then panic.
    /// Use [`Frame::new_checked`] for bytes from a peer.
    pub fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps `buffer` after checking the header (magic, version) and that
    /// the whole body is present. Bytes after the frame are ignored.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, WireError> {
        let frame = Frame { buffer };
        frame.check()?;
        Ok(frame)
    }

    /// Checks what [`Frame::new_checked`] checks.
    pub fn check(&self) -> Result<(), WireError> {
        let bytes = self.buffer.as_ref();
        check_header(bytes)?;
        if bytes.len() < self.frame_len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The message kind byte.
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[3]
    }

    /// The body length from the header.
    pub fn body_len(&self) -> usize {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize
    }

    /// Header plus body length.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.frame_len()]
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// Checks magic and version of a header at the start of `bytes`, which may
/// be just the header, and returns the frame length it announces.
pub(crate) fn check_header(bytes: &[u8]) -> Result<usize, WireError> {
    let header = bytes.get(..HEADER_LEN).ok_or(WireError::Truncated)?;
    if header[..2] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if header[2] != FRAME_VERSION {
        return Err(WireError::UnsupportedVersion(header[2]));
    }
    let body = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    Ok(HEADER_LEN + body)
}

/// Writes a header for a body of `body_len` bytes into the start of `buf`.
pub(crate) fn emit_header(kind: u8, body_len: usize, buf: &mut [u8]) -> Result<(), WireError> {
    let len = u32::try_from(body_len).map_err(|_| WireError::FrameTooLarge)?;
    let header = buf.get_mut(..HEADER_LEN).ok_or(WireError::BufferTooSmall)?;
    header[..2].copy_from_slice(&MAGIC);
    header[2] = FRAME_VERSION;
    header[3] = kind;
    header[4..].copy_from_slice(&len.to_be_bytes());
    Ok(())
}
