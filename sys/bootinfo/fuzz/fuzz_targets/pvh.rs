//! PVH boot data from the loader: the start info block, the memory map
//! and the command line window must parse or fail without panicking.
#![no_main]

use bootinfo::cmdline::Cmdline;
use bootinfo::pvh::{StartInfo, cmdline, memmap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = StartInfo::parse(data) {
        // The fuzz input stands in for the memory map as well.
        if let Ok(regions) = memmap(data, info.memmap_entries) {
            for region in regions {
                assert!(region.start.checked_add(region.len).is_some());
                let _ = region.end();
            }
        }
    }
    if let Ok(text) = cmdline(data) {
        let line = Cmdline::new(text);
        for param in line.iter().flatten() {
            assert!(!param.key.is_empty());
        }
        let _ = line.get("console");
        let _ = line.has_flag("quiet");
    }
});
