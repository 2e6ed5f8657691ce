//! Updates played through with a fake clock, scripted content states and
//! partitions that change as the host would change them.

use alloc::string::String;
use alloc::vec;

use eve_proto::org::lfedge::eve::config::{BaseOs, DeviceOpsCmd};
use eve_proto::org::lfedge::eve::info::{BaseOsStatus, BaseOsSubStatus, ZSwState};
use hostops::partitions::{PartitionInfo, PartitionsStatus};
use topics::content::ContentTreeState;

use super::*;
use crate::report::dev_sw;

const WINDOW: u64 = 600;

fn part(label: &str, state: &str, version: &str, booted: bool) -> PartitionInfo {
    PartitionInfo {
        label: label.into(),
        state: state.into(),
        version: version.into(),
        size_bytes: 1 << 30,
        booted,
    }
}

fn disk(a: (&str, &str, bool), b: (&str, &str, bool)) -> PartitionsStatus {
    PartitionsStatus {
        partitions: vec![part("IMGA", a.0, a.1, a.2), part("IMGB", b.0, b.1, b.2)],
    }
}

fn desired(version: &str, activate: bool, retry: u32) -> Desired {
    Desired::from_config(&BaseOs {
        content_tree_uuid: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
        retry_update: Some(DeviceOpsCmd {
            counter: retry,
            ..Default::default()
        }),
        activate,
        base_os_version: version.into(),
    })
    .unwrap()
}

fn verified() -> Content {
    Content::Verified {
        digest: "ab".repeat(32),
    }
}

#[test]
fn an_update_goes_from_download_to_commit() {
    let mut m = Manager::new(WINDOW);
    let want = desired("2.0", true, 0);
    let before = disk(("active", "1.0", true), ("unused", "", false));
    let d = m.decide(0, Some(&want), &Content::Unknown, &before, true);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.slots[1].status, BaseOsStatus::Downloading);
    let d = m.decide(
        1,
        Some(&want),
        &Content::Downloading { percent: 40 },
        &before,
        true,
    );
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(
        (d.slots[1].status, d.slots[1].progress),
        (BaseOsStatus::Downloading, 40)
    );
    assert_eq!(dev_sw(&d.slots[1]).download_progress, 40);
    let d = m.decide(2, Some(&want), &verified(), &before, true);
    assert_eq!(
        d.action,
        Action::Write {
            digest: "ab".repeat(32),
            version: "2.0".into()
        }
    );
    let written = disk(("active", "1.0", true), ("unused", "2.0", false));
    let d = m.decide(3, Some(&want), &verified(), &written, true);
    assert_eq!(
        d.action,
        Action::TryOnce {
            label: "IMGB".into()
        }
    );
    let marked = disk(("active", "1.0", true), ("updating", "2.0", false));
    let d = m.decide(4, Some(&want), &verified(), &marked, true);
    assert_eq!(
        d.action,
        Action::Reboot {
            reason: BootReason::Update
        }
    );
    assert_eq!(d.slots[1].sub_status, BaseOsSubStatus::UpdateRebooting);
    // The trial boot: committed once the test window has passed since
    // the controller's first answer.
    let trial = disk(("active", "1.0", false), ("inprogress", "2.0", true));
    let d = m.decide(100, Some(&want), &verified(), &trial, false);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.slots[0].sub_status, BaseOsSubStatus::UpdateTesting);
    assert_eq!(d.slots[0].label, "IMGB", "the booted partition first");
    assert_eq!(d.slots[0].progress, (WINDOW - 100) as u32);
    let d = m.decide(130, Some(&want), &verified(), &trial, true);
    assert_eq!(d.action, Action::Nothing, "reached, not yet tested");
    assert_eq!(d.slots[0].status, BaseOsStatus::Updating);
    assert_eq!(d.slots[0].sub_status, BaseOsSubStatus::UpdateTesting);
    assert_eq!(d.slots[0].progress, WINDOW as u32);
    let d = m.decide(129 + WINDOW, Some(&want), &verified(), &trial, true);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.slots[0].progress, 1);
    assert_eq!(
        dev_sw(&d.slots[0]).sub_status_progress,
        1,
        "ZInfoDevSW says the seconds left"
    );
    assert_eq!(
        m.decide(130 + WINDOW, Some(&want), &verified(), &trial, true)
            .action,
        Action::Commit
    );
    let done = disk(("unused", "1.0", false), ("active", "2.0", true));
    let d = m.decide(131 + WINDOW, Some(&want), &verified(), &done, true);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.slots[0].status, BaseOsStatus::Updated);
    let sw = dev_sw(&d.slots[0]);
    assert!(sw.activated);
    assert_eq!(
        (sw.partition_label.as_str(), sw.short_version.as_str()),
        ("IMGB", "2.0")
    );
    assert_eq!(sw.status, ZSwState::Installed as i32);
}

