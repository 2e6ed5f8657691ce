//! A CONFIG disk: the factory config reader and the FAT walk must never
//! panic on whatever is on the disk.
//!
//! Each input is tried twice: as a whole disk image, and as a mask XORed
//! onto a valid CONFIG image (a FAT12 volume with every file, as EVE's
//! 1 MiB one but 64 KiB, the smallest the writer makes, so each run copies
//! less), so an input of zeros is that valid volume and the fuzzer spends
//! its time in the boot sector, FATs, directories and files rather than in
//! finding a boot signature. The committed seed is such a mask of zeros,
//! as long as a mask reaches.
#![no_main]

use std::sync::OnceLock;

use blockdev::MemDisk;
use configpart::{FatVolume, ImageLayout, build_config_image, read_factory_config};
use libfuzzer_sys::fuzz_target;

/// How far a mask reaches: boot sector, both FATs, the root directory and
/// the files, which all sit in the first half of the volume.
const MASK_LEN: usize = 64 * 512;

fn base_image() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let root = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let files: [(&str, &[u8]); 6] = [
            ("server", b"controller.example:8443\n"),
            ("root-certificate.pem", root),
            ("onboard.cert.pem", root),
            (
                "onboard.key.pem",
                b"-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n",
            ),
            ("soft_serial", b"fuzz-serial\n"),
            ("hosts", b"127.0.0.1 controller.example\n"),
        ];
        let image = build_config_image(
            &files,
            ImageLayout::Bare {
                volume_bytes: 64 << 10,
            },
        )
        .expect("the base image builds");
        read_factory_config(MemDisk::from_image(image.clone())).expect("the base image reads");
        image
    })
}

fn exercise(image: Vec<u8>) {
    let disk = MemDisk::from_image(image);
    let _ = read_factory_config(disk.clone());
    let Ok(mut volume) = FatVolume::open(disk) else {
        return;
    };
    let _ = volume.fat_type();
    let Ok(entries) = volume.root_entries() else {
        return;
    };
    for entry in &entries {
        let _ = entry.name();
        let _ = volume.find(entry.name());
        if let Ok(contents) = volume.read_file(entry, 64 << 10) {
            assert!(contents.len() <= 64 << 10);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(data.to_vec());
    let mut image = base_image().to_vec();
    for (byte, mask) in image.iter_mut().zip(data.iter().take(MASK_LEN)) {
        *byte ^= mask;
    }
    exercise(image);
});
