//! The target on disk images made with `gptab`: base OS volumes made as
//! FAT images, delivered as verified blobs through the `blobs` target.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use configpart::{ImageLayout, build_config_image};
use gptab::{Guid, NewPartition, types};
use hostops::blobs;
use hostops::partitions::Empty;
use prost::Message;
use sha2::{Digest as _, Sha256};

use super::*;
use crate::targets::blobs::BlobsTarget;
use crate::targets::content::ContentOptions;

const MIB: u64 = 1 << 20;
const PART_BYTES: u64 = MIB;
const IMGA_AT: u64 = MIB;
const IMGB_AT: u64 = IMGA_AT + PART_BYTES;
const DISK_BYTES: u64 = 4 * MIB;

/// A base OS volume saying it is `version`.
fn base_os(version: &str, volume_bytes: u64) -> Vec<u8> {
    let release = format!("{version}\n");
    build_config_image(
        &[
            ("kernel", b"not a kernel".as_slice()),
            ("eve-release", release.as_bytes()),
        ],
        ImageLayout::Bare { volume_bytes },
    )
    .unwrap()
}

/// A disk of `block_size` blocks as `xtask image` lays one out: IMGA
/// active holding `1.0`, IMGB unused and empty.
fn make_disk(path: &Path, block_size: u64) {
    let file = File::create(path).unwrap();
    file.set_len(DISK_BYTES).unwrap();
    let part = |number, name, at: u64, state: SlotState| NewPartition {
        number,
        type_guid: types::EVE_IMAGE,
        unique_guid: Guid([number as u8; 16]),
        first_lba: at / block_size,
        last_lba: (at + PART_BYTES) / block_size - 1,
        attributes: state.apply(0),
        name,
    };
    let gpt = Gpt::create(
        block_size as usize,
        DISK_BYTES / block_size,
        Guid([9; 16]),
        &[
            part(2, "IMGA", IMGA_AT, SlotState::Active),
            part(3, "IMGB", IMGB_AT, SlotState::Unused),
        ],
    )
    .unwrap();
    gpt.write(&mut FileDisk::new(&file, block_size as usize).unwrap())
        .unwrap();
    file.write_all_at(&base_os("1.0", 512 * 1024), IMGA_AT)
        .unwrap();
}

struct Node {
    _dir: tempfile::TempDir,
    disk: PathBuf,
    block_size: usize,
    blobs: BlobsTarget,
    content: Arc<Content>,
}

impl Node {
    fn new() -> Node {
        Node::with_block_size(512)
    }

    /// A node whose disk is an image file of `block_size` blocks, which
    /// the host is told (as `eve-host run --disk-block-size`).
    fn with_block_size(block_size: usize) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        make_disk(&disk, block_size as u64);
        let content = Content::shared(&dir.path().join("state"), ContentOptions::default())
            .expect("the content store");
        Node {
            blobs: BlobsTarget::new(content.clone()),
            content,
            disk,
            block_size,
            _dir: dir,
        }
    }

    /// The target as the node booted from `booted`.
    fn target(&self, booted: Option<&str>) -> PartitionsTarget {
        PartitionsTarget::new(
            self.content.clone(),
            Some(BootDisk {
                path: self.disk.clone(),
                booted: booted.map(String::from),
                block_size: Some(self.block_size),
            }),
        )
    }

    /// `data` as a verified blob, as volumemgr and the downloader make one.
    fn verified(&self, data: &[u8]) -> String {
        let digest: String = Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let expect = blobs::ExpectRequest {
            holder: String::from("baseos"),
            digest: digest.clone(),
            size: Some(data.len() as u64),
        };
        call::<blobs::Expect>(&self.blobs, &expect).unwrap();
        for (i, chunk) in data.chunks(blobs::MAX_CHUNK).enumerate() {
            let write = blobs::WriteRequest {
                digest: digest.clone(),
                offset: (i * blobs::MAX_CHUNK) as u64,
                data: chunk.to_vec(),
            };
            call::<blobs::Write>(&self.blobs, &write).unwrap();
        }
        let done = blobs::BlobRef {
            digest: digest.clone(),
        };
        call::<blobs::Complete>(&self.blobs, &done).unwrap();
        digest
    }

    /// What the loader would boot next (and the disk after it spends a
    /// try, as the loader writes it).
    fn boot(&self) -> String {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.disk)
            .unwrap();
        let mut disk = FileDisk::new(&file, self.block_size).unwrap();
        let mut gpt = Gpt::read(&mut disk).unwrap();
        let choice = ab::choose(&mut gpt, types::EVE_IMAGE).unwrap();
        if choice.spent_try {
            gpt.write(&mut disk).unwrap();
        }
        choice.partition().name.clone()
    }
}

