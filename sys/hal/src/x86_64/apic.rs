//! The local APIC (xAPIC, memory-mapped): our end-of-interrupt, self-IPIs
//! and the wake-up timer. The timer runs in TSC-deadline mode where CPUID
//! offers it (KVM), else one-shot, its rate measured against the TSC the
//! first time it is armed (TCG has no TSC-deadline mode).

use core::{
    arch::x86_64::__cpuid,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use spin::Once;
use x86_64::registers::model_specific::Msr;

use super::clock::counter;
use crate::clock::{self, Instant};

const APIC_BASE_MSR: u32 = 0x1b;
const TSC_DEADLINE_MSR: u32 = 0x6e0;
const BASE_ENABLE: u64 = 1 << 11;
const BASE_X2APIC: u64 = 1 << 10;

const ID: usize = 0x20;
const TASK_PRIORITY: usize = 0x80;
const EOI: usize = 0xb0;
const SPURIOUS: usize = 0xf0;
const IN_SERVICE: usize = 0x100;
const ICR_LOW: usize = 0x300;
const ICR_HIGH: usize = 0x310;
const LVT_TIMER: usize = 0x320;
const LVT_LINT0: usize = 0x350;
const LVT_LINT1: usize = 0x360;
const LVT_ERROR: usize = 0x370;
const TIMER_INITIAL: usize = 0x380;
const TIMER_CURRENT: usize = 0x390;
const TIMER_DIVIDE: usize = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_TSC_DEADLINE: u32 = 2 << 17;
const SOFTWARE_ENABLE: u32 = 1 << 8;
/// Divide configuration 0b1011: the timer counts at the bus rate itself.
const DIVIDE_BY_1: u32 = 0b1011;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_TO_SELF: u32 = 1 << 18;
/// TSC cycles the one-shot timer's rate is measured over: long enough that
/// the microseconds between paired reads under TCG stay under 0.5 %.
const CALIBRATION_TSC_DIVISOR: u64 = 500;

static BASE: AtomicUsize = AtomicUsize::new(0);
static DEADLINE_MODE: AtomicBool = AtomicBool::new(false);
/// One-shot timer counts per second.
static TIMER_HZ: Once<u64> = Once::new();

fn register(offset: usize) -> *mut u32 {
    (BASE.load(Ordering::Relaxed) + offset) as *mut u32
}

fn read(offset: usize) -> u32 {
    // SAFETY: the APIC's register page, identity mapped uncached; reads of
    // these registers have no side effects.
    unsafe { register(offset).read_volatile() }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as for `read`; each caller writes a value the register's
    // definition allows.
    unsafe { register(offset).write_volatile(value) }
}

/// Why the local APIC cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicError {
    Missing,
    /// Firmware left the APIC in x2APIC mode, which only MSRs reach.
    X2Apic,
    /// Its registers are not where our page tables map devices.
    Unmapped,
}

impl core::fmt::Display for ApicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ApicError::Missing => "no local APIC",
            ApicError::X2Apic => "the local APIC was left in x2APIC mode",
            ApicError::Unmapped => "the local APIC is above 4 GiB",
        })
    }
}

