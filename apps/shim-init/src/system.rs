//! The Linux side of PID 1: filesystems, modules, the blob disk, the
//! process (chrooted, with its user), reaping, signals and power-off.

use std::{
    ffi::CString,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    kmod::{ModuleInitFlags, finit_module},
    mount::{MsFlags, mount},
    sys::{
        reboot::{RebootMode, reboot},
        signal::{Signal, kill},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::{Gid, Pid, Uid, chdir, chroot, setgid, setgroups, setuid, sync},
};
use shim_init::process::Process;

fn mount_fs(source: &str, target: &Path, fstype: &str, data: Option<&str>) -> Result<(), String> {
    std::fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
    mount(Some(source), target, Some(fstype), MsFlags::empty(), data)
        .map_err(|e| format!("mounting {fstype} on {}: {e}", target.display()))
}

pub fn mount_kernel_filesystems() -> Result<(), String> {
    mount_fs("proc", Path::new("/proc"), "proc", None)?;
    mount_fs("sysfs", Path::new("/sys"), "sysfs", None)?;
    mount_fs("devtmpfs", Path::new("/dev"), "devtmpfs", None)
}

/// A tmpfs for the container's root: the VM's memory holds its files.
pub fn mount_root(root: &Path) -> Result<(), String> {
    mount_fs("rootfs", root, "tmpfs", Some("mode=0755"))
}

/// proc, sys and dev inside the container's root.
pub fn mount_into(root: &Path) -> Result<(), String> {
    mount_fs("proc", &root.join("proc"), "proc", None)?;
    mount_fs("sysfs", &root.join("sys"), "sysfs", None)?;
    mount_fs("devtmpfs", &root.join("dev"), "devtmpfs", None)
}

/// Loads each module `list` names (one a line, in dependency order).
pub fn load_modules(list: &Path, dir: &Path) -> Result<(), String> {
    let names = std::fs::read_to_string(list).map_err(|e| format!("{}: {e}", list.display()))?;
    for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
        let path = dir.join(format!("{name}.ko"));
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        match finit_module(&file, c"", ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("loading module {name}: {e}")),
        }
    }
    Ok(())
}

/// The disk whose virtio-blk serial is `serial`, once it has appeared.
pub fn find_disk_by_serial(serial: &str, within: Duration) -> Result<PathBuf, String> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(entries) = std::fs::read_dir("/sys/block") {
            for entry in entries.flatten() {
                let found = std::fs::read_to_string(entry.path().join("serial"))
                    .is_ok_and(|s| s.trim() == serial);
                let dev = Path::new("/dev").join(entry.file_name());
                if found && dev.exists() {
                    return Ok(dev);
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no disk with serial {serial:?} appeared within {within:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A small file of the image (passwd, group), at most 1 MiB.
pub fn read_small(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    (meta.len() <= 1 << 20).then(|| std::fs::read_to_string(path).ok())?
}

/// Starts `process` chrooted in `root` as `uid`:`gid`; its pid.
pub fn spawn(root: &Path, process: &Process, uid: u32, gid: u32) -> Result<u32, String> {
    let root_c = CString::new(root.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let cwd = CString::new(process.working_dir.as_bytes()).map_err(|e| e.to_string())?;
    let mut command = Command::new(&process.argv[0]);
    command
        .args(&process.argv[1..])
        .env_clear()
        .envs(process.env.iter().filter_map(|e| e.split_once('=')))
        .stdin(Stdio::null());
    // SAFETY: runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: chroot, chdir, setgroups,
    // setgid and setuid are plain system calls, and the strings were
    // allocated before the fork. std's own uid/gid switch would run before
    // this hook, and a non-root process cannot chroot, so the switch is
    // done here, after the chroot.
    unsafe {
        command.pre_exec(move || {
            chroot(root_c.as_c_str())?;
            chdir(cwd.as_c_str())?;
            setgroups(&[])?;
            setgid(Gid::from_raw(gid))?;
            setuid(Uid::from_raw(uid))?;
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("starting {:?}: {e}", process.argv))?;
    Ok(child.id())
}

/// Reaps every child that has ended; the status of `app` if it is one of
/// them (its code, or 128 + the signal).
pub fn reap(app: u32) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() as u32 == app => found = Some(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid.as_raw() as u32 == app => {
                found = Some(128 + signal as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}

pub fn signal(pid: u32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

/// Flushes and powers the VM off; PID 1 never returns.
pub fn power_off() -> ! {
    sync();
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // Only reached if the kernel refused: a panic at least ends the VM
    // (the host's kernel command line has panic=-1 and QEMU -no-reboot).
    std::process::abort()
}