fn call<O: Operation>(
    target: &dyn RpcHandler,
    request: &O::Request,
) -> Result<O::Response, RpcError> {
    target
        .call("baseosmgr", O::NAME, &request.encode_to_vec())
        .map(|bytes| O::Response::decode(bytes.as_slice()).expect("a response"))
}

fn code(e: RpcError) -> Code {
    match e {
        RpcError::Failed { error, .. } => PartitionError::decode(error.as_slice())
            .expect("an error")
            .code(),
        other => panic!("not a typed failure: {other:?}"),
    }
}

fn status(target: &PartitionsTarget) -> Vec<(String, String, String, bool)> {
    call::<Status>(target, &Empty {})
        .unwrap()
        .partitions
        .into_iter()
        .map(|p| (p.label, p.state, p.version, p.booted))
        .collect()
}

fn row(label: &str, state: &str, version: &str, booted: bool) -> (String, String, String, bool) {
    (label.into(), state.into(), version.into(), booted)
}

fn write(version: &str, digest: &str) -> WriteRequest {
    WriteRequest {
        digest: digest.into(),
        version: version.into(),
    }
}

#[test]
fn an_update_is_written_tried_once_and_committed() {
    update_written_tried_once_and_committed(512);
}

#[test]
fn an_update_on_a_disk_of_4k_blocks_is_written_tried_once_and_committed() {
    update_written_tried_once_and_committed(4096);
}

fn update_written_tried_once_and_committed(block_size: usize) {
    let node = Node::with_block_size(block_size);
    let a = node.target(Some("IMGA"));
    assert_eq!(
        status(&a),
        [
            row("IMGA", "active", "1.0", true),
            row("IMGB", "unused", "", false)
        ]
    );
    let v2 = base_os("2.0", 512 * 1024);
    let digest = node.verified(&v2);
    let written = call::<Write>(&a, &write("2.0", &digest)).unwrap();
    assert_eq!(
        (written.label.as_str(), written.version.as_str()),
        ("IMGB", "2.0")
    );
    assert_eq!(written.size_bytes, PART_BYTES);
    let mut imgb = vec![0u8; v2.len()];
    File::open(&node.disk)
        .unwrap()
        .read_exact_at(&mut imgb, IMGB_AT)
        .unwrap();
    assert!(imgb == v2, "written at IMGB's byte offset");
    assert_eq!(
        node.boot(),
        "IMGA",
        "a written partition is not bootable yet"
    );
    let tried = call::<TryOnce>(
        &a,
        &PartitionRef {
            label: "IMGB".into(),
        },
    )
    .unwrap();
    assert_eq!(tried.other().unwrap().state, "updating");
    assert_eq!(node.boot(), "IMGB");
    let b = node.target(Some("IMGB"));
    assert_eq!(
        status(&b),
        [
            row("IMGA", "active", "1.0", false),
            row("IMGB", "inprogress", "2.0", true)
        ]
    );
    let committed = call::<Commit>(&b, &Empty {}).unwrap();
    assert_eq!(committed.booted().unwrap().state, "active");
    assert_eq!(committed.other().unwrap().state, "unused");
    assert_eq!(node.boot(), "IMGB");
    assert_eq!(node.boot(), "IMGB", "committed: it stays");
    call::<Commit>(&b, &Empty {}).expect("committing again changes nothing");
}

