//! Powering off with an exit status.

use guest_abi::EXIT_MARKER;

use crate::{arch, console};

/// Reports `status` on the console (the only way PSCI lets it out) and
/// powers the machine off. Never returns.
pub fn exit(status: i32) -> ! {
    console::print(format_args!("\n{EXIT_MARKER}{status}\n"));
    arch::power_off(status)
}

/// Called by the boot stubs on any CPU exception (interrupts have their
/// own entry): none is expected, so it is reported and the guest stops.
#[unsafe(no_mangle)]
extern "C" fn hal_exception(kind: u64, code: u64, pc: u64, address: u64) -> ! {
    console::print(format_args!(
        "\nfatal {} at pc {pc:#x} (code {code:#x}, address {address:#x})\n",
        arch::exception_name(kind),
    ));
    exit(guest_abi::EXIT_EXCEPTION)
}
