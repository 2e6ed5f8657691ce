//! `cargo xtask qemu`: one service, console on this terminal.
//!
//! `diag` gets a controller to diagnose: ours, started on loopback for the
//! run, which the guest reaches as 10.0.2.2 through user-mode networking.

use std::process::Stdio;

use base64::Engine;
use harness::servers::GUEST_HOST_ADDR;
use harness::{Accel, AccelProbe, Arch, Device, Guest, Machine, Profile, UserNet, build_service};

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
    let choice = AccelProbe::default().detect(arch);
    guest.accel = accel.unwrap_or(Accel::for_arch(arch));
    let mut cmdline = vec!["expect-virtio=rng".to_string()];
    let mut _controller = None;
    if service == "diag" {
        let data_dir = harness::workspace_root().join("target/xtask-controller");
        let controller = crate::controller::start(&data_dir, crate::controller::Group::Shared)?;
        crate::output::warn(format_args!(
            "xtask: controller on https://{}, admin API https://{} (token {}, data in {})",
            controller.device_api,
            controller.admin_api,
            controller.token,
            data_dir.display()
        ));
        cmdline = vec![
            format!("server={GUEST_HOST_ADDR}:{}", controller.device_api.port()),
            format!(
                "root={}",
                base64::engine::general_purpose::STANDARD.encode(&controller.root_pem)
            ),
        ];
        guest = guest.device(Device::UserNet(UserNet {
            open: true,
            ..UserNet::default()
        }));
        _controller = Some(controller);
    }
    cmdline.extend(extra.iter().cloned());
    guest.cmdline = cmdline.join(" ");
    crate::output::warn(format_args!(
        "xtask: booting {service} on {arch} {machine} with {} (detected {}: {})",
        guest.accel, choice.accel, choice.reason
    ));
    crate::output::warn(format_args!("xtask: {}", guest.command_line()));
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
