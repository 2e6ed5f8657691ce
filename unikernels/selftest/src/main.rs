//! The selftest service: boots like every service and checks what the
//! runtime and HAL promise (heap, clocks, timers, virtio discovery,
//! entropy), printing `PASS`/`FAIL` per check and exiting 0 only if all
//! passed.
//!
//! Command-line parameters:
//! - `expect-virtio=rng,net,...`: device kinds that must be discovered;
//! - `expect-entropy=cpu|virtio|any`: which entropy source must work;
//! - `selftest.mode=panic|hang|fault`: misbehave on purpose, so the runners'
//!   crash and timeout handling can be tested.
#![no_std]
#![no_main]

extern crate alloc;

mod checks;

runtime::entry!("selftest", main);

fn main() -> i32 {
    match runtime::cmdline().get("selftest.mode") {
        Some("panic") => panic!("selftest asked to panic"),
        Some("hang") => loop {
            hal::relax();
        },
        Some("fault") => checks::fault(),
        Some(other) => {
            log::error!("unknown selftest.mode {other:?}");
            return runtime::status(false);
        }
        None => {}
    }
    let results = checks::ALL.map(|(name, check)| runtime::check(name, check));
    let passed = results.iter().filter(|&&ok| ok).count();
    log::info!("selftest: {passed} of {} checks passed", checks::ALL.len());
    runtime::status(passed == results.len())
}
