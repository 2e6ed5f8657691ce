//! Images built by the host writer, read back by the guest reader, and
//! damaged images that must fail cleanly.

use blockdev::{BlockDevice, MemDisk};
use configpart::{
    ConfigError, ConfigFile, FatError, FatType, FatVolume, ImageLayout, build_config_image,
    read_factory_config,
};

const ROOT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";

/// A root certificate bundle spanning several clusters.
fn big_root_pem() -> String {
    let mut pem = String::new();
    for i in 0..60 {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        pem.push_str(&format!("{:0>64}\n", i));
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

fn full_files(root: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("server", b"controller.example.net:3000\n".to_vec()),
        ("root-certificate.pem", root.as_bytes().to_vec()),
        ("onboard.cert.pem", CERT_PEM.as_bytes().to_vec()),
        ("onboard.key.pem", KEY_PEM.as_bytes().to_vec()),
        ("soft_serial", b"SOFT-0042\n".to_vec()),
        (
            "hosts",
            b"# overrides\n10.0.2.2 controller.example.net\n".to_vec(),
        ),
    ]
}

fn image(files: &[(&str, Vec<u8>)], layout: ImageLayout) -> MemDisk {
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_slice())).collect();
    let mut disk = MemDisk::from_image(build_config_image(&files, layout).unwrap());
    disk.set_read_only(true);
    disk
}

const MIB: u64 = 1024 * 1024;

#[test]
fn every_file_round_trips_on_every_layout_and_fat_type() {
    let root = big_root_pem();
    let layouts = [
        (ImageLayout::Bare { volume_bytes: MIB }, FatType::Fat12),
        (ImageLayout::Mbr { volume_bytes: MIB }, FatType::Fat12),
        (
            ImageLayout::Mbr {
                volume_bytes: 16 * MIB,
            },
            FatType::Fat16,
        ),
    ];
    for (layout, fat_type) in layouts {
        let disk = image(&full_files(&root), layout);
        assert_eq!(
            FatVolume::open(disk.clone()).unwrap().fat_type(),
            fat_type,
            "{layout:?}"
        );
        let config = read_factory_config(disk).unwrap();
        assert_eq!(config.server, "controller.example.net:3000");
        assert_eq!(config.server_host(), "controller.example.net");
        assert_eq!(config.server_port(), Some(3000));
        assert_eq!(config.root_certificate_pem, root);
        assert_eq!(config.onboard_cert_pem.as_deref(), Some(CERT_PEM));
        assert_eq!(config.onboard_key_pem.as_deref(), Some(KEY_PEM));
        assert_eq!(config.soft_serial.as_deref(), Some("SOFT-0042"));
        assert_eq!(
            config.hosts,
            [(
                "controller.example.net".to_string(),
                "10.0.2.2".parse().unwrap()
            )]
        );
    }
}

/// `build_config_image` lets fatfs choose the FAT type, which is FAT32 only
/// for volumes of hundreds of MiB; force FAT32 on a small volume instead.
#[test]
fn fat32_volumes_are_read() {
    use std::io::{Cursor, Write};
    let mut volume = Cursor::new(vec![0u8; (40 * MIB) as usize]);
    let options = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .bytes_per_cluster(512);
    fatfs::format_volume(&mut volume, options).unwrap();
    let root = big_root_pem();
    {
        let fs = fatfs::FileSystem::new(&mut volume, fatfs::FsOptions::new()).unwrap();
        // Enough files that the root directory spans several clusters.
        for i in 0..40 {
            let name = format!("padding-file-number-{i}.txt");
            fs.root_dir()
                .create_file(&name)
                .unwrap()
                .write_all(b"x")
                .unwrap();
        }
        for (name, contents) in full_files(&root) {
            fs.root_dir()
                .create_file(name)
                .unwrap()
                .write_all(&contents)
                .unwrap();
        }
        fs.unmount().unwrap();
    }
    let disk = MemDisk::from_image(volume.into_inner());
    let mut fat = FatVolume::open(disk.clone()).unwrap();
    assert_eq!(fat.fat_type(), FatType::Fat32);
    assert_eq!(fat.root_entries().unwrap().len(), 46);
    let config = read_factory_config(disk).unwrap();
    assert_eq!(config.root_certificate_pem, root);
    assert_eq!(config.soft_serial.as_deref(), Some("SOFT-0042"));
}

