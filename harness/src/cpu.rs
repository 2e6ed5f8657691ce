//! CPU time of a process, from Linux `/proc`: how tests and benchmarks tell
//! a guest that sleeps from one that spins. A QEMU process's time covers
//! every thread (vCPU, I/O, main loop), which is what the host pays for.

use std::time::{Duration, Instant};

/// `/proc/<pid>/stat` counts in USER_HZ ticks, which Linux fixes at 100 on
/// every architecture we run on (it is not the kernel's tick rate).
const USER_HZ: u64 = 100;

/// User plus system time of every thread of `pid` so far; `None` once the
/// process is gone.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_time(&stat)
}

/// User plus system time in a `/proc/<pid>/stat` line (fields 14 and 15;
/// the command name in parentheses may itself hold spaces and parentheses).
pub fn stat_cpu_time(stat: &str) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = user.checked_add(system)?;
    Some(Duration::from_millis(ticks.checked_mul(1000 / USER_HZ)?))
}

/// A process's CPU time at a moment, to compare with a later one.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub pid: u32,
    pub at: Instant,
    pub cpu: Duration,
}

impl CpuSample {
    /// Reads `pid`'s CPU time now; `None` once the process is gone.
    pub fn take(pid: u32) -> Option<CpuSample> {
        Some(CpuSample {
            pid,
            at: Instant::now(),
            cpu: process_cpu_time(pid)?,
        })
    }

    /// The share of one core the process used between `earlier` and this
    /// sample (0.5 is half a core), or `None` if no time passed.
    pub fn share_since(&self, earlier: &CpuSample) -> Option<f64> {
        let wall = self.at.checked_duration_since(earlier.at)?;
        if wall.is_zero() {
            return None;
        }
        let used = self.cpu.saturating_sub(earlier.cpu);
        Some(used.as_secs_f64() / wall.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_added() {
        let stat = "4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 50 0 0 20 0 6 0 100 0 0";
        assert_eq!(stat_cpu_time(stat), Some(Duration::from_millis(3000)));
        let odd_name = "7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0";
        assert_eq!(stat_cpu_time(odd_name), Some(Duration::from_millis(30)));
        assert_eq!(stat_cpu_time("7 (short) R 1 2 3"), None);
        assert_eq!(stat_cpu_time("no parenthesis"), None);
    }

    #[test]
    fn a_spinning_child_uses_cpu_and_a_sleeping_one_does_not() {
        let mut spinner = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let before = [spinner.id(), sleeper.id()].map(|p| CpuSample::take(p).unwrap());
        std::thread::sleep(Duration::from_millis(1500));
        let after = [spinner.id(), sleeper.id()].map(|p| CpuSample::take(p).unwrap());
        for child in [&mut spinner, &mut sleeper] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let spun = after[0].share_since(&before[0]).unwrap();
        let slept = after[1].share_since(&before[1]).unwrap();
        assert!(spun > slept, "spinner {spun}, sleeper {slept}");
        assert!(slept < 0.05, "sleeper used {slept} of a core");
        assert!(process_cpu_time(std::process::id()).is_some());
    }
}
