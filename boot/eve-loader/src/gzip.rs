//! gzip members (RFC 1952): an arm64 kernel Image does not decompress
//! itself, so the image stores it gzipped (a third of its size) and the
//! loader inflates it before `LoadImage`. The CRC-32 and length in the
//! trailer are checked: a damaged partition is an error, not a crash.

use alloc::vec::Vec;

const MAGIC: [u8; 3] = [0x1f, 0x8b, 8];
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

/// Whether `bytes` start a gzip member (deflate).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// The data of the gzip member in `bytes`, at most `limit` bytes.
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, &'static str> {
    let header = bytes.get(..10).ok_or("gzip: truncated header")?;
    if !is_gzip(header) {
        return Err("gzip: not a gzip member");
    }
    let flags = header[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = bytes.get(at..at + 2).ok_or("gzip: truncated extra field")?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = bytes
                .get(at..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
                .ok_or("gzip: unterminated name or comment")?;
            at += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    let trailer_at = bytes
        .len()
        .checked_sub(8)
        .ok_or("gzip: truncated trailer")?;
    let deflate = bytes.get(at..trailer_at).ok_or("gzip: truncated data")?;
    let trailer = &bytes[trailer_at..];
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    let data = miniz_oxide::inflate::decompress_to_vec_with_limit(deflate, limit)
        .map_err(|_| "gzip: damaged or too large")?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&data);
    if hasher.finalize() != crc || data.len() as u32 != size {
        return Err("gzip: CRC or length mismatch");
    }
    Ok(data)
}
