//! aarch64 interrupts: the GIC, the virtual generic timer (CNTV) as the
//! wake-up timer, the IRQ handler the vector table calls, and the sleep.
//!
//! IRQs stay masked (PSTATE.I) except for a moment after `wfi`: `wfi`
//! wakes for a pending interrupt even while it is masked, so masking it
//! across the check-then-sleep leaves no window for a lost wake-up; the
//! brief unmask then takes the interrupt through the handler.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use aarch64_cpu::registers::{CNTV_CTL_EL0, CNTV_CVAL_EL0, Writeable};

use super::gic::{self, Gic};
use crate::{
    clock::{self, Instant},
    irq,
    startup::Line,
};

/// The virtual timer's PPI where the device tree does not say (the value
/// the Server Base System Architecture fixes, and QEMU's).
const VIRTUAL_TIMER_PPI: u32 = 27;
/// Software-generated interrupts are 0-15; this one nothing uses.
const UNUSED_SGI: u32 = 7;
/// Interrupt IDs from here up are special (1023: nothing pending).
const SPECIAL_IDS: u32 = 1020;

static READY: AtomicBool = AtomicBool::new(false);
static TIMER_ID: AtomicU32 = AtomicU32::new(VIRTUAL_TIMER_PPI);

/// Brings up the GIC the device tree described, and the timer's
/// interrupt; without them waits spin, and say why.
pub fn init(gic: Option<Gic>, timer: Option<u32>) {
    let Some(gic) = gic else {
        crate::println!("hal: no GIC in the device tree: no interrupts, waits will spin");
        return;
    };
    if let Err(e) = gic::init(gic) {
        crate::println!("hal: {e}: no interrupts, waits will spin");
        return;
    }
    disarm();
    let timer = timer.unwrap_or(VIRTUAL_TIMER_PPI);
    TIMER_ID.store(timer, Ordering::Relaxed);
    gic::enable(timer, false);
    // Enabled so that a stray one is taken and counted, not left pending.
    for sgi in 0..16 {
        gic::enable(sgi, true);
    }
    READY.store(true, Ordering::Relaxed);
}

pub fn interrupts_available() -> bool {
    READY.load(Ordering::Relaxed)
}

/// Registers a virtio-mmio device on `line` (a GIC interrupt ID) and
/// enables it; a device without one is polled instead.
pub fn attach_mmio_device(base: usize, line: Option<Line>) {
    if let Some(line) = line
        && interrupts_available()
        && irq::register(line.number, irq::Ack::VirtioMmio(base))
    {
        gic::enable(line.number, line.edge);
        return;
    }
    irq::device_without_interrupt();
}

fn arm(deadline: Instant) {
    CNTV_CVAL_EL0.set(clock::instant_to_counter(deadline));
    CNTV_CTL_EL0.set(1); // enabled, not masked
}

/// Stopping the timer also lowers its (level-triggered) line.
fn disarm() {
    CNTV_CTL_EL0.set(0);
}

/// Called by the boot crate's IRQ vector with everything the interrupted
/// code may need saved.
#[unsafe(no_mangle)]
extern "C" fn hal_irq() {
    let id = gic::acknowledge();
    if id >= SPECIAL_IDS {
        irq::spurious_interrupt();
        return;
    }
    if id == TIMER_ID.load(Ordering::Relaxed) {
        disarm();
        irq::timer_interrupt();
    } else if !irq::device_interrupt(id) {
        irq::unexpected_interrupt(id);
    }
    gic::end(id);
}

/// Sleeps until `deadline` or the next interrupt, whichever is first;
/// returns at once if one is already pending. Without interrupts it only
/// hints that the caller spins.
pub fn sleep_until(deadline: Instant) {
    if !interrupts_available() {
        core::hint::spin_loop();
        return;
    }
    arm(deadline);
    // SAFETY: IRQs are masked everywhere else. `wfi` returns when an
    // interrupt is pending even though it is masked; unmasking takes it
    // (the handler runs between `isb` and the mask), then it is masked again
    // before any other code runs. FIQs stay masked: we route nothing there.
    unsafe {
        core::arch::asm!(
            "wfi",
            "msr daifclr, #2",
            "isb",
            "msr daifset, #2",
            options(nostack)
        )
    };
    disarm();
}

/// One software-generated interrupt nothing handles.
pub fn raise_unexpected() -> u32 {
    if !interrupts_available() {
        return 0;
    }
    gic::send_to_self(UNUSED_SGI);
    1
}
