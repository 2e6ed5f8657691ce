//! The blob disk: how a container image reaches the shim VM. The host
//! writes one uncompressed ustar archive onto a raw disk: first
//! [`SHIM_CONFIG_NAME`], then every blob as `blobs/sha256/<hex>`, each
//! copied byte for byte from the verified blob store. The host never
//! parses a blob; the shim finds them by name with [`BlobIndex::scan`],
//! reads them in place (a tar on a block device is seekable) and checks
//! each digest again before it trusts one.

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::config::{SHIM_CONFIG_NAME, ShimConfig};

const BLOCK: u64 = 512;
/// More entries than any image has layers; a disk claiming more is not ours.
const MAX_ENTRIES: usize = 4096;

/// The archive name of a blob.
pub fn blob_name(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("blobs/sha256/{hex}"))
}

/// Why the blob disk could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("blob digest {0:?} is not sha256:<64 hex digits>")]
    Digest(String),
    #[error("blob {digest}: {source}")]
    Blob { digest: String, source: io::Error },
    #[error("writing the blob disk: {0}")]
    Io(#[from] io::Error),
}

/// A blob to put on the disk: its digest and a reader of exactly `size`
/// bytes.
pub struct BlobSource<R> {
    pub digest: String,
    pub size: u64,
    pub reader: R,
}

/// Writes the archive: the config, then each blob in the order given.
pub fn write_blob_disk<W: Write, R: Read>(
    out: &mut W,
    config: &ShimConfig,
    blobs: impl IntoIterator<Item = BlobSource<R>>,
) -> Result<(), WriteError> {
    let json = serde_json::to_vec_pretty(config).map_err(io::Error::other)?;
    out.write_all(&header(SHIM_CONFIG_NAME, json.len() as u64))?;
    out.write_all(&json)?;
    out.write_all(&padding(json.len() as u64))?;
    for blob in blobs {
        let name =
            blob_name(&blob.digest).ok_or_else(|| WriteError::Digest(blob.digest.clone()))?;
        out.write_all(&header(&name, blob.size))?;
        let copied =
            io::copy(&mut blob.reader.take(blob.size), out).map_err(|source| WriteError::Blob {
                digest: blob.digest.clone(),
                source,
            })?;
        if copied != blob.size {
            return Err(WriteError::Blob {
                digest: blob.digest,
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{copied} bytes where {} were expected", blob.size),
                ),
            });
        }
        out.write_all(&padding(blob.size))?;
    }
    // Two zero blocks end a tar archive.
    out.write_all(&[0u8; 2 * BLOCK as usize])?;
    Ok(())
}

fn padding(size: u64) -> Vec<u8> {
    vec![0u8; ((BLOCK - size % BLOCK) % BLOCK) as usize]
}

