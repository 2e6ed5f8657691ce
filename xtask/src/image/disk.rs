//! The disk image file: partitions at 1 MiB boundaries, their contents
//! written sparsely (runs of zeros are holes), a protective MBR and both
//! GPT copies from `gptab`, in logical blocks of 512 bytes (what the
//! image is made with) or 4 KiB (for disks that have them). Written
//! beside the target and renamed over it, so the file named is always a
//! whole image.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use gptab::{Disk, FileDisk, Gpt, Guid, NewPartition};

const MIB: u64 = 1 << 20;
/// Zero runs at least this long are left as holes.
const HOLE: usize = 64 << 10;

/// One partition to lay out.
pub struct Part {
    pub number: u32,
    pub name: &'static str,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub attributes: u64,
    /// A whole number of MiB.
    pub bytes: u64,
    /// The start of the partition's contents (at most `bytes`); the rest
    /// is zero. An empty vector still zeroes the first sector, as EVE's
    /// `make-raw` does for an empty IMGB.
    pub content: Vec<u8>,
}

/// Where a partition went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub number: u32,
    pub name: &'static str,
    pub offset: u64,
    pub bytes: u64,
    pub used: u64,
}

/// Writes `data` at `offset`, skipping runs of zeros (the file is sparse
/// there already).
fn write_sparse(file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    for (i, chunk) in data.chunks(HOLE).enumerate() {
        if chunk.iter().all(|&b| b == 0) {
            continue;
        }
        file.write_all_at(chunk, offset + (i * HOLE) as u64)?;
    }
    Ok(())
}

/// Lays `parts` out from 1 MiB, in order, and writes the image to `path`
/// with a table for logical blocks of `block_size` bytes.
pub fn write(
    path: &Path,
    block_size: usize,
    disk_guid: Guid,
    parts: &[Part],
) -> Result<Vec<Placed>, String> {
    if !gptab::valid_block_size(block_size) || !MIB.is_multiple_of(block_size as u64) {
        return Err(format!("{block_size} is not a logical block size"));
    }
    let sector = block_size as u64;
    let mut placed = Vec::new();
    let mut next = MIB;
    for part in parts {
        if part.bytes % MIB != 0 || part.bytes == 0 {
            return Err(format!(
                "{}: size {} is not whole MiB",
                part.name, part.bytes
            ));
        }
        if part.content.len() as u64 > part.bytes {
            return Err(format!(
                "{}: {} bytes do not fit in {} MiB",
                part.name,
                part.content.len(),
                part.bytes / MIB
            ));
        }
        placed.push(Placed {
            number: part.number,
            name: part.name,
            offset: next,
            bytes: part.bytes,
            used: part.content.len() as u64,
        });
        next += part.bytes;
    }
    // 1 MiB after the last partition holds the backup table.
    let total = next + MIB;
    let blocks = total / sector;
    let new: Vec<NewPartition<'_>> = parts
        .iter()
        .zip(&placed)
        .map(|(part, at)| NewPartition {
            number: part.number,
            type_guid: part.type_guid,
            unique_guid: part.unique_guid,
            first_lba: at.offset / sector,
            last_lba: (at.offset + at.bytes) / sector - 1,
            attributes: part.attributes,
            name: part.name,
        })
        .collect();
    let gpt = Gpt::create(block_size, blocks, disk_guid, &new).map_err(|e| e.to_string())?;

    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let fail = |e: io::Error| format!("{}: {e}", tmp.display());
    let file = File::create(&tmp).map_err(fail)?;
    file.set_len(total).map_err(fail)?;
    for (part, at) in parts.iter().zip(&placed) {
        if part.content.is_empty() {
            file.write_all_at(&vec![0u8; block_size], at.offset)
                .map_err(fail)?;
        }
        write_sparse(&file, at.offset, &part.content).map_err(fail)?;
    }
    let mut disk = FileDisk::with_blocks(&file, block_size, blocks);
    disk.write(0, &gptab::protective_mbr(block_size, blocks))
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    gpt.write(&mut disk)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(placed)
}

