use std::fs::{File, OpenOptions};

use super::*;

/// The numbers `linux/watchdog.h` gives on x86_64 and arm64 (the generic
/// `_IOC` encoding: direction in bits 30-31, size in 16-29).
#[test]
fn the_opcodes_are_the_kernels() {
    assert_eq!(GETSUPPORT, 0x8028_5700);
    assert_eq!(GETBOOTSTATUS, 0x8004_5702);
    assert_eq!(SETTIMEOUT, 0xC004_5706);
    assert_eq!(GETTIMEOUT, 0x8004_5707);
}

/// A regular file answers every watchdog ioctl with ENOTTY: the error
/// paths, without a device.
#[test]
fn a_regular_file_is_not_a_watchdog() {
    let file = tempfile::tempfile().unwrap();
    assert_eq!(info(&file), Err(QueryError::NotAWatchdog));
    assert_eq!(boot_status(&file), Err(QueryError::NotAWatchdog));
    assert_eq!(timeout(&file), Err(QueryError::NotAWatchdog));
    assert_eq!(set_timeout(&file, 60), Err(SetTimeoutError::NotAWatchdog));
}

/// Nor is another character device.
#[test]
fn dev_null_is_not_a_watchdog() {
    let null = OpenOptions::new().write(true).open("/dev/null").unwrap();
    assert_eq!(timeout(&null), Err(QueryError::NotAWatchdog));
    assert_eq!(set_timeout(&null, 30), Err(SetTimeoutError::NotAWatchdog));
}

#[test]
fn a_timeout_beyond_an_int_is_refused_before_the_kernel() {
    let file: File = tempfile::tempfile().unwrap();
    assert_eq!(
        set_timeout(&file, u32::MAX),
        Err(SetTimeoutError::TooLong(u32::MAX))
    );
}

#[test]
fn the_identity_ends_at_its_first_nul_or_fills_the_field() {
    let mut identity = [0u8; 32];
    identity[..14].copy_from_slice(b"i6300ESB timer");
    let raw = RawInfo {
        options: WDIOF_SETTIMEOUT | WDIOF_CARDRESET,
        firmware_version: 0,
        identity,
    };
    assert_eq!(
        Info::from(raw),
        Info {
            options: 0xA0,
            firmware_version: 0,
            identity: "i6300ESB timer".into(),
        }
    );
    let full = Info::from(RawInfo {
        identity: [b'x'; 32],
        ..raw
    });
    assert_eq!(full.identity, "x".repeat(32));
    let hostile = Info::from(RawInfo {
        identity: [0xFF; 32],
        ..raw
    });
    assert_eq!(hostile.identity.chars().count(), 32);
}
