//! Growing an image's table onto a larger disk (EVE's PERSIST to the
//! disk's end), on disks of 512-byte and 4 KiB blocks, with the power cut
//! after every block written and inside it.

mod common;

use common::{VecDisk, eve_guid, eve_partitions};
use gptab::{
    Disk, DiskError, Gpt, GrowDiskError, GrowError, Grown, NewPartition, grow_onto_disk,
    has_protective_mbr, protective_mbr,
};

const MIB: u64 = 1 << 20;

/// EVE's layout in a 16 MiB image of `block_size` blocks, PERSIST (9)
/// ending at the last usable block, written to a disk of `disk_bytes`.
fn image_on_disk(block_size: usize, disk_bytes: u64) -> VecDisk {
    let image_blocks = 16 * MIB / block_size as u64;
    let per_256k = (256 << 10) / block_size as u64;
    let entry_blocks = 16_384 / block_size as u64;
    let last_usable = image_blocks - 2 - entry_blocks;
    let parts: Vec<NewPartition<'_>> = eve_partitions()
        .into_iter()
        .map(|p| {
            // The common layout is in 512-byte blocks of 256 KiB steps.
            let first = p.first_lba / 512 * per_256k;
            let last = if p.number == 9 {
                last_usable
            } else {
                (p.last_lba + 1) / 512 * per_256k - 1
            };
            NewPartition {
                first_lba: first,
                last_lba: last,
                ..p
            }
        })
        .collect();
    let gpt = Gpt::create(block_size, image_blocks, eve_guid(0x50), &parts).unwrap();
    let mut disk = VecDisk {
        bytes: vec![0; (image_blocks * block_size as u64) as usize],
        block_size,
    };
    disk.write(0, &protective_mbr(block_size, image_blocks))
        .unwrap();
    gpt.write(&mut disk).unwrap();
    // The image written to the start of a larger disk.
    disk.bytes.resize(disk_bytes as usize, 0);
    disk
}

fn p3_last(disk: &mut VecDisk) -> u64 {
    Gpt::read(disk).unwrap().partition(9).unwrap().last_lba
}

#[test]
fn persist_grows_to_the_end_of_a_larger_disk_and_the_backup_moves_there() {
    for block_size in [512, 4096] {
        let mut disk = image_on_disk(block_size, 64 * MIB);
        let before = Gpt::read(&mut disk).unwrap();
        assert!(before.status().both_valid());
        let blocks = disk.block_count();
        let entry_blocks = 16_384 / block_size as u64;
        let grown = grow_onto_disk(&mut disk, 9).unwrap().unwrap();
        assert_eq!(
            grown,
            Grown {
                old_last_lba: before.partition(9).unwrap().last_lba,
                new_last_lba: blocks - 2 - entry_blocks,
            }
        );
        let after = Gpt::read(&mut disk).unwrap();
        assert!(after.status().both_valid(), "{block_size}");
        assert_eq!(after.last_usable(), blocks - 2 - entry_blocks);
        assert_eq!(after.disk_blocks(), blocks);
        // The others are as they were.
        for (a, b) in before.partitions().iter().zip(after.partitions()) {
            if a.number != 9 {
                assert_eq!(*a, b);
            }
        }
        let mut header = vec![0u8; block_size];
        disk.read(blocks - 1, &mut header).unwrap();
        assert_eq!(&header[..8], b"EFI PART");
        // The old backup header is gone, the MBR covers the disk.
        disk.read(16 * MIB / block_size as u64 - 1, &mut header)
            .unwrap();
        assert!(header.iter().all(|&b| b == 0));
        disk.read(0, &mut header).unwrap();
        assert!(has_protective_mbr(&header));
        assert_eq!(header[458..462], ((blocks - 1) as u32).to_le_bytes());
        // Once is enough.
        assert_eq!(grow_onto_disk(&mut disk, 9), Ok(None));
    }
}

