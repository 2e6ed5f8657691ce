//! Debian packages for a node image, downloaded with `apt-get download`
//! and unpacked with `dpkg-deb -x`, never installed: the kernel
//! (`linux-image-amd64` / `linux-image-arm64`), QEMU for the node's arch
//! with every shared library it loads, QEMU's firmware blobs, and the
//! Raspberry Pi boot firmware. Everything is cached under
//! `target/image/debian/`, so a second image build downloads nothing; the
//! kernel alone is the one unpacked copy in `target/app-assets/` that the
//! test apps' Linux VMs use too.
//!
//! QEMU's libraries are found from the binary itself: its `DT_NEEDED`
//! closure is walked, and each soname missing from what is unpacked so far
//! is mapped to its package by the host's own `dpkg -S` (the host runs the
//! same QEMU for its tests), then fetched for the image's arch at the
//! host's version of that package.
//!
//! Each apt call reads apt's whole cache first (about a second of CPU), so
//! the packages the host's own QEMU loads are asked about with one
//! `apt-cache show` and fetched with one `apt-get download` before the
//! walk; the walk then finds them cached and asks apt only about what the
//! host's closure missed. Answers from `apt-cache` are kept for the build.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::Arch;

use super::elf;

/// Debian's name of the image's arch.
pub fn deb_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    }
}

/// The multiarch triplet libraries live under.
pub fn triplet(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-linux-gnu",
        Arch::Aarch64 => "aarch64-linux-gnu",
    }
}

/// The QEMU binary package for the arch.
fn qemu_package(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "qemu-system-x86",
        Arch::Aarch64 => "qemu-system-arm",
    }
}

fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The host's installed version of `package` (any arch), if installed.
fn host_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}\n", package])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.lines().next()?.trim();
    (out.status.success() && !version.is_empty()).then(|| version.to_string())
}

/// The package owning a file named `soname` on the host (`dpkg -S`).
fn host_package_of(soname: &str) -> Option<String> {
    let out = Command::new("dpkg").args(["-S", soname]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let (package, path) = line.split_once(": ")?;
            if package.starts_with("diversion") || !path.ends_with(&format!("/{soname}")) {
                return None;
            }
            Some(package.split(':').next()?.to_string())
        })
}

/// The file `path` (relative to an unpacked package's `root`) names,
/// following symbolic links inside `root`: an absolute link means the
/// package's own root, never the host's.
fn resolve_in(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut current = root.join(path);
    for _ in 0..16 {
        let meta = std::fs::symlink_metadata(&current).ok()?;
        if !meta.file_type().is_symlink() {
            return meta.is_file().then_some(current);
        }
        let target = std::fs::read_link(&current).ok()?;
        current = if target.is_absolute() {
            root.join(target.strip_prefix("/").ok()?)
        } else {
            current.parent()?.join(target)
        };
    }
    None
}

/// The packages (at the host's versions) that the host's own copy of a
/// program loads: `ldd` names its libraries, one `dpkg -S` their packages.
fn host_closure_packages(program: &Path) -> Vec<(String, Option<String>)> {
    let Ok(out) = Command::new("ldd").arg(program).output() else {
        return Vec::new();
    };
    let sonames: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (name, _) = line.trim().split_once(" => ")?;
            Some(name.to_string())
        })
        .collect();
    if sonames.is_empty() {
        return Vec::new();
    }
    let Ok(out) = Command::new("dpkg").arg("-S").args(&sonames).output() else {
        return Vec::new();
    };
    let packages: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (package, path) = line.split_once(": ")?;
            let owns = sonames.iter().any(|s| path.ends_with(&format!("/{s}")));
            (owns && !package.starts_with("diversion"))
                .then(|| package.split(':').next().unwrap_or(package).to_string())
        })
        .collect();
    packages
        .into_iter()
        .map(|p| {
            let version = host_version(&p);
            (p, version)
        })
        .collect()
}

