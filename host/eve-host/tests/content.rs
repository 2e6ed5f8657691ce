//! The `blobs` and `volumes` targets as services call them: encoded
//! requests in, encoded answers or typed errors out, over a real content
//! directory (and the real `qemu-img` for qcow2 images).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use eve_broker::{RpcError, RpcHandler};
use eve_host::targets::blobs::BlobsTarget;
use eve_host::targets::content::{Content, ContentOptions};
use eve_host::targets::volumes::{QemuImg, VolumesTarget};
use hostops::Operation;
use hostops::blobs::{self, BlobError, BlobErrorCode, BlobState};
use hostops::volumes::{
    self, Component, CreateRequest, VolumeError, VolumeErrorCode, VolumeFormat, VolumeInfo,
    VolumeRef, VolumeState,
};
use prost::Message;
use sha2::{Digest as _, Sha256};

const VOLUMEMGR: &str = "volumemgr";
const DOWNLOADER: &str = "downloader";
/// A build of a few MiB takes well under a second; this only guards
/// against a build that never ends.
const PATIENCE: Duration = Duration::from_secs(60);

fn hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn call<O: Operation>(
    target: &dyn RpcHandler,
    caller: &str,
    request: &O::Request,
) -> Result<O::Response, RpcError> {
    target
        .call(caller, O::NAME, &request.encode_to_vec())
        .map(|bytes| O::Response::decode(bytes.as_slice()).expect("a response"))
}

fn blob_error(e: RpcError) -> BlobError {
    match e {
        RpcError::Failed { error, .. } => BlobError::decode(error.as_slice()).expect("an error"),
        other => panic!("not a typed failure: {other:?}"),
    }
}

fn volume_error(e: RpcError) -> VolumeError {
    match e {
        RpcError::Failed { error, .. } => VolumeError::decode(error.as_slice()).expect("an error"),
        other => panic!("not a typed failure: {other:?}"),
    }
}

fn content(dir: &Path, options: ContentOptions) -> Arc<Content> {
    Content::shared(dir, options).expect("the content store opens")
}