/// Two services ask for `status` every few seconds: one asked while the
/// other's is under way waits for it instead of being refused, so neither
/// goes without an answer for long; during a write (minutes), a call is
/// answered `Busy`.
#[test]
fn a_call_waits_for_a_short_operation_but_not_for_a_write() {
    let node = Node::new();
    let target = node.target(Some("IMGA"));
    let expect = vec![
        row("IMGA", "active", "1.0", true),
        row("IMGB", "unused", "", false),
    ];
    std::thread::scope(|s| {
        let held = target.busy.lock().unwrap();
        let (started, asked) = std::sync::mpsc::channel();
        let target = &target;
        let other = s.spawn(move || {
            started.send(()).unwrap();
            status(target)
        });
        asked.recv().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(!other.is_finished(), "the call waits for the one under way");
        drop(held);
        assert_eq!(other.join().unwrap(), expect);
    });

    let held = target.busy.lock().unwrap();
    let writing = Writing::new(&target.writing);
    assert!(matches!(
        call::<Status>(&target, &Empty {}),
        Err(RpcError::Busy)
    ));
    drop(writing);
    drop(held);
    assert_eq!(status(&target), expect);
}

#[test]
fn an_uncommitted_update_falls_back_to_the_old_partition() {
    let node = Node::new();
    let a = node.target(Some("IMGA"));
    let digest = node.verified(&base_os("2.0", 512 * 1024));
    call::<Write>(&a, &write("2.0", &digest)).unwrap();
    call::<TryOnce>(
        &a,
        &PartitionRef {
            label: "IMGB".into(),
        },
    )
    .unwrap();
    assert_eq!(node.boot(), "IMGB");
    assert_eq!(node.boot(), "IMGA", "the one try is spent");
    let a = node.target(Some("IMGA"));
    let after = call::<Commit>(&a, &Empty {}).expect("the booted active one stays active");
    assert_eq!(
        after.other().unwrap().state,
        "inprogress",
        "tried and failed"
    );
    assert_eq!(node.boot(), "IMGA");
    call::<TryOnce>(
        &a,
        &PartitionRef {
            label: "IMGB".into(),
        },
    )
    .expect("a retry");
    assert_eq!(node.boot(), "IMGB");
}

#[test]
fn commit_needs_the_booted_partition_on_trial() {
    let node = Node::new();
    let a = node.target(Some("IMGA"));
    let digest = node.verified(&base_os("2.0", 512 * 1024));
    call::<Write>(&a, &write("2.0", &digest)).unwrap();
    // Booted from IMGB without a try (a loader that ignored the states).
    let b = node.target(Some("IMGB"));
    assert_eq!(
        code(call::<Commit>(&b, &Empty {}).unwrap_err()),
        Code::BadTransition
    );
    assert_eq!(
        code(call::<Write>(&b, &write("2.0", &digest)).unwrap_err()),
        Code::BadTransition
    );
}

#[test]
fn fallback_boots_the_other_partition_next() {
    let node = Node::new();
    let a = node.target(Some("IMGA"));
    assert_eq!(
        code(call::<Fallback>(&a, &Empty {}).unwrap_err()),
        Code::NoImage
    );
    let digest = node.verified(&base_os("0.9", 512 * 1024));
    call::<Write>(&a, &write("0.9", &digest)).unwrap();
    let after = call::<Fallback>(&a, &Empty {}).unwrap();
    assert_eq!(after.other().unwrap().state, "updating");
    assert_eq!(node.boot(), "IMGB");
}

