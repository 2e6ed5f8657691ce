//! Power cuts at every block write of every commit, and hostile volumes.

use std::collections::BTreeMap;

use blockdev::{BlockDevice, BlockError, FaultyDisk, MemDisk, Tear};
use statestore::{QueueLimits, Store, StoreError, selfcheck};

/// What a store holds, for comparing states.
type State = BTreeMap<String, Vec<u8>>;

fn state_of<D: BlockDevice>(store: &Store<D>) -> State {
    store
        .names()
        .map(|name| (name.to_string(), store.get(name).unwrap().to_vec()))
        .collect()
}

fn reopen(disk: MemDisk) -> (Store<MemDisk>, State) {
    let store = Store::open(disk).expect("reopen after a power cut must succeed");
    let state = state_of(&store);
    (store, state)
}

const TEARS: [Tear; 5] = [
    Tear::Old,
    Tear::Prefix(1),
    Tear::Prefix(200),
    Tear::Prefix(511),
    Tear::Suffix(100),
];

const LOG_QUEUE: QueueLimits = QueueLimits {
    max_items: 4,
    max_bytes: 2500,
};

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

/// One commit's worth of changes.
fn apply_step(store: &mut Store<impl BlockDevice>, step: usize) {
    match step {
        0 => store
            .put("device-uuid", b"6ba7b810-9dad-11d1-80b4-00c04fd430c8")
            .unwrap(),
        1 => {
            store.put("big", &pattern(1, 2000)).unwrap();
            store.put("config-hash", b"abc").unwrap();
        }
        2 => store.put("big", &pattern(2, 2100)).unwrap(),
        3 => {
            let mut queue = store.queue("logs", LOG_QUEUE).unwrap();
            queue.push(&pattern(3, 900)).unwrap();
            queue.push(&pattern(4, 900)).unwrap();
            store.put_queue("logs", &queue).unwrap();
        }
        4 => {
            assert!(store.remove("big"));
            let mut queue = store.queue("logs", LOG_QUEUE).unwrap();
            queue.push(&pattern(5, 1200)).unwrap();
            store.put_queue("logs", &queue).unwrap();
        }
        5 => store.put("device-uuid", b"").unwrap(),
        _ => unreachable!("no step {step}"),
    }
}

const STEPS: usize = 6;

fn blank_disk() -> MemDisk {
    MemDisk::new(64)
}

#[test]
fn a_cut_at_any_write_of_any_commit_leaves_the_old_or_the_new_state() {
    let mut disk = Store::open(blank_disk()).unwrap().into_device();
    let mut cases = 0;
    for step in 0..STEPS {
        let (_, old) = reopen(disk.clone());

        let mut counting = Store::open(FaultyDisk::new(disk.clone())).unwrap();
        apply_step(&mut counting, step);
        counting.commit().unwrap();
        let new = state_of(&counting);
        let writes = counting.into_device().blocks_written();
        assert_ne!(old, new, "step {step} must change the state");
        assert!(writes >= 1, "step {step} wrote nothing");

        for cut in 0..=writes {
            for tear in TEARS {
                let faulty = FaultyDisk::with_power_cut(disk.clone(), cut, tear);
                let mut store = Store::open(faulty).unwrap();
                apply_step(&mut store, step);
                store.commit().unwrap();
                let (mut after, found) = reopen(store.into_device().into_inner());
                if cut == writes {
                    assert_eq!(found, new, "step {step}: commit finished");
                } else {
                    assert!(
                        found == old || found == new,
                        "step {step}, cut {cut}, {tear:?}: a mix of states"
                    );
                }
                // The recovered volume takes commits again.
                after.put_commit("after-recovery", b"yes").unwrap();
                let (_, again) = reopen(after.into_device());
                assert_eq!(
                    again.get("after-recovery").map(Vec::as_slice),
                    Some(&b"yes"[..])
                );
                cases += 1;
            }
        }

        let mut store = Store::open(disk).unwrap();
        apply_step(&mut store, step);
        store.commit().unwrap();
        disk = store.into_device();
    }
    assert!(cases > 100, "only {cases} cases");
}