/// volumemgr expects `data`; the downloader stages and completes it.
fn verified(blobs: &BlobsTarget, holder: &str, data: &[u8]) -> String {
    let digest = hex(data);
    call::<blobs::Expect>(
        blobs,
        VOLUMEMGR,
        &blobs::ExpectRequest {
            holder: holder.into(),
            digest: digest.clone(),
            size: Some(data.len() as u64),
        },
    )
    .unwrap();
    for (i, chunk) in data.chunks(blobs::MAX_CHUNK).enumerate() {
        call::<blobs::Write>(
            blobs,
            DOWNLOADER,
            &blobs::WriteRequest {
                digest: digest.clone(),
                offset: (i * blobs::MAX_CHUNK) as u64,
                data: chunk.to_vec(),
            },
        )
        .unwrap();
    }
    let done = call::<blobs::Complete>(
        blobs,
        DOWNLOADER,
        &blobs::BlobRef {
            digest: digest.clone(),
        },
    )
    .unwrap();
    assert_eq!(done.size, data.len() as u64);
    digest
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

#[test]
fn blobs_verify_only_matching_bytes_and_keep_callers_apart() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobsTarget::new(content(dir.path(), ContentOptions::default()));
    let good = pattern(150_000, 1);
    let digest = verified(&blobs, "ct/a", &good);
    let status = call::<blobs::Status>(
        &blobs,
        VOLUMEMGR,
        &blobs::BlobRef {
            digest: digest.clone(),
        },
    )
    .unwrap();
    assert_eq!(status.state(), BlobState::Verified);
    assert_eq!(status.holders, ["volumemgr/ct/a"]);
    assert_eq!(status.progress_percent, 100);

    // Other bytes under a digest: discarded, both digests reported.
    let expected = hex(b"what the config asked for");
    call::<blobs::Expect>(
        &blobs,
        VOLUMEMGR,
        &blobs::ExpectRequest {
            holder: "ct/b".into(),
            digest: expected.clone(),
            size: None,
        },
    )
    .unwrap();
    let lie = b"what a lying server sent";
    call::<blobs::Write>(
        &blobs,
        DOWNLOADER,
        &blobs::WriteRequest {
            digest: expected.clone(),
            offset: 0,
            data: lie.to_vec(),
        },
    )
    .unwrap();
    let mismatch = blob_error(
        call::<blobs::Complete>(
            &blobs,
            DOWNLOADER,
            &blobs::BlobRef {
                digest: expected.clone(),
            },
        )
        .unwrap_err(),
    );
    assert_eq!(mismatch.code(), BlobErrorCode::Mismatch);
    assert_eq!(
        (mismatch.digest.as_str(), mismatch.attempts),
        (&expected[..], 1)
    );
    assert_eq!(mismatch.actual, hex(lie));
    let text = mismatch.to_string();
    assert!(
        text.contains(&expected) && text.contains(&hex(lie)),
        "{text}"
    );
    let slot = call::<blobs::StagedLength>(
        &blobs,
        DOWNLOADER,
        &blobs::BlobRef {
            digest: expected.clone(),
        },
    )
    .unwrap();
    assert_eq!(slot.length, 0, "the lie was kept");

    // Nothing the downloader says makes an unexpected blob exist.
    let stray = blob_error(
        call::<blobs::Write>(
            &blobs,
            DOWNLOADER,
            &blobs::WriteRequest {
                digest: hex(b"never expected"),
                offset: 0,
                data: b"x".to_vec(),
            },
        )
        .unwrap_err(),
    );
    assert_eq!(stray.code(), BlobErrorCode::NotExpected);
    // Malformed requests are bad requests, not failures.
    for (operation, request) in [
        (
            blobs::Write::NAME,
            blobs::WriteRequest {
                digest: expected.clone(),
                offset: 0,
                data: vec![0; blobs::MAX_CHUNK + 1],
            }
            .encode_to_vec(),
        ),
        (
            blobs::StagedLength::NAME,
            blobs::BlobRef {
                digest: "sha256:nothex".into(),
            }
            .encode_to_vec(),
        ),
        (
            blobs::AddRef::NAME,
            blobs::RefRequest {
                holder: "bad\nholder".into(),
                digest: digest.clone(),
            }
            .encode_to_vec(),
        ),
        (blobs::Read::NAME, vec![0xff, 0xff, 0xff]),
    ] {
        assert!(
            matches!(
                blobs.call(DOWNLOADER, operation, &request),
                Err(RpcError::BadRequest(_))
            ),
            "{operation}"
        );
    }

    // References are per calling service: another service's drop leaves
    // volumemgr's in place.
    call::<blobs::DropRef>(
        &blobs,
        "baseosmgr",
        &blobs::RefRequest {
            holder: "ct/a".into(),
            digest: digest.clone(),
        },
    )
    .unwrap();
    let gone = call::<blobs::CollectGarbage>(
        &blobs,
        VOLUMEMGR,
        &blobs::GcRequest {
            unreferenced_for_secs: 0,
        },
    )
    .unwrap();
    assert!(!gone.digests.contains(&digest), "{gone:?}");
    // Read back in pieces.
    let mut back = Vec::new();
    loop {
        let chunk = call::<blobs::Read>(
            &blobs,
            VOLUMEMGR,
            &blobs::ReadRequest {
                digest: digest.clone(),
                offset: back.len() as u64,
                length: blobs::MAX_CHUNK as u32,
            },
        )
        .unwrap();
        if chunk.data.is_empty() {
            break;
        }
        back.extend(chunk.data);
    }
    assert_eq!(back, good);
    // volumemgr's own drop, then collection.
    let missing = call::<blobs::Reassert>(
        &blobs,
        VOLUMEMGR,
        &blobs::ReassertRequest {
            holder: "ct/a".into(),
            digests: vec![hex(b"lost while volumemgr was down")],
        },
    )
    .unwrap();
    assert_eq!(missing.digests, [hex(b"lost while volumemgr was down")]);
    let gone = call::<blobs::CollectGarbage>(
        &blobs,
        VOLUMEMGR,
        &blobs::GcRequest {
            unreferenced_for_secs: 0,
        },
    )
    .unwrap();
    assert!(gone.digests.contains(&digest), "{gone:?}");
    let list = call::<blobs::List>(&blobs, VOLUMEMGR, &blobs::Empty {}).unwrap();
    let usage = list.usage.unwrap();
    assert_eq!(usage.mismatches_total, 1);
    assert!(usage.total_bytes >= usage.free_bytes && usage.free_bytes > 0);
}

