//! The node image, as a user gets it: `cargo xtask image` with a CONFIG
//! partition for our controller, booted under QEMU with UEFI firmware
//! (OVMF on x86_64, AAVMF on aarch64) through our loader into eve-host as
//! the node's init, which must onboard to the controller on this host's
//! loopback; then an untested base OS in IMGB is tried once and falls back
//! to IMGA. The image file is first made a sparse 40 GiB disk, as when it
//! is flashed to a real one: the first boot grows PERSIST and its ext4 to
//! the disk's end (past the 16 GiB a 16 MiB ext4's reserved descriptor
//! blocks reach: the kernel converts it to `meta_bg` on the way), the
//! later boots find nothing to grow. The node's services run in QEMU
//! inside the emulated machine (TCG inside TCG), so each arch gets one
//! scenario and a generous time.
//! The Raspberry Pi 4 image is checked for its layout.
//!
//! The controller runs in this process; its TLS certificate also names
//! the node's way to this host ([`harness::nodeimage::UPLINK_HOST`]).
//! Under `cargo xtask test` the scenario runs that xtask binary; under a
//! plain `cargo test` it builds xtask. Either way xtask builds into
//! `target/guest`: the outer `cargo test` holds the lock on `target/`.

mod common;
#[allow(dead_code)] // the admin API is for the update scenario
#[path = "common/localctl.rs"]
mod localctl;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use blockdev::MemDisk;
use configpart::FatVolume;
use gptab::ab::{self, SlotState};
use gptab::{Blocks, DEFAULT_BLOCK_SIZE, Disk, FileDisk, Gpt, types};
use harness::Arch;
use harness::nodeimage::NodeMachine;
use localctl::{LocalController, build_image, scratch};
use rustix::fs::SeekFrom;

/// The boot and onboarding with the services' VMs emulated inside an
/// emulated machine.
const ONBOARD: Duration = Duration::from_secs(2400);

/// The disk the image is flashed to: larger than the 16 GiB up to which
/// the image's 16 MiB ext4 grows on its reserved group descriptor blocks
/// alone, as real disks are. A sparse file.
const GROWN_DISK: u64 = 40 << 30;

/// One emulated node at a time: each keeps the machine's cores busy.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn image_boots_and_onboards(arch: Arch) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("image-test", arch);
    let controller = LocalController::start(&dir.join("controller"));
    let identity = controller.provision("image-test-", &dir.join("config"));
    let image = dir.join("eve.img");
    build_image(arch, "image-test", &dir.join("config"), &image, &[]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .and_then(|f| f.set_len(GROWN_DISK))
        .expect("the image made a larger disk");

    let machine = NodeMachine::new(arch, &image, &dir.join("vars.fd")).expect("machine");
    let mut console = machine.power_on().expect("QEMU starts");
    let loader = console
        .wait_for("eve-loader: booting IMGA", Duration::from_secs(600))
        .unwrap_or_else(|| panic!("the loader did not boot IMGA:\n{}", console.transcript()));
    let init = console
        .wait_for(
            "eve-init: EVE image-test booted from IMGA",
            Duration::from_secs(900),
        )
        .unwrap_or_else(|| {
            panic!(
                "the kernel did not start eve-host:\n{}",
                console.transcript()
            )
        });
    let (disk_found, _) = console
        .wait_for("eve-init: node disk", Duration::from_secs(300))
        .unwrap_or_else(|| panic!("no node disk:\n{}", console.transcript()));
    let (table_grown, table_line) = console
        .wait_for(
            "eve-init: PERSIST grown to the end",
            Duration::from_secs(300),
        )
        .unwrap_or_else(|| panic!("PERSIST's table not grown:\n{}", console.transcript()));
    let (mounted, _) = console
        .wait_for(
            "eve-init: PERSIST mounted on /persist",
            Duration::from_secs(300),
        )
        .unwrap_or_else(|| panic!("no PERSIST:\n{}", console.transcript()));
    let (ext4_grown, ext4_line) = console
        .wait_for("eve-init: PERSIST's ext4 ", Duration::from_secs(1200))
        .unwrap_or_else(|| panic!("PERSIST's ext4 not grown:\n{}", console.transcript()));
    assert!(
        ext4_line.contains("grown from"),
        "PERSIST's ext4 not grown:\n{}",
        console.transcript()
    );
    println!(
        "{arch}: {table_line} ({:.1} s)\n{arch}: {ext4_line} ({:.1} s)",
        (table_grown - disk_found).as_secs_f64(),
        (ext4_grown - mounted).as_secs_f64()
    );

    let uuid = controller.until_onboarded(&identity.serial, &mut console, ONBOARD);
    println!(
        "{arch}: loader at {:.1} s, init at {:.1} s, onboarded as {uuid} at {:.1} s",
        loader.0.as_secs_f64(),
        init.0.as_secs_f64(),
        console.elapsed().as_secs_f64()
    );
    for line in console
        .transcript()
        .lines()
        .filter(|l| l.contains("EXT4-fs"))
    {
        println!("{arch}: the kernel said {line}");
    }
    drop(console);
    persist_fills_the_disk(&image, &dir);
    update_is_tried_once_then_falls_back(arch, &machine);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The image file as a disk (`xtask image` writes 512-byte blocks), for
/// the table edits an update makes.
fn open_image(path: &Path) -> FileDisk<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("the image");
    FileDisk::new(file, DEFAULT_BLOCK_SIZE).expect("the image's length")
}

