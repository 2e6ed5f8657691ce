use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use hostops::power::BootReason;

use super::*;

const PET_INTERVAL: Duration = UNKNOWN_TIMEOUT_PET_INTERVAL;
use crate::end::End;
use crate::supervisor::State;
use crate::targets::power::record::End as RecordEnd;

fn status(service: &str, crash_loop: bool, last_end: Option<End>) -> Status {
    Status {
        service: service.to_string(),
        state: State::Running { pid: Some(7) },
        restarts: u32::from(crash_loop) * 5,
        crash_loop,
        last_end,
    }
}

fn healthy() -> Vec<Status> {
    vec![
        status("zedagent", false, None),
        status(
            "downloader",
            false,
            Some(End::Died {
                detail: "once".into(),
            }),
        ),
    ]
}

fn crash_looping() -> Vec<Status> {
    let mut statuses = healthy();
    statuses[1].crash_loop = true;
    statuses
}

fn switch(dir: &Path) -> PowerSwitch {
    PowerSwitch::begin(dir, Arc::new(AtomicBool::new(false))).unwrap()
}

/// A node's state directory with its boot record, and a fake device: a
/// plain file, read back to see the pets.
struct Fixture {
    dir: tempfile::TempDir,
    power: PowerSwitch,
    dog: Watchdog<File>,
    device: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let power = switch(dir.path());
        let device = dir.path().join("watchdog");
        File::create(&device).unwrap();
        let (dog, armed) = Watchdog::open(&device, power.clone(), DEFAULT_TIMEOUT_SECS).unwrap();
        // A plain file says nothing: the safe interval.
        assert_eq!(armed.in_force, Err(QueryError::NotAWatchdog));
        assert_eq!(armed.set, Err(SetTimeoutError::NotAWatchdog));
        assert_eq!(armed.pet_interval(), UNKNOWN_TIMEOUT_PET_INTERVAL);
        Fixture {
            dir,
            power,
            dog,
            device,
        }
    }

    fn pets(&self) -> Vec<u8> {
        std::fs::read(&self.device).unwrap()
    }

    /// The host ends without stopping (the machine resets, or loses
    /// power) and the next one begins: its boot reason.
    fn next_boot(self) -> BootReason {
        drop(self.dog);
        drop(self.power);
        switch(self.dir.path()).record().reason
    }
}

#[test]
fn petted_once_per_interval_while_every_service_is_healthy() {
    let mut f = Fixture::new();
    let t0 = Instant::now();
    assert!(f.dog.watch(t0, &healthy()).is_none());
    assert_eq!(f.pets().len(), 1);
    assert!(f.dog.watch(t0 + PET_INTERVAL / 2, &healthy()).is_none());
    assert_eq!(f.pets().len(), 1);
    assert!(f.dog.watch(t0 + PET_INTERVAL, &healthy()).is_none());
    assert!(f.dog.watch(t0 + PET_INTERVAL * 2, &healthy()).is_none());
    assert_eq!(f.pets(), [0, 0, 0]);
}

#[test]
fn a_crash_loop_stops_the_petting_and_the_next_boot_says_watchdog() {
    let mut f = Fixture::new();
    let t0 = Instant::now();
    f.dog.watch(t0, &healthy());
    let change = f.dog.watch(t0 + PET_INTERVAL, &crash_looping());
    let Some(Change::Stopped { why, recorded }) = change else {
        panic!("{change:?}");
    };
    assert!(recorded.is_ok());
    assert_eq!(why.service, "downloader");
    assert_eq!(why.reason(), BootReason::WatchdogPid);
    assert_eq!(
        f.power.record().end,
        RecordEnd::Unwatched(BootReason::WatchdogPid)
    );
    // No pet for as long as the loop lasts, and nothing more to say.
    for i in 2..10 {
        assert!(
            f.dog
                .watch(t0 + PET_INTERVAL * i, &crash_looping())
                .is_none()
        );
    }
    assert_eq!(f.pets().len(), 1);
    // The watchdog resets the machine: the host never stops.
    assert_eq!(f.next_boot(), BootReason::WatchdogPid);
}

#[test]
fn a_service_hanging_in_a_loop_is_a_hung_reset() {
    let mut statuses = crash_looping();
    statuses[1].last_end = Some(End::Hung {
        silent_for: Duration::from_secs(40),
    });
    let why = unhealthy(&statuses).unwrap();
    assert_eq!(why.reason(), BootReason::WatchdogHung);
    assert_eq!(why.to_string(), "downloader hangs in a loop");
    assert_eq!(unhealthy(&healthy()), None);
}

#[test]
fn petting_resumes_when_the_node_is_healthy_again_before_the_reset() {
    let mut f = Fixture::new();
    let t0 = Instant::now();
    assert!(matches!(
        f.dog.watch(t0, &crash_looping()),
        Some(Change::Stopped { .. })
    ));
    assert!(f.pets().is_empty());
    assert!(matches!(
        f.dog.watch(t0 + PET_INTERVAL, &healthy()),
        Some(Change::Resumed { recorded: Ok(()) })
    ));
    assert_eq!(f.pets().len(), 1);
    assert_eq!(f.power.record().end, RecordEnd::Running);
    // A power cut now is a power failure again.
    assert_eq!(f.next_boot(), BootReason::PowerFail);
}