#[test]
fn the_reserve_refuses_writes_with_the_numbers_and_the_note_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = ContentOptions {
        reserve_bytes: 1 << 20,
        capacity_bytes: Some(2 << 20),
    };
    let blobs = BlobsTarget::new(content(dir.path(), options));
    let big = hex(b"a big blob");
    call::<blobs::Expect>(
        &blobs,
        VOLUMEMGR,
        &blobs::ExpectRequest {
            holder: "ct/big".into(),
            digest: big.clone(),
            size: None,
        },
    )
    .unwrap();
    let mut offset = 0u64;
    let refused = loop {
        match call::<blobs::Write>(
            &blobs,
            DOWNLOADER,
            &blobs::WriteRequest {
                digest: big.clone(),
                offset,
                data: vec![7; blobs::MAX_CHUNK],
            },
        ) {
            Ok(staged) => offset = staged.length,
            Err(e) => break blob_error(e),
        }
    };
    assert_eq!(refused.code(), BlobErrorCode::Reserve);
    assert_eq!(refused.reserve, 1 << 20);
    assert!(
        refused.free < (1 << 20) + blobs::MAX_CHUNK as u64,
        "{refused}"
    );
    assert!(refused.to_string().contains("must stay free"), "{refused}");
    call::<blobs::Remember>(
        &blobs,
        DOWNLOADER,
        &blobs::RememberRequest {
            digest: big.clone(),
            note: Some("etag \"v1\" length 9000000".into()),
        },
    )
    .unwrap();
    drop(blobs);
    // The host stops cleanly and starts again: the bytes and the note are
    // where the downloader left them.
    let blobs = BlobsTarget::new(content(dir.path(), options));
    let staged = call::<blobs::StagedLength>(
        &blobs,
        DOWNLOADER,
        &blobs::BlobRef {
            digest: big.clone(),
        },
    )
    .unwrap();
    assert_eq!(staged.length, offset);
    assert_eq!(staged.note.as_deref(), Some("etag \"v1\" length 9000000"));
}

fn create(
    target: &VolumesTarget,
    uuid: &str,
    generation: i64,
    format: VolumeFormat,
    components: Vec<Component>,
    max_size_bytes: u64,
) -> Result<VolumeInfo, RpcError> {
    call::<volumes::Create>(
        target,
        VOLUMEMGR,
        &CreateRequest {
            volume: Some(VolumeRef {
                uuid: uuid.into(),
                generation,
            }),
            format: format as i32,
            components,
            max_size_bytes,
            display_name: "test".into(),
        },
    )
}

fn image(digest: &str) -> Vec<Component> {
    vec![Component {
        digest: digest.into(),
        media_type: String::new(),
    }]
}

/// Waits until the generation's build has ended.
fn settled(target: &VolumesTarget, uuid: &str, generation: i64) -> VolumeInfo {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let info = call::<volumes::Status>(
            target,
            VOLUMEMGR,
            &VolumeRef {
                uuid: uuid.into(),
                generation,
            },
        )
        .unwrap();
        if info.state() != VolumeState::Creating {
            return info;
        }
        assert!(Instant::now() < deadline, "{info:?} never finished");
        thread::sleep(Duration::from_millis(20));
    }
}

const RAW: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const QCOW: &str = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";
const APP: &str = "6ba7b812-9dad-11d1-80b4-00c04fd430c8";
const EMPTY: &str = "6ba7b813-9dad-11d1-80b4-00c04fd430c8";

fn qemu_img(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("qemu-img runs");
    assert!(status.success(), "qemu-img {args:?}");
}