#[test]
fn an_unconfirmed_trial_reboots_back_and_is_not_retried_until_asked() {
    let mut m = Manager::new(WINDOW);
    let want = desired("2.0", true, 5);
    let trial = disk(("active", "1.0", false), ("inprogress", "2.0", true));
    assert_eq!(
        m.decide(WINDOW - 1, Some(&want), &verified(), &trial, false)
            .action,
        Action::Nothing
    );
    let d = m.decide(WINDOW, Some(&want), &verified(), &trial, false);
    assert_eq!(
        d.action,
        Action::Reboot {
            reason: BootReason::Fallback
        }
    );
    assert_eq!(d.slots[0].status, BaseOsStatus::Failed);
    // Back on the old partition, after a restart of baseosmgr too.
    let mut m = Manager::new(WINDOW);
    let back = disk(("active", "1.0", true), ("inprogress", "2.0", false));
    let d = m.decide(0, Some(&want), &verified(), &back, true);
    assert_eq!(
        d.action,
        Action::Nothing,
        "a failed version is not written again"
    );
    assert_eq!(d.slots[1].status, BaseOsStatus::Fallback);
    assert_eq!(
        dev_sw(&d.slots[1]).sw_err.unwrap().description,
        "booted once and fell back to IMGA"
    );
    let same = desired("2.0", true, 5);
    assert_eq!(
        m.decide(1, Some(&same), &verified(), &back, true).action,
        Action::Nothing
    );
    let retry = desired("2.0", true, 6);
    assert!(matches!(
        m.decide(2, Some(&retry), &verified(), &back, true).action,
        Action::Write { .. }
    ));
}

#[test]
fn a_newer_version_is_not_blocked_by_an_old_failure() {
    let mut m = Manager::new(WINDOW);
    let back = disk(("active", "1.0", true), ("inprogress", "2.0", false));
    m.decide(0, Some(&desired("2.0", true, 0)), &verified(), &back, true);
    let d = m.decide(1, Some(&desired("3.0", true, 0)), &verified(), &back, true);
    assert!(matches!(d.action, Action::Write { .. }));
}

#[test]
fn without_activate_the_written_image_waits() {
    let mut m = Manager::new(WINDOW);
    let want = desired("2.0", false, 0);
    let written = disk(("active", "1.0", true), ("unused", "2.0", false));
    let d = m.decide(0, Some(&want), &verified(), &written, true);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.slots[1].sub_status, BaseOsSubStatus::UpdateDeferred);
    assert_eq!(dev_sw(&d.slots[1]).status, ZSwState::Downloaded as i32);
    let activated = desired("2.0", true, 0);
    assert_eq!(
        m.decide(1, Some(&activated), &verified(), &written, true)
            .action,
        Action::TryOnce {
            label: "IMGB".into()
        }
    );
}

#[test]
fn failures_are_reported_and_stop_the_update() {
    let mut m = Manager::new(WINDOW);
    let want = desired("2.0", true, 0);
    let before = disk(("active", "1.0", true), ("unused", "", false));
    let failed = Content::Failed {
        error: String::from("signature does not verify"),
    };
    let d = m.decide(0, Some(&want), &failed, &before, true);
    assert_eq!(
        (d.action, d.slots[1].status),
        (Action::Nothing, BaseOsStatus::Failed)
    );
    assert_eq!(dev_sw(&d.slots[1]).status, ZSwState::Error as i32);
    m.fail("2.0", "the image's eve-release is \"2.1\"");
    let d = m.decide(1, Some(&want), &verified(), &before, true);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.slots[1].error, "the image's eve-release is \"2.1\"");
}

