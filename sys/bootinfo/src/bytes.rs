//! Checked fixed-width reads.
//!
//! Both binary formats are read through these helpers so that there is one
//! place where an out-of-range offset turns into `None` instead of a panic.

/// Reads `N` bytes at `offset`, or `None` if they are not all inside `bytes`.
fn array<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    bytes.get(offset..end)?.try_into().ok()
}

pub(crate) fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    array(bytes, offset).map(u32::from_le_bytes)
}

pub(crate) fn le_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    array(bytes, offset).map(u64::from_le_bytes)
}

pub(crate) fn be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    array(bytes, offset).map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(le_u32(&b, 0), Some(0x0403_0201));
        assert_eq!(be_u32(&b, 4), Some(0x0506_0708));
        assert_eq!(le_u64(&b, 0), Some(0x0807_0605_0403_0201));
        assert_eq!(le_u32(&b, 5), None);
        assert_eq!(le_u64(&b, 1), None);
        assert_eq!(be_u32(&b, usize::MAX - 1), None);
    }
}