#[test]
fn a_cut_while_formatting_leaves_an_empty_store() {
    let garbage = MemDisk::from_image((0..64 * 512).map(|i| (i * 7 % 251) as u8).collect());
    let writes = Store::open(FaultyDisk::new(garbage.clone()))
        .unwrap()
        .into_device()
        .blocks_written();
    for cut in 0..=writes {
        for tear in TEARS {
            let store =
                Store::open(FaultyDisk::with_power_cut(garbage.clone(), cut, tear)).unwrap();
            let (_, found) = reopen(store.into_device().into_inner());
            assert!(found.is_empty());
        }
    }
}

#[test]
fn random_and_damaged_volumes_open_without_panicking() {
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..50 {
        let bytes: Vec<u8> = (0..16 * 512).map(|_| next() as u8).collect();
        let store = Store::open(MemDisk::from_image(bytes)).unwrap();
        assert_eq!(store.names().count(), 0);
    }

    let mut store = Store::open(MemDisk::new(16)).unwrap();
    store.put_commit("a", &pattern(1, 700)).unwrap();
    let first = state_of(&store);
    store.put_commit("b", &pattern(2, 700)).unwrap();
    let second = state_of(&store);
    let good = store.into_device();
    for _ in 0..2000 {
        let mut damaged = good.clone();
        let bytes = damaged.as_bytes_mut();
        let at = (next() % bytes.len() as u64) as usize;
        bytes[at] ^= (next() % 255 + 1) as u8;
        let (_, found) = reopen(damaged);
        assert!(found == first || found == second, "byte {at}");
    }
}

#[test]
fn a_checksummed_slot_with_a_bad_payload_is_ignored() {
    let mut store = Store::open(MemDisk::new(8)).unwrap();
    store.put_commit("kept", b"1").unwrap();
    let kept = state_of(&store);
    store.put_commit("other", b"2").unwrap();
    let mut disk = store.into_device();
    // Formatting wrote slot 0, then the commits went to slots 1 and 0: slot 0
    // holds the newer snapshot. Give it a payload that is not a record list
    // (a count of 9 records and nothing else) under a correct checksum, as a
    // buggy or hostile writer could.
    let slot = &mut disk.as_bytes_mut()[..4 * 512];
    slot[12..16].copy_from_slice(&4u32.to_le_bytes());
    slot[32..36].copy_from_slice(&9u32.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&slot[..28]);
    hasher.update(&slot[32..36]);
    let crc = hasher.finalize();
    slot[28..32].copy_from_slice(&crc.to_le_bytes());
    let (_, found) = reopen(disk);
    assert_eq!(found, kept);
}

#[test]
fn capacity_is_enforced_at_put_and_nothing_is_staged() {
    // 4 blocks: two slots of 1024 bytes, 992 of payload.
    let mut store = Store::open(MemDisk::new(4)).unwrap();
    assert_eq!(store.capacity(), 992);
    // 4 (count) + 1 + 1 (name) + 4 (length) + value
    assert_eq!(store.put("v", &[0; 983]), Err(StoreError::CapacityExceeded));
    assert_eq!(store.get("v"), None);
    assert!(!store.is_dirty());
    store.put_commit("v", &[0; 982]).unwrap();
    assert_eq!(store.used(), 992);
    // Replacing a value counts only the difference.
    store.put_commit("v", &[1; 982]).unwrap();
    assert_eq!(store.put("w", b""), Err(StoreError::CapacityExceeded));
    assert_eq!(store.put("", b"x"), Err(StoreError::BadName));
    assert_eq!(store.put(&"n".repeat(256), b"x"), Err(StoreError::BadName));
    assert!(store.remove("v"));
    assert!(!store.remove("v"));
    store.commit().unwrap();
    assert_eq!(reopen(store.into_device()).1, State::new());
    assert_eq!(
        Store::open(MemDisk::new(1)).map(|_| ()),
        Err(StoreError::DeviceTooSmall)
    );
}

