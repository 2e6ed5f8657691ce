//! The selftest service: boots like every service and checks what the
//! runtime and HAL promise (heap, clocks, timers, virtio discovery,
//! entropy), printing `PASS`/`FAIL` per check and exiting 0 only if all
//! passed.
//!
//! Command-line parameters:
//! - `expect-virtio=rng,net,...`: device kinds that must be discovered;
//! - `expect-entropy=cpu|virtio|any`: which entropy source must work;
//! - `selftest.mode=panic|hang|fault`: misbehave on purpose, so the runners'
//!   crash and timeout handling can be tested;
//! - `selftest.mode=state`: print the counter committed on the state volume
//!   (`state: at N`), then commit the next one forever, printing
//!   `state: committed N` after each; the host kills the guest at random
//!   moments and checks that power loss never loses or mixes a commit.
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
        Some("state") => return commit_forever(),
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

/// The power-loss check's guest side (see the module documentation).
fn commit_forever() -> i32 {
    let disk = match hal::block::open("state") {
        Ok(disk) => disk,
        Err(e) => {
            log::error!("FAIL state: no state volume ({e:?})");
            return runtime::status(false);
        }
    };
    let mut store = match statestore::Store::open(disk) {
        Ok(store) => store,
        Err(e) => {
            log::error!("FAIL state: {e:?}");
            return runtime::status(false);
        }
    };
    match statestore::selfcheck::read(&store) {
        Ok(at) => hal::println!("state: at {}", at.unwrap_or(0)),
        Err(e) => {
            log::error!("FAIL state: committed state unreadable: {e:?}");
            return runtime::status(false);
        }
    }
    loop {
        match statestore::selfcheck::advance(&mut store) {
            Ok(n) => hal::println!("state: committed {n}"),
            Err(e) => {
                log::error!("FAIL state: commit failed: {e:?}");
                return runtime::status(false);
            }
        }
    }
}
