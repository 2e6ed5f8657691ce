//! Port I/O.

/// # Safety
/// The port must be one whose write has no memory-safety consequences.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: per the caller.
    unsafe { x86_64::instructions::port::Port::new(port).write(value) }
}

/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: per the caller.
    unsafe { x86_64::instructions::port::Port::new(port).write(value) }
}

/// # Safety
/// The port must be one whose read has no side effects on memory.
pub unsafe fn inb(port: u16) -> u8 {
    // SAFETY: per the caller.
    unsafe { x86_64::instructions::port::Port::new(port).read() }
}

/// # Safety
/// As for [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    // SAFETY: per the caller.
    unsafe { x86_64::instructions::port::Port::new(port).read() }
}
