//! One line of a device's `newlogs` upload, as the controller reads it:
//! any bytes must give an entry or an error, never a panic. (Values are
//! taken as Go's `encoding/json` takes them, so an entry has no invariant
//! of its own to check beyond that.)
#![no_main]

use controller::newlog::parse_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_line(&String::from_utf8_lossy(data));
});