/// After the first boot, from the image file: the table's backup at the
/// grown disk's end, PERSIST up to it, and PERSIST's ext4 filling
/// PERSIST (up to the last block group, which the kernel leaves out when
/// it is too small for its own metadata) and consistent.
fn persist_fills_the_disk(image: &Path, dir: &Path) {
    let mut disk = open_image(image);
    let blocks = disk.block_count();
    assert_eq!(blocks * DEFAULT_BLOCK_SIZE as u64, GROWN_DISK);
    let gpt = Gpt::read(&mut disk).expect("a GPT");
    assert!(gpt.status().both_valid(), "{:?}", gpt.status());
    let mut header = vec![0u8; DEFAULT_BLOCK_SIZE];
    disk.read(blocks - 1, &mut header).expect("the last block");
    assert_eq!(
        &header[..8],
        b"EFI PART",
        "the backup header at the disk's end"
    );
    assert_eq!(
        u64::from_le_bytes(header[24..32].try_into().unwrap()),
        blocks - 1
    );
    let persist = gpt.partition_named("P3").expect("PERSIST");
    assert_eq!(persist.last_lba, gpt.last_usable());
    // The backup entries (32 blocks) and header after it, no more than
    // the table's 1 MiB alignment.
    assert!(blocks - 1 - persist.last_lba <= (1 << 20) / DEFAULT_BLOCK_SIZE as u64);
    drop(disk);

    let file = std::fs::File::open(image).expect("the image");
    let start = persist.first_lba * DEFAULT_BLOCK_SIZE as u64;
    let partition_bytes = persist.blocks() * DEFAULT_BLOCK_SIZE as u64;
    let mut sb = [0u8; 1024];
    file.read_exact_at(&mut sb, start + 1024)
        .expect("PERSIST's superblock");
    let superblock = persistgrow::Superblock::parse(&sb).expect("ext4 on PERSIST");
    let group_bytes = u64::from(u32::from_le_bytes(sb[32..36].try_into().unwrap()))
        * u64::from(superblock.block_size);
    let fs_bytes = superblock.blocks * u64::from(superblock.block_size);
    assert!(
        fs_bytes <= partition_bytes && partition_bytes - fs_bytes < group_bytes,
        "an ext4 of {fs_bytes} bytes on a PERSIST of {partition_bytes}"
    );

    let started = Instant::now();
    let copy = dir.join("persist.ext4");
    sparse_copy(&file, start, partition_bytes, &copy);
    // The machine was powered off: its journal is replayed on the copy
    // (what the next mount does), and only that, before the read-only
    // check.
    let replay = Command::new("e2fsck")
        .args(["-E", "journal_only", "-y"])
        .arg(&copy)
        .output()
        .expect("e2fsck (e2fsprogs) runs");
    assert!(
        replay.status.success(),
        "replaying PERSIST's journal: {}\n{}{}",
        replay.status,
        String::from_utf8_lossy(&replay.stdout),
        String::from_utf8_lossy(&replay.stderr)
    );
    let check = Command::new("e2fsck")
        .arg("-fn")
        .arg(&copy)
        .output()
        .expect("e2fsck (e2fsprogs) runs");
    let _ = std::fs::remove_file(&copy);
    assert!(
        check.status.success(),
        "e2fsck -fn on PERSIST: {}\n{}{}",
        check.status,
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // `INCOMPAT_META_BG`: what the kernel converts the file system to
    // when its reserved descriptor blocks run out.
    let meta_bg = u32::from_le_bytes(sb[0x60..0x64].try_into().unwrap()) & 0x10 != 0;
    println!(
        "PERSIST: {partition_bytes} bytes, its ext4 {fs_bytes} ({} blocks of {}, meta_bg {meta_bg}), e2fsck -fn clean ({:.1} s)",
        superblock.blocks,
        superblock.block_size,
        started.elapsed().as_secs_f64()
    );
}

/// Copies `len` bytes of `from` at `start` to a new sparse file `to`: only
/// the extents that hold data (SEEK_DATA, SEEK_HOLE) and are not zeros.
fn sparse_copy(from: &std::fs::File, start: u64, len: u64, to: &Path) {
    let out = std::fs::File::create(to).expect("the copy");
    out.set_len(len).expect("the copy's length");
    let end = start + len;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = start;
    while at < end {
        let Ok(data) = rustix::fs::seek(from, SeekFrom::Data(at)) else {
            break;
        };
        let hole = rustix::fs::seek(from, SeekFrom::Hole(data)).expect("SEEK_HOLE");
        let mut pos = data;
        while pos < hole.min(end) {
            let n = (hole.min(end) - pos).min(buf.len() as u64) as usize;
            from.read_exact_at(&mut buf[..n], pos).expect("the image");
            if buf[..n].iter().any(|&b| b != 0) {
                out.write_all_at(&buf[..n], pos - start).expect("the copy");
            }
            pos += n as u64;
        }
        at = hole;
    }
}

fn state(disk: &mut FileDisk<std::fs::File>, name: &str) -> SlotState {
    let gpt = Gpt::read(disk).expect("a GPT");
    SlotState::of(gpt.partition_named(name).expect(name).attributes)
}

/// The loader's side of an update, on the real firmware: IMGB gets the
/// same base OS and is marked `updating` (what baseosmgr will do); the
/// loader boots it once, writing `inprogress` before the kernel starts;
/// with nothing to commit it, the next boot goes back to IMGA by itself.
fn update_is_tried_once_then_falls_back(arch: Arch, machine: &NodeMachine) {
    let mut disk = open_image(&machine.image);
    let mut gpt = Gpt::read(&mut disk).expect("a GPT");
    let (imga, imgb) = (
        gpt.partition_named("IMGA").expect("IMGA"),
        gpt.partition_named("IMGB").expect("IMGB"),
    );
    let block_size = disk.block_size() as u64;
    let mut base_os = vec![0u8; (imga.blocks().min(imgb.blocks()) * block_size) as usize];
    disk.read(imga.first_lba, &mut base_os).expect("IMGA");
    disk.write(imgb.first_lba, &base_os).expect("IMGB");
    ab::set_state(&mut gpt, "IMGB", types::EVE_IMAGE, SlotState::Updating).expect("updating");
    gpt.write(&mut disk).expect("the table");
    drop(disk);

    let mut console = machine.power_on().expect("QEMU starts");
    console
        .wait_for("eve-loader: booting IMGB", Duration::from_secs(600))
        .unwrap_or_else(|| panic!("the loader did not try IMGB:\n{}", console.transcript()));
    console
        .wait_for("booted from IMGB (inprogress)", Duration::from_secs(900))
        .unwrap_or_else(|| panic!("IMGB did not start on trial:\n{}", console.transcript()));
    drop(console);
    let mut disk = open_image(&machine.image);
    assert_eq!(state(&mut disk, "IMGB"), SlotState::InProgress);
    assert_eq!(state(&mut disk, "IMGA"), SlotState::Active);
    drop(disk);

    let mut console = machine.power_on().expect("QEMU starts");
    let (_, fallback) = console
        .wait_for("eve-loader: booting IMGA", Duration::from_secs(600))
        .unwrap_or_else(|| panic!("no fallback to IMGA:\n{}", console.transcript()));
    console
        .wait_for("an update that did not commit", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the loader did not say why:\n{}", console.transcript()));
    console
        .wait_for("booted from IMGA (active)", Duration::from_secs(900))
        .unwrap_or_else(|| panic!("IMGA did not start:\n{}", console.transcript()));
    for already in [
        "eve-init: PERSIST already ends at the end of",
        "eve-init: PERSIST's ext4 already fills its partition",
    ] {
        console
            .wait_for(already, Duration::from_secs(300))
            .unwrap_or_else(|| panic!("no {already:?}:\n{}", console.transcript()));
    }
    let transcript = console.transcript();
    assert!(
        !transcript.contains("PERSIST grown") && !transcript.contains("ext4 grown"),
        "PERSIST grown again:\n{transcript}"
    );
    println!("{arch}: the untested IMGB was tried once, then {fallback}");
}

#[test]
fn x86_64_image_boots_with_ovmf_and_onboards() {
    image_boots_and_onboards(Arch::X86_64);
}

#[test]
fn aarch64_image_boots_with_aavmf_and_onboards() {
    image_boots_and_onboards(Arch::Aarch64);
}

/// The Raspberry Pi 4 image cannot boot here (no Pi firmware in QEMU):
/// its layout and files are checked instead. Untested on hardware.
#[test]
fn rpi4_image_has_the_pi_layout() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("image-test", Arch::Aarch64).join("rpi4");
    std::fs::create_dir_all(dir.join("config")).expect("scratch directory");
    std::fs::write(dir.join("config/server"), "controller.example:443").expect("CONFIG file");
    let image = dir.join("eve-rpi4.img");
    build_image(
        Arch::Aarch64,
        "image-test",
        &dir.join("config"),
        &image,
        &["--board", "rpi4"],
    );
    let bytes = std::fs::read(&image).expect("the image");
    let _ = std::fs::remove_dir_all(&dir);

    let gpt = Gpt::read(&mut Blocks(MemDisk::from_image(bytes.clone()))).expect("a GPT");
    assert!(gpt.status().both_valid() && gpt.status().protective_mbr);
    let names: Vec<(u32, String)> = gpt
        .partitions()
        .into_iter()
        .map(|p| (p.number, p.name))
        .collect();
    let expect: Vec<(u32, String)> = [
        (1, "RPIBOOT"),
        (2, "IMGA"),
        (3, "IMGB"),
        (4, "CONFIG"),
        (9, "P3"),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.to_string()))
    .collect();
    assert_eq!(names, expect);
    let volume = |name: &str| {
        let p = gpt.partition_named(name).expect(name);
        assert!(p.last_lba >= p.first_lba);
        bytes[p.first_lba as usize * 512..(p.last_lba as usize + 1) * 512].to_vec()
    };
    for name in ["RPIBOOT", "IMGA", "IMGB"] {
        assert_eq!(
            gpt.partition_named(name).unwrap().type_guid,
            types::BASIC_DATA,
            "the Pi boots from basic data partitions"
        );
    }
    let read = |fat: &mut FatVolume<MemDisk>, name: &str| {
        let entry = fat
            .find(name)
            .expect("a readable directory")
            .unwrap_or_else(|| panic!("no {name}"));
        fat.read_file(&entry, 64 << 20).expect(name)
    };
    let mut boot = FatVolume::open(MemDisk::from_image(volume("RPIBOOT"))).expect("FAT");
    let autoboot = String::from_utf8(read(&mut boot, "autoboot.txt")).unwrap();
    assert_eq!(
        autoboot,
        "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"
    );
    let mut imga = FatVolume::open(MemDisk::from_image(volume("IMGA"))).expect("FAT");
    assert_eq!(imga.fat_type(), configpart::FatType::Fat32);
    for firmware in ["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"] {
        assert!(!read(&mut imga, firmware).is_empty(), "{firmware}");
    }
    let config = String::from_utf8(read(&mut imga, "config.txt")).unwrap();
    assert!(config.contains("arm_64bit=1") && config.contains("initramfs initrd followkernel"));
    let kernel = read(&mut imga, "kernel8.img");
    assert_eq!(&kernel[56..60], b"ARM\x64", "an arm64 Image");
    assert_eq!(&read(&mut imga, "initrd")[..6], b"\xfd7zXZ\x00");
    assert_eq!(read(&mut imga, "eve-release"), b"image-test\n");
    assert!(
        volume("IMGB")[..512].iter().all(|&b| b == 0),
        "IMGB starts empty"
    );
    let mut config = FatVolume::open(MemDisk::from_image(volume("CONFIG"))).expect("FAT");
    assert_eq!(read(&mut config, "server"), b"controller.example:443");
    assert_eq!(&volume("P3")[1080..1082], &[0x53, 0xEF], "ext4 on PERSIST");
}