#[test]
fn device_errors_are_reported_and_leave_the_committed_state() {
    let mut blank = MemDisk::new(8);
    blank.set_read_only(true);
    assert_eq!(
        Store::open(blank).map(|_| ()),
        Err(StoreError::Device(BlockError::ReadOnly))
    );

    let mut store = Store::open(MemDisk::new(8)).unwrap();
    store.put_commit("a", b"1").unwrap();
    let mut disk = store.into_device();
    disk.set_read_only(true);
    let mut store = Store::open(disk).unwrap();
    store.put("a", b"2").unwrap();
    assert_eq!(
        store.commit(),
        Err(StoreError::Device(BlockError::ReadOnly))
    );
    assert!(store.is_dirty());
    let mut disk = store.into_device();
    disk.set_read_only(false);
    assert_eq!(reopen(disk).1.get("a").map(Vec::as_slice), Some(&b"1"[..]));
}

#[test]
fn sequence_grows_by_one_per_commit_and_empty_commits_write_nothing() {
    let mut store = Store::open(FaultyDisk::new(MemDisk::new(8))).unwrap();
    let start = store.sequence();
    store.put_commit("x", b"1").unwrap();
    store.put_commit("x", b"2").unwrap();
    assert_eq!(store.sequence(), start + 2);
    let disk = store.into_device();
    let writes = disk.blocks_written();
    let mut store = Store::open(disk).unwrap();
    store.commit().unwrap();
    assert_eq!(store.into_device().blocks_written(), writes);
}

#[test]
fn queue_keeps_its_bound_and_survives_reopen() {
    let limits = QueueLimits {
        max_items: 10,
        max_bytes: 1000,
    };
    let mut store = Store::open(MemDisk::new(64)).unwrap();
    let mut dropped = 0;
    for i in 0..100u8 {
        let mut queue = store.queue("info-retry", limits).unwrap();
        dropped += queue.push(&pattern(i, 150)).unwrap();
        store.put_queue("info-retry", &queue).unwrap();
        store.commit().unwrap();
        assert!(store.used() < 1200, "queue grew to {}", store.used());
    }
    assert_eq!(dropped, 94);
    let (mut store, _) = reopen(store.into_device());
    let mut queue = store.queue("info-retry", limits).unwrap();
    assert_eq!(queue.dropped(), 94);
    assert_eq!(queue.len(), 6);
    assert_eq!(queue.front(), Some(&pattern(94, 150)[..]));
    assert_eq!(queue.pop(), Some(pattern(94, 150)));
    store.put_queue("info-retry", &queue).unwrap();
    store.commit().unwrap();
    let (store, _) = reopen(store.into_device());
    let queue = store.queue("info-retry", limits).unwrap();
    assert_eq!(queue.front(), Some(&pattern(95, 150)[..]));
    assert_eq!(queue.len(), 5);

    let mut store = store;
    store.put_commit("not-a-queue", b"xy").unwrap();
    assert_eq!(
        store.queue("not-a-queue", limits),
        Err(StoreError::BadRecord)
    );
}

#[test]
fn selfcheck_counts_and_survives_power_cuts() {
    let mut store = Store::open(MemDisk::new(64)).unwrap();
    assert_eq!(selfcheck::read(&store), Ok(None));
    assert_eq!(selfcheck::advance(&mut store), Ok(1));
    assert_eq!(selfcheck::advance(&mut store), Ok(2));
    let disk = store.into_device();

    let mut counting = Store::open(FaultyDisk::new(disk.clone())).unwrap();
    selfcheck::advance(&mut counting).unwrap();
    let writes = counting.into_device().blocks_written();
    for cut in 0..writes {
        let mut store = Store::open(FaultyDisk::with_power_cut(
            disk.clone(),
            cut,
            Tear::Prefix(7),
        ))
        .unwrap();
        selfcheck::advance(&mut store).unwrap();
        let (store, _) = reopen(store.into_device().into_inner());
        let counter = selfcheck::read(&store).unwrap();
        assert!(
            counter == Some(2) || counter == Some(3),
            "cut {cut}: {counter:?}"
        );
    }

    let mut store = Store::open(disk).unwrap();
    store.put(selfcheck::RECORDS[1], b"tampered").unwrap();
    assert_eq!(
        selfcheck::read(&store),
        Err(selfcheck::SelfCheckError::Inconsistent)
    );
}