/// Bytes the file takes on disk (holes excluded).
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// A random version-4 GUID.
pub fn random_guid() -> Result<Guid, String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    // Version 4 and the RFC 4122 variant, in GPT's byte order (the third
    // field is little-endian: its high byte is byte 7).
    bytes[7] = bytes[7] & 0x0F | 0x40;
    bytes[8] = bytes[8] & 0x3F | 0x80;
    Ok(Guid(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gptab::ab::SlotState;
    use gptab::types;

    #[test]
    fn the_image_reads_back_with_its_partitions_in_place() {
        image_reads_back(512);
    }

    #[test]
    fn an_image_of_4k_blocks_reads_back_with_its_partitions_in_place() {
        image_reads_back(4096);
    }

    fn image_reads_back(block_size: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let mut content = vec![0u8; 3 * HOLE];
        content[HOLE + 7] = 1;
        let parts = [
            Part {
                number: 1,
                name: "EFI System",
                type_guid: types::EFI_SYSTEM,
                unique_guid: random_guid().unwrap(),
                attributes: 0,
                bytes: MIB,
                content: b"ESP".to_vec(),
            },
            Part {
                number: 2,
                name: "IMGA",
                type_guid: types::EVE_IMAGE,
                unique_guid: random_guid().unwrap(),
                attributes: SlotState::Active.apply(0),
                bytes: 2 * MIB,
                content,
            },
            Part {
                number: 9,
                name: "P3",
                type_guid: types::EVE_PERSIST,
                unique_guid: random_guid().unwrap(),
                attributes: 0,
                bytes: MIB,
                content: Vec::new(),
            },
        ];
        let placed = write(&path, block_size, random_guid().unwrap(), &parts).unwrap();
        assert_eq!(
            placed.iter().map(|p| p.offset).collect::<Vec<_>>(),
            [MIB, 2 * MIB, 4 * MIB]
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, 6 * MIB);
        assert_eq!(&bytes[MIB as usize..MIB as usize + 3], b"ESP");
        assert_eq!(bytes[(2 * MIB) as usize + HOLE + 7], 1);
        let image = File::open(&path).unwrap();
        let gpt = Gpt::read(&mut FileDisk::new(&image, block_size).unwrap()).unwrap();
        assert!(gpt.status().both_valid() && gpt.status().protective_mbr);
        let imga = gpt.partition_named("IMGA").unwrap();
        let per_mib = MIB / block_size as u64;
        assert_eq!(
            (imga.first_lba, imga.last_lba),
            (2 * per_mib, 4 * per_mib - 1)
        );
        // The header is at LBA 1.
        assert_eq!(&bytes[block_size..block_size + 8], b"EFI PART");
        assert_eq!(SlotState::of(imga.attributes), SlotState::Active);
        assert_eq!(gpt.partition(9).unwrap().name, "P3");
        // Zero runs stayed holes.
        assert!(allocated(&path) < 6 * MIB);
        assert!(!dir.path().join("disk.img.tmp").exists());
    }

    #[test]
    fn contents_larger_than_their_partition_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let part = Part {
            number: 2,
            name: "IMGA",
            type_guid: types::EVE_IMAGE,
            unique_guid: Guid::ZERO,
            attributes: 0,
            bytes: MIB,
            content: vec![1; MIB as usize + 1],
        };
        let e = write(&dir.path().join("x.img"), 512, Guid::ZERO, &[part]).unwrap_err();
        assert!(e.contains("do not fit"), "{e}");
    }

    #[test]
    fn guids_are_version_4() {
        let g = random_guid().unwrap().to_string();
        assert_eq!(&g[14..15], "4");
        assert!(matches!(&g[19..20], "8" | "9" | "a" | "b"), "{g}");
    }
}