#[test]
fn nothing_happens_without_config_or_a_known_boot() {
    let mut m = Manager::new(WINDOW);
    let running = disk(("active", "1.0", true), ("unused", "", false));
    assert_eq!(
        m.decide(0, None, &Content::Unknown, &running, true).action,
        Action::Nothing
    );
    let current = desired("1.0", true, 0);
    assert_eq!(
        m.decide(0, Some(&current), &Content::Unknown, &running, true)
            .action,
        Action::Nothing
    );
    let unknown = disk(("active", "1.0", false), ("unused", "", false));
    let d = m.decide(
        0,
        Some(&desired("2.0", true, 0)),
        &verified(),
        &unknown,
        true,
    );
    assert_eq!((d.action, d.slots.len()), (Action::Nothing, 2));
    assert_eq!(Desired::from_config(&BaseOs::default()), None);
}

#[test]
fn content_comes_from_volumemgrs_tree_status() {
    let tree = |state: ZSwState, components: &[&str]| ContentTreeState {
        state: state as i32,
        progress_percent: 30,
        error: "fetch failed".into(),
        components: components.iter().map(|c| String::from(*c)).collect(),
        ..Default::default()
    };
    assert_eq!(Content::of_tree(None), Content::Unknown);
    assert_eq!(
        Content::of_tree(Some(&tree(ZSwState::DownloadStarted, &[]))),
        Content::Downloading { percent: 30 }
    );
    assert_eq!(
        Content::of_tree(Some(&tree(ZSwState::Downloaded, &["a"]))),
        Content::Verifying
    );
    assert_eq!(
        Content::of_tree(Some(&tree(ZSwState::Loaded, &["a"]))),
        Content::Verified { digest: "a".into() }
    );
    assert!(matches!(
        Content::of_tree(Some(&tree(ZSwState::Loaded, &["a", "b"]))),
        Content::Failed { .. }
    ));
    assert_eq!(
        Content::of_tree(Some(&tree(ZSwState::Error, &[]))),
        Content::Failed {
            error: "fetch failed".into()
        }
    );
}

#[test]
fn failures_and_the_retry_counter_survive_a_restart_through_memory() {
    use prost::Message;

    let mut m = Manager::new(WINDOW);
    let want = desired("2.0", true, 5);
    let before = disk(("active", "1.0", true), ("unused", "", false));
    m.decide(0, Some(&want), &verified(), &before, true);
    m.fail("2.0", "the image's eve-release is \"2.1\"");
    let saved = m.memory().encode_to_vec();
    // A restarted baseosmgr that remembers does not write 2.0 again.
    let mut again = Manager::restore(WINDOW, Memory::decode(saved.as_slice()).unwrap());
    let d = again.decide(0, Some(&want), &verified(), &before, true);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.slots[1].error, "the image's eve-release is \"2.1\"");
    // One that forgot would.
    let mut forgot = Manager::new(WINDOW);
    assert!(matches!(
        forgot
            .decide(0, Some(&want), &verified(), &before, true)
            .action,
        Action::Write { .. }
    ));
    // A counter raised while it was down is a retry.
    let mut raised = Manager::restore(WINDOW, Memory::decode(saved.as_slice()).unwrap());
    assert!(matches!(
        raised
            .decide(
                0,
                Some(&desired("2.0", true, 6)),
                &verified(),
                &before,
                true
            )
            .action,
        Action::Write { .. }
    ));
    assert_eq!(raised.memory().retry_seen, Some(6));
    assert_eq!(raised.memory().failed_version, None);
    assert!(Memory::decode(&[0x12, 0x05, b'a'][..]).is_err());
}

#[test]
fn the_test_window_follows_the_config_item() {
    let mut m = Manager::new(WINDOW);
    m.set_test_window(60);
    let want = desired("2.0", true, 0);
    let trial = disk(("active", "1.0", false), ("inprogress", "2.0", true));
    let d = m.decide(10, Some(&want), &verified(), &trial, false);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.slots[0].progress, 50);
    assert_eq!(
        m.decide(59, Some(&want), &verified(), &trial, false).action,
        Action::Nothing
    );
    assert_eq!(
        m.decide(60, Some(&want), &verified(), &trial, false).action,
        Action::Reboot {
            reason: BootReason::Fallback
        }
    );
}

