//! A disk's partition table: reading, choosing an image partition and
//! writing the table back must never panic on whatever the disk holds, and
//! a table we wrote must read back.
//!
//! Each input is tried twice: as a whole disk, and as a mask XORed onto a
//! valid EVE disk (protective MBR, both headers, both entry arrays), the
//! first bytes of the mask over the start of the disk and the rest over
//! the backup at its end, so the fuzzer works on headers and entries
//! rather than on finding a signature.
#![no_main]

use std::sync::OnceLock;

use blockdev::MemDisk;
use gptab::ab::{self, SlotState};
use gptab::{Blocks, Disk, Gpt, Guid, NewPartition, types};
use libfuzzer_sys::fuzz_target;

/// 1 MiB: small, so each run copies little.
const BLOCKS: u64 = 2048;
/// The protective MBR, the primary header and its entries.
const HEAD: usize = 34 * 512;

fn base_disk() -> &'static [u8] {
    static DISK: OnceLock<Vec<u8>> = OnceLock::new();
    DISK.get_or_init(|| {
        let part = |number, type_guid, first_lba, last_lba, attributes, name| NewPartition {
            number,
            type_guid,
            unique_guid: Guid([number as u8; 16]),
            first_lba,
            last_lba,
            attributes,
            name,
        };
        let parts = [
            part(1, types::EFI_SYSTEM, 64, 255, 0, "EFI System"),
            part(2, types::EVE_IMAGE, 256, 767, SlotState::Active.apply(0), "IMGA"),
            part(3, types::EVE_IMAGE, 768, 1279, SlotState::Updating.apply(0), "IMGB"),
            part(4, types::EVE_CONFIG, 1280, 1535, 0, "CONFIG"),
            part(9, types::EVE_PERSIST, 1536, 2000, 0, "P3"),
        ];
        let mut disk = Blocks(MemDisk::new(BLOCKS as usize));
        disk.write(0, &gptab::protective_mbr(512, BLOCKS)).unwrap();
        Gpt::create(512, BLOCKS, Guid([0xEE; 16]), &parts)
            .unwrap()
            .write(&mut disk)
            .unwrap();
        disk.into_inner().into_bytes()
    })
}

fn exercise(image: Vec<u8>) {
    let mut disk = Blocks(MemDisk::from_image(image));
    let Ok(mut gpt) = Gpt::read(&mut disk) else {
        return;
    };
    let _ = gpt.status();
    for p in gpt.partitions() {
        let _ = gpt.partition_named(&p.name);
        let _ = p.blocks();
    }
    let _ = ab::choose(&mut gpt, types::EVE_IMAGE).map(|c| c.to_string());
    let _ = ab::set_state(&mut gpt, "IMGB", types::EVE_IMAGE, SlotState::Unused);
    if gpt.write(&mut disk).is_ok() {
        let again = Gpt::read(&mut disk).expect("a table we wrote reads back");
        assert_eq!(again.partitions(), gpt.partitions());
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(data.to_vec());
    let mut image = base_disk().to_vec();
    let backup = image.len() - 33 * 512;
    for (i, mask) in data.iter().enumerate() {
        let at = if i < HEAD { i } else { backup + (i - HEAD) };
        if let Some(byte) = image.get_mut(at) {
            *byte ^= mask;
        }
    }
    exercise(image);
});
