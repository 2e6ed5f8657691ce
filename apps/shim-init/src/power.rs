//! The power button: the host's way of asking for a graceful stop. Linux
//! turns microvm's ACPI button and virt's gpio-keys into key events on an
//! input device; one thread per event device sends a message on each
//! KEY_POWER press.

use std::{io::Read, sync::mpsc::Sender};

/// `struct input_event` on 64-bit Linux: a timeval, then type, code, value.
const EVENT_SIZE: usize = 24;
const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;

/// Whether an event record is a power key press.
fn is_power_press(event: &[u8; EVENT_SIZE]) -> bool {
    let kind = u16::from_ne_bytes([event[16], event[17]]);
    let code = u16::from_ne_bytes([event[18], event[19]]);
    let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

/// Watches every input device for the power key.
pub fn watch(pressed: Sender<()>) {
    let Ok(entries) = std::fs::read_dir("/dev/input") else {
        crate::say!("shim-init: no input devices: the power button cannot stop the app");
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("event"))
        {
            continue;
        }
        let Ok(mut device) = std::fs::File::open(&path) else {
            continue;
        };
        let pressed = pressed.clone();
        let _ = std::thread::Builder::new()
            .name("power".into())
            .spawn(move || {
                let mut event = [0u8; EVENT_SIZE];
                while device.read_exact(&mut event).is_ok() {
                    if is_power_press(&event) && pressed.send(()).is_err() {
                        return;
                    }
                }
            });
    }
}
