//! gzip (RFC 1952) members for `newlogs` uploads: miniz_oxide deflates,
//! this module adds the header, the CRC-32 and the length trailer. EVE puts
//! the log metadata (a JSON `LogBundle` without entries) in the header's
//! comment field, so we do too; for an app's logs it puts the app's name in
//! the header's name field instead ([`compress_named`]).

use alloc::vec::Vec;

/// FCOMMENT flag: a zero-terminated comment follows the fixed header.
const FLAG_COMMENT: u8 = 0x10;
/// FNAME flag: a zero-terminated name follows the fixed header.
const FLAG_NAME: u8 = 0x08;
/// "Unknown" operating system, as Go's writer uses for non-Unix builds.
const OS_UNKNOWN: u8 = 255;
/// Best compression, as EVE's newlogd uses.
const LEVEL: u8 = 9;

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// CRC-32 (IEEE 802.3, reflected), as gzip's trailer carries it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    c ^ 0xffff_ffff
}

/// One gzip member holding `data`, with `comment` in the header and
/// `mtime_unix` as modification time. Bytes of `comment` that gzip does not
/// allow (NUL, anything outside Latin-1's printable ASCII subset we emit)
/// are replaced by `?`.
pub fn compress(data: &[u8], comment: &[u8], mtime_unix: u32) -> Vec<u8> {
    member(data, FLAG_COMMENT, comment, mtime_unix)
}

/// One gzip member holding `data` with `name` in the header's name field,
/// as newlogd writes an app's logs (the app's name there), its bytes
/// replaced as [`compress`] replaces the comment's.
pub fn compress_named(data: &[u8], name: &[u8], mtime_unix: u32) -> Vec<u8> {
    member(data, FLAG_NAME, name, mtime_unix)
}

fn member(data: &[u8], flag: u8, field: &[u8], mtime_unix: u32) -> Vec<u8> {
    let deflated = miniz_oxide::deflate::compress_to_vec(data, LEVEL);
    let mut out = Vec::with_capacity(deflated.len() + field.len() + 19);
    out.extend_from_slice(&[0x1f, 0x8b, 8, flag]);
    out.extend_from_slice(&mtime_unix.to_le_bytes());
    out.extend_from_slice(&[2, OS_UNKNOWN]);
    out.extend(
        field
            .iter()
            .map(|&b| if (0x20..0x7f).contains(&b) { b } else { b'?' }),
    );
    out.push(0);
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    // ISIZE is the length modulo 2^32 by definition.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_known_vector() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn flate2_reads_it_back_with_comment() {
        use std::io::Read;
        let text = b"{\"a\":1}\n{\"b\":2}\n".repeat(100);
        let gz = compress(&text, b"{\"devID\":\"x\"}\0\xff", 1_700_000_000);
        let mut dec = flate2::read::GzDecoder::new(gz.as_slice());
        let mut out = Vec::new();
        dec.read_to_end(&mut out).unwrap();
        assert_eq!(out, text);
        let header = dec.header().unwrap();
        assert_eq!(header.comment(), Some(&b"{\"devID\":\"x\"}??"[..]));
        assert_eq!(header.mtime(), 1_700_000_000);
        assert!(gz.len() < text.len() / 4);
    }

    #[test]
    fn an_app_batch_carries_the_name_and_no_comment() {
        use std::io::Read;
        let gz = compress_named(b"{}\n", "web\u{e9}".as_bytes(), 7);
        let mut dec = flate2::read::GzDecoder::new(gz.as_slice());
        let mut out = Vec::new();
        dec.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"{}\n");
        let header = dec.header().unwrap();
        assert_eq!(header.filename(), Some(&b"web??"[..]));
        assert_eq!(header.comment(), None);
    }
}
