//! The runtime every service unikernel is written against.
//!
//! A service is a `no_std` binary with one `fn main() -> i32` registered by
//! [`entry!`]. Before `main` runs, the runtime has put the heap on the
//! largest free stretch of RAM, installed a `log` backend that prints to the
//! console with a timestamp and the service name, and recorded when `main`
//! was reached. When `main` returns, its value is the exit status the
//! runner sees; a panic prints its message and location and exits with
//! [`guest_abi::EXIT_PANIC`]. Services run on [`service::Service`], the
//! single-threaded poll loop ([`poll::PollLoop`]) with the node bus built
//! in, instead of threads.
#![no_std]

extern crate alloc;

pub mod bus;
mod heap;
mod logger;
pub mod node_clock;
mod panic;
pub mod poll;
pub mod saved;
pub mod service;

use core::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

pub use bootinfo::cmdline::Cmdline;
pub use hal;
pub use hal::BootInfo;
pub use heap::{HeapStats, heap_stats};
pub use log;
use spin::Once;

static SERVICE: Once<&'static str> = Once::new();
static BOOT: Once<&'static BootInfo> = Once::new();
static MAIN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Registers `main` as the service's entry point, under `name`.
///
/// ```ignore
/// #![forbid(unsafe_code)]
/// runtime::entry!("selftest", main);
/// fn main() -> i32 { 0 }
/// ```
///
/// The HAL starts a service by calling `__unikernel_start`, a symbol its
/// image must define exactly once; this macro is the one place that defines
/// it. Exporting a symbol takes an unsafe attribute (`#[unsafe(no_mangle)]`),
/// and its promise, that the definition matches the HAL's declaration
/// ([`hal::startup::ServiceStart`], checked here at compile time) and that
/// nothing else takes the name, is the runtime's to keep, not the
/// service's. rustc sees it the same way: it does not report `unsafe_code`
/// in code another crate's macro wrote, so a service that uses `entry!`
/// still says `#![forbid(unsafe_code)]`, and any `unsafe` it writes itself
/// fails to build. The macro takes only a literal and a path, so nothing a
/// service writes lands inside the exported item but the name of its
/// `main`.
#[macro_export]
macro_rules! entry {
    ($name:literal, $main:path) => {
        /// Called by the HAL once boot data is gathered.
        #[unsafe(no_mangle)]
        fn __unikernel_start(info: &'static $crate::BootInfo) -> ! {
            $crate::start(info, $name, $main)
        }
        const _: $crate::hal::startup::ServiceStart = __unikernel_start;
    };
}

/// Brings the runtime up, runs `main` and powers off with its status.
/// Called by [`entry!`]; not for services to call directly.
pub fn start(info: &'static BootInfo, name: &'static str, main: fn() -> i32) -> ! {
    SERVICE.call_once(|| name);
    BOOT.call_once(|| info);
    heap::init(info);
    logger::init(Cmdline::new(info.cmdline).get("log"));
    node_clock::init(Cmdline::new(info.cmdline));
    MAIN_COUNTER.store(hal::clock::counter(), Ordering::Relaxed);
    let since_entry =
        |counter: u64| hal::clock::ticks_to_ns(counter.wrapping_sub(hal::clock::entry_counter()));
    hal::console::print(format_args!(
        "{marker}rust {}\n{marker}main {}\n",
        since_entry(hal::startup::rust_entry_counter()),
        duration_ns(entry_to_main()),
        marker = guest_abi::BOOT_TIMER_MARKER,
    ));
    bus::start(Cmdline::new(info.cmdline).get("service").unwrap_or(name));
    exit(main())
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The service's name.
pub fn service_name() -> &'static str {
    SERVICE.get().copied().unwrap_or("unikernel")
}

/// What the loader handed over.
pub fn boot_info() -> &'static BootInfo {
    BOOT.get().copied().expect("runtime used before start")
}

/// The boot command line.
pub fn cmdline() -> Cmdline<'static> {
    Cmdline::new(boot_info().cmdline)
}

/// Unix seconds: the wall clock, or the time since boot when the VM has
/// none (a record stamped either way beats none).
pub fn unix_seconds() -> u64 {
    hal::clock::unix_now().unwrap_or_else(|| hal::clock::Instant::now().as_nanos() / 1_000_000_000)
}

/// Time from the first instruction of the boot stub to `main`, measured on
/// the guest's own clock.
pub fn entry_to_main() -> Duration {
    let ticks = MAIN_COUNTER
        .load(Ordering::Relaxed)
        .wrapping_sub(hal::clock::entry_counter());
    Duration::from_nanos(hal::clock::ticks_to_ns(ticks))
}

/// Runs one named check of a test service and logs `PASS name: detail`
/// or `FAIL name: why`, the lines our QEMU tests look for; returns whether
/// it passed.
pub fn check(
    name: &str,
    f: impl FnOnce() -> Result<alloc::string::String, alloc::string::String>,
) -> bool {
    match f() {
        Ok(detail) => {
            log::info!("PASS {name}: {detail}");
            true
        }
        Err(why) => {
            log::error!("FAIL {name}: {why}");
            false
        }
    }
}

/// The exit status for "everything passed" or not.
pub fn status(ok: bool) -> i32 {
    if ok {
        guest_abi::EXIT_SUCCESS
    } else {
        guest_abi::EXIT_FAILURE
    }
}

/// Powers off with `status` after flushing nothing (the console is
/// unbuffered): 0 is success.
pub fn exit(status: i32) -> ! {
    hal::power::exit(status)
}
