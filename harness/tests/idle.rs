//! Idle services sleep: the `idletest` service on microvm, q35 (PCI) and
//! virt with GICv2 and GICv3. A service with only a 1 s timer leaves its
//! QEMU nearly idle (a spinning guest keeps a host core busy, so the bound
//! is generous: it catches spinning, it does not time anything); a timer
//! fires on time after a long sleep; a packet that arrives while the
//! service sleeps is answered; interrupts nothing expects are counted and
//! survived.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use harness::cpu::CpuSample;
use harness::{Device, Guest, Machine, Outcome, Profile, Running, UserNet, build_service};

/// Where each test runs: the machine and its extra `-M` options.
const MACHINES: [(Machine, Option<&str>); 4] = [
    (Machine::Microvm, None),
    (Machine::Q35, None),
    (Machine::Virt, None),
    (Machine::Virt, Some("gic-version=3")),
];

/// Most of a core an idle guest's QEMU may use; a spinning one uses all
/// the core it gets.
const IDLE_CPU_BOUND: f64 = 0.10;
/// How late a timer may fire after a long sleep: a wrongly converted
/// deadline is off by far more, and TCG on a loaded host stays well under.
const TIMER_LATENESS_BOUND_US: u64 = 200_000;

fn idletest(machine: Machine, option: Option<&str>, cmdline: &str) -> Guest {
    let image = build_service("idletest", machine.arch(), Profile::Release)
        .unwrap_or_else(|e| panic!("building idletest: {e}"));
    let guest = Guest::new(machine, image)
        .cmdline(cmdline)
        .timeout(Duration::from_secs(90));
    match option {
        Some(option) => guest.machine_option(option),
        None => guest,
    }
}

fn label(machine: Machine, option: Option<&str>) -> String {
    format!(
        "{machine}{}",
        option.map_or(String::new(), |o| format!(",{o}"))
    )
}

/// Waits for the guest to settle into its idle loop.
fn wait_idling(running: &mut Running) {
    assert!(
        running
            .wait_for_line("idletest: idling", Duration::from_secs(60))
            .is_some(),
        "the guest never idled"
    );
}

/// The share of a core the guest's QEMU uses over `window`.
fn cpu_share(running: &Running, window: Duration) -> f64 {
    let before = CpuSample::take(running.pid()).expect("QEMU's CPU time");
    thread::sleep(window);
    let after = CpuSample::take(running.pid()).expect("QEMU's CPU time");
    after.share_since(&before).expect("time passed")
}

fn finished(running: Running, what: &str) -> Outcome {
    let outcome = running.finish();
    assert!(outcome.succeeded(), "{what}:\n{outcome}");
    outcome
}

#[test]
fn a_service_with_only_a_timer_uses_little_cpu() {
    for (machine, option) in MACHINES {
        let name = label(machine, option);
        let mut running = idletest(machine, option, "tick-ms=1000 run-s=6")
            .spawn()
            .expect("QEMU starts");
        wait_idling(&mut running);
        let share = cpu_share(&running, Duration::from_secs(4));
        let outcome = finished(running, &name);
        assert!(
            share < IDLE_CPU_BOUND,
            "{name}: idle QEMU used {:.1} % of a core:\n{outcome}",
            share * 100.0
        );
        assert!(outcome.console.contains(" ticks, "), "{name}:\n{outcome}");
    }
}

#[test]
fn a_timer_fires_on_time_after_a_long_sleep() {
    for (machine, option) in MACHINES {
        let name = label(machine, option);
        // The periodic tick is far away: the one-shot is the only timer.
        let guest = idletest(machine, option, "tick-ms=60000 sleep-ms=2500 run-s=4");
        let outcome = guest.run().expect("QEMU runs");
        assert!(outcome.succeeded(), "{name}: (early?)\n{outcome}");
        let late = outcome
            .metric("timer_late_us")
            .unwrap_or_else(|| panic!("{name}: no lateness reported:\n{outcome}"));
        assert!(
            late < TIMER_LATENESS_BOUND_US,
            "{name}: the 2.5 s timer fired {late} us late:\n{outcome}"
        );
    }
}

#[test]
fn interrupts_nothing_expects_are_counted_and_survived() {
    for (machine, option) in MACHINES {
        let name = label(machine, option);
        let guest = idletest(machine, option, "unexpected tick-ms=100 run-s=2");
        let outcome = guest.run().expect("QEMU runs");
        assert!(outcome.succeeded(), "{name}:\n{outcome}");
        assert!(
            outcome.console.contains("PASS unexpected:"),
            "{name}:\n{outcome}"
        );
        assert!(
            outcome.console.contains("hal: ignored "),
            "{name}:\n{outcome}"
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Sends `message` on `conn` and reads the same bytes back.
fn echo(conn: &mut TcpStream, message: &[u8]) -> Result<(), String> {
    conn.write_all(message).map_err(|e| format!("send: {e}"))?;
    let mut back = vec![0u8; message.len()];
    conn.read_exact(&mut back)
        .map_err(|e| format!("echo: {e}"))?;
    if back == message {
        Ok(())
    } else {
        Err(format!("sent {message:?}, got {back:?}"))
    }
}

#[test]
fn a_packet_arriving_during_a_sleep_is_answered() {
    for (machine, option) in MACHINES {
        let name = label(machine, option);
        let port = free_port();
        // virtio-rng: a cortex-a72 has no RNDR, and the stack needs entropy.
        let guest = idletest(machine, option, "echo-on=7 tick-ms=1000 run-s=20")
            .device(Device::VirtioRng)
            .device(Device::UserNet(UserNet {
                host_to_guest: vec![(port, 7)],
                ..UserNet::default()
            }));
        let mut running = guest.spawn().expect("QEMU starts");
        wait_idling(&mut running);
        // Connected and idle: the guest's network stack waits in its sleep.
        let exchanged = (|| -> Result<f64, String> {
            let mut conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            echo(&mut conn, b"hello")?;
            let share = cpu_share(&running, Duration::from_secs(3));
            for round in 0..3u8 {
                thread::sleep(Duration::from_millis(700));
                echo(&mut conn, &[b'a' + round; 100])?;
            }
            Ok(share)
        })();
        let outcome = running.kill();
        let share = exchanged.unwrap_or_else(|e| panic!("{name}: {e}:\n{outcome}"));
        assert!(
            share < IDLE_CPU_BOUND,
            "{name}: QEMU used {:.1} % of a core while the service waited on the network:\n{outcome}",
            share * 100.0
        );
    }
}
