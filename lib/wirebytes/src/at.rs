//! Fixed fields at known offsets, for the accessors of checked views.
//!
//! A view's constructor checks the lengths its accessors need; these
//! helpers check again, so an accessor whose check was wrong returns
//! [`Error::Truncated`] instead of panicking.

use crate::Error;

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], Error> {
    let end = at.checked_add(N).ok_or(Error::Truncated)?;
    let field = bytes.get(at..end).ok_or(Error::Truncated)?;
    let mut out = [0u8; N];
    out.copy_from_slice(field);
    Ok(out)
}

/// The byte at `at`.
pub fn u8_at(bytes: &[u8], at: usize) -> Result<u8, Error> {
    bytes.get(at).copied().ok_or(Error::Truncated)
}

/// The big-endian `u16` at `at`.
pub fn be_u16_at(bytes: &[u8], at: usize) -> Result<u16, Error> {
    array_at(bytes, at).map(u16::from_be_bytes)
}

/// The big-endian `u32` at `at`.
pub fn be_u32_at(bytes: &[u8], at: usize) -> Result<u32, Error> {
    array_at(bytes, at).map(u32::from_be_bytes)
}

/// The big-endian `u64` at `at`.
pub fn be_u64_at(bytes: &[u8], at: usize) -> Result<u64, Error> {
    array_at(bytes, at).map(u64::from_be_bytes)
}

/// The little-endian `u16` at `at`.
pub fn le_u16_at(bytes: &[u8], at: usize) -> Result<u16, Error> {
    array_at(bytes, at).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `at`.
pub fn le_u32_at(bytes: &[u8], at: usize) -> Result<u32, Error> {
    array_at(bytes, at).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `at`.
pub fn le_u64_at(bytes: &[u8], at: usize) -> Result<u64, Error> {
    array_at(bytes, at).map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_in_their_byte_order_and_never_past_the_end() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u8_at(&bytes, 8), Ok(9));
        assert_eq!(be_u16_at(&bytes, 1), Ok(0x0203));
        assert_eq!(le_u16_at(&bytes, 1), Ok(0x0302));
        assert_eq!(be_u32_at(&bytes, 5), Ok(0x0607_0809));
        assert_eq!(le_u32_at(&bytes, 0), Ok(0x0403_0201));
        assert_eq!(be_u64_at(&bytes, 1), Ok(0x0203_0405_0607_0809));
        assert_eq!(le_u64_at(&bytes, 0), Ok(0x0807_0605_0403_0201));
        assert_eq!(u8_at(&bytes, 9), Err(Error::Truncated));
        assert_eq!(be_u32_at(&bytes, 6), Err(Error::Truncated));
        assert_eq!(le_u64_at(&bytes, 2), Err(Error::Truncated));
        assert_eq!(be_u16_at(&bytes, usize::MAX), Err(Error::Truncated));
    }
}
