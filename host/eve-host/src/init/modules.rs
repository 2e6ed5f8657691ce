//! Kernel modules: the image lists the ones it carries in dependency
//! order (resolved from `modules.dep` when the image was built), one path
//! per line; the node loads every one. Drivers for hardware that is not
//! there load and wait; a module the kernel refuses is reported and
//! skipped.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::path::Path;

use super::say;

/// What loading the list came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub loaded: usize,
    pub already: usize,
    /// Refused as not for this machine (KVM for the other CPU vendor, or
    /// no virtualisation): `ENODEV` or `EOPNOTSUPP`.
    pub not_here: usize,
    pub failed: usize,
}

/// The module paths in `list` (blank lines and `#` comments skipped),
/// relative to `root`.
pub fn read_list(list: &str, root: &Path) -> Vec<std::path::PathBuf> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| root.join(l.trim_start_matches('/')))
        .collect()
}

fn load(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    let no_parameters: &CStr = c"";
    rustix::system::finit_module(&file, no_parameters, 0).map_err(io::Error::from)
}

/// Loads every module of `list_path` (paths relative to `root`).
pub fn load_all(list_path: &Path, root: &Path) -> Loaded {
    let list = match std::fs::read_to_string(list_path) {
        Ok(list) => list,
        Err(e) => {
            say(format_args!("modules: {}: {e}", list_path.display()));
            return Loaded::default();
        }
    };
    let mut result = Loaded::default();
    for module in read_list(&list, root) {
        match load(&module) {
            Ok(()) => result.loaded += 1,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
                result.already += 1;
            }
            Err(e)
                if [rustix::io::Errno::NODEV, rustix::io::Errno::OPNOTSUPP]
                    .iter()
                    .any(|n| e.raw_os_error() == Some(n.raw_os_error())) =>
            {
                result.not_here += 1;
            }
            Err(e) => {
                result.failed += 1;
                let name = module.file_name().unwrap_or_default().to_string_lossy();
                say(format_args!("modules: {name}: {e}"));
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_paths_in_order() {
        let list = "# virtio first\nkernel/drivers/virtio/virtio.ko\n\n /kernel/fs/ext4/ext4.ko \n";
        assert_eq!(
            read_list(list, Path::new("/lib/modules/6.1")),
            [
                Path::new("/lib/modules/6.1/kernel/drivers/virtio/virtio.ko"),
                Path::new("/lib/modules/6.1/kernel/fs/ext4/ext4.ko")
            ]
        );
    }
}
