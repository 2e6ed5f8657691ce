//! Reading, checking, repairing and writing tables: round trips, every
//! kind of damage falling back to the other copy where GRUB does, hostile
//! headers refused without panics, and power cuts during a write.

mod common;

use blockdev::{FaultyDisk, MemDisk, Tear};
use common::{DISK_BLOCKS, VecDisk, bytes, eve_disk, eve_guid, eve_partitions};
use gptab::{
    Blocks, Copy, Disk, Gpt, Invalid, LayoutError, NewPartition, ReadError, ab::SlotState, types,
};

const PRIMARY_HEADER: usize = 512;
const PRIMARY_ENTRIES: usize = 2 * 512;
const BACKUP_HEADER: usize = (DISK_BLOCKS as usize - 1) * 512;
const BACKUP_ENTRIES: usize = (DISK_BLOCKS as usize - 33) * 512;

/// Recomputes the CRC of the header at `at` after a test changed it, so
/// the change itself is what gets checked.
fn reseal(disk: &mut [u8], at: usize) {
    let header = &mut disk[at..at + 92];
    header[16..20].fill(0);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    let crc = hasher.finalize();
    header[16..20].copy_from_slice(&crc.to_le_bytes());
}

fn put_u32(disk: &mut [u8], at: usize, value: u32) {
    disk[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(disk: &mut [u8], at: usize, value: u64) {
    disk[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn names(gpt: &Gpt) -> Vec<(u32, String)> {
    gpt.partitions()
        .into_iter()
        .map(|p| (p.number, p.name))
        .collect()
}

fn eve_names() -> Vec<(u32, String)> {
    [
        (1, "EFI System"),
        (2, "IMGA"),
        (3, "IMGB"),
        (4, "CONFIG"),
        (9, "P3"),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.to_string()))
    .collect()
}

#[test]
fn a_created_table_reads_back_whole() {
    let mut disk = eve_disk();
    let gpt = Gpt::read(&mut disk).unwrap();
    let status = gpt.status();
    assert!(status.protective_mbr && status.both_valid(), "{status:?}");
    assert_eq!(names(&gpt), eve_names());
    assert_eq!(gpt.disk_guid(), eve_guid(0x50));
    assert_eq!(gpt.first_usable(), 34);
    assert_eq!(gpt.last_usable(), DISK_BLOCKS - 34);
    let imga = gpt.partition_named("IMGA").unwrap();
    assert_eq!(imga.type_guid, types::EVE_IMAGE);
    assert_eq!(imga.unique_guid, eve_guid(0x52));
    assert_eq!((imga.first_lba, imga.last_lba), (1024, 5119));
    assert_eq!(SlotState::of(imga.attributes), SlotState::Active);
    assert_eq!(gpt.partition(9).unwrap().type_guid, types::EVE_PERSIST);
    assert_eq!(gpt.partition(5), None);
    assert_eq!(gpt.partition(0), None);
    assert_eq!(gpt.partition(129), None);
}

#[test]
fn four_kib_blocks_work_the_same() {
    let blocks = 4096; // 16 MiB
    let partitions = [NewPartition {
        number: 1,
        type_guid: types::EVE_IMAGE,
        unique_guid: eve_guid(1),
        first_lba: 256,
        last_lba: 4000,
        attributes: SlotState::Updating.apply(0),
        name: "IMGB",
    }];
    let gpt = Gpt::create(4096, blocks, eve_guid(0), &partitions).unwrap();
    // 16 KiB of entries is 4 blocks of 4 KiB.
    assert_eq!(gpt.first_usable(), 6);
    let mut disk = VecDisk {
        bytes: vec![0; blocks as usize * 4096],
        block_size: 4096,
    };
    gpt.write(&mut disk).unwrap();
    let read = Gpt::read(&mut disk).unwrap();
    assert!(read.status().both_valid());
    assert_eq!(read.partition_named("IMGB").unwrap().last_lba, 4000);
    // The primary header is at byte 4096, not 512.
    assert_eq!(&disk.bytes[4096..4104], b"EFI PART");
}

#[test]
fn a_bad_primary_header_falls_back_to_the_backup_and_repairs() {
    let mut disk = eve_disk();
    bytes(&mut disk)[PRIMARY_HEADER + 40] ^= 1;
    let gpt = Gpt::read(&mut disk).unwrap();
    assert_eq!(gpt.status().primary, Err(Invalid::HeaderCrc));
    assert_eq!(gpt.status().backup, Ok(()));
    assert_eq!(names(&gpt), eve_names());
    gpt.write(&mut disk).unwrap();
    let repaired = Gpt::read(&mut disk).unwrap();
    assert!(repaired.status().both_valid());
    assert_eq!(names(&repaired), eve_names());
}

#[test]
fn bad_primary_entries_fall_back_to_the_backup() {
    let mut disk = eve_disk();
    // IMGA's name in the primary array.
    bytes(&mut disk)[PRIMARY_ENTRIES + 128 + 56] = b'X';
    let gpt = Gpt::read(&mut disk).unwrap();
    assert_eq!(gpt.status().primary, Err(Invalid::EntriesCrc));
    assert_eq!(gpt.partition_named("IMGA").unwrap().number, 2);
}

#[test]
fn a_bad_backup_is_ignored_and_rewritten() {
    for (at, expect) in [
        (BACKUP_HEADER + 3, Invalid::Signature),
        (BACKUP_HEADER + 50, Invalid::HeaderCrc),
        (BACKUP_ENTRIES + 200, Invalid::EntriesCrc),
    ] {
        let mut disk = eve_disk();
        bytes(&mut disk)[at] ^= 0x40;
        let gpt = Gpt::read(&mut disk).unwrap();
        assert_eq!(gpt.status().primary, Ok(()));
        assert_eq!(gpt.status().backup, Err(expect));
        gpt.write(&mut disk).unwrap();
        assert!(Gpt::read(&mut disk).unwrap().status().both_valid());
    }
}

#[test]
fn both_copies_bad_is_no_table() {
    let mut disk = eve_disk();
    bytes(&mut disk)[PRIMARY_HEADER + 40] ^= 1;
    bytes(&mut disk)[BACKUP_HEADER + 40] ^= 1;
    assert_eq!(
        Gpt::read(&mut disk),
        Err(ReadError::NoValidTable {
            primary: Invalid::HeaderCrc,
            backup: Invalid::HeaderCrc
        })
    );
    let mut blank = Blocks(MemDisk::new(100));
    assert_eq!(
        Gpt::read(&mut blank),
        Err(ReadError::NoValidTable {
            primary: Invalid::Signature,
            backup: Invalid::Signature
        })
    );
}

#[test]
fn a_backup_out_of_sync_with_a_valid_primary_is_not_used() {
    // Another table's backup: valid on its own, different entries.
    let mut disk = eve_disk();
    let mut other = eve_partitions();
    other[2].name = "OTHER";
    let mut scratch = Blocks(MemDisk::new(DISK_BLOCKS as usize));
    Gpt::create(512, DISK_BLOCKS, eve_guid(0x50), &other)
        .unwrap()
        .write(&mut scratch)
        .unwrap();
    let foreign = scratch.0.as_bytes()[BACKUP_ENTRIES..].to_vec();
    bytes(&mut disk)[BACKUP_ENTRIES..].copy_from_slice(&foreign);
    let gpt = Gpt::read(&mut disk).unwrap();
    assert_eq!(gpt.status().backup, Err(Invalid::OutOfSync));
    assert_eq!(names(&gpt), eve_names());
    // With the primary gone too there is no table: GRUB does not trust a
    // backup that contradicts a readable primary header.
    bytes(&mut disk)[PRIMARY_ENTRIES] ^= 1;
    assert!(matches!(
        Gpt::read(&mut disk),
        Err(ReadError::NoValidTable { .. })
    ));
}

#[test]
fn hostile_primary_fields_are_refused_and_the_backup_used() {
    type Tamper = fn(&mut [u8]);
    let cases: [(&str, Tamper, Invalid); 12] = [
        (
            "revision",
            |d| put_u32(d, PRIMARY_HEADER + 8, 2),
            Invalid::Revision,
        ),
        (
            "header size 0",
            |d| put_u32(d, PRIMARY_HEADER + 12, 0),
            Invalid::HeaderSize,
        ),
        (
            "header size past the block",
            |d| put_u32(d, PRIMARY_HEADER + 12, 513),
            Invalid::HeaderSize,
        ),
        (
            "header size huge",
            |d| put_u32(d, PRIMARY_HEADER + 12, u32::MAX),
            Invalid::HeaderSize,
        ),
        (
            "entry size 100",
            |d| put_u32(d, PRIMARY_HEADER + 84, 100),
            Invalid::EntrySize,
        ),
        (
            "entry size 384",
            |d| put_u32(d, PRIMARY_HEADER + 84, 384),
            Invalid::EntrySize,
        ),
        (
            "4 billion entries",
            |d| put_u32(d, PRIMARY_HEADER + 80, u32::MAX),
            Invalid::TooManyEntries,
        ),
        (
            "too few entries",
            |d| put_u32(d, PRIMARY_HEADER + 80, 4),
            Invalid::EntryTableSize,
        ),
        (
            "usable range reversed",
            |d| put_u64(d, PRIMARY_HEADER + 40, DISK_BLOCKS),
            Invalid::UsableRange,
        ),
        (
            "not at LBA 1",
            |d| put_u64(d, PRIMARY_HEADER + 24, 7),
            Invalid::Location,
        ),
        (
            "entries over the usable blocks",
            |d| put_u64(d, PRIMARY_HEADER + 72, 100),
            Invalid::EntriesLocation,
        ),
        (
            "entries at u64::MAX",
            |d| put_u64(d, PRIMARY_HEADER + 72, u64::MAX),
            Invalid::EntriesLocation,
        ),
    ];
    for (what, tamper, expect) in cases {
        let mut disk = eve_disk();
        tamper(bytes(&mut disk));
        reseal(bytes(&mut disk), PRIMARY_HEADER);
        let gpt = Gpt::read(&mut disk).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(gpt.status().primary, Err(expect), "{what}");
        assert_eq!(names(&gpt), eve_names(), "{what}");
    }
}

#[test]
fn hostile_tables_on_both_copies_never_panic() {
    let mut disk = eve_disk();
    for at in [PRIMARY_HEADER, BACKUP_HEADER] {
        put_u32(bytes(&mut disk), at + 80, 8192);
        put_u32(bytes(&mut disk), at + 84, 128);
        reseal(bytes(&mut disk), at);
    }
    // 8192 entries is 1 MiB: a size we take, but not where the table
    // puts it; refused before anything that size is read.
    assert_eq!(
        Gpt::read(&mut disk),
        Err(ReadError::NoValidTable {
            primary: Invalid::EntriesLocation,
            backup: Invalid::EntriesLocation,
        })
    );
}

#[test]
fn a_truncated_disk_still_reads_its_primary() {
    let disk = eve_disk();
    let mut cut = disk.0.into_bytes();
    cut.truncate(cut.len() / 2);
    let mut disk = Blocks(MemDisk::from_image(cut));
    let gpt = Gpt::read(&mut disk).unwrap();
    assert_eq!(gpt.status().backup, Err(Invalid::AlternateLocation));
    assert_eq!(names(&gpt), eve_names());
    // The backup's place is past the end: only the primary is written.
    gpt.write(&mut disk).unwrap();
    assert_eq!(Gpt::read(&mut disk).unwrap().status().primary, Ok(()));
}

#[test]
fn an_image_on_a_larger_disk_keeps_its_backup_until_repaired() {
    let mut image = eve_disk().0.into_bytes();
    image.resize(image.len() * 2, 0);
    let mut disk = Blocks(MemDisk::from_image(image));
    let gpt = Gpt::read(&mut disk).unwrap();
    assert!(gpt.status().both_valid());
    // Lose the backup: the repair moves it to the new end of the disk.
    bytes(&mut disk)[BACKUP_HEADER] ^= 1;
    let gpt = Gpt::read(&mut disk).unwrap();
    gpt.write(&mut disk).unwrap();
    let end = disk.block_count() as usize - 1;
    assert_eq!(&disk.0.as_bytes()[end * 512..end * 512 + 8], b"EFI PART");
    assert!(Gpt::read(&mut disk).unwrap().status().both_valid());
}

#[test]
fn layouts_that_cannot_be_are_refused() {
    let mut parts = eve_partitions();
    let make = |parts: &[NewPartition<'_>]| Gpt::create(512, DISK_BLOCKS, eve_guid(0), parts);
    assert_eq!(
        Gpt::create(1000, DISK_BLOCKS, eve_guid(0), &[]),
        Err(LayoutError::BlockSize(1000))
    );
    assert_eq!(
        Gpt::create(512, 60, eve_guid(0), &[]),
        Err(LayoutError::DiskTooSmall)
    );
    parts[1].last_lba = parts[2].first_lba;
    assert_eq!(make(&parts), Err(LayoutError::Overlap(2, 3)));
    let mut parts = eve_partitions();
    parts[4].number = 129;
    assert_eq!(make(&parts), Err(LayoutError::Number(129)));
    parts[4].number = 2;
    assert_eq!(make(&parts), Err(LayoutError::DuplicateNumber(2)));
    let mut parts = eve_partitions();
    parts[0].first_lba = 33;
    assert_eq!(make(&parts), Err(LayoutError::OutsideUsable(1)));
    let mut parts = eve_partitions();
    parts[4].last_lba = DISK_BLOCKS - 33;
    assert_eq!(make(&parts), Err(LayoutError::OutsideUsable(9)));
    let mut parts = eve_partitions();
    let long = "n".repeat(37);
    parts[3].name = &long;
    assert_eq!(make(&parts), Err(LayoutError::NameTooLong(4)));
}

/// A 2 MiB disk with IMGA (active) and IMGB (unused): small, as every
/// power cut below copies it.
fn small_disk() -> Blocks<MemDisk> {
    let blocks = 4096;
    let parts: Vec<NewPartition<'_>> = eve_partitions()
        .into_iter()
        .filter(|p| p.type_guid == types::EVE_IMAGE)
        .zip([(2048, 3071), (3072, 4000)])
        .map(|(p, (first_lba, last_lba))| NewPartition {
            first_lba,
            last_lba,
            ..p
        })
        .collect();
    let mut disk = Blocks(MemDisk::new(blocks as usize));
    Gpt::create(512, blocks, eve_guid(0x50), &parts)
        .unwrap()
        .write(&mut disk)
        .unwrap();
    disk
}

fn image_names() -> Vec<(u32, String)> {
    vec![(2, "IMGA".to_string()), (3, "IMGB".to_string())]
}

/// A table changed in one attribute (IMGB to updating), written through a
/// disk that loses power after `cut` block writes.
fn write_with_power_cut(cut: u64, tear: Tear) -> (MemDisk, bool) {
    let disk = small_disk();
    let mut gpt = Gpt::read(&mut { disk.clone() }).unwrap();
    let imgb = gpt.partition_named("IMGB").unwrap();
    gpt.set_attributes(imgb.number, SlotState::Updating.apply(imgb.attributes))
        .unwrap();
    let mut faulty = Blocks(FaultyDisk::with_power_cut(disk.0, cut, tear));
    gpt.write(&mut faulty).unwrap();
    let lost = faulty.0.power_lost();
    (faulty.0.into_inner(), lost)
}

#[test]
fn a_power_cut_during_a_write_leaves_the_old_or_the_new_table() {
    let mut counting = Blocks(FaultyDisk::new(small_disk().0));
    let gpt = Gpt::read(&mut counting).unwrap();
    gpt.write(&mut counting).unwrap();
    let writes = counting.0.blocks_written();
    assert_eq!(writes, 2 * (1 + 32));
    let mut saw = [false; 2];
    for cut in 0..=writes {
        for tear in [
            Tear::Old,
            Tear::Prefix(20),
            Tear::Prefix(300),
            Tear::Suffix(60),
        ] {
            let (disk, _) = write_with_power_cut(cut, tear);
            let mut disk = Blocks(disk);
            let after = Gpt::read(&mut disk)
                .unwrap_or_else(|e| panic!("cut after {cut} blocks ({tear:?}): {e}"));
            let state = SlotState::of(after.partition_named("IMGB").unwrap().attributes);
            assert!(
                matches!(state, SlotState::Unused | SlotState::Updating),
                "cut after {cut} ({tear:?}): {state}"
            );
            saw[usize::from(state == SlotState::Updating)] = true;
            assert_eq!(names(&after), image_names());
            // The next write repairs whatever the cut left.
            after.write(&mut disk).unwrap();
            assert!(Gpt::read(&mut disk).unwrap().status().both_valid());
        }
    }
    assert_eq!(saw, [true, true]);
    let (_, lost) = write_with_power_cut(writes, Tear::Old);
    assert!(!lost);
}

#[test]
fn copies_are_named() {
    assert_eq!(Copy::Primary.to_string(), "primary");
    assert_eq!(Copy::Backup.to_string(), "backup");
    let e = ReadError::NoValidTable {
        primary: Invalid::HeaderCrc,
        backup: Invalid::Unreadable(gptab::DiskError::Io),
    };
    assert_eq!(
        e.to_string(),
        "no usable GPT: primary header CRC mismatch, backup unreadable (disk I/O error)"
    );
}