#[test]
fn long_names_are_stored_as_long_names_and_found_ignoring_case() {
    let files = vec![
        ("SERVER", b"10.0.2.2".to_vec()),
        ("Root-Certificate.PEM", ROOT_PEM.as_bytes().to_vec()),
    ];
    let disk = image(&files, ImageLayout::Bare { volume_bytes: MIB });
    let mut volume = FatVolume::open(disk.clone()).unwrap();
    let entries = volume.root_entries().unwrap();
    let root = entries
        .iter()
        .find(|e| e.long_name() == Some("Root-Certificate.PEM"))
        .unwrap();
    assert_eq!(root.short_name(), "ROOT-C~1.PEM");
    let config = read_factory_config(disk).unwrap();
    assert_eq!(config.server_port(), None);
    assert_eq!(config.root_certificate_pem, ROOT_PEM);
}

#[test]
fn optional_files_may_be_missing_required_ones_may_not() {
    let minimal = vec![
        ("server", b"ctrl:443".to_vec()),
        ("root-certificate.pem", ROOT_PEM.as_bytes().to_vec()),
    ];
    let config =
        read_factory_config(image(&minimal, ImageLayout::Bare { volume_bytes: MIB })).unwrap();
    assert_eq!(config.onboard_cert_pem, None);
    assert_eq!(config.onboard_key_pem, None);
    assert_eq!(config.soft_serial, None);
    assert!(config.hosts.is_empty());

    for (missing, error) in [
        ("server", ConfigError::Missing(ConfigFile::Server)),
        (
            "root-certificate.pem",
            ConfigError::Missing(ConfigFile::RootCertificate),
        ),
        ("onboard.key.pem", ConfigError::OnboardPairIncomplete),
    ] {
        let files: Vec<_> = full_files(ROOT_PEM)
            .into_iter()
            .filter(|(n, _)| *n != missing)
            .collect();
        let result = read_factory_config(image(&files, ImageLayout::Bare { volume_bytes: MIB }));
        assert_eq!(result, Err(error), "without {missing}");
    }
}

#[test]
fn bad_contents_are_reported_per_file() {
    let cases: [(&str, Vec<u8>, ConfigError); 6] = [
        ("server", b"not a host".to_vec(), ConfigError::BadServer),
        (
            "server",
            vec![b'a'; 1025],
            ConfigError::TooLarge(ConfigFile::Server),
        ),
        (
            "server",
            vec![0xff, 0xfe],
            ConfigError::NotText(ConfigFile::Server),
        ),
        (
            "onboard.cert.pem",
            b"no pem here".to_vec(),
            ConfigError::BadPem(ConfigFile::OnboardCertificate),
        ),
        (
            "soft_serial",
            b"has space".to_vec(),
            ConfigError::BadSoftSerial,
        ),
        (
            "hosts",
            b"ok.example 1.2.3.4\n".to_vec(),
            ConfigError::BadHostsLine(1),
        ),
    ];
    for (name, contents, error) in cases {
        let mut files = full_files(ROOT_PEM);
        files.iter_mut().find(|(n, _)| *n == name).unwrap().1 = contents;
        let result = read_factory_config(image(&files, ImageLayout::Bare { volume_bytes: MIB }));
        assert_eq!(result, Err(error), "{name}");
    }
}

/// Byte offset and FAT type of the first FAT of the bare volume in `disk`.
fn first_fat(disk: &MemDisk) -> usize {
    let bytes = disk.as_bytes();
    usize::from(u16::from_le_bytes([bytes[14], bytes[15]])) * 512
}

fn set_fat12_entry(disk: &mut MemDisk, cluster: u32, value: u16) {
    let fat = first_fat(disk);
    let at = fat + (cluster + cluster / 2) as usize;
    let bytes = disk.as_bytes_mut();
    let old = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let new = if cluster % 2 == 1 {
        (old & 0x000F) | (value << 4)
    } else {
        (old & 0xF000) | value
    };
    bytes[at..at + 2].copy_from_slice(&new.to_le_bytes());
}