#[test]
fn a_clean_stop_writes_the_magic_close_and_records_its_own_end() {
    let Fixture {
        dir,
        power,
        mut dog,
        device,
    } = Fixture::new();
    let t0 = Instant::now();
    dog.watch(t0, &healthy());
    dog.watch(t0 + PET_INTERVAL, &crash_looping());
    dog.close().unwrap();
    assert_eq!(std::fs::read(&device).unwrap(), b"\0V");
    // Stopped on purpose while unhealthy: no reset comes, and the stop
    // is what the next boot reads.
    assert_eq!(
        power.finish().unwrap(),
        crate::targets::power::Ending::Stopped
    );
    drop(power);
    assert_eq!(switch(dir.path()).record().reason, BootReason::Unknown);
}
/// A device whose writes fail.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("gone"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_pet_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut dog = Watchdog::new(Broken, switch(dir.path()), PET_INTERVAL);
    let t0 = Instant::now();
    assert!(matches!(
        dog.watch(t0, &healthy()),
        Some(Change::PetFailed(_))
    ));
    assert!(dog.watch(t0 + PET_INTERVAL, &healthy()).is_none());
    assert!(dog.close().is_err());
}

#[test]
fn the_drivers_reset_flag_is_read_from_sysfs() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path();
    let flag = |name: &str, text: &str| {
        std::fs::create_dir_all(class.join(name)).unwrap();
        std::fs::write(class.join(name).join("bootstatus"), text).unwrap();
    };
    flag("watchdog0", "32\n");
    flag("watchdog1", "0\n");
    flag("watchdog2", "card reset\n");
    assert!(reset_reported(class, Path::new("/dev/watchdog")));
    assert!(reset_reported(class, Path::new("/dev/watchdog0")));
    assert!(!reset_reported(class, Path::new("/dev/watchdog1")));
    assert!(!reset_reported(class, Path::new("/dev/watchdog2")));
    assert!(!reset_reported(class, Path::new("/dev/watchdog3")));
    assert!(!reset_reported(class, Path::new("/")));
}

#[test]
fn after_a_hung_host_the_drivers_flag_makes_the_power_failure_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    drop(switch(dir.path()));
    let next = PowerSwitch::begin_after(dir.path(), Arc::new(AtomicBool::new(false)), true);
    assert_eq!(next.unwrap().record().reason, BootReason::WatchdogHung);
}

#[test]
fn the_pet_interval_is_a_third_of_the_timeout_and_at_least_a_second() {
    assert_eq!(pet_interval(DEFAULT_TIMEOUT_SECS), Duration::from_secs(20));
    assert_eq!(pet_interval(30), Duration::from_secs(10));
    assert_eq!(
        pet_interval(4),
        Duration::from_millis(1333) + Duration::from_nanos(333_333)
    );
    assert_eq!(pet_interval(2), Duration::from_secs(1));
    assert_eq!(pet_interval(0), Duration::from_secs(1));
}

#[test]
fn the_interval_in_force_is_the_drivers_read_back() {
    let armed = |set, in_force| Armed {
        identity: Ok("i6300ESB timer".into()),
        asked_secs: 60,
        set,
        in_force,
    };
    // The driver rounded 60 up to its step.
    assert_eq!(armed(Ok(64), Ok(64)).pet_interval(), pet_interval(64));
    // A fixed timeout: the one in force.
    assert_eq!(
        armed(Err(SetTimeoutError::Fixed), Ok(30)).pet_interval(),
        Duration::from_secs(10)
    );
    assert_eq!(
        armed(Ok(60), Err(QueryError::Unsupported)).pet_interval(),
        Duration::from_secs(20)
    );
    let unknown = armed(
        Err(SetTimeoutError::OutOfRange(60)),
        Err(QueryError::Unsupported),
    );
    assert_eq!(unknown.pet_interval(), UNKNOWN_TIMEOUT_PET_INTERVAL);
    assert_eq!(
        unknown.to_string(),
        "\"i6300ESB timer\", timeout 60 s not set: the watchdog cannot time 60 s, \
         timeout unknown (the watchdog driver does not say), petted every 1s"
    );
}

#[test]
fn a_healthy_node_pets_once_per_interval_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("watchdog");
    let file = File::create(&device).unwrap();
    let mut dog = Watchdog::new(file, switch(dir.path()), pet_interval(60));
    let t0 = Instant::now();
    for secs in [0, 5, 19, 20, 39, 40, 59] {
        dog.watch(t0 + Duration::from_secs(secs), &healthy());
    }
    // At 0, 20 and 40 s.
    assert_eq!(std::fs::read(&device).unwrap(), b"\0\0\0");
}
