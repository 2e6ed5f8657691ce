//! The TSC as the monotonic clock. Its rate comes from CPUID where the CPU
//! or hypervisor states it; otherwise it is measured once against the PIT
//! (2.5 ms), on first use, so boot itself does not wait for it.

use core::arch::x86_64::{__cpuid, _rdtsc};

use spin::Once;

use super::port::{inb, outb};

static FREQUENCY: Once<u64> = Once::new();

/// PIT input clock, Hz.
const PIT_HZ: u64 = 1_193_182;
/// PIT ticks to calibrate over (2.5 ms).
const CALIBRATION_TICKS: u64 = 2_983;
/// What we assume if nothing can tell us the rate: a typical 2 GHz.
const ASSUMED_HZ: u64 = 2_000_000_000;

pub fn counter() -> u64 {
    // SAFETY: RDTSC only reads the time stamp counter.
    unsafe { _rdtsc() }
}

pub fn counter_frequency() -> u64 {
    *FREQUENCY.call_once(|| {
        cpuid_frequency()
            .or_else(pit_frequency)
            .unwrap_or(ASSUMED_HZ)
    })
}

/// The TSC rate stated by CPUID leaf 0x15 (crystal ratio), 0x16 (base MHz)
/// or the hypervisor timing leaf 0x40000010 (kHz).
fn cpuid_frequency() -> Option<u64> {
    let max = __cpuid(0).eax;
    if max >= 0x15 {
        let leaf = __cpuid(0x15);
        if leaf.eax != 0 && leaf.ebx != 0 && leaf.ecx != 0 {
            return Some(u64::from(leaf.ecx) * u64::from(leaf.ebx) / u64::from(leaf.eax));
        }
    }
    if max >= 0x16 {
        let mhz = __cpuid(0x16).eax & 0xffff;
        if mhz != 0 {
            return Some(u64::from(mhz) * 1_000_000);
        }
    }
    let hypervisor = __cpuid(1).ecx & (1 << 31) != 0;
    if hypervisor && __cpuid(0x4000_0000).eax >= 0x4000_0010 {
        let khz = __cpuid(0x4000_0010).eax;
        if khz != 0 {
            return Some(u64::from(khz) * 1000);
        }
    }
    None
}

fn pit_read() -> u16 {
    // SAFETY: latching and reading PIT channel 0 touches only the PIT.
    unsafe {
        outb(0x43, 0x00);
        let lo = inb(0x40);
        let hi = inb(0x40);
        u16::from_le_bytes([lo, hi])
    }
}

/// Counts TSC cycles over `CALIBRATION_TICKS` of PIT channel 0 running as a
/// free 16-bit down-counter. `None` if the PIT does not count.
fn pit_frequency() -> Option<u64> {
    // SAFETY: programming PIT channel 0 (mode 2, full range) affects only
    // the PIT, whose interrupt we never unmask.
    unsafe {
        outb(0x43, 0x34);
        outb(0x40, 0xff);
        outb(0x40, 0xff);
    }
    let start_pit = pit_read();
    let start_tsc = counter();
    let mut elapsed: u64 = 0;
    let mut last = start_pit;
    // Bounded in reads, so a missing PIT cannot hang the guest.
    for _ in 0..10_000_000u32 {
        let now = pit_read();
        elapsed += u64::from(last.wrapping_sub(now));
        last = now;
        if elapsed >= CALIBRATION_TICKS {
            let cycles = counter().wrapping_sub(start_tsc);
            return Some(cycles * PIT_HZ / elapsed);
        }
    }
    None
}
