use std::process::Command;

use gptab::{FileDisk, Gpt, Guid, NewPartition, types};

use super::*;

const MIB: u64 = 1 << 20;

/// A file holding an ext4 of `bytes` made by mke2fs with `block_size`.
fn ext4_file(dir: &Path, bytes: u64, block_size: u32, extra: &[&str]) -> PathBuf {
    let path = dir.join(format!("fs-{block_size}-{}", extra.len()));
    let status = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-b", &block_size.to_string()])
        .args(extra)
        .arg(&path)
        .arg(format!("{}k", bytes / 1024))
        .status()
        .unwrap();
    assert!(status.success());
    path
}

#[test]
fn the_superblock_says_the_size_mke2fs_made() {
    let dir = tempfile::tempdir().unwrap();
    for (block_size, extra) in [(1024, &[][..]), (4096, &["-O", "64bit"][..])] {
        let path = ext4_file(dir.path(), 16 * MIB, block_size, extra);
        let sb = Superblock::read(&File::open(&path).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            sb,
            Superblock {
                block_size,
                blocks: 16 * MIB / u64::from(block_size),
            }
        );
    }
}

#[test]
fn hostile_superblocks_are_refused_without_panics() {
    let mut sb = [0u8; 1024];
    assert_eq!(Superblock::parse(&sb), Err(SuperblockError::NotExt4));
    sb[56..58].copy_from_slice(&0xEF53u16.to_le_bytes());
    sb[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        Superblock::parse(&sb),
        Err(SuperblockError::BlockSize(u32::MAX))
    );
    sb[24..28].copy_from_slice(&6u32.to_le_bytes());
    sb[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    sb[0x60] = 0x80;
    sb[0x150..0x154].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        Superblock::parse(&sb),
        Ok(Superblock {
            block_size: 65536,
            blocks: u64::MAX,
        })
    );
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..2000 {
        for b in sb.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        sb[56..58].copy_from_slice(&0xEF53u16.to_le_bytes());
        let _ = Superblock::parse(&sb);
    }
}

/// A 16 MiB image of `block_size` blocks (CONFIG, then P3 to the last
/// usable block) in a file of `disk_bytes`.
fn image(dir: &Path, block_size: usize, disk_bytes: u64) -> PathBuf {
    let blocks = 16 * MIB / block_size as u64;
    let per_mib = MIB / block_size as u64;
    let last_usable = blocks - 2 - 16_384 / block_size as u64;
    let parts = [
        NewPartition {
            number: 4,
            type_guid: types::EVE_CONFIG,
            unique_guid: Guid([4; 16]),
            first_lba: per_mib,
            last_lba: 2 * per_mib - 1,
            attributes: 0,
            name: "CONFIG",
        },
        NewPartition {
            number: 9,
            type_guid: types::EVE_PERSIST,
            unique_guid: Guid([9; 16]),
            first_lba: 2 * per_mib,
            last_lba: last_usable,
            attributes: 0,
            name: "P3",
        },
    ];
    let path = dir.join(format!("disk-{block_size}.img"));
    let file = File::create(&path).unwrap();
    file.set_len(16 * MIB).unwrap();
    let gpt = Gpt::create(block_size, blocks, Guid([1; 16]), &parts).unwrap();
    gpt.write(&mut FileDisk::new(&file, block_size).unwrap())
        .unwrap();
    file.set_len(disk_bytes).unwrap();
    path
}

#[test]
fn an_image_file_on_a_larger_disk_gets_p3_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    // An image file reads as 512-byte blocks.
    let path = image(dir.path(), 512, 48 * MIB);
    let grown = grow_table(&path, "P3").unwrap().unwrap();
    assert_eq!(grown.number, 9);
    assert_eq!(grown.block_size, 512);
    assert_eq!(grown.grown.new_last_lba, 48 * 2048 - 34);
    let file = File::open(&path).unwrap();
    let gpt = Gpt::read(&mut FileDisk::new(&file, 512).unwrap()).unwrap();
    assert!(gpt.status().both_valid());
    assert_eq!(gpt.partition_named("P3").unwrap().last_lba, 48 * 2048 - 34);
    assert_eq!(grow_table(&path, "P3").unwrap(), None);
    assert!(matches!(
        grow_table(&path, "P4"),
        Err(GrowTableError::NoPartition(name)) if name == "P4"
    ));
    assert!(matches!(
        grow_table(&dir.path().join("none"), "P3"),
        Err(GrowTableError::Open { .. })
    ));
}

#[test]
fn an_ext4_smaller_than_its_partition_is_grown_to_fill_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = ext4_file(dir.path(), 16 * MIB, 4096, &[]);
    // The same size: nothing to do.
    assert_eq!(grow_ext4(&fs, dir.path()).unwrap(), None);
    // The partition grew: the resize is asked for 32 MiB of 4 KiB blocks,
    // which the directory given (`/proc`, not an ext4) refuses.
    File::options()
        .write(true)
        .open(&fs)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    match grow_ext4(&fs, Path::new("/proc")) {
        Err(GrowExt4Error::Resize { blocks, errno, .. }) => {
            assert_eq!(blocks, 8192);
            assert_eq!(errno, rustix::io::Errno::NOTTY);
        }
        other => panic!("{other:?}"),
    }
    let not_fs = dir.path().join("zeros");
    File::create(&not_fs).unwrap().set_len(MIB).unwrap();
    assert!(matches!(
        grow_ext4(&not_fs, dir.path()),
        Err(GrowExt4Error::Superblock(SuperblockError::NotExt4))
    ));
}