/// Which of `specs` (`name[:arch][=version]`) apt's lists (local, no
/// download) have in an archive, from one `apt-cache show`: a version
/// known only because it is installed has no `Filename:` to download from.
fn listed_in_archive(specs: &[String]) -> BTreeMap<String, bool> {
    let mut answers: BTreeMap<String, bool> = specs.iter().map(|s| (s.clone(), false)).collect();
    // apt-cache fails when any spec is unknown but still shows the rest.
    let Ok(out) = Command::new("apt-cache").arg("show").args(specs).output() else {
        return answers;
    };
    for stanza in String::from_utf8_lossy(&out.stdout).split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
                .map(str::trim)
        };
        let (Some(package), Some(arch), Some(version), Some(_)) = (
            field("Package"),
            field("Architecture"),
            field("Version"),
            field("Filename"),
        ) else {
            continue;
        };
        for (spec, listed) in answers.iter_mut() {
            let (name_arch, want_version) = match spec.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (spec.as_str(), None),
            };
            let (name, want_arch) = match name_arch.split_once(':') {
                Some((n, a)) => (n, Some(a)),
                None => (name_arch, None),
            };
            *listed |= name == package
                && want_arch.is_none_or(|a| a == arch)
                && want_version.is_none_or(|v| v == version);
        }
    }
    answers
}

/// Packages of one arch in a cache directory.
pub struct Debian {
    arch: Arch,
    debs: PathBuf,
    unpacked: PathBuf,
    /// `apt-cache` answers already had, by spec.
    listed: RefCell<BTreeMap<String, bool>>,
}

