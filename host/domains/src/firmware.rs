//! UEFI firmware for disk-image VMs: OVMF on x86_64, AAVMF on aarch64
//! (Debian's `ovmf` and `qemu-efi-aarch64`). The code is shared and
//! read-only; each VM gets its own copy of the variable store.

use std::path::{Path, PathBuf};

use guest_arch::Arch;

/// A firmware build: its code and the blank variable store that goes
/// with it (the two must match in size and layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars_template: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("no UEFI firmware for {arch} (looked for {looked}): install {package}")]
    Missing {
        arch: Arch,
        looked: String,
        package: &'static str,
    },
}

/// Code and variable store pairs, best first. The 4 MiB OVMF build is
/// the one Debian keeps current; no Secure Boot keys are enrolled in
/// either, so an unsigned loader boots.
fn candidates(arch: Arch) -> &'static [(&'static str, &'static str)] {
    match arch {
        Arch::X86_64 => &[
            (
                "/usr/share/OVMF/OVMF_CODE_4M.fd",
                "/usr/share/OVMF/OVMF_VARS_4M.fd",
            ),
            (
                "/usr/share/OVMF/OVMF_CODE.fd",
                "/usr/share/OVMF/OVMF_VARS.fd",
            ),
        ],
        Arch::Aarch64 => &[(
            "/usr/share/AAVMF/AAVMF_CODE.fd",
            "/usr/share/AAVMF/AAVMF_VARS.fd",
        )],
    }
}

/// The Debian package that ships the firmware for `arch`.
pub fn package(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "ovmf",
        Arch::Aarch64 => "qemu-efi-aarch64",
    }
}

/// The firmware installed for `arch`.
pub fn find(arch: Arch) -> Result<Firmware, FirmwareError> {
    candidates(arch)
        .iter()
        .find(|(code, vars)| Path::new(code).is_file() && Path::new(vars).is_file())
        .map(|(code, vars)| Firmware {
            code: PathBuf::from(code),
            vars_template: PathBuf::from(vars),
        })
        .ok_or_else(|| FirmwareError::Missing {
            arch,
            looked: candidates(arch)
                .iter()
                .map(|(code, _)| *code)
                .collect::<Vec<_>>()
                .join(", "),
            package: package(arch),
        })
}
