//! COM1, a 16550 UART at I/O port 0x3f8.

use core::sync::atomic::{AtomicBool, Ordering};

use super::port::{inb, outb};

const COM1: u16 = 0x3f8;
const LINE_STATUS: u16 = COM1 + 5;
const TX_EMPTY: u8 = 1 << 5;

static READY: AtomicBool = AtomicBool::new(false);

fn init() {
    // SAFETY: these are the standard COM1 registers; programming them only
    // affects the UART.
    unsafe {
        outb(COM1 + 1, 0x00); // no interrupts
        outb(COM1 + 3, 0x80); // divisor latch
        outb(COM1, 0x01); // 115200 baud
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1
        outb(COM1 + 2, 0xc7); // FIFO on, cleared
        outb(COM1 + 4, 0x03); // DTR, RTS
    }
}

pub fn serial_write(bytes: &[u8]) {
    if !READY.swap(true, Ordering::Relaxed) {
        init();
    }
    for &b in bytes {
        // Bounded wait: a missing UART reads 0xff (always "empty").
        for _ in 0..100_000 {
            // SAFETY: reading the line status register has no side effects.
            if unsafe { inb(LINE_STATUS) } & TX_EMPTY != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        // SAFETY: writing the transmit register only sends a byte.
        unsafe { outb(COM1, b) };
    }
}