#[test]
fn volumes_are_built_only_from_verified_blobs_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    let shared = content(dir.path(), ContentOptions::default());
    let blobs = BlobsTarget::new(shared.clone());
    let target = VolumesTarget::new(shared.clone(), QemuImg::default()).unwrap();
    let volumes_dir = dir.path().join("content/volumes");

    // Raw: a writable copy, grown to the maximum size.
    let disk = pattern(3 << 20, 9);
    let raw = verified(&blobs, "ct/raw", &disk);
    let unverified = volume_error(
        create(
            &target,
            RAW,
            1,
            VolumeFormat::Raw,
            image(&hex(b"not in the store")),
            0,
        )
        .unwrap_err(),
    );
    assert_eq!(unverified.code(), VolumeErrorCode::NotVerified);
    let started = create(&target, RAW, 1, VolumeFormat::Raw, image(&raw), 8 << 20).unwrap();
    assert_eq!(started.name, format!("{RAW}.1"));
    let ready = settled(&target, RAW, 1);
    assert_eq!(ready.state(), VolumeState::Ready, "{}", ready.error);
    assert_eq!(ready.size_bytes, 8 << 20);
    let file = volumes_dir.join(format!("{RAW}.1/disk.raw"));
    let written = std::fs::read(&file).unwrap();
    assert_eq!(&written[..disk.len()], &disk[..]);
    assert!(written[disk.len()..].iter().all(|&b| b == 0));
    assert!(!std::fs::metadata(&file).unwrap().permissions().readonly());
    // Asking again is harmless; other content under the name is refused.
    assert_eq!(
        create(&target, RAW, 1, VolumeFormat::Raw, image(&raw), 8 << 20)
            .unwrap()
            .state(),
        VolumeState::Ready
    );
    let other =
        volume_error(create(&target, RAW, 1, VolumeFormat::Raw, image(&raw), 9 << 20).unwrap_err());
    assert_eq!(other.code(), VolumeErrorCode::Exists);

    // Qcow2: checked by qemu-img, copied, resized.
    let work = tempfile::tempdir().unwrap();
    qemu_img(
        work.path(),
        &["create", "-q", "-f", "qcow2", "good.qcow2", "16M"],
    );
    let good = std::fs::read(work.path().join("good.qcow2")).unwrap();
    let qcow = verified(&blobs, "ct/qcow", &good);
    create(
        &target,
        QCOW,
        0,
        VolumeFormat::Qcow2,
        image(&qcow),
        32 << 20,
    )
    .unwrap();
    let ready = settled(&target, QCOW, 0);
    assert_eq!(ready.state(), VolumeState::Ready, "{}", ready.error);
    assert_eq!(ready.size_bytes, 32 << 20);
    // A qcow2 naming a backing file (a host path) never becomes a volume.
    qemu_img(
        work.path(),
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "/etc/hostname",
            "-F",
            "raw",
            "evil.qcow2",
        ],
    );
    let evil = verified(
        &blobs,
        "ct/evil",
        &std::fs::read(work.path().join("evil.qcow2")).unwrap(),
    );
    create(&target, QCOW, 1, VolumeFormat::Qcow2, image(&evil), 0).unwrap();
    let failed = settled(&target, QCOW, 1);
    assert_eq!(failed.state(), VolumeState::Failed);
    assert!(failed.error.contains("backing file"), "{}", failed.error);
    // Nor do bytes that are not qcow2 at all.
    let garbage = verified(&blobs, "ct/garbage", &pattern(70_000, 3));
    create(&target, QCOW, 2, VolumeFormat::Qcow2, image(&garbage), 0).unwrap();
    let failed = settled(&target, QCOW, 2);
    assert_eq!(failed.state(), VolumeState::Failed);
    assert!(failed.error.contains("qcow2"), "{}", failed.error);
    assert!(!volumes_dir.join(format!("{QCOW}.2")).exists());

    // Container: an OCI layout of the verified blobs, linked read-only.
    let manifest = br#"{"schemaVersion":2}"#.to_vec();
    let config = br#"{"architecture":"amd64"}"#.to_vec();
    let layers = [pattern(5000, 1), pattern(7000, 2)];
    let mut parts = vec![
        Component {
            digest: verified(&blobs, "ct/app", &manifest),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        },
        Component {
            digest: verified(&blobs, "ct/app", &config),
            media_type: "application/vnd.oci.image.config.v1+json".into(),
        },
    ];
    for layer in &layers {
        parts.push(Component {
            digest: verified(&blobs, "ct/app", layer),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        });
    }
    create(&target, APP, 0, VolumeFormat::Container, parts.clone(), 0).unwrap();
    let ready = settled(&target, APP, 0);
    assert_eq!(ready.state(), VolumeState::Ready, "{}", ready.error);
    let layout = volumes_dir.join(format!("{APP}.0"));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        format!("sha256:{}", parts[0].digest)
    );
    assert_eq!(index["manifests"][0]["size"], manifest.len());
    assert!(layout.join("oci-layout").is_file());
    for (part, data) in parts
        .iter()
        .zip([&manifest, &config, &layers[0], &layers[1]])
    {
        let path = layout.join("blobs/sha256").join(&part.digest);
        assert_eq!(&std::fs::read(&path).unwrap(), data);
        assert!(std::fs::metadata(&path).unwrap().permissions().readonly());
    }

    // Blank: sparse, of the size asked.
    create(&target, EMPTY, 0, VolumeFormat::Blank, vec![], 64 << 20).unwrap();
    let ready = settled(&target, EMPTY, 0);
    assert_eq!(
        (ready.state(), ready.size_bytes),
        (VolumeState::Ready, 64 << 20)
    );
    assert!(ready.used_bytes < 1 << 20, "{ready:?}");

    // Malformed requests.
    for (uuid, format, parts) in [
        ("../escape", VolumeFormat::Raw, image(&raw)),
        (RAW, VolumeFormat::Raw, vec![]),
        (RAW, VolumeFormat::Unspecified, image(&raw)),
        (RAW, VolumeFormat::Blank, vec![]),
    ] {
        let e = create(&target, uuid, 5, format, parts, 0).unwrap_err();
        assert!(
            matches!(e, RpcError::BadRequest(_)),
            "{uuid} {format:?}: {e:?}"
        );
    }

    // A restarted host finds the volumes; leftovers of a cut are removed.
    drop(target);
    std::fs::create_dir(volumes_dir.join(format!(".building-{RAW}.7"))).unwrap();
    let target = VolumesTarget::new(shared.clone(), QemuImg::default()).unwrap();
    assert!(!volumes_dir.join(format!(".building-{RAW}.7")).exists());
    let list = call::<volumes::List>(&target, VOLUMEMGR, &volumes::Empty {}).unwrap();
    let names: Vec<&str> = list.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("{RAW}.1"),
            format!("{QCOW}.0"),
            format!("{APP}.0"),
            format!("{EMPTY}.0")
        ]
    );
    // Deletion.
    let old = VolumeRef {
        uuid: RAW.into(),
        generation: 1,
    };
    call::<volumes::Delete>(&target, VOLUMEMGR, &old).unwrap();
    assert!(!volumes_dir.join(format!("{RAW}.1")).exists());
    let gone = volume_error(call::<volumes::Delete>(&target, VOLUMEMGR, &old).unwrap_err());
    assert_eq!(gone.code(), VolumeErrorCode::NotFound);
}

