//! Emitting fields into a caller's buffer.

use crate::Error;

/// Where `emit` writes. Every field method is written once here in terms of
/// [`Sink::put`]; a length-prefixed field longer than its prefix can say is
/// [`Error::TooLong`], never a silently truncated length.
pub trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error>;

    /// A byte.
    fn u8(&mut self, value: u8) -> Result<(), Error> {
        self.put(&[value])
    }

    /// A big-endian `u16`.
    fn be_u16(&mut self, value: u16) -> Result<(), Error> {
        self.put(&value.to_be_bytes())
    }

    /// A big-endian `u32`.
    fn be_u32(&mut self, value: u32) -> Result<(), Error> {
        self.put(&value.to_be_bytes())
    }

    /// A big-endian `u64`.
    fn be_u64(&mut self, value: u64) -> Result<(), Error> {
        self.put(&value.to_be_bytes())
    }

    /// A little-endian `u16`.
    fn le_u16(&mut self, value: u16) -> Result<(), Error> {
        self.put(&value.to_le_bytes())
    }

    /// A little-endian `u32`.
    fn le_u32(&mut self, value: u32) -> Result<(), Error> {
        self.put(&value.to_le_bytes())
    }

    /// A little-endian `u64`.
    fn le_u64(&mut self, value: u64) -> Result<(), Error> {
        self.put(&value.to_le_bytes())
    }

    /// `bytes` after a one-byte length.
    fn u8_prefixed(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.u8(u8::try_from(bytes.len()).map_err(|_| Error::TooLong)?)?;
        self.put(bytes)
    }

    /// `bytes` after a big-endian `u16` length.
    fn be_u16_prefixed(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.be_u16(u16::try_from(bytes.len()).map_err(|_| Error::TooLong)?)?;
        self.put(bytes)
    }

    /// `bytes` after a big-endian `u32` length.
    fn be_u32_prefixed(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.be_u32(u32::try_from(bytes.len()).map_err(|_| Error::TooLong)?)?;
        self.put(bytes)
    }

    /// `bytes` after a little-endian `u32` length.
    fn le_u32_prefixed(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.le_u32(u32::try_from(bytes.len()).map_err(|_| Error::TooLong)?)?;
        self.put(bytes)
    }
}

/// Writes fields into the front of a caller's buffer, refusing to overrun
/// it: a field that does not fit is [`Error::BufferTooSmall`] and writes
/// nothing.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, len: 0 }
    }

    /// A writer at the start of `buf`, once `buf` is known to hold `needed`
    /// bytes: for an `emit` whose representation knows its length, so a
    /// short buffer is refused before anything is written.
    pub fn with_room(buf: &'a mut [u8], needed: usize) -> Result<Self, Error> {
        if buf.len() < needed {
            return Err(Error::BufferTooSmall);
        }
        Ok(Writer::new(buf))
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.len
    }
}

impl Sink for Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(Error::BufferTooSmall)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reader;

    #[test]
    fn emitted_fields_read_back() {
        let mut buf = [0u8; 32];
        let mut w = Writer::new(&mut buf);
        w.u8(1).unwrap();
        w.be_u16(2).unwrap();
        w.le_u32(3).unwrap();
        w.be_u64(4).unwrap();
        w.u8_prefixed(b"ab").unwrap();
        w.be_u16_prefixed(b"c").unwrap();
        w.le_u16(5).unwrap();
        w.be_u32(6).unwrap();
        let n = w.written();
        let mut r = Reader::new(&buf[..n]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.be_u16(), Ok(2));
        assert_eq!(r.le_u32(), Ok(3));
        assert_eq!(r.be_u64(), Ok(4));
        assert_eq!(r.u8_prefixed(2), Ok(&b"ab"[..]));
        assert_eq!(r.be_u16_prefixed(1), Ok(&b"c"[..]));
        assert_eq!(r.le_u16(), Ok(5));
        assert_eq!(r.be_u32(), Ok(6));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn a_full_buffer_refuses_and_keeps_what_was_written() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.be_u16(0xabcd).unwrap();
        assert_eq!(w.be_u16(1), Err(Error::BufferTooSmall));
        assert_eq!(w.written(), 2);
        w.u8(0xef).unwrap();
        assert_eq!(w.u8(0), Err(Error::BufferTooSmall));
        assert_eq!(buf, [0xab, 0xcd, 0xef]);
        assert!(Writer::with_room(&mut [0u8; 3], 4).is_err());
    }

    #[test]
    fn a_field_too_long_for_its_prefix_is_refused() {
        let mut buf = [0u8; 300];
        let mut w = Writer::new(&mut buf);
        assert_eq!(w.u8_prefixed(&[0; 256]), Err(Error::TooLong));
        assert_eq!(w.written(), 0);
        w.u8_prefixed(&[0; 255]).unwrap();
        assert_eq!(w.written(), 256);
    }
}
