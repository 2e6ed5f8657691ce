//! Choosing between KVM and TCG.
//!
//! KVM is only worth it when it is hardware virtualisation for the guest's
//! own arch. Some machines expose `/dev/kvm` through the software `kvm_pvm`
//! module, which boots guests correctly but runs their code hundreds of
//! times slower than TCG; there we pick TCG. `EVE_ACCEL=kvm|tcg` (or a
//! command's `--accel`) overrides the choice.

use std::{fmt, path::Path, str::FromStr};

use crate::Arch;

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The accelerator for `arch` on this machine: `EVE_ACCEL` if set,
    /// else what [`AccelChoice::detect`] finds.
    pub fn for_arch(arch: Arch) -> Accel {
        if let Some(forced) = std::env::var("EVE_ACCEL").ok().and_then(|v| v.parse().ok()) {
            return forced;
        }
        AccelChoice::detect(arch).accel
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Accel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!("unknown accelerator {other:?} (kvm or tcg)")),
        }
    }
}

/// The detected accelerator and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: &'static str,
}

impl AccelChoice {
    pub fn detect(arch: Arch) -> AccelChoice {
        Self::decide(
            arch,
            Arch::host(),
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok(),
            Path::new("/sys/module/kvm_pvm").exists(),
        )
    }

    fn decide(guest: Arch, host: Option<Arch>, kvm_usable: bool, kvm_is_pvm: bool) -> Self {
        let (accel, reason) = if host != Some(guest) {
            (Accel::Tcg, "guest arch differs from the host's")
        } else if !kvm_usable {
            (Accel::Tcg, "/dev/kvm is missing or not accessible")
        } else if kvm_is_pvm {
            (
                Accel::Tcg,
                "/dev/kvm is the software kvm_pvm module, slower than TCG",
            )
        } else {
            (Accel::Kvm, "hardware KVM for the guest's arch")
        };
        AccelChoice { accel, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_only_when_real_and_same_arch() {
        let x86 = Some(Arch::X86_64);
        assert_eq!(
            AccelChoice::decide(Arch::X86_64, x86, true, false).accel,
            Accel::Kvm
        );
        assert_eq!(
            AccelChoice::decide(Arch::X86_64, x86, true, true).accel,
            Accel::Tcg
        );
        assert_eq!(
            AccelChoice::decide(Arch::X86_64, x86, false, false).accel,
            Accel::Tcg
        );
        assert_eq!(
            AccelChoice::decide(Arch::Aarch64, x86, true, false).accel,
            Accel::Tcg
        );
        assert_eq!(
            AccelChoice::decide(Arch::Aarch64, None, true, false).accel,
            Accel::Tcg
        );
    }

    #[test]
    fn parses_names() {
        assert_eq!("kvm".parse(), Ok(Accel::Kvm));
        assert_eq!("tcg".parse(), Ok(Accel::Tcg));
        assert!("hvf".parse::<Accel>().is_err());
    }
}