/// Enables the APIC with `spurious` as its spurious vector and the timer
/// on `timer` (disarmed); masks the legacy LINT0/LINT1 inputs, so the 8259
/// and NMI wiring firmware set up cannot reach us.
pub fn init(timer: u8, spurious: u8) -> Result<(), ApicError> {
    let features = __cpuid(1);
    if features.edx & (1 << 9) == 0 {
        return Err(ApicError::Missing);
    }
    let mut msr = Msr::new(APIC_BASE_MSR);
    // SAFETY: IA32_APIC_BASE exists wherever CPUID reports an APIC.
    let base = unsafe { msr.read() };
    if base & BASE_X2APIC != 0 {
        return Err(ApicError::X2Apic);
    }
    let address = base & 0xf_ffff_f000;
    if address >= 1 << 32 {
        return Err(ApicError::Unmapped);
    }
    if base & BASE_ENABLE == 0 {
        // SAFETY: setting the global enable bit only turns the APIC on at
        // the address it already has.
        unsafe { msr.write(base | BASE_ENABLE) };
    }
    BASE.store(address as usize, Ordering::Relaxed);
    write(TASK_PRIORITY, 0);
    write(LVT_LINT0, LVT_MASKED);
    write(LVT_LINT1, LVT_MASKED);
    write(LVT_ERROR, LVT_MASKED);
    write(SPURIOUS, SOFTWARE_ENABLE | u32::from(spurious));
    let deadline = features.ecx & (1 << 24) != 0;
    DEADLINE_MODE.store(deadline, Ordering::Relaxed);
    if deadline {
        write(LVT_TIMER, LVT_TSC_DEADLINE | u32::from(timer));
    } else {
        write(TIMER_DIVIDE, DIVIDE_BY_1);
        write(LVT_TIMER, u32::from(timer));
    }
    Ok(())
}

/// Whether the timer runs on TSC deadlines (else one-shot counts).
pub fn tsc_deadline_mode() -> bool {
    DEADLINE_MODE.load(Ordering::Relaxed)
}

/// The APIC ID, where I/O APICs send our interrupts.
pub fn id() -> u8 {
    (read(ID) >> 24) as u8
}

/// Sets the timer to interrupt at `deadline` (at once if it has passed).
pub fn arm(deadline: Instant) {
    let target = clock::instant_to_counter(deadline);
    if tsc_deadline_mode() {
        // SAFETY: IA32_TSC_DEADLINE exists in TSC-deadline mode; a value in
        // the past fires at once, zero would disarm, hence the max.
        unsafe { Msr::new(TSC_DEADLINE_MSR).write(target.max(1)) };
        return;
    }
    let cycles = target.saturating_sub(counter());
    let counts =
        u128::from(cycles) * u128::from(timer_hz()) / u128::from(clock::counter_frequency().max(1));
    // Zero would stop the timer instead of firing it.
    write(TIMER_INITIAL, counts.clamp(1, u128::from(u32::MAX)) as u32);
}

/// Stops the timer, so a wake-up that came early (a device) leaves no
/// timer interrupt behind to end the next sleep for nothing.
pub fn disarm() {
    if tsc_deadline_mode() {
        // SAFETY: writing zero to IA32_TSC_DEADLINE disarms the timer.
        unsafe { Msr::new(TSC_DEADLINE_MSR).write(0) };
    } else {
        write(TIMER_INITIAL, 0);
    }
}

/// Whether `vector` is in service, i.e. was delivered through the APIC and
/// awaits an end of interrupt (software `int` and real spurious
/// interrupts are not and must not get one).
pub fn in_service(vector: u8) -> bool {
    let word = read(IN_SERVICE + usize::from(vector / 32) * 0x10);
    word & (1 << (vector % 32)) != 0
}

pub fn end_of_interrupt() {
    write(EOI, 0);
}

/// Sends `vector` to this CPU; it stays pending until the next sleep.
pub fn send_to_self(vector: u8) {
    write(ICR_HIGH, 0);
    write(ICR_LOW, ICR_TO_SELF | ICR_ASSERT | u32::from(vector));
}

fn timer_hz() -> u64 {
    *TIMER_HZ.call_once(|| {
        let window = clock::counter_frequency() / CALIBRATION_TSC_DIVISOR;
        write(TIMER_INITIAL, u32::MAX);
        let (start_tsc, start) = (counter(), read(TIMER_CURRENT));
        while counter().wrapping_sub(start_tsc) < window {
            core::hint::spin_loop();
        }
        let (end, end_tsc) = (read(TIMER_CURRENT), counter());
        write(TIMER_INITIAL, 0);
        let counted = u128::from(start.saturating_sub(end));
        let cycles = u128::from(end_tsc.wrapping_sub(start_tsc).max(1));
        let hz = counted * u128::from(clock::counter_frequency()) / cycles;
        u64::try_from(hz).unwrap_or(u64::MAX).max(1)
    })
}
