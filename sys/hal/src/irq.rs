//! Interrupts, the portable half: what the arch handlers report (a device
//! line, the timer, a spurious or an unexpected interrupt), the devices
//! behind each line and how each is acknowledged, and counters.
//!
//! Interrupts are taken only inside [`crate::wait_until`]'s sleep: all
//! other code runs with them masked, and an interrupt raised meanwhile
//! stays pending in the interrupt controller until the next sleep, which it
//! then ends at once. So no wake-up is lost, handlers never preempt
//! service code, and they need no locks: they acknowledge the device at its
//! interrupt status register, count, and return. The drivers find the work
//! itself (used buffers) when the waiter polls them.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::arch;

/// How many times each kind of interrupt was taken since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterruptStats {
    /// The wake-up timer.
    pub timer: u64,
    /// Device lines (virtio).
    pub device: u64,
    /// Interrupts the controller reported as spurious (nothing pending by
    /// the time it was asked, or its spurious vector).
    pub spurious: u64,
    /// Interrupts nothing here raises or handles (a vector or interrupt ID
    /// no device uses). Counted and dropped; the service goes on.
    pub unexpected: u64,
    /// The last unexpected one: an x86 vector or a GIC interrupt ID.
    pub last_unexpected: Option<u32>,
}

static TIMER: AtomicU64 = AtomicU64::new(0);
static DEVICE: AtomicU64 = AtomicU64::new(0);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);
static UNEXPECTED: AtomicU64 = AtomicU64::new(0);
/// `NONE` until an unexpected interrupt arrives.
static LAST_UNEXPECTED: AtomicU32 = AtomicU32::new(NONE);
const NONE: u32 = u32::MAX;

/// The counters now.
pub fn stats() -> InterruptStats {
    let last = LAST_UNEXPECTED.load(Ordering::Relaxed);
    InterruptStats {
        timer: TIMER.load(Ordering::Relaxed),
        device: DEVICE.load(Ordering::Relaxed),
        spurious: SPURIOUS.load(Ordering::Relaxed),
        unexpected: UNEXPECTED.load(Ordering::Relaxed),
        last_unexpected: (last != NONE).then_some(last),
    }
}

/// Sends this CPU interrupts that no device raises and nothing handles (on
/// x86_64 self-IPIs on an unused vector and on the spurious vector, and a
/// software interrupt; on aarch64 a software-generated interrupt), so tests
/// can check that they are counted and survived. Returns how many were
/// sent; they are counted (as unexpected or spurious) by the next sleep.
pub fn raise_unexpected() -> u32 {
    arch::raise_unexpected()
}

/// Whether timer and device interrupts work on this machine. Without them
/// (no interrupt controller we can drive), waits fall back to spinning.
pub fn available() -> bool {
    arch::interrupts_available()
}

/// How a device's interrupt is acknowledged, so its line drops before the
/// end of interrupt is signalled (a level-triggered line that stays high
/// would fire again at once; an edge-triggered one would never rise again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    /// virtio-mmio at this base: InterruptStatus read, written back to
    /// InterruptACK.
    VirtioMmio(usize),
    /// virtio-pci: reading the ISR status byte at this address clears it.
    VirtioPciIsr(usize),
}

impl Ack {
    fn acknowledge(self) {
        const MMIO_INTERRUPT_STATUS: usize = 0x60;
        const MMIO_INTERRUPT_ACK: usize = 0x64;
        match self {
            Ack::VirtioMmio(base) => {
                // SAFETY: `base` is a virtio-mmio window found at discovery;
                // these two registers only report and clear the interrupt
                // status, which the drivers never read.
                unsafe {
                    let status = ((base + MMIO_INTERRUPT_STATUS) as *const u32).read_volatile();
                    if status != 0 {
                        ((base + MMIO_INTERRUPT_ACK) as *mut u32).write_volatile(status);
                    }
                }
            }
            Ack::VirtioPciIsr(address) => {
                // SAFETY: the ISR status byte of a virtio-pci device found at
                // discovery, in a BAR we assigned; reading it only clears the
                // interrupt status.
                unsafe { (address as *const u8).read_volatile() };
            }
        }
    }
}

/// Devices behind interrupt lines: a fixed table filled at discovery
/// (before any interrupt is unmasked) and read by handlers. Appending
/// publishes the entry before the length, so a reader never sees a
/// half-written one.
const MAX_SOURCES: usize = 32;

struct Source {
    line: AtomicU32,
    mmio: AtomicBool,
    address: AtomicUsize,
}

static SOURCES: [Source; MAX_SOURCES] = [const {
    Source {
        line: AtomicU32::new(0),
        mmio: AtomicBool::new(false),
        address: AtomicUsize::new(0),
    }
}; MAX_SOURCES];
static SOURCE_COUNT: AtomicUsize = AtomicUsize::new(0);
/// A device was found whose interrupt we cannot receive.
static POLLING: AtomicBool = AtomicBool::new(false);

/// Records that `ack` acknowledges a device on `line` (an arch line number:
/// a GSI or group of GSIs on x86_64, a GIC interrupt ID on aarch64).
/// Returns false when the table is full, and then the device is polled.
pub(crate) fn register(line: u32, ack: Ack) -> bool {
    let index = SOURCE_COUNT.load(Ordering::Acquire);
    let Some(slot) = SOURCES.get(index) else {
        device_without_interrupt();
        return false;
    };
    let (mmio, address) = match ack {
        Ack::VirtioMmio(a) => (true, a),
        Ack::VirtioPciIsr(a) => (false, a),
    };
    slot.line.store(line, Ordering::Relaxed);
    slot.mmio.store(mmio, Ordering::Relaxed);
    slot.address.store(address, Ordering::Relaxed);
    SOURCE_COUNT.store(index + 1, Ordering::Release);
    true
}

/// Notes a device whose interrupt cannot be received: every sleep is then
/// bounded by the polling tick, so the device is still looked at often.
pub(crate) fn device_without_interrupt() {
    POLLING.store(true, Ordering::Relaxed);
}

/// Whether some device has to be polled (see [`crate::POLL_TICK`]).
pub fn polling_devices() -> bool {
    POLLING.load(Ordering::Relaxed) || !available()
}

/// Called by the arch handler for a device line, before it signals the
/// end of the interrupt: acknowledges every device on the line. False when
/// no device is registered there (the caller counts it as unexpected).
pub(crate) fn device_interrupt(line: u32) -> bool {
    let count = SOURCE_COUNT.load(Ordering::Acquire);
    let mut found = false;
    for source in &SOURCES[..count] {
        if source.line.load(Ordering::Relaxed) != line {
            continue;
        }
        let address = source.address.load(Ordering::Relaxed);
        let ack = if source.mmio.load(Ordering::Relaxed) {
            Ack::VirtioMmio(address)
        } else {
            Ack::VirtioPciIsr(address)
        };
        ack.acknowledge();
        found = true;
    }
    if found {
        DEVICE.fetch_add(1, Ordering::Relaxed);
    }
    found
}

pub(crate) fn timer_interrupt() {
    TIMER.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn spurious_interrupt() {
    SPURIOUS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn unexpected_interrupt(source: u32) {
    LAST_UNEXPECTED.store(source, Ordering::Relaxed);
    UNEXPECTED.fetch_add(1, Ordering::Relaxed);
}

/// Device interrupts so far: a waiter that sees this change returns.
pub(crate) fn device_count() -> u64 {
    DEVICE.load(Ordering::Relaxed)
}
