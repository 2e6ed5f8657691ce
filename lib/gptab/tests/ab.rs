//! EVE's A/B choice: every combination of the gptprio fields on IMGA and
//! IMGB, EVE's update, commit and fallback flows, and the choice surviving
//! the table write that spends a try.

mod common;

use blockdev::{FaultyDisk, MemDisk, Tear};
use common::{eve_disk, eve_guid};
use gptab::ab::{self, ChooseError, Prio, SlotState, TransitionError};
use gptab::{Blocks, Gpt, NewPartition, types};

fn eve_table() -> Gpt {
    Gpt::read(&mut eve_disk()).unwrap()
}

fn set(gpt: &mut Gpt, name: &str, attributes: u64) {
    let n = gpt.partition_named(name).unwrap().number;
    gpt.set_attributes(n, attributes).unwrap();
}

fn state(gpt: &Gpt, name: &str) -> SlotState {
    SlotState::of(gpt.partition_named(name).unwrap().attributes)
}

fn chosen(gpt: &mut Gpt) -> Result<String, ChooseError> {
    ab::choose(gpt, types::EVE_IMAGE).map(|c| c.partition().name.clone())
}

/// Every value of the nine gptprio bits.
fn every_prio() -> impl Iterator<Item = Prio> {
    (0..16u8).flat_map(|priority| {
        (0..16u8).flat_map(move |tries_left| {
            [false, true].map(|successful| Prio {
                priority,
                tries_left,
                successful,
            })
        })
    })
}