fn header(name: &str, size: u64) -> [u8; BLOCK as usize] {
    let mut h = [0u8; BLOCK as usize];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000444");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    if size < 1 << 33 {
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    } else {
        // GNU base-256: the high bit of the first byte, then big-endian.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

/// Why a blob disk could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("reading the blob disk: {0}")]
    Io(#[from] io::Error),
    #[error("entry at byte {offset}: {why}")]
    Bad { offset: u64, why: &'static str },
    #[error("more than {MAX_ENTRIES} entries")]
    TooMany,
    #[error("no {0} on the blob disk")]
    Missing(String),
    #[error("{name}: {why}")]
    Config { name: &'static str, why: String },
}

/// Where each entry's bytes are on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// The entries of a blob disk.
#[derive(Debug, Clone, Default)]
pub struct BlobIndex {
    pub entries: Vec<Entry>,
}

impl BlobIndex {
    /// Reads every header (skipping the data) up to the end marker or
    /// `disk_size`; every size and offset is checked against the disk.
    pub fn scan<D: Read + Seek>(disk: &mut D, disk_size: u64) -> Result<BlobIndex, ScanError> {
        let mut entries = Vec::new();
        let mut offset = 0u64;
        loop {
            if offset + BLOCK > disk_size {
                return Err(ScanError::Bad {
                    offset,
                    why: "the archive runs past the end of the disk",
                });
            }
            let mut h = [0u8; BLOCK as usize];
            disk.seek(SeekFrom::Start(offset))?;
            disk.read_exact(&mut h)?;
            if h.iter().all(|&b| b == 0) {
                return Ok(BlobIndex { entries });
            }
            let bad = |why| ScanError::Bad { offset, why };
            if entries.len() == MAX_ENTRIES {
                return Err(ScanError::TooMany);
            }
            if !checksum_ok(&h) {
                return Err(bad("bad header checksum"));
            }
            let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
            let name = std::str::from_utf8(&h[..name_end])
                .map_err(|_| bad("name is not UTF-8"))?
                .to_string();
            let size = parse_size(&h[124..136]).ok_or_else(|| bad("bad size field"))?;
            let data = offset + BLOCK;
            let end = data
                .checked_add(size)
                .filter(|&end| end <= disk_size)
                .ok_or_else(|| bad("entry runs past the end of the disk"))?;
            if h[156] == b'0' || h[156] == 0 {
                entries.push(Entry {
                    name,
                    offset: data,
                    size,
                });
            }
            offset = end.div_ceil(BLOCK) * BLOCK;
        }
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry of blob `digest`.
    pub fn blob(&self, digest: &str) -> Result<&Entry, ScanError> {
        let name = blob_name(digest).ok_or_else(|| ScanError::Missing(digest.to_string()))?;
        self.get(&name)
            .ok_or(ScanError::Missing(digest.to_string()))
    }

    /// The host's instructions, parsed (at most 1 MiB).
    pub fn config<D: Read + Seek>(&self, disk: &mut D) -> Result<ShimConfig, ScanError> {
        let entry = self
            .get(SHIM_CONFIG_NAME)
            .ok_or_else(|| ScanError::Missing(SHIM_CONFIG_NAME.to_string()))?;
        if entry.size > 1 << 20 {
            return Err(ScanError::Config {
                name: SHIM_CONFIG_NAME,
                why: format!("{} bytes is too large", entry.size),
            });
        }
        let mut bytes = vec![0u8; entry.size as usize];
        disk.seek(SeekFrom::Start(entry.offset))?;
        disk.read_exact(&mut bytes)?;
        serde_json::from_slice(&bytes).map_err(|e| ScanError::Config {
            name: SHIM_CONFIG_NAME,
            why: e.to_string(),
        })
    }
}

fn checksum_ok(h: &[u8; BLOCK as usize]) -> bool {
    let stored = parse_octal(&h[148..156]);
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
        .sum();
    stored == Some(sum)
}

fn parse_size(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        // Base-256: refuse anything wider than 64 bits.
        let (high, low) = field.split_at(field.len() - 8);
        if high.iter().skip(1).any(|&b| b != 0) || high[0] != 0x80 {
            return None;
        }
        return Some(u64::from_be_bytes(low.try_into().ok()?));
    }
    parse_octal(field)
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c| c == ' ' || c == '\0');
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(digits, 8).ok()
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::config::Overrides;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn disk(blobs: &[(String, &[u8])]) -> Vec<u8> {
        let config = ShimConfig {
            manifest: blobs[0].0.clone(),
            overrides: Overrides {
                env: vec!["A=1".into()],
                ..Overrides::default()
            },
        };
        let mut out = Vec::new();
        write_blob_disk(
            &mut out,
            &config,
            blobs.iter().map(|(d, b)| BlobSource {
                digest: d.clone(),
                size: b.len() as u64,
                reader: *b,
            }),
        )
        .unwrap();
        out
    }

    #[test]
    fn blobs_are_found_in_place_and_the_config_read_back() {
        let layer = vec![7u8; 1000];
        let bytes = disk(&[(digest('a'), b"{\"manifest\":1}"), (digest('b'), &layer)]);
        let size = bytes.len() as u64;
        let mut cursor = Cursor::new(bytes.clone());
        let index = BlobIndex::scan(&mut cursor, size).unwrap();
        assert_eq!(index.entries.len(), 3);
        let config = index.config(&mut cursor).unwrap();
        assert_eq!(config.manifest, digest('a'));
        assert_eq!(config.overrides.env, ["A=1"]);
        let b = index.blob(&digest('b')).unwrap();
        assert_eq!(
            &bytes[b.offset as usize..(b.offset + b.size) as usize],
            &layer[..]
        );
        assert!(matches!(
            index.blob(&digest('c')),
            Err(ScanError::Missing(_))
        ));
    }

    #[test]
    fn a_blob_shorter_than_announced_is_an_error() {
        let config = ShimConfig::default();
        let mut out = Vec::new();
        let err = write_blob_disk(
            &mut out,
            &config,
            [BlobSource {
                digest: digest('a'),
                size: 10,
                reader: &b"short"[..],
            }],
        )
        .unwrap_err();
        assert!(err.to_string().contains("5 bytes where 10"), "{err}");
        let err = write_blob_disk(
            &mut Vec::new(),
            &config,
            [BlobSource {
                digest: "md5:x".into(),
                size: 0,
                reader: &b""[..],
            }],
        )
        .unwrap_err();
        assert!(matches!(err, WriteError::Digest(_)));
    }

    #[test]
    fn big_sizes_use_base_256() {
        let h = header("big", 1 << 40);
        assert_eq!(parse_size(&h[124..136]), Some(1 << 40));
        assert!(checksum_ok(&h));
        let small = header("small", 0o777);
        assert_eq!(parse_size(&small[124..136]), Some(0o777));
    }

    #[test]
    fn hostile_disks_are_refused_without_panicking() {
        let good = disk(&[(digest('a'), b"manifest"), (digest('b'), &[1u8; 700])]);
        // Cut anywhere, flip any header byte, or claim a huge size.
        for cut in (0..good.len()).step_by(97) {
            let mut c = Cursor::new(good[..cut].to_vec());
            let _ = BlobIndex::scan(&mut c, cut as u64);
        }
        for at in 0..BLOCK as usize * 2 {
            let mut bad = good.clone();
            bad[at] ^= 0x5a;
            let len = bad.len() as u64;
            let _ = BlobIndex::scan(&mut Cursor::new(bad), len);
        }
        let mut huge = good.clone();
        huge[124..136].copy_from_slice(b"77777777777\0");
        let sum: u32 = {
            let mut h = [0u8; 512];
            h.copy_from_slice(&huge[..512]);
            h[148..156].copy_from_slice(b"        ");
            h.iter().map(|&b| u32::from(b)).sum()
        };
        huge[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let len = huge.len() as u64;
        let err = BlobIndex::scan(&mut Cursor::new(huge), len).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        let zeros = vec![0u8; 100];
        assert!(BlobIndex::scan(&mut Cursor::new(zeros), 100).is_err());
    }
}