#[test]
fn a_disk_the_size_of_the_image_is_left_alone() {
    let mut disk = image_on_disk(512, 16 * MIB);
    let before = disk.bytes.clone();
    assert_eq!(grow_onto_disk(&mut disk, 9), Ok(None));
    assert!(before == disk.bytes);
}

#[test]
fn only_the_last_partition_grows() {
    let mut disk = image_on_disk(512, 32 * MIB);
    assert_eq!(
        grow_onto_disk(&mut disk, 4),
        Err(GrowDiskError::Grow(GrowError::NotLast {
            number: 4,
            after: 9
        }))
    );
    assert_eq!(
        grow_onto_disk(&mut disk, 7),
        Err(GrowDiskError::Grow(GrowError::NoSuchPartition(7)))
    );
    // Refused before anything was written.
    assert!(Gpt::read(&mut disk).unwrap().status().both_valid());
    assert_eq!(p3_last(&mut disk), 16 * 2048 - 34);
}

/// A disk that loses power after `left` block writes: the write the cut
/// falls in keeps its first blocks and, for the block cut, the first half
/// of its new bytes over the old (a torn sector); later writes are lost.
struct PowerCut<D> {
    inner: D,
    left: u64,
}

impl<D: Disk> Disk for PowerCut<D> {
    fn block_size(&self) -> usize {
        self.inner.block_size()
    }
    fn block_count(&self) -> u64 {
        self.inner.block_count()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.inner.read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        let size = self.block_size();
        for (i, block) in buf.chunks(size).enumerate() {
            let at = lba + i as u64;
            if self.left == 0 {
                return Ok(());
            }
            self.left -= 1;
            if self.left == 0 {
                let mut torn = vec![0u8; size];
                self.inner.read(at, &mut torn)?;
                torn[..size / 2].copy_from_slice(&block[..size / 2]);
                self.inner.write(at, &torn)?;
                return Ok(());
            }
            self.inner.write(at, block)?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        self.inner.flush()
    }
}

#[test]
fn a_power_cut_at_any_write_leaves_the_old_or_the_grown_table_and_the_next_boot_finishes() {
    for block_size in [512, 4096] {
        let image = image_on_disk(block_size, 64 * MIB);
        let old = p3_last(&mut image.clone());
        let whole = grow_onto_disk(&mut image.clone(), 9)
            .unwrap()
            .unwrap()
            .new_last_lba;
        let entry_blocks = 16_384 / block_size as u64;
        // Two headers and two entry arrays, the old header, the MBR.
        let writes = 2 * (1 + entry_blocks) + 2;
        let mut saw_old = false;
        let mut saw_new = false;
        for cut in 1..=writes {
            let mut cutting = PowerCut {
                inner: image.clone(),
                left: cut,
            };
            grow_onto_disk(&mut cutting, 9).unwrap();
            let mut disk = cutting.inner;
            let after = Gpt::read(&mut disk)
                .unwrap_or_else(|e| panic!("{block_size}: cut at write {cut}: {e}"));
            let last = after.partition(9).unwrap().last_lba;
            assert!(
                last == old || last == whole,
                "{block_size}: cut at {cut}: {last}"
            );
            saw_old |= last == old;
            saw_new |= last == whole;
            assert_eq!(after.partitions().len(), 5);
            let mut sector = vec![0u8; block_size];
            disk.read(0, &mut sector).unwrap();
            assert!(has_protective_mbr(&sector), "{block_size}: cut at {cut}");
            // The next boot finishes the job.
            grow_onto_disk(&mut disk, 9).unwrap();
            let done = Gpt::read(&mut disk).unwrap();
            assert!(done.status().both_valid(), "{block_size}: cut at {cut}");
            assert_eq!(done.partition(9).unwrap().last_lba, whole);
            assert_eq!(grow_onto_disk(&mut disk, 9), Ok(None));
        }
        assert!(saw_old && saw_new, "{block_size}");
    }
}