#[test]
fn wrong_images_and_wrong_partitions_are_refused() {
    let node = Node::new();
    let a = node.target(Some("IMGA"));
    let v2 = node.verified(&base_os("2.0", 512 * 1024));
    assert_eq!(
        code(call::<Write>(&a, &write("2.1", &v2)).unwrap_err()),
        Code::VersionMismatch
    );
    let big = node.verified(&base_os("2.0", PART_BYTES + 8 * 512));
    assert_eq!(
        code(call::<Write>(&a, &write("2.0", &big)).unwrap_err()),
        Code::TooLarge
    );
    let not_fat = node.verified(b"just bytes");
    assert_eq!(
        code(call::<Write>(&a, &write("2.0", &not_fat)).unwrap_err()),
        Code::VersionMismatch
    );
    let absent = "ab".repeat(32);
    assert_eq!(
        code(call::<Write>(&a, &write("2.0", &absent)).unwrap_err()),
        Code::NotVerified
    );
    assert!(matches!(
        call::<Write>(&a, &write("2.0", "not a digest")),
        Err(RpcError::BadRequest(_))
    ));
    assert_eq!(
        code(
            call::<TryOnce>(
                &a,
                &PartitionRef {
                    label: "IMGA".into()
                }
            )
            .unwrap_err()
        ),
        Code::Booted
    );
    assert_eq!(
        code(
            call::<TryOnce>(
                &a,
                &PartitionRef {
                    label: "IMGB".into()
                }
            )
            .unwrap_err()
        ),
        Code::NoImage
    );
    let unknown = node.target(None);
    assert_eq!(
        code(call::<Write>(&unknown, &write("2.0", &v2)).unwrap_err()),
        Code::BootUnknown
    );
    assert_eq!(status(&unknown)[0], row("IMGA", "active", "1.0", false));
    let none = PartitionsTarget::new(node.content.clone(), None);
    assert_eq!(
        code(call::<Status>(&none, &Empty {}).unwrap_err()),
        Code::NoDisk
    );
    assert_eq!(
        status(&a),
        [
            row("IMGA", "active", "1.0", true),
            row("IMGB", "unused", "", false)
        ],
        "nothing was written"
    );
}

#[test]
fn a_write_abandoned_halfway_leaves_the_old_partition_booting() {
    let node = Node::new();
    let a = node.target(Some("IMGA"));
    let v2 = node.verified(&base_os("2.0", 512 * 1024));
    call::<Write>(&a, &write("2.0", &v2)).unwrap();
    call::<TryOnce>(
        &a,
        &PartitionRef {
            label: "IMGB".into(),
        },
    )
    .unwrap();
    // A new image replaces the one waiting for its try; the host dies
    // in the middle of copying it.
    let v3 = node.verified(&base_os("3.0", 512 * 1024));
    let killed = a.write(&write("3.0", &v3), Some(100 * 1024));
    assert!(matches!(killed, Err(Refused::Failed(e)) if e.code() == Code::Storage));
    assert_eq!(
        status(&a)[1].1,
        "unused",
        "the half-written partition is not bootable"
    );
    assert_eq!(node.boot(), "IMGA");
    assert_eq!(node.boot(), "IMGA");
    // The host restarts and writes it again.
    let a = node.target(Some("IMGA"));
    call::<Write>(&a, &write("3.0", &v3)).unwrap();
    call::<TryOnce>(
        &a,
        &PartitionRef {
            label: "IMGB".into(),
        },
    )
    .unwrap();
    assert_eq!(node.boot(), "IMGB");
    assert_eq!(
        status(&node.target(Some("IMGB")))[1],
        row("IMGB", "inprogress", "3.0", true)
    );
}

#[test]
fn a_disk_without_image_partitions_is_said_to_be_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.img");
    fs::write(&path, vec![0u8; 64 * 1024]).unwrap();
    let content = Content::shared(&dir.path().join("state"), ContentOptions::default()).unwrap();
    let target = PartitionsTarget::new(
        content,
        Some(BootDisk {
            path,
            booted: Some("IMGA".into()),
            block_size: None,
        }),
    );
    assert_eq!(
        code(call::<Status>(&target, &Empty {}).unwrap_err()),
        Code::NoAbPartitions
    );
}

mod kill;
