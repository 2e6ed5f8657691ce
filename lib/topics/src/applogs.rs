//! `app-logs`: apps' console lines, published by domainmgr for zedagent,
//! which uploads them to the controller's per-app `newlogs` path.
//!
//! The table is a sliding window, as `flow-log` is: each item is one pass's
//! new lines of one app, keyed `<run>-<sequence>` (the run a random 32-bit
//! hex, the sequence 8 decimal digits), and domainmgr withdraws the oldest
//! items beyond [`AppLogs::WINDOW`], so memory stays bounded however much
//! an app prints and a subscriber takes each item as it is created. Items
//! carry their sequence and run too, so a subscriber that fell behind the
//! window knows how many it missed; lines domainmgr could not publish are
//! counted in the next item's `dropped`.

use alloc::string::String;
use alloc::vec::Vec;

use crate::Topic;

/// `app-logs`: see the module.
pub struct AppLogs;

impl Topic for AppLogs {
    const NAME: &'static str = "app-logs";
    type Value = AppLogBatch;
}

impl AppLogs {
    /// Items kept on the bus.
    pub const WINDOW: usize = 64;
    /// Lines in one item at most.
    pub const MAX_LINES: usize = 256;
    /// Bytes of one line's text at most (longer lines are cut, and counted).
    pub const MAX_LINE: usize = 1024;
}

/// New console lines of one app.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AppLogBatch {
    /// The app instance's UUID.
    #[prost(string, tag = "1")]
    pub app_uuid: String,
    /// EVE's `displayname`, which newlogd writes into the gzip header's
    /// name field of the app's uploads.
    #[prost(string, tag = "2")]
    pub display_name: String,
    #[prost(message, repeated, tag = "3")]
    pub lines: Vec<AppLogLine>,
    /// The publisher's run (random per start of domainmgr).
    #[prost(uint32, tag = "4")]
    pub run: u32,
    /// Counts items of this run from 0, so gaps are visible.
    #[prost(uint64, tag = "5")]
    pub sequence: u64,
    /// Lines of this app lost before this item (not published), so no
    /// line goes missing silently.
    #[prost(uint64, tag = "6")]
    pub dropped: u64,
    /// Lines in this item that were longer than [`AppLogs::MAX_LINE`] and cut.
    #[prost(uint32, tag = "7")]
    pub truncated: u32,
}

/// One console line.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AppLogLine {
    /// When domainmgr read it, Unix milliseconds.
    #[prost(uint64, tag = "1")]
    pub unix_ms: u64,
    /// The line without its end of line (UTF-8, invalid bytes replaced).
    #[prost(string, tag = "2")]
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode};

    #[test]
    fn a_batch_round_trips_and_garbage_is_an_error() {
        let batch = AppLogBatch {
            app_uuid: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
            display_name: "web".into(),
            lines: alloc::vec![AppLogLine {
                unix_ms: 1_767_225_600_123,
                text: "hello-http: listening on port 8080".into(),
            }],
            run: 0xdead_beef,
            sequence: 7,
            dropped: 3,
            truncated: 1,
        };
        let bytes = encode::<AppLogs>(&batch);
        assert_eq!(decode::<AppLogs>(&bytes), Ok(batch));
        // Cut inside the UUID: a length running past the end.
        assert!(decode::<AppLogs>(&bytes[..10]).is_err());
        assert!(decode::<AppLogs>(&[0x1a, 0x7f, 0x0a]).is_err());
    }
}
