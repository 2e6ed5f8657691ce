//! A panic prints where and why, then exits with `EXIT_PANIC` so the runner
//! (and later the host's supervisor) sees a crash, not a clean stop.

use core::{
    panic::PanicInfo,
    sync::atomic::{AtomicBool, Ordering},
};

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::Relaxed) {
        hal::println!("panic while panicking");
        hal::power::exit(guest_abi::EXIT_PANIC);
    }
    match info.location() {
        Some(at) => hal::println!(
            "panic in {}: {} at {}:{}:{}",
            crate::service_name(),
            info.message(),
            at.file(),
            at.line(),
            at.column()
        ),
        None => hal::println!("panic in {}: {}", crate::service_name(), info.message()),
    }
    hal::power::exit(guest_abi::EXIT_PANIC)
}