impl Debian {
    /// The cache for `arch` under `cache` (`target/image/debian`).
    pub fn new(cache: &Path, arch: Arch) -> Result<Debian, String> {
        let debs = cache.join("debs").join(deb_arch(arch));
        let unpacked = cache.join("unpacked").join(deb_arch(arch));
        for dir in [&debs, &unpacked] {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(Debian {
            arch,
            debs,
            unpacked,
            listed: RefCell::new(BTreeMap::new()),
        })
    }

    /// Asks apt about every spec not asked about yet, in one call.
    fn ask(&self, specs: &[String]) {
        let new: Vec<String> = {
            let known = self.listed.borrow();
            specs
                .iter()
                .filter(|s| !known.contains_key(*s))
                .cloned()
                .collect()
        };
        if !new.is_empty() {
            self.listed.borrow_mut().extend(listed_in_archive(&new));
        }
    }

    /// Downloads, with one `apt-get download`, every package of `packages`
    /// (at its version where the archive has it) that is not cached. A
    /// failure here is left to the one-by-one download that follows, which
    /// names the package at fault.
    fn prefetch(&self, packages: &[(String, Option<String>)]) {
        let with_arch = |p: &str| format!("{p}:{}", deb_arch(self.arch));
        let qualified: Vec<String> = packages.iter().map(|(p, _)| with_arch(p)).collect();
        self.ask(&qualified);
        let versioned: Vec<String> = packages
            .iter()
            .filter_map(|(p, v)| Some(format!("{}={}", self.qualified(p), v.as_ref()?)))
            .collect();
        self.ask(&versioned);
        let missing: Vec<String> = packages
            .iter()
            .filter_map(|(package, version)| {
                let version = version.as_deref().filter(|v| self.available(package, v));
                if self.cached_deb(package, version).is_some() {
                    return None;
                }
                let spec = self.qualified(package);
                Some(match version {
                    Some(v) => format!("{spec}={v}"),
                    None => spec,
                })
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        crate::output::say(format_args!(
            "xtask: apt-get download of {} packages",
            missing.len()
        ));
        if let Err(e) = run(
            Command::new("apt-get")
                .args(["download", "-q"])
                .args(&missing)
                .current_dir(&self.debs),
            "apt-get download",
        ) {
            crate::output::say(format_args!("xtask: {e}; fetching one at a time"));
        }
    }

    /// The downloaded `.deb` of `package` in the cache, if there is one.
    fn cached_deb(&self, package: &str, version: Option<&str>) -> Option<PathBuf> {
        let entries = std::fs::read_dir(&self.debs).ok()?;
        // apt-get names files <name>_<version, ':' as %3a>_<arch>.deb.
        let version = version.map(|v| v.replace(':', "%3a"));
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            let mut parts = name.trim_end_matches(".deb").splitn(3, '_');
            let (Some(n), Some(v), Some(a)) = (parts.next(), parts.next(), parts.next()) else {
                return false;
            };
            n == package
                && (a == deb_arch(self.arch) || a == "all")
                && version.as_deref().is_none_or(|want| want == v)
        })
    }

    /// The `.deb` of `package` (at `version` when given), downloaded into
    /// the cache unless it is there.
    pub fn deb(&self, package: &str, version: Option<&str>) -> Result<PathBuf, String> {
        if let Some(deb) = self.cached_deb(package, version) {
            return Ok(deb);
        }
        let mut spec = self.qualified(package);
        if let Some(version) = version {
            spec.push('=');
            spec.push_str(version);
        }
        crate::output::say(format_args!("xtask: apt-get download {spec}"));
        run(
            Command::new("apt-get")
                .args(["download", "-q", &spec])
                .current_dir(&self.debs),
            &format!("apt-get download {spec}"),
        )?;
        self.cached_deb(package, version).ok_or_else(|| {
            format!(
                "apt-get download {spec} left no .deb in {}",
                self.debs.display()
            )
        })
    }

    /// Whether apt's lists have `spec` in an archive (asked once).
    fn listed(&self, spec: &str) -> bool {
        self.ask(&[spec.to_string()]);
        self.listed.borrow().get(spec).copied().unwrap_or(false)
    }

    /// `package` as apt names it for this arch: `name:arch`, or the bare
    /// name for an architecture-independent package (`all`), which apt
    /// files under the host's arch.
    fn qualified(&self, package: &str) -> String {
        let with_arch = format!("{package}:{}", deb_arch(self.arch));
        if self.listed(&with_arch) {
            with_arch
        } else {
            package.to_string()
        }
    }

    /// Whether apt's lists have `package` at `version` for this arch.
    fn available(&self, package: &str, version: &str) -> bool {
        self.listed(&format!("{}={version}", self.qualified(package)))
    }

    /// `package` unpacked (once) into a directory of its own. A version
    /// the archive no longer has (the host's copy came from an older
    /// snapshot) gives way to the archive's candidate: the same Debian
    /// release keeps a library's ABI.
    pub fn unpack(&self, package: &str, version: Option<&str>) -> Result<PathBuf, String> {
        let version = version.filter(|v| self.available(package, v));
        let deb = self.deb(package, version)?;
        let stem = deb
            .file_stem()
            .ok_or("a .deb without a name")?
            .to_string_lossy()
            .into_owned();
        let dir = self.unpacked.join(&stem);
        let done = dir.join(".unpacked");
        if done.exists() {
            return Ok(dir);
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        run(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir),
            &format!("dpkg-deb -x {}", deb.display()),
        )?;
        std::fs::write(&done, b"").map_err(|e| format!("{}: {e}", done.display()))?;
        Ok(dir)
    }

    /// The kernel: Debian's `linux-image-<arch>`, unpacked once per arch in
    /// the cache the test apps' Linux VMs use too.
    pub fn kernel(&self) -> Result<Kernel, String> {
        let kernel = harness::appassets::debian::kernel(self.arch).map_err(|e| e.to_string())?;
        if !kernel.image.is_file() {
            return Err(format!(
                "the kernel package has no {}",
                kernel.image.display()
            ));
        }
        Ok(kernel)
    }

    /// QEMU for the arch, with its libraries and the data package. With
    /// `kvm_only` on x86_64, Debian's `qemu-system-x86_64-microvm`: the
    /// microvm machine alone, KVM only, a quarter of the size.
    pub fn qemu(&self, kvm_only: bool) -> Result<Qemu, String> {
        let package = qemu_package(self.arch);
        let version = host_version(package);
        let mut wanted = host_closure_packages(&Path::new("/usr/bin").join(self.arch.qemu()));
        for p in [package, "qemu-system-data", "libc6"] {
            wanted.push((p.to_string(), host_version(p)));
        }
        self.prefetch(&wanted);
        let root = self.unpack(package, version.as_deref())?;
        let binary = match (self.arch, kvm_only) {
            (_, false) => root.join("usr/bin").join(self.arch.qemu()),
            (Arch::X86_64, true) => root.join("usr/bin/qemu-system-x86_64-microvm"),
            (Arch::Aarch64, true) => {
                return Err("Debian has no KVM-only QEMU for arm64: drop --qemu kvm-only".into());
            }
        };
        let data = self.unpack(
            "qemu-system-data",
            host_version("qemu-system-data").as_deref(),
        )?;
        let libraries = self.libraries_of(&binary, vec![root.clone()])?;
        Ok(Qemu {
            binary,
            data: data.join("usr/share/qemu"),
            libraries,
        })
    }

    /// Every shared library `program` loads, with its interpreter: the
    /// path inside the image and the file in an unpacked package.
    fn libraries_of(
        &self,
        program: &Path,
        mut roots: Vec<PathBuf>,
    ) -> Result<Vec<(PathBuf, PathBuf)>, String> {
        let dirs = [
            format!("lib/{}", triplet(self.arch)),
            format!("usr/lib/{}", triplet(self.arch)),
        ];
        let find = |roots: &[PathBuf], soname: &str| {
            roots.iter().find_map(|root| {
                dirs.iter()
                    .find_map(|d| resolve_in(root, &Path::new(d).join(soname)))
            })
        };
        let read_needs = |path: &Path| {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            elf::needs(&bytes).map_err(|e| format!("{}: {e}", path.display()))
        };
        let libc = self.unpack("libc6", host_version("libc6").as_deref())?;
        roots.push(libc.clone());
        let top = read_needs(program)?;
        let mut found: Vec<(PathBuf, PathBuf)> = Vec::new();
        if let Some(interp) = &top.interpreter {
            // The interpreter comes with libc6; /lib64/... is a link there.
            let name = Path::new(interp).file_name().ok_or("empty interpreter")?;
            let file = find(&roots, &name.to_string_lossy())
                .ok_or_else(|| format!("libc6 has no {interp}"))?;
            found.push((PathBuf::from(interp), file));
        }
        let mut pending: Vec<String> = top.libraries;
        let mut seen: BTreeSet<String> = BTreeSet::new();
        while let Some(soname) = pending.pop() {
            if !seen.insert(soname.clone()) {
                continue;
            }
            let file = match find(&roots, &soname) {
                Some(file) => file,
                None => {
                    let package = host_package_of(&soname).ok_or_else(|| {
                        format!(
                            "{} needs {soname}, and the host has no package with it: \
                             install {} on the host (cargo xtask deps)",
                            program.display(),
                            qemu_package(self.arch)
                        )
                    })?;
                    let root = self.unpack(&package, host_version(&package).as_deref())?;
                    roots.push(root);
                    find(&roots, &soname).ok_or_else(|| {
                        format!("{package} ({}) has no {soname}", deb_arch(self.arch))
                    })?
                }
            };
            let in_image = Path::new("/lib").join(triplet(self.arch)).join(&soname);
            pending.extend(read_needs(&file)?.libraries);
            found.push((in_image, file));
        }
        Ok(found)
    }

    /// The Raspberry Pi boot firmware (`raspi-firmware`, non-free-firmware).
    pub fn raspi_firmware(&self) -> Result<PathBuf, String> {
        let root = self.unpack("raspi-firmware", None)?;
        Ok(root.join("usr/lib/raspi-firmware"))
    }
}

pub use harness::appassets::debian::Kernel;

/// QEMU, unpacked.
pub struct Qemu {
    pub binary: PathBuf,
    /// `usr/share/qemu` of qemu-system-data: firmware blobs.
    pub data: PathBuf,
    /// (path in the image, file) for the interpreter and every library.
    pub libraries: Vec<(PathBuf, PathBuf)>,
}
