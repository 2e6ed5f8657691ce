//! The CMOS real-time clock (MC146818), the PC's wall clock.

use super::port::{inb, outb};
use crate::clock::unix_seconds;

fn read(register: u8) -> u8 {
    // SAFETY: selecting and reading a CMOS register touches only the RTC;
    // bit 7 of the index keeps NMIs disabled as firmware leaves them.
    unsafe {
        outb(0x70, 0x80 | register);
        inb(0x71)
    }
}

fn updating() -> bool {
    read(0x0a) & 0x80 != 0
}

/// Reads the RTC twice until both reads agree (the RTC updates its fields
/// one at a time), then converts to Unix seconds.
pub fn rtc_unix_seconds() -> Option<u64> {
    let sample = || {
        for _ in 0..100_000 {
            if !updating() {
                break;
            }
        }
        [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(read)
    };
    let mut fields = sample();
    for _ in 0..5 {
        let again = sample();
        if again == fields {
            break;
        }
        fields = again;
    }
    if fields.iter().all(|&f| f == 0xff) {
        return None;
    }
    let status_b = read(0x0b);
    let binary = status_b & 0x04 != 0;
    let decode = |v: u8| -> u32 {
        if binary {
            u32::from(v)
        } else {
            u32::from(v & 0x0f) + u32::from(v >> 4) * 10
        }
    };
    let [sec, min, hour_raw, day, month, year, century] = fields;
    let mut hour = decode(hour_raw & 0x7f);
    if status_b & 0x02 == 0 && hour_raw & 0x80 != 0 {
        hour = (hour % 12) + 12;
    }
    let century = match decode(century) {
        19..=99 => decode(century),
        _ => 20,
    };
    unix_seconds(
        century * 100 + decode(year),
        decode(month),
        decode(day),
        hour,
        decode(min),
        decode(sec),
    )
}
