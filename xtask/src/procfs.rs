//! Process facts from Linux `/proc`: memory of a process and the children
//! of the node host (QEMU processes named by their `-name`, others such as
//! swtpm by their executable).

use std::path::Path;

/// Resident set now (`VmRSS`) and its high-water mark (`VmHWM`), KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// The memory of process `pid`; `None` once it is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        rss_kib: status_kib(&text, "VmRSS")?,
        hwm_kib: status_kib(&text, "VmHWM")?,
    })
}

/// A `Name:   123 kB` field of `/proc/<pid>/status`.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The parent pid in a `/proc/<pid>/stat` line (the command name in
/// parentheses may itself hold spaces and parentheses).
pub fn stat_parent(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The value of `-name` in a NUL-separated command line (QEMU's `-name
/// guest=x,...` form too).
pub fn qemu_name(cmdline: &[u8]) -> Option<String> {
    let mut args = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    args.find(|a| a == "-name")?;
    let value = args.next()?;
    let name = value.split(',').next()?;
    Some(name.strip_prefix("guest=").unwrap_or(name).to_owned())
}

/// The children of `parent` as (name, pid): a QEMU process by its
/// `-name`, any other by its executable's file name; sorted by name.
pub fn children(parent: u32) -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(String, u32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| stat_parent(&s))
                == Some(parent)
        })
        .filter_map(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            let program = Path::new(&exe).file_name()?.to_str()?.to_owned();
            let name = if program.starts_with("qemu-system-") {
                qemu_name(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)?
            } else {
                program
            };
            Some((name, pid))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_fields_are_read_in_kib() {
        let status =
            "Name:\tqemu-system-x86\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t4\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(40960));
        assert_eq!(status_kib(status, "VmHWM"), Some(51200));
        assert_eq!(status_kib(status, "VmSwap"), None);
        assert_eq!(status_kib("VmRSSX:\t1 kB\n", "VmRSS"), None);
    }

    #[test]
    fn the_parent_follows_the_last_parenthesis() {
        assert_eq!(stat_parent("42 (qemu) S 7 42 7 0"), Some(7));
        assert_eq!(stat_parent("42 (a) b) (c) R 9 1"), Some(9));
        assert_eq!(stat_parent("42 qemu S 7"), None);
    }

    #[test]
    fn qemu_names_come_from_the_name_argument() {
        let cmdline = b"qemu-system-x86_64\0-M\0microvm\0-name\0zedagent\0-nodefaults\0";
        assert_eq!(qemu_name(cmdline).as_deref(), Some("zedagent"));
        assert_eq!(
            qemu_name(b"qemu\0-name\0guest=diag,debug-threads=on\0").as_deref(),
            Some("diag")
        );
        assert_eq!(qemu_name(b"qemu\0-M\0virt\0"), None);
    }

    #[test]
    fn this_process_has_memory_and_its_children_are_found() {
        let me = memory(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = children(std::process::id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            found.contains(&("sleep".to_owned(), child.id())),
            "{found:?}"
        );
    }
}
