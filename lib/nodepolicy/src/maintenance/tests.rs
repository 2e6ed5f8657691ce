//! Each reason on its own, together, and gone again.

use alloc::vec;

use eve_proto::org::lfedge::eve::config::EdgeDevConfig;

use super::*;

fn usage(total: u64, free: u64, reserve: u64) -> Usage {
    Usage {
        total_bytes: total,
        free_bytes: free,
        reserve_bytes: reserve,
        ..Usage::default()
    }
}

const USER: i32 = MaintenanceModeReason::UserRequested as i32;
const DISK: i32 = MaintenanceModeReason::LowDiskSpace as i32;

#[test]
fn a_store_down_to_its_reserve_is_low_disk_space_until_space_returns() {
    let full = usage(1 << 30, 100 << 20, 100 << 20);
    let heard = Heard {
        content_usage: Some(&full),
        ..Heard::default()
    };
    assert_eq!(reasons(&heard), vec![DISK]);
    let below = usage(1 << 30, 10, 100 << 20);
    let heard = Heard {
        content_usage: Some(&below),
        ..Heard::default()
    };
    assert_eq!(reasons(&heard), vec![DISK]);
    let room = usage(1 << 30, (100 << 20) + 1, 100 << 20);
    let heard = Heard {
        content_usage: Some(&room),
        ..Heard::default()
    };
    assert!(reasons(&heard).is_empty());
}

#[test]
fn no_usage_or_a_store_of_no_size_says_nothing() {
    assert!(reasons(&Heard::default()).is_empty());
    let unknown = usage(0, 0, 0);
    let heard = Heard {
        content_usage: Some(&unknown),
        ..Heard::default()
    };
    assert!(reasons(&heard).is_empty());
}

#[test]
fn the_user_and_the_disk_are_both_reported() {
    let config = EdgeDevConfig {
        maintenance_mode: true,
        ..Default::default()
    };
    let full = usage(1 << 30, 0, 0);
    let heard = Heard {
        config: Some(&config),
        content_usage: Some(&full),
        ..Heard::default()
    };
    assert_eq!(reasons(&heard), vec![USER, DISK]);
    // The item `disabled` overrides the controller, not the disk.
    let items = GlobalConfig {
        maintenance_mode: TriState::Disabled as i32,
        ..GlobalConfig::default()
    };
    let heard = Heard {
        items: Some(&items),
        ..heard
    };
    assert_eq!(reasons(&heard), vec![DISK]);
}
