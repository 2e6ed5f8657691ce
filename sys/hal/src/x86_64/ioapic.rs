//! I/O APICs: where device lines (GSIs) become interrupt vectors. A PC
//! (q35) has one at 0xfec00000 for GSIs 0-23; microvm adds a second at
//! 0xfec10000 for GSIs 24-47, which carry its virtio-mmio transports. We
//! probe both addresses instead of reading ACPI's MADT: an absent one reads
//! back as no valid version.

use core::sync::atomic::{AtomicU32, Ordering};

/// Where the I/O APICs of our machines live, and the first GSI of each.
const CHIPS: [(usize, u32); 2] = [(0xfec0_0000, 0), (0xfec1_0000, 24)];

const SELECT: usize = 0x00;
const WINDOW: usize = 0x10;
const VERSION: u32 = 0x01;
const REDIRECTION: u32 = 0x10;

const MASKED: u32 = 1 << 16;
const LEVEL_TRIGGERED: u32 = 1 << 15;

/// Inputs of each chip; 0 where the chip is absent.
static PINS: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];

fn read(base: usize, index: u32) -> u32 {
    // SAFETY: an I/O APIC's select and window registers (or unbacked MMIO
    // that reads as zero), identity mapped uncached; selecting a register
    // and reading it has no other effect.
    unsafe {
        ((base + SELECT) as *mut u32).write_volatile(index);
        ((base + WINDOW) as *const u32).read_volatile()
    }
}

fn write(base: usize, index: u32, value: u32) {
    // SAFETY: as for `read`; callers only write redirection entries.
    unsafe {
        ((base + SELECT) as *mut u32).write_volatile(index);
        ((base + WINDOW) as *mut u32).write_volatile(value);
    }
}

/// Finds the chips and masks every input they have.
pub fn init() {
    for (i, &(base, _)) in CHIPS.iter().enumerate() {
        let version = read(base, VERSION);
        let pins = ((version >> 16) & 0xff) + 1;
        // QEMU's and Intel's I/O APICs are versions 0x11 and 0x20.
        if !(0x10..=0x2f).contains(&(version & 0xff)) || pins > 240 {
            continue;
        }
        for pin in 0..pins {
            write(base, REDIRECTION + 2 * pin, MASKED);
        }
        PINS[i].store(pins, Ordering::Relaxed);
    }
}

fn locate(gsi: u32) -> Option<(usize, u32)> {
    CHIPS.iter().zip(&PINS).find_map(|(&(base, first), pins)| {
        let pin = gsi.checked_sub(first)?;
        (pin < pins.load(Ordering::Relaxed)).then_some((base, pin))
    })
}

/// Whether some chip has input `gsi`.
pub fn has(gsi: u32) -> bool {
    locate(gsi).is_some()
}

/// Delivers `gsi` as level-triggered `vector` to the APIC `destination`
/// and unmasks it. Level, because virtio holds its line up until its
/// interrupt status is acknowledged; QEMU presents an asserted line as
/// high whatever the polarity bit says, so it is left at active-high.
pub fn route(gsi: u32, vector: u8, destination: u8) -> bool {
    let Some((base, pin)) = locate(gsi) else {
        return false;
    };
    write(
        base,
        REDIRECTION + 2 * pin + 1,
        u32::from(destination) << 24,
    );
    write(
        base,
        REDIRECTION + 2 * pin,
        LEVEL_TRIGGERED | u32::from(vector),
    );
    true
}