#[test]
fn broken_cluster_chains_are_errors() {
    let files = full_files(&big_root_pem());
    let good = image(&files, ImageLayout::Bare { volume_bytes: MIB });
    let mut volume = FatVolume::open(good.clone()).unwrap();
    let entry = volume.find("root-certificate.pem").unwrap().unwrap();
    let first = entry.first_cluster();
    assert!(entry.size() > 2048, "the bundle must span clusters");

    let read_root = |disk: MemDisk| {
        let mut volume = FatVolume::open(disk).unwrap();
        volume.read_file(&entry, 1 << 20)
    };
    let damage = |cluster: u32, value: u16| {
        let mut disk = good.clone();
        disk.set_read_only(false);
        set_fat12_entry(&mut disk, cluster, value);
        disk
    };
    assert_eq!(
        read_root(damage(first, first as u16)),
        Err(FatError::ChainLoop)
    );
    assert_eq!(read_root(damage(first, 0)), Err(FatError::BadCluster));
    assert_eq!(read_root(damage(first, 0xFF7)), Err(FatError::BadCluster));
    assert_eq!(read_root(damage(first, 0xFF0)), Err(FatError::BadCluster));
    assert_eq!(
        read_root(damage(first, 0xFFF)),
        Err(FatError::ChainTooShort)
    );
    assert_eq!(
        read_factory_config(damage(first, first as u16)),
        Err(ConfigError::Fs(FatError::ChainLoop))
    );
}

#[test]
fn no_volume_bad_mbr_and_truncation_are_errors() {
    assert_eq!(
        read_factory_config(MemDisk::new(64)),
        Err(ConfigError::Fs(FatError::NoFatVolume))
    );
    let good = image(
        &full_files(ROOT_PEM),
        ImageLayout::Mbr { volume_bytes: MIB },
    );

    let mut beyond = good.clone();
    beyond.set_read_only(false);
    beyond.as_bytes_mut()[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        read_factory_config(beyond),
        Err(ConfigError::Fs(FatError::BadBootSector))
    );

    let bytes = good.as_bytes();
    for blocks in [1, 2048, 2049, 2060, 3000, 4000] {
        let truncated = MemDisk::from_image(bytes[..blocks * 512].to_vec());
        assert!(read_factory_config(truncated).is_err(), "{blocks} blocks");
    }
}

#[test]
fn random_and_mutated_images_never_panic() {
    let mut rng = wirebytes::testing::XorShift::new(0xdead_beef_cafe_f00d);
    let mut next = move || rng.next_u64();
    for _ in 0..20 {
        let bytes: Vec<u8> = (0..256 * 512).map(|_| next() as u8).collect();
        assert!(read_factory_config(MemDisk::from_image(bytes)).is_err());
    }
    let good = image(
        &full_files(&big_root_pem()),
        ImageLayout::Bare { volume_bytes: MIB },
    );
    // Mutate where the reader looks: boot sector, FATs, root directory.
    let metadata_end = 64 * 512;
    for round in 0..3000 {
        let mut disk = good.clone();
        disk.set_read_only(false);
        for _ in 0..1 + round % 4 {
            let at = (next() % metadata_end) as usize;
            disk.as_bytes_mut()[at] = next() as u8;
        }
        let _ = read_factory_config(disk.clone());
        if let Ok(mut volume) = FatVolume::open(disk)
            && let Ok(entries) = volume.root_entries()
        {
            for entry in entries {
                let _ = volume.read_file(&entry, 1 << 20);
            }
        }
    }
}

#[test]
fn the_reader_never_writes() {
    // `image` hands out read-only disks: any write would fail the read.
    let disk = image(
        &full_files(ROOT_PEM),
        ImageLayout::Mbr { volume_bytes: MIB },
    );
    assert!(read_factory_config(disk).is_ok());
    let mut disk = MemDisk::new(1);
    disk.set_read_only(true);
    assert!(disk.write_blocks(0, &[0; 512]).is_err());
}