#[test]
fn maintenance_mode_defers_starting_an_update_but_not_a_commit() {
    let mut m = Manager::new(WINDOW);
    m.set_held(true);
    let want = desired("2.0", true, 0);
    let before = disk(("active", "1.0", true), ("unused", "", false));
    let d = m.decide(0, Some(&want), &verified(), &before, true);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.slots[1].sub_status, BaseOsSubStatus::UpdateDeferred);
    let written = disk(("active", "1.0", true), ("unused", "2.0", false));
    assert_eq!(
        m.decide(1, Some(&want), &verified(), &written, true).action,
        Action::Nothing
    );
    let marked = disk(("active", "1.0", true), ("updating", "2.0", false));
    assert_eq!(
        m.decide(2, Some(&want), &verified(), &marked, true).action,
        Action::Nothing
    );
    let trial = disk(("active", "1.0", false), ("inprogress", "2.0", true));
    assert_eq!(
        m.decide(3, Some(&want), &verified(), &trial, true).action,
        Action::Nothing
    );
    assert_eq!(
        m.decide(3 + WINDOW, Some(&want), &verified(), &trial, true)
            .action,
        Action::Commit
    );
    m.set_held(false);
    assert!(matches!(
        m.decide(4, Some(&want), &verified(), &before, true).action,
        Action::Write { .. }
    ));
}

#[test]
fn the_test_window_runs_from_the_first_answer_across_a_restart() {
    use prost::Message;

    let want = desired("2.0", true, 0);
    let trial = disk(("active", "1.0", false), ("inprogress", "2.0", true));
    let mut m = Manager::new(WINDOW);
    m.decide(40, Some(&want), &verified(), &trial, true);
    let saved = m.memory().encode_to_vec();
    // baseosmgr restarted at 300 s of the node's clock: the window still
    // ends at 640, though the restarted service only hears that the
    // controller was reached.
    let mut again = Manager::restore(WINDOW, Memory::decode(saved.as_slice()).unwrap());
    let d = again.decide(300, Some(&want), &verified(), &trial, true);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.slots[0].progress, 340);
    assert_eq!(
        again
            .decide(40 + WINDOW, Some(&want), &verified(), &trial, true)
            .action,
        Action::Commit
    );
    // One that forgot would begin the window again.
    let mut forgot = Manager::new(WINDOW);
    forgot.decide(300, Some(&want), &verified(), &trial, true);
    assert_eq!(
        forgot
            .decide(40 + WINDOW, Some(&want), &verified(), &trial, true)
            .action,
        Action::Nothing
    );
}

#[test]
fn a_test_saved_on_another_boot_is_not_counted() {
    let want = desired("2.0", true, 0);
    let trial = disk(("active", "1.0", false), ("inprogress", "2.0", true));
    // Saved at 500 s of a boot whose node clock went further than this
    // one's: a start later than now belongs to another boot.
    let later = Memory {
        testing_version: Some(String::from("2.0")),
        test_started: Some(500),
        ..Memory::default()
    };
    let mut m = Manager::restore(WINDOW, later);
    let d = m.decide(20, Some(&want), &verified(), &trial, true);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.slots[0].progress, WINDOW as u32, "a new window from 20");
    assert_eq!(m.memory().test_started, Some(20));
    // Another version's test is not this one's.
    let other = Memory {
        testing_version: Some(String::from("1.5")),
        test_started: Some(0),
        ..Memory::default()
    };
    let mut m = Manager::restore(WINDOW, other);
    assert_eq!(
        m.decide(WINDOW, Some(&want), &verified(), &trial, true)
            .action,
        Action::Nothing
    );
    // A committed boot ends the test: nothing is left to save.
    let done = disk(("unused", "1.0", false), ("active", "2.0", true));
    m.decide(WINDOW + 1, Some(&want), &verified(), &done, true);
    assert_eq!(m.memory().testing_version, None);
    assert_eq!(m.memory().test_started, None);
}
