//! What a domain costs the host, from Linux `/proc`: CPU time of every
//! QEMU thread, and memory split into the guest's RAM and the VMM's own.
//!
//! RSS counts shared libraries whole in every QEMU; PSS shares them out,
//! which is what several VMs really cost together. Guest RAM is QEMU's one
//! anonymous mapping of the guest's size; what QEMU holds beyond it
//! (translation cache, device state, firmware, libraries) is the VMM's
//! overhead that admission charges.

use std::time::Duration;

/// `/proc/<pid>/stat` counts in USER_HZ ticks: 100 on every arch we run.
const USER_HZ: u64 = 100;

/// One reading of a domain's VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// User plus system time of every thread so far.
    pub cpu: Duration,
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// The guest RAM mapping's resident part (PSS; it is never shared).
    pub guest_ram_kib: u64,
}

impl Usage {
    /// PSS beyond the guest's RAM.
    pub fn vmm_overhead_kib(&self) -> u64 {
        self.pss_kib.saturating_sub(self.guest_ram_kib)
    }

    /// Share of one CPU used between `earlier` (taken `elapsed` before
    /// this one) and this reading, in percent.
    pub fn cpu_percent_since(&self, earlier: &Usage, elapsed: Duration) -> f64 {
        if elapsed.is_zero() {
            return 0.0;
        }
        self.cpu.saturating_sub(earlier.cpu).as_secs_f64() * 100.0 / elapsed.as_secs_f64()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("no domain {0} is running")]
    NotRunning(String),
    #[error("process {pid} is gone")]
    Gone { pid: u32 },
    #[error("/proc/{pid}/{file}: unexpected format")]
    Format { pid: u32, file: &'static str },
}

/// Reads the usage of VMM process `pid` whose guest has `guest_mib` RAM.
pub fn read(pid: u32, guest_mib: u64) -> Result<Usage, UsageError> {
    let proc_file = |file: &'static str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|_| UsageError::Gone { pid })
    };
    let format = |file| UsageError::Format { pid, file };
    let cpu = stat_cpu(&proc_file("stat")?).ok_or(format("stat"))?;
    let rollup = proc_file("smaps_rollup")?;
    let rss_kib = field_kib(&rollup, "Rss").ok_or(format("smaps_rollup"))?;
    let pss_kib = field_kib(&rollup, "Pss").ok_or(format("smaps_rollup"))?;
    let guest_ram_kib = guest_ram_pss(&proc_file("smaps")?, guest_mib * 1024);
    Ok(Usage {
        cpu,
        rss_kib,
        pss_kib,
        guest_ram_kib,
    })
}

/// User plus system time from a `/proc/<pid>/stat` line (fields 14 and
/// 15, after the command name in parentheses, which may hold anything).
pub fn stat_cpu(stat: &str) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        user.checked_add(system)?.checked_mul(1000 / USER_HZ)?,
    ))
}

/// A `Name:   123 kB` line's value.
pub fn field_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The PSS of the anonymous mapping holding guest RAM: the one of exactly
/// `guest_kib` (QEMU maps RAM in one piece below 2.75 GiB on q35 and on
/// virt), else the largest anonymous mapping at least that big; 0 if none.
pub fn guest_ram_pss(smaps: &str, guest_kib: u64) -> u64 {
    // (anonymous, size, pss) of each mapping.
    let mut mappings: Vec<(bool, u64, u64)> = Vec::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping header: address perms offset dev inode [path].
            mappings.push((line.split_whitespace().count() == 5, 0, 0));
        } else if let Some(last) = mappings.last_mut() {
            if let Some(size) = field_kib(line, "Size") {
                last.1 = size;
            } else if let Some(pss) = field_kib(line, "Pss") {
                last.2 = pss;
            }
        }
    }
    let anonymous = mappings.iter().filter(|m| m.0 && m.1 >= guest_kib);
    let exact = anonymous.clone().find(|m| m.1 == guest_kib);
    exact
        .or_else(|| anonymous.max_by_key(|m| m.1))
        .map_or(0, |m| m.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_comes_from_stat_after_the_name() {
        let stat = "77 (qemu-system-x86) S 1 77 77 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0";
        assert_eq!(stat_cpu(stat), Some(Duration::from_millis(3000)));
        assert_eq!(
            stat_cpu("77 (a) b) S 1 2 3 4 5 6 7 8 9 10 1 2"),
            Some(Duration::from_millis(30))
        );
        assert_eq!(stat_cpu("garbage"), None);
    }

    #[test]
    fn guest_ram_is_the_anonymous_mapping_of_its_size() {
        let smaps = "\
5600-5700 r-xp 00000000 08:01 1234 /usr/bin/qemu-system-x86_64
Size:               1024 kB
Pss:                 512 kB
7f00-7f10 rw-p 00000000 00:00 0
Size:             131072 kB
Pss:               40000 kB
7f20-7f30 rw-p 00000000 00:00 0
Size:            1048576 kB
Pss:                9000 kB
7f40-7f50 rw-p 00000000 00:00 0 [heap]
Size:             131072 kB
Pss:               70000 kB
";
        assert_eq!(guest_ram_pss(smaps, 131072), 40000);
        // No exact match: the largest big-enough anonymous mapping.
        assert_eq!(guest_ram_pss(smaps, 200000), 9000);
        assert_eq!(guest_ram_pss(smaps, 1 << 30), 0);
    }

    #[test]
    fn this_process_can_be_read_and_overhead_is_pss_beyond_guest_ram() {
        let usage = read(std::process::id(), 1).unwrap();
        assert!(usage.pss_kib > 0 && usage.rss_kib >= usage.pss_kib / 2);
        let u = Usage {
            cpu: Duration::from_secs(3),
            rss_kib: 0,
            pss_kib: 100,
            guest_ram_kib: 30,
        };
        assert_eq!(u.vmm_overhead_kib(), 70);
        let earlier = Usage {
            cpu: Duration::from_secs(2),
            ..u
        };
        assert_eq!(u.cpu_percent_since(&earlier, Duration::from_secs(4)), 25.0);
        assert!(matches!(read(u32::MAX, 1), Err(UsageError::Gone { .. })));
    }
}
