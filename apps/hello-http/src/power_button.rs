//! The VM's power button, read by polling: what the host presses (QMP
//! `system_powerdown`) to ask for a graceful stop. QEMU wires it to the
//! ACPI Generic Event Device on x86_64 microvm and to pin 3 of the PL061
//! GPIO controller (a gpio-keys power key) on aarch64 virt booted without
//! firmware; both are at fixed addresses on those machines. The HAL has
//! no power button yet, so the app reads the registers itself; the latch
//! of each device means a press between two polls is never missed.

#[cfg(target_arch = "x86_64")]
mod device {
    /// microvm's GED event selector: reading it returns the pending events
    /// and clears them.
    const GED_EVENT_SELECTOR: usize = 0xfea0_0000;
    /// The power-down event bit.
    const POWER_DOWN: u32 = 1 << 1;

    pub fn arm() {}

    pub fn pressed() -> bool {
        // SAFETY: microvm maps the GED's 4-byte event register at this
        // address, identity mapped uncached by our boot page tables;
        // reading it has no effect beyond clearing the latched events.
        let events = unsafe { core::ptr::read_volatile(GED_EVENT_SELECTOR as *const u32) };
        events & POWER_DOWN != 0
    }
}

#[cfg(target_arch = "aarch64")]
mod device {
    /// QEMU virt's PL061.
    const PL061: usize = 0x0903_0000;
    /// Interrupt event: 1 = rising edge.
    const GPIOIEV: usize = PL061 + 0x40c;
    /// Raw interrupt status: edges latched whether or not unmasked.
    const GPIORIS: usize = PL061 + 0x414;
    /// Interrupt clear.
    const GPIOIC: usize = PL061 + 0x41c;
    /// The power key's pin.
    const POWER_KEY: u32 = 1 << 3;

    fn write(register: usize, value: u32) {
        // SAFETY: the PL061's registers sit in the device-memory page our
        // boot page tables map for the first GiB; its interrupt stays
        // masked (GPIOIE untouched), so this only sets edge detection.
        unsafe { core::ptr::write_volatile(register as *mut u32, value) }
    }

    /// Latches rising edges of the power key.
    pub fn arm() {
        write(GPIOIEV, POWER_KEY);
        write(GPIOIC, POWER_KEY);
    }

    pub fn pressed() -> bool {
        // SAFETY: as in `write`; reading the raw status has no effect.
        let raw = unsafe { core::ptr::read_volatile(GPIORIS as *const u32) };
        if raw & POWER_KEY != 0 {
            write(GPIOIC, POWER_KEY);
            return true;
        }
        false
    }
}

/// Starts watching; call once before [`pressed`].
pub fn arm() {
    device::arm();
}

/// Whether the button was pressed since the last call.
pub fn pressed() -> bool {
    device::pressed()
}