#[test]
fn qemu_img_is_stopped_at_its_time_limit_and_builds_respect_the_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let shared = content(dir.path(), ContentOptions::default());
    let blobs = BlobsTarget::new(shared.clone());
    // A qemu-img that never answers.
    let stuck = dir.path().join("stuck-qemu-img");
    std::fs::write(&stuck, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&stuck, std::fs::Permissions::from_mode(0o755)).unwrap();
    let slow = QemuImg {
        program: stuck,
        time_limit: Duration::from_secs(1),
        ..QemuImg::default()
    };
    let target = VolumesTarget::new(shared.clone(), slow).unwrap();
    let digest = verified(&blobs, "ct/q", &pattern(4096, 5));
    create(&target, QCOW, 0, VolumeFormat::Qcow2, image(&digest), 0).unwrap();
    // While it builds, it cannot be deleted.
    let busy = volume_error(
        call::<volumes::Delete>(
            &target,
            VOLUMEMGR,
            &VolumeRef {
                uuid: QCOW.into(),
                generation: 0,
            },
        )
        .unwrap_err(),
    );
    assert_eq!(busy.code(), VolumeErrorCode::Busy);
    let failed = settled(&target, QCOW, 0);
    assert_eq!(failed.state(), VolumeState::Failed);
    assert!(failed.error.contains("longer than 1 s"), "{}", failed.error);
    // A failed generation can be deleted and asked for again.
    call::<volumes::Delete>(
        &target,
        VOLUMEMGR,
        &VolumeRef {
            uuid: QCOW.into(),
            generation: 0,
        },
    )
    .unwrap();
    drop(target);

    // A reserve larger than the disk refuses a copy, with the numbers.
    let greedy = ContentOptions {
        reserve_bytes: u64::MAX / 4,
        capacity_bytes: None,
    };
    let other = tempfile::tempdir().unwrap();
    // The blob is verified through a store with no reserve first.
    let plain = content(other.path(), ContentOptions::default());
    let digest = verified(&BlobsTarget::new(plain.clone()), "ct/r", &pattern(1000, 1));
    drop(plain);
    let target = VolumesTarget::new(content(other.path(), greedy), QemuImg::default()).unwrap();
    let refused =
        volume_error(create(&target, RAW, 0, VolumeFormat::Raw, image(&digest), 0).unwrap_err());
    assert_eq!(refused.code(), VolumeErrorCode::Reserve);
    assert_eq!(refused.needed, 1000);
    assert!(refused.to_string().contains("must stay free"), "{refused}");
}
