//! Boots the selftest service in QEMU on every machine type and checks how
//! runs end: success, a failing check, a panic, a CPU exception, a hang.

use std::time::Duration;

use harness::{Device, End, Guest, Machine, Profile, build_service};

fn selftest(machine: Machine) -> Guest {
    let image = build_service("selftest", machine.arch(), Profile::Release)
        .unwrap_or_else(|e| panic!("building selftest for {}: {e}", machine.arch()));
    Guest::new(machine, image)
}

fn run(guest: &Guest) -> harness::Outcome {
    guest
        .run()
        .unwrap_or_else(|e| panic!("running {}: {e}", guest.command_line()))
}

fn passes_on(machine: Machine, entropy: &str) {
    let guest = selftest(machine).device(Device::VirtioRng).cmdline(format!(
        "expect-virtio=rng expect-entropy={entropy} node.ms=3600000"
    ));
    let outcome = run(&guest);
    outcome.assert_success();
    for check in [
        "boot",
        "alloc",
        "clock",
        "node-clock",
        "timers",
        "virtio",
        "entropy",
    ] {
        assert!(
            outcome.console.contains(&format!("PASS {check}:")),
            "no PASS for {check}:\n{outcome}"
        );
    }
    // The node's clock continues from what the host handed this start.
    assert!(
        outcome.console.contains("PASS node-clock: 36")
            && outcome.console.contains("from 3600000 ms"),
        "{outcome}"
    );
    let main = outcome.stamp("main").expect("boot-timer stamp for main");
    assert!(
        !main.guest.is_zero(),
        "guest measured no boot time:\n{outcome}"
    );
    assert!(outcome.first_byte.is_some());
}

#[test]
fn selftest_passes_on_x86_64_microvm() {
    passes_on(Machine::Microvm, "cpu");
}

#[test]
fn selftest_passes_on_x86_64_q35_with_pci() {
    passes_on(Machine::Q35, "virtio");
    let outcome = run(&selftest(Machine::Q35)
        .device(Device::VirtioRng)
        .cmdline("expect-virtio=rng"));
    assert!(outcome.console.contains("x86_64 pc"), "{outcome}");
}

#[test]
fn selftest_passes_on_aarch64_virt() {
    passes_on(Machine::Virt, "virtio");
}

#[test]
fn aarch64_entered_at_el2_drops_to_el1() {
    // With virtualization extensions QEMU starts the kernel at EL2.
    let guest = selftest(Machine::Virt)
        .accel(harness::Accel::Tcg)
        .machine_option("virtualization=on")
        .device(Device::VirtioRng)
        .cmdline("expect-virtio=rng");
    run(&guest).assert_success();
}

#[test]
fn a_failing_check_fails_the_run() {
    // No virtio-rng on a cortex-a72 (no RNDR): the entropy check must fail,
    // and so must a device that was expected but is not there.
    let guest = selftest(Machine::Virt)
        .accel(harness::Accel::Tcg)
        .cmdline("expect-virtio=net expect-entropy=virtio");
    let outcome = run(&guest);
    assert_eq!(outcome.end, End::Exited(1), "{outcome}");
    assert!(outcome.console.contains("FAIL entropy"), "{outcome}");
    assert!(
        outcome
            .console
            .contains("FAIL virtio: expected a virtio net device"),
        "{outcome}"
    );
}

#[test]
fn a_panic_is_reported_with_its_message() {
    for machine in [Machine::Microvm, Machine::Virt] {
        let outcome = run(&selftest(machine).cmdline("selftest.mode=panic"));
        assert_eq!(outcome.end, End::Exited(guest_abi::EXIT_PANIC), "{outcome}");
        let message = outcome.panic_message().expect("panic line");
        assert!(
            message
                .starts_with("selftest: selftest asked to panic at services/selftest/src/main.rs:"),
            "{message}"
        );
    }
}

#[test]
fn a_cpu_exception_is_reported() {
    for machine in [Machine::Microvm, Machine::Virt] {
        let outcome = run(&selftest(machine).cmdline("selftest.mode=fault"));
        assert_eq!(
            outcome.end,
            End::Exited(guest_abi::EXIT_EXCEPTION),
            "{outcome}"
        );
        assert!(outcome.console.contains("fatal "), "{outcome}");
    }
}

#[test]
fn a_hung_guest_is_killed_at_the_timeout() {
    for machine in [Machine::Microvm, Machine::Virt] {
        let guest = selftest(machine)
            .cmdline("selftest.mode=hang")
            .timeout(Duration::from_secs(3));
        let outcome = run(&guest);
        assert_eq!(outcome.end, End::TimedOut, "{outcome}");
        assert!(outcome.total >= Duration::from_secs(3));
        assert!(outcome.stamp("main").is_some(), "it booted before hanging");
    }
}

#[test]
fn bad_boot_arguments_are_refused_not_crashed() {
    // An unterminated quote on the command line must not take the guest down.
    let outcome = run(&selftest(Machine::Microvm).cmdline("log=\"debug expect-entropy=cpu"));
    assert_eq!(outcome.end, End::Exited(0), "{outcome}");
}
