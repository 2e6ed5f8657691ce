//! The boot record: one small text file in the state directory saying
//! which boot this is, why it happened, and how it ends.
//!
//! It is replaced whole (a temporary file written and synced, renamed
//! over it, the directory synced), so a power loss at any point leaves
//! either the old record or the new one, never a mix: the reason a reboot
//! was asked for survives the power going out right after.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use hostops::power::BootReason;

/// The record's file, in the state directory.
pub const RECORD_FILE: &str = "power/boot-record";

/// How the boot a record describes ended, as far as the host knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Still running: a record that says so at the next start is a boot
    /// that ended without the host stopping the node.
    Running,
    /// Stopped by a signal from outside the node.
    Stopped,
    /// Stopping to reboot, for this reason.
    Reboot(BootReason),
    /// Stopping to power off, for this reason.
    Shutdown(BootReason),
    /// Still running, but the host stopped petting the hardware watchdog
    /// because a service is unhealthy (`crate::watchdog`): the machine
    /// resets shortly, and the next boot's reason is this one.
    Unwatched(BootReason),
}

/// One boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Boots recorded, this one included.
    pub boots: u64,
    /// Seconds since the Unix epoch at this boot's start.
    pub boot_time: u64,
    /// The previous boot's start; 0 on the first.
    pub previous_boot_time: u64,
    pub reason: BootReason,
    pub end: End,
}

impl Record {
    /// The record of the boot after `previous` (None: there was none;
    /// `Err(())`: its record is unreadable), started at `now`;
    /// `watchdog_reset`: the watchdog driver reports that it reset the
    /// machine, which turns a boot that ended while running (otherwise a
    /// power failure) into a hung host.
    pub fn next(previous: Result<Option<Record>, ()>, now: u64, watchdog_reset: bool) -> Record {
        let (reason, boots, previous_boot_time) = match previous {
            Ok(None) => (BootReason::First, 0, 0),
            Err(()) => (BootReason::ParseFail, 0, 0),
            Ok(Some(p)) => {
                let reason = match p.end {
                    End::Running if watchdog_reset => BootReason::WatchdogHung,
                    End::Running => BootReason::PowerFail,
                    End::Unwatched(reason) => reason,
                    End::Stopped => BootReason::Unknown,
                    End::Reboot(reason) => reason,
                    End::Shutdown(_) => BootReason::PoweroffCmd,
                };
                (reason, p.boots, p.boot_time)
            }
        };
        Record {
            boots: boots.saturating_add(1),
            boot_time: now,
            previous_boot_time,
            reason,
            end: End::Running,
        }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let (end, end_reason) = match self.end {
            End::Running => ("running", BootReason::Unspecified),
            End::Stopped => ("stopped", BootReason::Unspecified),
            End::Reboot(r) => ("reboot", r),
            End::Shutdown(r) => ("shutdown", r),
            End::Unwatched(r) => ("unwatched", r),
        };
        format!(
            "boots={}\nboot-time={}\nprevious-boot-time={}\nreason={}\nend={end}\nend-reason={}\n",
            self.boots,
            self.boot_time,
            self.previous_boot_time,
            self.reason as i32,
            end_reason as i32
        )
    }

    /// Reads a record's text; None for anything that is not one.
    pub fn parse(text: &str) -> Option<Record> {
        let field = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        };
        let number = |key: &str| field(key)?.parse::<u64>().ok();
        let reason = |key: &str| BootReason::try_from(field(key)?.parse::<i32>().ok()?).ok();
        let end = match field("end")? {
            "running" => End::Running,
            "stopped" => End::Stopped,
            "reboot" => End::Reboot(reason("end-reason")?),
            "shutdown" => End::Shutdown(reason("end-reason")?),
            "unwatched" => End::Unwatched(reason("end-reason")?),
            _ => return None,
        };
        Some(Record {
            boots: number("boots")?,
            boot_time: number("boot-time")?,
            previous_boot_time: number("previous-boot-time")?,
            reason: reason("reason")?,
            end,
        })
    }
}

/// Where a node's record is kept.
#[derive(Debug, Clone)]
pub struct RecordFile {
    path: PathBuf,
}

