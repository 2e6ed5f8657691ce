//! Choosing the accelerator a VM runs under.
//!
//! KVM is only worth it when it is hardware virtualisation for the guest's
//! own arch. Some machines expose `/dev/kvm` through the software `kvm_pvm`
//! module, which boots guests correctly but runs their code hundreds of
//! times slower than TCG; there TCG is chosen. `EVE_ACCEL=kvm|tcg` or an
//! explicit choice (`--accel`) overrides detection.
//!

use std::{fmt, path::PathBuf, str::FromStr};

use crate::Arch;

/// The environment variable that forces an accelerator.
pub const ACCEL_ENV: &str = "EVE_ACCEL";

/// A VM accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// The accelerator for `arch` on this machine: `EVE_ACCEL` if it names
    /// one, else detection. For tests and benchmarks, which have no flag to
    /// report a bad value to; the host uses [`choose_accel`], which refuses
    /// it.
    pub fn for_arch(arch: Arch) -> Accel {
        if let Some(forced) = std::env::var(ACCEL_ENV).ok().and_then(|v| v.parse().ok()) {
            return forced;
        }
        AccelProbe::default().detect(arch).accel
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

/// The chosen accelerator and why, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: String,
}

/// What detection looks at: the real machine by default, fake paths and
/// arch in tests.
#[derive(Debug, Clone)]
pub struct AccelProbe {
    /// Opened read-write to see whether KVM is usable.
    pub kvm_device: PathBuf,
    /// Present when `/dev/kvm` is the software `kvm_pvm` module.
    pub pvm_module: PathBuf,
    pub host_arch: Option<Arch>,
}

impl Default for AccelProbe {
    fn default() -> Self {
        AccelProbe {
            kvm_device: PathBuf::from("/dev/kvm"),
            pvm_module: PathBuf::from("/sys/module/kvm_pvm"),
            host_arch: Arch::host(),
        }
    }
}

impl AccelProbe {
    /// Detects the accelerator for `guest` guests on this machine, ignoring
    /// overrides.
    pub fn detect(&self, guest: Arch) -> AccelChoice {
        let usable = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.kvm_device)
            .is_ok();
        decide(guest, self.host_arch, usable, self.pvm_module.exists())
    }

    /// The accelerator to use: `explicit` (a `--accel` flag) first, then
    /// `env` (the value of `EVE_ACCEL`, if set), then detection. An
    /// unparsable `env` is an error, not silently ignored.
    pub fn choose(
        &self,
        guest: Arch,
        explicit: Option<Accel>,
        env: Option<&str>,
    ) -> Result<AccelChoice, String> {
        if let Some(accel) = explicit {
            return Ok(AccelChoice {
                accel,
                reason: "chosen on the command line".into(),
            });
        }
        if let Some(value) = env {
            let accel = value
                .parse()
                .map_err(|e| format!("{ACCEL_ENV}={value}: {e}"))?;
            return Ok(AccelChoice {
                accel,
                reason: format!("forced by {ACCEL_ENV}"),
            });
        }
        Ok(self.detect(guest))
    }
}

/// The accelerator for `guest` on this machine: `explicit`, else
/// `EVE_ACCEL`, else detection.
pub fn choose_accel(guest: Arch, explicit: Option<Accel>) -> Result<AccelChoice, String> {
    let env = std::env::var(ACCEL_ENV).ok();
    AccelProbe::default().choose(guest, explicit, env.as_deref())
}

fn decide(guest: Arch, host: Option<Arch>, kvm_usable: bool, kvm_is_pvm: bool) -> AccelChoice {
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
    AccelChoice {
        accel,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        fn new(kvm: bool, pvm: bool) -> Fake {
            let dir = tempfile::tempdir().expect("temp dir");
            if kvm {
                std::fs::write(dir.path().join("kvm"), b"").unwrap();
            }
            if pvm {
                std::fs::create_dir(dir.path().join("kvm_pvm")).unwrap();
            }
            Fake { dir }
        }

        fn probe(&self, host: Arch) -> AccelProbe {
            AccelProbe {
                kvm_device: self.dir.path().join("kvm"),
                pvm_module: self.dir.path().join("kvm_pvm"),
                host_arch: Some(host),
            }
        }
    }

    #[test]
    fn kvm_only_when_usable_real_and_same_arch() {
        let real = Fake::new(true, false);
        assert_eq!(
            real.probe(Arch::X86_64).detect(Arch::X86_64).accel,
            Accel::Kvm
        );
        assert_eq!(
            real.probe(Arch::X86_64).detect(Arch::Aarch64).accel,
            Accel::Tcg
        );
        let pvm = Fake::new(true, true);
        let choice = pvm.probe(Arch::X86_64).detect(Arch::X86_64);
        assert_eq!(choice.accel, Accel::Tcg);
        assert!(choice.reason.contains("kvm_pvm"));
        let none = Fake::new(false, false);
        assert_eq!(
            none.probe(Arch::Aarch64).detect(Arch::Aarch64).accel,
            Accel::Tcg
        );
        let mut unknown_host = real.probe(Arch::X86_64);
        unknown_host.host_arch = None;
        assert_eq!(unknown_host.detect(Arch::X86_64).accel, Accel::Tcg);
    }

    #[test]
    fn overrides_come_first_and_bad_env_is_an_error() {
        let pvm = Fake::new(true, true).probe(Arch::X86_64);
        let explicit = pvm.choose(Arch::X86_64, Some(Accel::Kvm), Some("tcg"));
        assert_eq!(explicit.expect("explicit").accel, Accel::Kvm);
        let env = pvm.choose(Arch::X86_64, None, Some("kvm")).expect("env");
        assert_eq!(env.accel, Accel::Kvm);
        assert!(env.reason.contains(ACCEL_ENV));
        assert!(pvm.choose(Arch::X86_64, None, Some("hvf")).is_err());
        let detected = pvm.choose(Arch::X86_64, None, None).expect("detected");
        assert_eq!(detected.accel, Accel::Tcg);
    }

    #[test]
    fn names_parse() {
        assert_eq!("kvm".parse(), Ok(Accel::Kvm));
        assert_eq!("tcg".parse(), Ok(Accel::Tcg));
        assert!("hvf".parse::<Accel>().is_err());
    }
}