#[test]
fn every_combination_on_two_partitions_follows_gptprio() {
    let base = eve_table();
    // Bits outside the gptprio fields, which must survive the choice.
    let other_bits = 1u64 << 2 | 1 << 60;
    let mut gpt = base.clone();
    let mut checked = 0u32;
    for a in every_prio() {
        for b in every_prio() {
            let (attr_a, attr_b) = (a.apply(other_bits), b.apply(0));
            set(&mut gpt, "IMGA", attr_a);
            set(&mut gpt, "IMGB", attr_b);
            let result = ab::choose(&mut gpt, types::EVE_IMAGE);
            let after_a = gpt.partition_named("IMGA").unwrap().attributes;
            let after_b = gpt.partition_named("IMGB").unwrap().attributes;
            // The rule, stated from the outside: bootable means a priority
            // and a try or success; the highest priority wins; a tie goes
            // to the earlier entry (IMGA).
            let expect = match (a.bootable(), b.bootable()) {
                (false, false) => None,
                (true, false) => Some("IMGA"),
                (false, true) => Some("IMGB"),
                (true, true) if b.priority > a.priority => Some("IMGB"),
                (true, true) => Some("IMGA"),
            };
            match (expect, &result) {
                (None, Err(ChooseError::NothingBootable { candidates: 2 })) => {
                    assert_eq!((after_a, after_b), (attr_a, attr_b), "{a:?} {b:?}");
                }
                (Some(name), Ok(choice)) => {
                    assert_eq!(choice.partition().name, name, "{a:?} {b:?}");
                    let (before, after, untouched, untouched_before) = if name == "IMGA" {
                        (a, after_a, after_b, attr_b)
                    } else {
                        (b, after_b, after_a, attr_a)
                    };
                    assert_eq!(untouched, untouched_before, "{a:?} {b:?}");
                    assert_eq!(choice.spent_try, before.tries_left > 0);
                    let mut expect_after = before;
                    expect_after.tries_left = before.tries_left.saturating_sub(1);
                    assert_eq!(Prio::of(after), expect_after, "{a:?} {b:?}");
                    assert_eq!(choice.after(), expect_after);
                    let base_bits = if name == "IMGA" { other_bits } else { 0 };
                    assert_eq!(after & !(0x1FF << 48), base_bits, "{a:?} {b:?}");
                }
                (expect, result) => panic!("{a:?} {b:?}: expected {expect:?}, got {result:?}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 512 * 512);
}

#[test]
fn only_image_partitions_are_candidates() {
    let mut gpt = eve_table();
    // CONFIG with the bits of an update is still not a boot candidate.
    set(&mut gpt, "CONFIG", SlotState::Updating.apply(0));
    assert_eq!(chosen(&mut gpt).unwrap(), "IMGA");
    assert_eq!(state(&gpt, "CONFIG"), SlotState::Updating);

    let mut blank = Gpt::create(
        512,
        8192,
        eve_guid(0),
        &[NewPartition {
            number: 1,
            type_guid: types::EFI_SYSTEM,
            unique_guid: eve_guid(1),
            first_lba: 2048,
            last_lba: 4095,
            attributes: SlotState::Active.apply(0),
            name: "EFI System",
        }],
    )
    .unwrap();
    assert_eq!(chosen(&mut blank), Err(ChooseError::NoImagePartition));
}

#[test]
fn the_factory_image_boots_imga_without_writing() {
    let mut gpt = eve_table();
    let choice = ab::choose(&mut gpt, types::EVE_IMAGE).unwrap();
    assert_eq!(choice.partition().name, "IMGA");
    assert_eq!(choice.partition().unique_guid, eve_guid(0x52));
    assert!(!choice.spent_try);
    assert_eq!(gpt, eve_table());
    let text = choice.to_string();
    assert!(
        text.starts_with("booting IMGA (partition 2, active; priority 2, 0 tries left, successful): the committed image"),
        "{text}"
    );
    assert!(text.contains("not IMGB (partition 3, unused;"), "{text}");
}

/// EVE's update: baseosmgr writes IMGB and marks it updating; the loader
/// boots it once; baseosmgr commits it after the test window.
#[test]
fn an_update_is_tried_once_and_committed() {
    let mut gpt = eve_table();
    ab::set_state(&mut gpt, "IMGB", types::EVE_IMAGE, SlotState::Updating).unwrap();
    let choice = ab::choose(&mut gpt, types::EVE_IMAGE).unwrap();
    assert_eq!(choice.partition().name, "IMGB");
    assert!(choice.spent_try);
    assert!(
        choice.to_string().contains("an update on trial"),
        "{choice}"
    );
    assert_eq!(state(&gpt, "IMGB"), SlotState::InProgress);
    assert_eq!(state(&gpt, "IMGA"), SlotState::Active);

    ab::commit(&mut gpt, "IMGB", "IMGA", types::EVE_IMAGE).unwrap();
    assert_eq!(state(&gpt, "IMGB"), SlotState::Active);
    assert_eq!(state(&gpt, "IMGA"), SlotState::Unused);
    let choice = ab::choose(&mut gpt, types::EVE_IMAGE).unwrap();
    assert_eq!(choice.partition().name, "IMGB");
    assert!(!choice.spent_try);
}

/// An update that never commits (a hang, a crash, no controller) is
/// inprogress with no tries at the next boot: the loader goes back to the
/// active partition by itself.
#[test]
fn an_update_that_does_not_commit_falls_back() {
    let mut gpt = eve_table();
    ab::set_state(&mut gpt, "IMGB", types::EVE_IMAGE, SlotState::Updating).unwrap();
    assert_eq!(chosen(&mut gpt).unwrap(), "IMGB");
    let choice = ab::choose(&mut gpt, types::EVE_IMAGE).unwrap();
    assert_eq!(choice.partition().name, "IMGA");
    assert!(!choice.spent_try);
    assert!(
        choice
            .to_string()
            .contains("not IMGB (partition 3, inprogress; priority 3, 0 tries left, not successful): an update that did not commit"),
        "{choice}"
    );
    // Running on IMGA, there is nothing to commit.
    assert_eq!(
        ab::commit(&mut gpt, "IMGA", "IMGB", types::EVE_IMAGE),
        Err(TransitionError::CurrentNotInProgress(SlotState::Active))
    );
    // retry_update: the same image marked updating again is tried again.
    ab::set_state(&mut gpt, "IMGB", types::EVE_IMAGE, SlotState::Updating).unwrap();
    assert_eq!(chosen(&mut gpt).unwrap(), "IMGB");
}

#[test]
fn states_are_set_as_zboot_sets_them() {
    let mut gpt = eve_table();
    assert_eq!(
        ab::set_state(&mut gpt, "IMGB", types::EVE_IMAGE, SlotState::InProgress),
        Err(TransitionError::NotSettable)
    );
    assert_eq!(
        ab::set_state(&mut gpt, "IMGC", types::EVE_IMAGE, SlotState::Unused),
        Err(TransitionError::NoSuchPartition)
    );
    assert_eq!(
        ab::set_state(&mut gpt, "CONFIG", types::EVE_IMAGE, SlotState::Unused),
        Err(TransitionError::NotAnImage)
    );
    // Committing needs the other side active or inprogress.
    ab::set_state(&mut gpt, "IMGA", types::EVE_IMAGE, SlotState::Unused).unwrap();
    ab::set_state(&mut gpt, "IMGB", types::EVE_IMAGE, SlotState::Updating).unwrap();
    assert_eq!(chosen(&mut gpt).unwrap(), "IMGB");
    assert_eq!(
        ab::commit(&mut gpt, "IMGB", "IMGA", types::EVE_IMAGE),
        Err(TransitionError::OtherNotActive(SlotState::Unused))
    );
    // Nothing bootable at all.
    ab::set_state(&mut gpt, "IMGA", types::EVE_IMAGE, SlotState::Unused).unwrap();
    assert_eq!(
        chosen(&mut gpt),
        Err(ChooseError::NothingBootable { candidates: 2 })
    );
}

/// The loader's sequence: read, choose, write the spent try, boot. A power
/// cut during the write boots the update now or at the next try; either
/// way the try is spent at most once and IMGA stays active.
#[test]
fn spending_a_try_survives_a_power_cut() {
    let mut disk = eve_disk();
    let mut gpt = Gpt::read(&mut disk).unwrap();
    ab::set_state(&mut gpt, "IMGB", types::EVE_IMAGE, SlotState::Updating).unwrap();
    gpt.write(&mut disk).unwrap();
    let updating: MemDisk = disk.0;
    for cut in 0..=66u64 {
        for tear in [Tear::Old, Tear::Prefix(100), Tear::Suffix(8)] {
            let mut faulty = Blocks(FaultyDisk::with_power_cut(updating.clone(), cut, tear));
            let mut gpt = Gpt::read(&mut faulty).unwrap();
            assert_eq!(chosen(&mut gpt).unwrap(), "IMGB");
            gpt.write(&mut faulty).unwrap();
            let mut after = Blocks(faulty.0.into_inner());
            let mut gpt = Gpt::read(&mut after).unwrap();
            let imgb = state(&gpt, "IMGB");
            assert!(
                matches!(imgb, SlotState::Updating | SlotState::InProgress),
                "cut {cut} {tear:?}: {imgb}"
            );
            assert_eq!(state(&gpt, "IMGA"), SlotState::Active);
            let next = chosen(&mut gpt).unwrap();
            let expect = if imgb == SlotState::Updating {
                "IMGB"
            } else {
                "IMGA"
            };
            assert_eq!(next, expect, "cut {cut} {tear:?}");
        }
    }
}
