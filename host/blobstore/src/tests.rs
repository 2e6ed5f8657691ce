//! The store's behaviour over the simulated disk (power cuts at every
//! operation) and over a real directory.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sim::SimStorage;
use crate::*;

/// A clock the test moves.
#[derive(Clone, Default)]
struct FakeClock(Arc<AtomicU64>);

impl FakeClock {
    fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn config() -> Config {
    Config {
        reserve_bytes: 1000,
        capacity_bytes: None,
        max_blob_bytes: 1 << 20,
        checkpoint_bytes: 300,
    }
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn open(sim: SimStorage, clock: &FakeClock) -> BlobStore<SimStorage> {
    BlobStore::open(sim, config(), Box::new(clock.clone())).expect("store opens")
}

fn write_all(store: &mut BlobStore<SimStorage>, d: Digest, from: u64, bytes: &[u8]) {
    let mut offset = from;
    for chunk in bytes[from as usize..].chunks(128) {
        store.writer().write(d, offset, chunk).expect("write");
        offset += chunk.len() as u64;
    }
}

#[test]
fn staged_bytes_become_a_verified_immutable_blob() {
    let clock = FakeClock::default();
    let mut store = open(SimStorage::new(1 << 20, 1), &clock);
    let data = content(1000, 7);
    let d = Digest::of(&data);
    assert_eq!(
        store
            .manager()
            .expect("volumemgr/vol1", d, Some(1000))
            .unwrap(),
        Expected::Staging { staged: 0 }
    );
    write_all(&mut store, d, 0, &data[..500]);
    assert_eq!(store.writer().staged(d).unwrap().length, 500);
    let early = store.writer().complete(d).unwrap_err();
    assert!(
        matches!(
            early,
            CompleteError::Incomplete {
                staged: 500,
                expected: 1000,
                ..
            }
        ),
        "{early}"
    );
    write_all(&mut store, d, 500, &data);
    assert_eq!(store.writer().complete(d).unwrap(), 1000);
    let info = store.manager().status(d).unwrap();
    assert_eq!(
        (info.state, info.size, info.progress_percent()),
        (BlobState::Verified, Some(1000), 100)
    );
    assert_eq!(info.holders, ["volumemgr/vol1"]);
    // Verified means immutable: no more writes, no second commit.
    assert!(matches!(
        store.writer().write(d, 0, b"x"),
        Err(WriteError::NotExpected(_))
    ));
    assert!(matches!(
        store.writer().complete(d),
        Err(CompleteError::NotExpected(_))
    ));
    // Expecting it again is a reference, not a download.
    assert_eq!(
        store.manager().expect("volumemgr/vol2", d, None).unwrap(),
        Expected::Verified { size: 1000 }
    );
    let sim = store.into_storage();
    assert_eq!(
        sim.read(std::path::Path::new(&format!("blobs/sha256/{}", d.hex())))
            .unwrap(),
        data
    );
}

#[test]
fn a_mismatch_discards_reports_both_digests_and_counts() {
    let clock = FakeClock::default();
    let mut store = open(SimStorage::new(1 << 20, 2), &clock);
    let good = content(700, 1);
    let d = Digest::of(&good);
    store.manager().expect("vm", d, None).unwrap();
    let mut bad = good.clone();
    bad[350] ^= 1;
    for attempt in 1..=2 {
        write_all(&mut store, d, 0, &bad);
        match store.writer().complete(d) {
            Err(CompleteError::Mismatch {
                expected,
                actual,
                attempts,
            }) => {
                assert_eq!((expected, actual, attempts), (d, Digest::of(&bad), attempt));
                let text = CompleteError::Mismatch {
                    expected,
                    actual,
                    attempts,
                }
                .to_string();
                assert!(
                    text.contains(&d.hex()) && text.contains(&actual.hex()),
                    "{text}"
                );
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert_eq!(store.writer().staged(d).unwrap().length, 0);
        let info = store.manager().status(d).unwrap();
        assert_eq!(
            (info.state, info.mismatches, info.last_mismatch),
            (BlobState::Staging, attempt, Some(Digest::of(&bad)))
        );
    }
    assert_eq!(store.manager().usage().mismatches_total, 2);
    write_all(&mut store, d, 0, &good);
    assert_eq!(store.writer().complete(d).unwrap(), 700);
    // The counter survives a restart.
    let mut store = open(store.into_storage().crash(), &clock);
    assert_eq!(store.manager().usage().mismatches_total, 2);
    assert_eq!(
        store.manager().status(d).unwrap().state,
        BlobState::Verified
    );
}

#[test]
fn writes_are_bounded_and_ordered() {
    let clock = FakeClock::default();
    let mut store = open(SimStorage::new(1 << 20, 3), &clock);
    let d = Digest::of(b"0123456789");
    let unknown = Digest::of(b"other");
    store.manager().expect("vm", d, Some(10)).unwrap();
    assert!(matches!(
        store.writer().write(unknown, 0, b"x"),
        Err(WriteError::NotExpected(_))
    ));
    assert!(matches!(
        store.writer().staged(unknown),
        Err(StagedError::NotExpected(_))
    ));
    assert!(matches!(
        store.writer().write(d, 1, b"1"),
        Err(WriteError::Gap {
            offset: 1,
            staged: 0,
            ..
        })
    ));
    assert!(matches!(
        store.writer().write(d, 0, b"0123456789X"),
        Err(WriteError::TooLarge {
            end: 11,
            limit: 10,
            ..
        })
    ));
    store.writer().write(d, 0, b"01234").unwrap();
    // Rewriting from an earlier offset replaces what followed.
    store.writer().write(d, 3, b"XY").unwrap();
    store.writer().write(d, 3, b"3456789").unwrap();
    assert_eq!(store.writer().complete(d).unwrap(), 10);
    assert!(matches!(
        store
            .manager()
            .expect("vm", Digest::of(b"big"), Some(2 << 20)),
        Err(CreateSlotError::TooLarge { .. })
    ));
    assert!(matches!(
        store.manager().expect("", d, None),
        Err(CreateSlotError::BadHolder(_))
    ));
    let e = Digest::of(b"e");
    store.manager().expect("vm", e, Some(5)).unwrap();
    assert!(matches!(
        store.manager().expect("vm2", e, Some(6)),
        Err(CreateSlotError::SizeConflict { .. })
    ));
}

#[test]
fn the_disk_reserve_refuses_writes_and_nothing_else_breaks() {
    let clock = FakeClock::default();
    // 8000 bytes of disk, 1000 reserved; the state file takes a few hundred.
    let mut store = open(SimStorage::new(8000, 4), &clock);
    let small = content(200, 5);
    let s = Digest::of(&small);
    store.manager().expect("vm", s, Some(200)).unwrap();
    write_all(&mut store, s, 0, &small);
    assert_eq!(store.writer().complete(s).unwrap(), 200);
    let big = content(9000, 3);
    let refused = store
        .manager()
        .expect("vm", Digest::of(&big), Some(9000))
        .unwrap_err();
    assert!(
        matches!(
            refused,
            CreateSlotError::Reserve(ReserveExceeded {
                needed: 9000,
                reserve: 1000,
                ..
            })
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("must stay free"), "{refused}");
    // A blob of unknown size is refused at the write that would cross it.
    let unsized_data = content(7000, 9);
    let u = Digest::of(&unsized_data);
    store.manager().expect("vm", u, None).unwrap();
    let mut offset = 0;
    let err = loop {
        match store.writer().write(
            u,
            offset,
            &unsized_data[offset as usize..offset as usize + 500],
        ) {
            Ok(s) => offset = s.length,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            err,
            WriteError::Reserve(ReserveExceeded {
                needed: 500,
                reserve: 1000,
                ..
            })
        ),
        "{err}"
    );
    assert!(store.storage().free_bytes().unwrap() >= 1000);
    // Nothing else broke: the staged bytes and the verified blob are there,
    // references still change.
    assert_eq!(store.writer().staged(u).unwrap().length, offset);
    assert_eq!(
        store.manager().status(s).unwrap().state,
        BlobState::Verified
    );
    store.manager().add_ref("other", s).unwrap();
    // Dropping the slot and collecting it makes room again.
    store.manager().drop_ref("vm", u).unwrap();
    clock.set(60);
    assert_eq!(store.manager().collect_garbage(60).unwrap(), [u]);
    let again = content(3000, 8);
    let g = Digest::of(&again);
    store.manager().expect("vm", g, Some(3000)).unwrap();
    write_all(&mut store, g, 0, &again);
    assert_eq!(store.writer().complete(g).unwrap(), 3000);
}

#[test]
fn a_capacity_bounds_free_space_like_a_smaller_disk() {
    let clock = FakeClock::default();
    let limited = Config {
        capacity_bytes: Some(2000),
        reserve_bytes: 500,
        ..config()
    };
    let mut store = BlobStore::open(
        SimStorage::new(1 << 20, 2),
        limited,
        Box::new(clock.clone()),
    )
    .unwrap();
    let first = content(1000, 1);
    let f = Digest::of(&first);
    store.manager().expect("vm", f, Some(1000)).unwrap();
    assert_eq!(store.free_bytes().unwrap(), 2000);
    write_all(&mut store, f, 0, &first);
    store.writer().complete(f).unwrap();
    assert_eq!(store.free_bytes().unwrap(), 1000);
    let refused = store
        .manager()
        .expect("vm", Digest::of(&content(600, 2)), Some(600))
        .unwrap_err();
    assert!(
        matches!(
            refused,
            CreateSlotError::Reserve(ReserveExceeded {
                needed: 600,
                free: 1000,
                reserve: 500,
                ..
            })
        ),
        "{refused}"
    );
    store
        .manager()
        .expect("vm", Digest::of(&content(400, 3)), Some(400))
        .unwrap();
}

#[test]
fn references_per_holder_and_gc_after_the_timer() {
    let clock = FakeClock::default();
    clock.set(1000);
    let mut store = open(SimStorage::new(1 << 20, 5), &clock);
    let a = content(100, 1);
    let b = content(100, 2);
    let (da, db) = (Digest::of(&a), Digest::of(&b));
    for (d, data) in [(da, &a), (db, &b)] {
        store.manager().expect("volumemgr", d, Some(100)).unwrap();
        write_all(&mut store, d, 0, data);
        store.writer().complete(d).unwrap();
    }
    store.manager().add_ref("zedmanager", da).unwrap();
    store.manager().drop_ref("volumemgr", da).unwrap();
    assert!(matches!(
        store.manager().add_ref("x", Digest::of(b"none")),
        Err(RefError::Unknown(_))
    ));
    // A restarted volumemgr re-asserts what it still needs: only b, plus
    // one digest the store lost.
    let lost = Digest::of(b"lost");
    clock.set(1010);
    assert_eq!(
        store.manager().reassert("volumemgr", &[db, lost]).unwrap(),
        [lost]
    );
    store.manager().drop_ref("zedmanager", da).unwrap();
    let info = store.manager().status(da).unwrap();
    assert!(info.holders.is_empty());
    assert_eq!(info.last_ref_change, 1010);
    clock.set(1069);
    assert!(store.manager().collect_garbage(60).unwrap().is_empty());
    clock.set(1070);
    assert_eq!(store.manager().collect_garbage(60).unwrap(), [da]);
    assert!(store.manager().status(da).is_none());
    assert_eq!(store.manager().status(db).unwrap().holders, ["volumemgr"]);
    // Referenced again before the timer: kept.
    store.manager().drop_ref("volumemgr", db).unwrap();
    clock.set(1100);
    store.manager().add_ref("volumemgr", db).unwrap();
    clock.set(5000);
    assert!(store.manager().collect_garbage(60).unwrap().is_empty());
    let store = open(store.into_storage().crash(), &clock);
    let listed: BTreeSet<Digest> = store.manager_list().into_iter().map(|i| i.digest).collect();
    assert_eq!(listed, BTreeSet::from([db]));
}

impl BlobStore<SimStorage> {
    fn manager_list(mut self) -> Vec<BlobInfo> {
        self.manager().list()
    }
}

#[test]
fn resume_after_a_clean_stop_and_after_a_power_cut() {
    let clock = FakeClock::default();
    let data = content(2000, 11);
    let d = Digest::of(&data);
    let mut store = open(SimStorage::new(1 << 20, 6), &clock);
    store.manager().expect("vm", d, Some(2000)).unwrap();
    write_all(&mut store, d, 0, &data[..1000]);
    // A clean stop keeps everything staged.
    store.sync_all().unwrap();
    let mut store = open(store.into_storage().crash(), &clock);
    assert_eq!(store.writer().staged(d).unwrap().length, 1000);
    // A power cut keeps what the last checkpoint made durable (every 300
    // bytes here), no more.
    write_all(&mut store, d, 1000, &data[..1450]);
    let mut store = open(store.into_storage().crash(), &clock);
    let resumed = store.writer().staged(d).unwrap().length;
    assert!((1000..1450).contains(&resumed), "{resumed}");
    write_all(&mut store, d, resumed, &data);
    assert_eq!(store.writer().complete(d).unwrap(), 2000);
}

#[test]
fn the_resume_note_stays_with_its_bytes() {
    let clock = FakeClock::default();
    let data = content(900, 5);
    let d = Digest::of(&data);
    let mut store = open(SimStorage::new(1 << 20, 3), &clock);
    store.manager().expect("vm", d, None).unwrap();
    write_all(&mut store, d, 0, &data[..600]);
    store.writer().remember(d, Some("\"v1\"")).unwrap();
    store.sync_all().unwrap();
    let mut store = open(store.into_storage().crash(), &clock);
    let staged = store.writer().staged(d).unwrap();
    assert_eq!(
        (staged.length, staged.note.as_deref()),
        (600, Some("\"v1\""))
    );
    assert!(matches!(
        store.writer().remember(d, Some(&"x".repeat(MAX_NOTE + 1))),
        Err(NoteError::TooLong(_))
    ));
    assert!(matches!(
        store.writer().remember(Digest::of(b"other"), None),
        Err(NoteError::NotExpected(_))
    ));
    // A restart at 0 drops the note with the bytes it was about.
    let restarted = store.writer().write(d, 0, &data[..10]).unwrap();
    assert_eq!((restarted.length, restarted.note), (10, None));
    store.writer().remember(d, Some("\"v2\"")).unwrap();
    // A mismatch too.
    let mut wrong = data.clone();
    wrong[700] ^= 1;
    write_all(&mut store, d, 10, &wrong);
    assert!(matches!(
        store.writer().complete(d),
        Err(CompleteError::Mismatch { .. })
    ));
    assert_eq!(store.writer().staged(d).unwrap().note, None);
}

#[test]
fn verified_blobs_are_read_back_in_pieces_staged_ones_never() {
    let clock = FakeClock::default();
    let data = content(1000, 9);
    let d = Digest::of(&data);
    let mut store = open(SimStorage::new(1 << 20, 4), &clock);
    store.manager().expect("vm", d, Some(1000)).unwrap();
    write_all(&mut store, d, 0, &data[..500]);
    assert!(matches!(
        store.manager().read(d, 0, 100),
        Err(ReadError::NotVerified(_))
    ));
    write_all(&mut store, d, 500, &data);
    store.writer().complete(d).unwrap();
    let mut back = Vec::new();
    while back.len() < data.len() {
        let piece = store.manager().read(d, back.len() as u64, 300).unwrap();
        assert!(!piece.is_empty() && piece.len() <= 300);
        back.extend(piece);
    }
    assert_eq!(back, data);
    assert!(store.manager().read(d, 1000, 300).unwrap().is_empty());
    assert!(store.manager().read(d, 5000, 300).unwrap().is_empty());
}

#[test]
fn completion_hashes_the_file_when_the_writes_did_not_run_in_order() {
    let clock = FakeClock::default();
    let data = content(1200, 13);
    let d = Digest::of(&data);
    let mut store = open(SimStorage::new(1 << 20, 8), &clock);
    store.manager().expect("vm", d, Some(1200)).unwrap();
    // Bytes written, then rewritten from the middle with other content,
    // then the right content again from there: the running hash cannot
    // follow, the file decides.
    write_all(&mut store, d, 0, &data[..800]);
    let other = content(1200, 14);
    write_all(&mut store, d, 400, &other[..700]);
    write_all(&mut store, d, 400, &data);
    assert_eq!(store.writer().complete(d).unwrap(), 1200);
    assert_eq!(store.manager().read(d, 0, 2000).unwrap(), data);
}

/// One download story, run against a disk that loses power at operation
/// `cut`: two slots, checkpoints, a mismatch, a commit, references and GC.
/// `promised` collects the blobs reported verified and still referenced:
/// those must survive any later cut.
fn story(
    store: &mut BlobStore<SimStorage>,
    clock: &FakeClock,
    a: &[u8],
    b: &[u8],
    promised: &mut BTreeSet<Digest>,
) -> Result<(), String> {
    let (da, db) = (Digest::of(a), Digest::of(b));
    let e = |e: &dyn std::fmt::Display| e.to_string();
    store
        .manager()
        .expect("vm/a", da, Some(a.len() as u64))
        .map_err(|x| e(&x))?;
    store
        .manager()
        .expect("vm/b", db, None)
        .map_err(|x| e(&x))?;
    let mut bad = b.to_vec();
    bad[10] ^= 0xff;
    for (d, data) in [(da, a), (db, &bad[..])] {
        for (i, chunk) in data.chunks(128).enumerate() {
            store
                .writer()
                .write(d, (i * 128) as u64, chunk)
                .map_err(|x| e(&x))?;
        }
    }
    store
        .writer()
        .remember(db, Some("\"etag-b\""))
        .map_err(|x| e(&x))?;
    store.writer().complete(da).map_err(|x| e(&x))?;
    promised.insert(da);
    match store.writer().complete(db) {
        Err(CompleteError::Mismatch { .. }) => {}
        other => return Err(format!("expected a mismatch: {other:?}")),
    }
    for (i, chunk) in b.chunks(128).enumerate() {
        store
            .writer()
            .write(db, (i * 128) as u64, chunk)
            .map_err(|x| e(&x))?;
    }
    store.writer().complete(db).map_err(|x| e(&x))?;
    promised.insert(db);
    store.manager().drop_ref("vm/a", da).map_err(|x| e(&x))?;
    promised.remove(&da);
    clock.set(100);
    store.manager().collect_garbage(60).map_err(|x| e(&x))?;
    Ok(())
}

/// What must hold whenever the store opens after a cut, then finishing
/// both downloads from where the store says they are must verify them.
fn check_after_cut(
    mut store: BlobStore<SimStorage>,
    a: &[u8],
    b: &[u8],
    promised: &BTreeSet<Digest>,
) {
    let (da, db) = (Digest::of(a), Digest::of(b));
    for d in promised {
        let state = store.manager().status(*d).map(|i| i.state);
        assert_eq!(
            state,
            Some(BlobState::Verified),
            "{d} was reported verified, then lost"
        );
    }
    let mut bad = b.to_vec();
    bad[10] ^= 0xff;
    for info in store.manager().list() {
        let data: &[u8] = if info.digest == da {
            a
        } else if info.digest == db {
            b
        } else {
            panic!("unknown blob {info:?}")
        };
        let path = match info.state {
            BlobState::Verified => format!("blobs/sha256/{}", info.digest.hex()),
            BlobState::Staging => format!("staging/{}", info.digest.hex()),
        };
        let on_disk = store
            .storage()
            .read(std::path::Path::new(&path))
            .unwrap_or_default();
        assert_eq!(on_disk.len() as u64, info.current, "{info:?}");
        match info.state {
            BlobState::Verified => {
                assert_eq!(on_disk, data, "a verified blob is its digest's content")
            }
            // Staged bytes are a prefix of what was sent: the good bytes,
            // or the bad ones of the attempt that was cut.
            BlobState::Staging => assert!(
                data.starts_with(&on_disk) || (info.digest == db && bad.starts_with(&on_disk)),
                "staged bytes of {} are not what was written",
                info.digest
            ),
        }
        for holder in &info.holders {
            assert!(["vm/a", "vm/b"].contains(&holder.as_str()), "{holder}");
        }
        if info.state == BlobState::Staging {
            let note = store.writer().staged(info.digest).unwrap().note;
            assert!(
                note.is_none() || (info.digest == db && note.as_deref() == Some("\"etag-b\"")),
                "{note:?}"
            );
        }
    }
    // Finish what is unfinished: the store must accept it and verify.
    for (d, data, holder) in [(da, a, "vm/a"), (db, b, "vm/b")] {
        let staged = match store.manager().expect(holder, d, None).unwrap() {
            Expected::Verified { .. } => continue,
            Expected::Staging { staged } => staged,
        };
        let staged = match store.writer().complete(d) {
            Ok(_) => continue,
            Err(CompleteError::Mismatch { .. }) => 0,
            Err(CompleteError::Incomplete { .. }) | Err(CompleteError::NotExpected(_)) => staged,
            Err(e) => panic!("{e}"),
        };
        write_all(&mut store, d, staged, data);
        match store.writer().complete(d) {
            Ok(n) => assert_eq!(n, data.len() as u64),
            Err(e) => panic!("{d} after resume: {e}"),
        }
    }
}

#[test]
fn power_cut_at_every_operation_leaves_a_consistent_store() {
    let a = content(1000, 21);
    let b = content(700, 42);
    // Count the story's operations on a disk that never fails.
    let clock = FakeClock::default();
    let mut store = open(SimStorage::new(1 << 20, 1), &clock);
    let start = store.storage().ops();
    story(&mut store, &clock, &a, &b, &mut BTreeSet::new()).expect("story without cuts");
    let total = store.storage().ops() - start;
    assert!(total > 50, "the story has {total} operations");
    for seed in [1, 7, 99] {
        for cut in 0..total {
            let clock = FakeClock::default();
            let mut store = open(SimStorage::new(1 << 20, seed), &clock);
            store.storage_mut().cut_power_at(cut);
            let mut promised = BTreeSet::new();
            let result = story(&mut store, &clock, &a, &b, &mut promised);
            assert!(
                store.storage().is_dead(),
                "cut {cut} did not happen: {result:?}"
            );
            let after = store.into_storage().crash();
            let store = BlobStore::open(after, config(), Box::new(clock.clone()))
                .unwrap_or_else(|e| panic!("seed {seed} cut {cut}: store does not open: {e}"));
            check_after_cut(store, &a, &b, &promised);
        }
    }
}

#[test]
fn real_directory_blob_is_read_only_and_reserve_uses_statvfs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::default();
    let mut store = BlobStore::open(
        OsStorage::new(dir.path()),
        config(),
        Box::new(clock.clone()),
    )
    .unwrap();
    let data = content(5000, 3);
    let d = Digest::of(&data);
    store.manager().expect("vm", d, Some(5000)).unwrap();
    for (i, chunk) in data.chunks(1024).enumerate() {
        store.writer().write(d, (i * 1024) as u64, chunk).unwrap();
    }
    store.writer().complete(d).unwrap();
    let path = store.manager().verified_path(d).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(std::fs::metadata(&path).unwrap().permissions().readonly());
    drop(store);
    // A reserve larger than the disk refuses everything, and says so.
    let huge = Config {
        reserve_bytes: u64::MAX / 2,
        ..config()
    };
    let mut store = BlobStore::open(OsStorage::new(dir.path()), huge, Box::new(clock)).unwrap();
    assert_eq!(
        store.manager().status(d).unwrap().state,
        BlobState::Verified
    );
    let e = Digest::of(b"x");
    store.manager().expect("vm", e, None).unwrap();
    assert!(matches!(
        store.writer().write(e, 0, b"x"),
        Err(WriteError::Reserve(_))
    ));
}
