//! The serial console: the one output every VMM and board gives us, and the
//! channel our runners read exit statuses and boot-timer stamps from.

use core::fmt;

use spin::Mutex;

use crate::arch;

static LOCK: Mutex<()> = Mutex::new(());

/// Writes raw bytes, translating `\n` to `\r\n` for terminals.
pub fn write_bytes(bytes: &[u8]) {
    let _guard = LOCK.lock();
    for chunk in bytes.split_inclusive(|&b| b == b'\n') {
        match chunk.split_last() {
            Some((b'\n', line)) => {
                arch::serial_write(line);
                arch::serial_write(b"\r\n");
            }
            _ => arch::serial_write(chunk),
        }
    }
}

/// A `fmt::Write` handle on the console.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Formats straight to the console, without allocating: usable before the
/// heap exists and from the panic handler.
pub fn print(args: fmt::Arguments<'_>) {
    // Console::write_str never fails.
    let _ = fmt::Write::write_fmt(&mut Console, args);
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
