//! Walking hostile bytes field by field.

use crate::Error;

/// Reads fields off the front of a byte slice, never past its end.
///
/// Every read either returns the field and advances, or fails with
/// [`Error::Truncated`] and leaves the reader where it was. Length-prefixed
/// fields are checked against the caller's limit before anything is taken,
/// so a hostile length can neither run past the input nor make the caller
/// allocate more than it agreed to.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// Bytes read so far: the offset of the next field in the input.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `len` bytes.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(len).ok_or(Error::Truncated)?;
        let field = self.bytes.get(self.at..end).ok_or(Error::Truncated)?;
        self.at = end;
        Ok(field)
    }

    /// Steps over `len` bytes.
    pub fn skip(&mut self, len: usize) -> Result<(), Error> {
        self.take(len).map(drop)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Every byte not read yet; the reader is then empty.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }

    /// A reader over the next `len` bytes (an area bounded by its own size
    /// field), which this reader steps over.
    pub fn sub(&mut self, len: usize) -> Result<Reader<'a>, Error> {
        self.take(len).map(Reader::new)
    }

    /// The next byte, without reading it.
    pub fn peek_u8(&self) -> Result<u8, Error> {
        self.bytes.get(self.at).copied().ok_or(Error::Truncated)
    }

    /// Succeeds only when every byte was read: the check that a parsed
    /// representation accounts for its whole input.
    pub fn finish(self) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes)
        }
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        self.array::<1>().map(|[b]| b)
    }

    /// A big-endian `u16`.
    pub fn be_u16(&mut self) -> Result<u16, Error> {
        self.array().map(u16::from_be_bytes)
    }

    /// A big-endian `u32`.
    pub fn be_u32(&mut self) -> Result<u32, Error> {
        self.array().map(u32::from_be_bytes)
    }

    /// A big-endian `u64`.
    pub fn be_u64(&mut self) -> Result<u64, Error> {
        self.array().map(u64::from_be_bytes)
    }

    /// A little-endian `u16`.
    pub fn le_u16(&mut self) -> Result<u16, Error> {
        self.array().map(u16::from_le_bytes)
    }

    /// A little-endian `u32`.
    pub fn le_u32(&mut self) -> Result<u32, Error> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    pub fn le_u64(&mut self) -> Result<u64, Error> {
        self.array().map(u64::from_le_bytes)
    }

    /// Bytes after a length already read: [`Error::TooLong`] when `len` is
    /// over `max`, else the next `len` bytes. On failure the reader is back
    /// where it was before the length.
    fn prefixed(&mut self, start: usize, len: u64, max: usize) -> Result<&'a [u8], Error> {
        let result = match usize::try_from(len) {
            Ok(len) if len <= max => self.take(len),
            _ => Err(Error::TooLong),
        };
        if result.is_err() {
            self.at = start;
        }
        result
    }

    /// A field with a one-byte length prefix, at most `max` bytes long.
    pub fn u8_prefixed(&mut self, max: usize) -> Result<&'a [u8], Error> {
        let start = self.at;
        let len = self.u8()?;
        self.prefixed(start, u64::from(len), max)
    }

    /// A field with a big-endian `u16` length prefix, at most `max` bytes.
    pub fn be_u16_prefixed(&mut self, max: usize) -> Result<&'a [u8], Error> {
        let start = self.at;
        let len = self.be_u16()?;
        self.prefixed(start, u64::from(len), max)
    }

    /// A field with a big-endian `u32` length prefix, at most `max` bytes.
    pub fn be_u32_prefixed(&mut self, max: usize) -> Result<&'a [u8], Error> {
        let start = self.at;
        let len = self.be_u32()?;
        self.prefixed(start, u64::from(len), max)
    }

    /// A field with a little-endian `u32` length prefix, at most `max`
    /// bytes.
    pub fn le_u32_prefixed(&mut self, max: usize) -> Result<&'a [u8], Error> {
        let start = self.at;
        let len = self.le_u32()?;
        self.prefixed(start, u64::from(len), max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_order_and_exactly() {
        let bytes = [1, 0, 2, 3, 0, 0, 0, 9, 8, 7];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.be_u16(), Ok(2));
        assert_eq!(r.le_u32(), Ok(3));
        assert_eq!(r.position(), 7);
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.peek_u8(), Ok(9));
        assert_eq!(r.clone().finish(), Err(Error::TrailingBytes));
        assert_eq!(r.rest(), [9, 8, 7]);
        assert_eq!(r.peek_u8(), Err(Error::Truncated));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn a_failed_read_takes_nothing() {
        let bytes = [0, 0, 0, 5, 1, 2];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.be_u64(), Err(Error::Truncated));
        assert_eq!(r.take(usize::MAX), Err(Error::Truncated));
        assert_eq!(r.be_u32_prefixed(100), Err(Error::Truncated));
        assert_eq!(r.position(), 0);
        assert_eq!(r.be_u32_prefixed(4), Err(Error::TooLong));
        assert_eq!(r.position(), 0);
        assert_eq!(r.be_u16(), Ok(0));
        assert_eq!(r.be_u16_prefixed(5), Err(Error::Truncated));
        assert_eq!(r.position(), 2);
    }

    #[test]
    fn prefixed_fields_and_sub_areas_are_bounded() {
        let bytes = [2, b'h', b'i', 3, 0, 0, 0, b'a', b'b', b'c', 0, 1, 0xff, 7];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8_prefixed(2), Ok(&b"hi"[..]));
        assert_eq!(r.le_u32_prefixed(3), Ok(&b"abc"[..]));
        let mut area = r.be_u16_prefixed(1).map(Reader::new).unwrap();
        assert_eq!(area.u8(), Ok(0xff));
        assert_eq!(area.u8(), Err(Error::Truncated));
        let mut sub = r.sub(1).unwrap();
        assert_eq!(sub.be_u16(), Err(Error::Truncated));
        assert_eq!(r.sub(1).map(|s| s.remaining()), Err(Error::Truncated));
        assert!(r.is_empty());
    }

    #[test]
    fn wide_fields_in_both_orders() {
        let bytes = [0, 0, 0, 0, 0, 0, 1, 2, 2, 1, 0, 0, 0, 0, 0, 0, 1, 2, 2, 1];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.be_u64(), Ok(0x0102));
        assert_eq!(r.le_u64(), Ok(0x0102));
        assert_eq!(r.be_u16(), Ok(0x0102));
        assert_eq!(r.le_u16(), Ok(0x0102));
        assert!(r.is_empty());
    }
}
