//! `cargo xtask qemu`: one service, console on this terminal.

use std::process::Stdio;

use harness::{Accel, AccelChoice, Arch, Device, Guest, Machine, Profile, build_service};

pub fn run(
    arch: Arch,
    machine: Option<Machine>,
    accel: Option<Accel>,
    debug: bool,
    service: &str,
    extra: &[String],
) -> Result<(), String> {
    crate::deps::ensure()?;
    let machine = machine.unwrap_or(Machine::default_for(arch));
    if machine.arch() != arch {
        return Err(format!("machine {machine} is not an {arch} machine"));
    }
    let profile = if debug {
        Profile::Debug
    } else {
        Profile::Release
    };
    let image = build_service(service, arch, profile).map_err(|e| e.to_string())?;
    let mut guest = Guest::new(machine, image).device(Device::VirtioRng);
    let choice = AccelChoice::detect(arch);
    guest.accel = accel.unwrap_or(Accel::for_arch(arch));
    let mut cmdline = vec!["expect-virtio=rng".to_string()];
    cmdline.extend(extra.iter().cloned());
    guest.cmdline = cmdline.join(" ");
    eprintln!(
        "xtask: booting {service} on {arch} {machine} with {} (detected {}: {})",
        guest.accel, choice.accel, choice.reason
    );
    eprintln!("xtask: {}", guest.command_line());
    let status = guest
        .command()
        .stdin(Stdio::inherit())
        .status()
        .map_err(|e| format!("{}: {e}", arch.qemu()))?;
    let code = status.code();
    let guest_status = match arch {
        Arch::X86_64 => code.and_then(guest_abi::debug_exit_status),
        // PSCI carries no status; the guest printed it on the console.
        Arch::Aarch64 => code.filter(|&c| c == 0),
    };
    match guest_status {
        Some(0) => Ok(()),
        Some(s) => Err(format!("guest exited with status {s}")),
        None => Err(format!("QEMU ended without a guest exit status ({status})")),
    }
}