impl RecordFile {
    pub fn in_state_dir(state_dir: &Path) -> RecordFile {
        RecordFile {
            path: state_dir.join(RECORD_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file a replacement is written to first.
    fn temporary(&self) -> PathBuf {
        self.path.with_extension("new")
    }

    /// The record: None if there is none, `Err(())` if it is unreadable.
    pub fn read(&self) -> io::Result<Result<Option<Record>, ()>> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(std::str::from_utf8(&bytes)
                .ok()
                .and_then(Record::parse)
                .map(Some)
                .ok_or(())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ok(None)),
            Err(e) => Err(e),
        }
    }

    /// Replaces the record with `record`, durably and atomically.
    pub fn write(&self, record: &Record) -> io::Result<()> {
        let dir = self
            .path
            .parent()
            .ok_or_else(|| io::Error::other("the record has no directory"))?;
        fs::create_dir_all(dir)?;
        let temporary = self.temporary();
        let mut file = File::create(&temporary)?;
        file.write_all(record.render().as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, &self.path)?;
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(end: End) -> Record {
        Record {
            boots: 4,
            boot_time: 1_700_000_000,
            previous_boot_time: 1_600_000_000,
            reason: BootReason::RebootCmd,
            end,
        }
    }

    #[test]
    fn records_round_trip_through_their_text() {
        for end in [
            End::Running,
            End::Stopped,
            End::Reboot(BootReason::Update),
            End::Shutdown(BootReason::PoweroffCmd),
            End::Unwatched(BootReason::WatchdogPid),
        ] {
            let r = record(end);
            assert_eq!(Record::parse(&r.render()), Some(r));
        }
    }

    #[test]
    fn each_end_gives_the_next_boot_its_reason() {
        let next = |end| Record::next(Ok(Some(record(end))), 1_800_000_000, false);
        assert_eq!(next(End::Running).reason, BootReason::PowerFail);
        assert_eq!(
            next(End::Unwatched(BootReason::WatchdogPid)).reason,
            BootReason::WatchdogPid
        );
        let reset = |end| Record::next(Ok(Some(record(end))), 1_800_000_000, true).reason;
        assert_eq!(reset(End::Running), BootReason::WatchdogHung);
        // A recorded end says more than the driver's flag.
        assert_eq!(reset(End::Stopped), BootReason::Unknown);
        assert_eq!(next(End::Stopped).reason, BootReason::Unknown);
        assert_eq!(
            next(End::Reboot(BootReason::Fallback)).reason,
            BootReason::Fallback
        );
        assert_eq!(
            next(End::Shutdown(BootReason::RebootCmd)).reason,
            BootReason::PoweroffCmd
        );
        let n = next(End::Stopped);
        assert_eq!((n.boots, n.previous_boot_time), (5, 1_700_000_000));
        assert_eq!((n.boot_time, n.end), (1_800_000_000, End::Running));
        let first = Record::next(Ok(None), 7, false);
        assert_eq!(
            (first.reason, first.boots, first.previous_boot_time),
            (BootReason::First, 1, 0)
        );
        assert_eq!(
            Record::next(Err(()), 7, false).reason,
            BootReason::ParseFail
        );
    }

    #[test]
    fn hostile_text_is_no_record() {
        let good = record(End::Reboot(BootReason::Update)).render();
        for bad in [
            String::new(),
            good.replace("end=reboot", "end=sideways"),
            good.replace("end-reason=3", "end-reason=99"),
            good.replace("boots=4", "boots=-4"),
            good.replace("reason=2\n", "reason=\n"),
            String::from("boots=\u{0}\n=\n==\nend"),
        ] {
            assert_eq!(Record::parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_abandoned_write_leaves_the_previous_record() {
        let dir = tempfile::tempdir().unwrap();
        let file = RecordFile::in_state_dir(dir.path());
        assert_eq!(file.read().unwrap(), Ok(None));
        let before = record(End::Reboot(BootReason::Update));
        file.write(&before).unwrap();
        // Power lost in the middle of the next write: half a temporary
        // file, never renamed.
        let half = record(End::Stopped).render();
        fs::write(file.temporary(), &half[..half.len() / 2]).unwrap();
        assert_eq!(file.read().unwrap(), Ok(Some(before)));
        // The next write replaces the leftover and the record.
        let after = record(End::Running);
        file.write(&after).unwrap();
        assert_eq!(file.read().unwrap(), Ok(Some(after)));
        assert!(!file.temporary().exists());
        fs::write(file.path(), b"\xff\xfe garbage").unwrap();
        assert_eq!(file.read().unwrap(), Err(()));
    }
}
